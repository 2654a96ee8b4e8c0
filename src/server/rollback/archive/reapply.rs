//! Rolling forward again, losslessly (issue 33, item 4). Once the split revision is applied
//! again (the diary service's deploy), the archived `insulin_short`/`insulin_long` go back onto
//! the rows that still exist, and a `dose` the fill wrote is emptied again. Each archived row
//! gets one verdict, decided from the archived values and the row as it is now; only `restore`
//! and `restore_undo_fill` write. A row archived as a doubled dose is never re-applied (its
//! archived values are the forbidden ones; it stays legacy), so nothing comes back doubled, and
//! the transaction checks that on the result before it commits.

use futures::TryStreamExt;
use sqlx::{Connection, PgConnection, PgPool};

use super::super::super::categories::{Category, DOUBLED};
use super::super::fill::fills_sql;
use super::{archive_tally_sql, diary_err, tally_sql, ArchiveError, Tally, BATCH};

/// What happens to one archived row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The split values go back; the dose is as archived already.
    Restore,
    /// The split values go back and the dose the fill wrote is emptied again.
    RestoreUndoFill,
    /// The row holds exactly the archived values.
    AlreadyApplied,
    /// The row is gone (deleted since, or dropped by a restore without the re-insert).
    SkippedRowGone,
    /// The id now holds another record (user or time differ).
    SkippedOtherRecord,
    /// Archived as a doubled dose: never brought back.
    SkippedDoubled,
    /// The row has split values again, written since: they are newer than the archive.
    SkippedSplitChanged,
    /// Its dose changed since in a way the fill does not explain.
    SkippedDoseChanged,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Restore,
        Verdict::RestoreUndoFill,
        Verdict::AlreadyApplied,
        Verdict::SkippedRowGone,
        Verdict::SkippedOtherRecord,
        Verdict::SkippedDoubled,
        Verdict::SkippedSplitChanged,
        Verdict::SkippedDoseChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Restore => "restore",
            Verdict::RestoreUndoFill => "restore_undo_fill",
            Verdict::AlreadyApplied => "already_applied",
            Verdict::SkippedRowGone => "skipped_row_gone",
            Verdict::SkippedOtherRecord => "skipped_other_record",
            Verdict::SkippedDoubled => "skipped_doubled",
            Verdict::SkippedSplitChanged => "skipped_split_changed",
            Verdict::SkippedDoseChanged => "skipped_dose_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    pub fn writes(self) -> bool {
        matches!(self, Verdict::Restore | Verdict::RestoreUndoFill)
    }
}

/// The verdict SQL over `a` (the archived row) and `h` (the row now, NULL when gone), in the
/// order of its rules.
fn verdict_sql(filled: bool) -> String {
    let a_doubled = DOUBLED.replace("dose", "a.dose").replace("insulin_", "a.insulin_");
    let a_fills = fills_sql().replace("dose", "a.dose").replace("insulin_", "a.insulin_");
    format!(
        "CASE
           WHEN h.id IS NULL THEN 'skipped_row_gone'
           WHEN h.user_id::text IS DISTINCT FROM a.user_id::text OR h.created_at <> a.created_at THEN 'skipped_other_record'
           WHEN {a_doubled} THEN 'skipped_doubled'
           WHEN (h.dose::text, h.insulin_short::text, h.insulin_long::text)
                IS NOT DISTINCT FROM (a.dose::text, a.insulin_short::text, a.insulin_long::text) THEN 'already_applied'
           WHEN h.insulin_short IS NOT NULL OR h.insulin_long IS NOT NULL THEN 'skipped_split_changed'
           WHEN h.dose IS NOT DISTINCT FROM a.dose THEN 'restore'
           WHEN {filled} AND {a_fills} AND h.dose = a.insulin_short THEN 'restore_undo_fill'
           ELSE 'skipped_dose_changed' END"
    )
}

/// How many archived rows got each verdict, by the category they were archived in.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// (verdict, archived category, rows).
    pub counts: Vec<(String, String, i64)>,
    /// Rows the re-apply writes (`restore` and `restore_undo_fill`).
    pub restorable: i64,
    /// Of those, rows whose filled dose is emptied again.
    pub undo_fill: i64,
    /// Whether this was the dry run (nothing written).
    pub dry_run: bool,
    /// The rows the re-apply left holding the archived values, as the diary and the archive say.
    pub verified: Option<Tally>,
}

impl Report {
    pub fn of(&self, v: Verdict) -> i64 {
        self.counts.iter().filter(|(x, _, _)| x == v.as_str()).map(|(_, _, n)| n).sum()
    }
}

/// Re-applies run `run_id`'s archive to `table` when `acknowledged` equals the rows it would
/// write; without `acknowledged`, the dry run: what it would do, nothing written. `writer` is a
/// connection to the diary that may write.
pub async fn reapply(
    writer: &mut PgConnection,
    state: &PgPool,
    run_id: i64,
    table: &str,
    filled: bool,
    acknowledged: Option<i64>,
) -> Result<Report, ArchiveError> {
    let dry_run = acknowledged.is_none();
    let mut tx = writer.begin().await.map_err(diary_err)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.map_err(diary_err)?;
    copy_archive(&mut tx, state, run_id).await?;
    sqlx::query(&format!(
        "CREATE TEMP TABLE rollback_verdict ON COMMIT DROP AS
         SELECT a.id, {} AS verdict, {} AS category
           FROM rollback_reapply a LEFT JOIN {table} h ON h.id = a.id",
        verdict_sql(filled),
        Category::case_sql(true).replace("dose", "a.dose").replace("insulin_", "a.insulin_")
    ))
    .execute(&mut *tx)
    .await
    .map_err(diary_err)?;
    let counts: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT verdict, category, count(*) FROM rollback_verdict GROUP BY 1, 2 ORDER BY 1, 2")
            .fetch_all(&mut *tx)
            .await
            .map_err(diary_err)?;
    let mut report = Report { counts, dry_run, ..Report::default() };
    report.undo_fill = report.of(Verdict::RestoreUndoFill);
    report.restorable = report.of(Verdict::Restore) + report.undo_fill;
    if dry_run {
        tx.rollback().await.map_err(diary_err)?;
        return Ok(report);
    }
    if acknowledged != Some(report.restorable) {
        return Err(ArchiveError::Refused(format!(
            "the re-apply would write {} row(s), not the {} acknowledged: look at the dry run again",
            report.restorable,
            acknowledged.unwrap_or_default()
        )));
    }
    let written = sqlx::query(&format!(
        "UPDATE {table} h SET insulin_short = a.insulin_short, insulin_long = a.insulin_long, dose = a.dose
           FROM rollback_reapply a JOIN rollback_verdict v USING (id)
          WHERE h.id = a.id AND v.verdict IN ('restore', 'restore_undo_fill')
            AND h.insulin_short IS NULL AND h.insulin_long IS NULL"
    ))
    .execute(&mut *tx)
    .await
    .map_err(diary_err)?
    .rows_affected() as i64;
    if written != report.restorable {
        return Err(ArchiveError::Refused(format!(
            "the re-apply wrote {written} rows where its verdicts said {}: nothing was written",
            report.restorable
        )));
    }
    let h_doubled = DOUBLED.replace("dose", "h.dose").replace("insulin_", "h.insulin_");
    let doubled: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} h JOIN rollback_verdict v USING (id)
          WHERE v.verdict IN ('restore', 'restore_undo_fill') AND {h_doubled}"
    ))
    .fetch_one(&mut *tx)
    .await
    .map_err(diary_err)?;
    if doubled != 0 {
        return Err(ArchiveError::Refused(format!(
            "{doubled} re-applied row(s) would read as a doubled dose: nothing was written"
        )));
    }
    report.verified = Some(verify_applied(&mut tx, table).await?);
    tx.commit().await.map_err(diary_err)?;
    Ok(report)
}

/// The archive into a temporary table of the diary, its tally checked against the state's.
async fn copy_archive(tx: &mut PgConnection, state: &PgPool, run_id: i64) -> Result<(), ArchiveError> {
    sqlx::query(
        "CREATE TEMP TABLE rollback_reapply (id bigint PRIMARY KEY, user_id bigint, created_at timestamptz,
           dose numeric, insulin_short numeric, insulin_long numeric) ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await
    .map_err(diary_err)?;
    type Row = (i64, Option<i64>, chrono::DateTime<chrono::Utc>, Option<String>, Option<String>, Option<String>);
    let mut from_state = state.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *from_state).await?;
    let mut stream = sqlx::query_as::<_, Row>(
        "SELECT record_id, user_id, created_at, dose::text, insulin_short::text, insulin_long::text
           FROM rollback_archive_rows WHERE run_id = $1 ORDER BY record_id",
    )
    .bind(run_id)
    .fetch(&mut *from_state);
    let mut batch: Vec<Row> = Vec::with_capacity(BATCH);
    loop {
        let next = stream.try_next().await?;
        let end = next.is_none();
        batch.extend(next);
        if batch.len() == BATCH || (end && !batch.is_empty()) {
            let rows: Vec<Row> = std::mem::take(&mut batch);
            sqlx::query(
                "INSERT INTO rollback_reapply
                 SELECT id, user_id, created_at, d::numeric, s::numeric, l::numeric
                   FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
                        AS r(id, user_id, created_at, d, s, l)",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.5.clone()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(diary_err)?;
        }
        if end {
            break;
        }
    }
    drop(stream);
    let want: Tally = sqlx::query_as(&archive_tally_sql(run_id, false)).fetch_one(&mut *from_state).await?;
    from_state.commit().await?;
    let got: Tally =
        sqlx::query_as(&tally_sql("rollback_reapply a", "id")).fetch_one(&mut *tx).await.map_err(diary_err)?;
    if got != want {
        return Err(ArchiveError::Mismatch { diary: got, archive: want });
    }
    Ok(())
}

/// The rows that now hold the archived values (restored or already applied) tally equal on
/// both sides.
async fn verify_applied(tx: &mut PgConnection, table: &str) -> Result<Tally, ArchiveError> {
    let ids = "SELECT id FROM rollback_verdict WHERE verdict IN ('restore', 'restore_undo_fill', 'already_applied')";
    let diary_side: Tally = sqlx::query_as(&tally_sql(
        &format!(
            "(SELECT id, user_id, created_at, dose, insulin_short, insulin_long FROM {table} WHERE id IN ({ids})) d"
        ),
        "id",
    ))
    .fetch_one(&mut *tx)
    .await
    .map_err(diary_err)?;
    let archive_side: Tally =
        sqlx::query_as(&tally_sql(&format!("(SELECT * FROM rollback_reapply WHERE id IN ({ids})) a"), "id"))
            .fetch_one(&mut *tx)
            .await
            .map_err(diary_err)?;
    if diary_side != archive_side {
        return Err(ArchiveError::Mismatch { diary: diary_side, archive: archive_side });
    }
    Ok(diary_side)
}

/// Records the re-apply on the archive's header.
pub async fn mark_reapplied(state: &PgPool, run_id: i64, counts: serde_json::Value) -> Result<(), super::SourceError> {
    sqlx::query("UPDATE rollback_archives SET reapplied_at = now(), reapply_counts = $2 WHERE run_id = $1")
        .bind(run_id)
        .bind(counts)
        .execute(state)
        .await?;
    Ok(())
}
