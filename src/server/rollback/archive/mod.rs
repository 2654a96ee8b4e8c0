//! The archive of the diary's split values a rollback run takes before anything destructive
//! (issue 33, item 1; docs/design/lossless-rollback.md §1–3). It lives in the state database.
//!
//! Taking it: the diary is read in one `REPEATABLE READ READ ONLY` transaction (its tally and its
//! rows are one snapshot); the rows go into the state database in one transaction, which tallies
//! them alike and commits, with the archive's header, only when both tallies are equal. So a
//! header exists only for a verified archive, and a run killed midway leaves nothing (taking it
//! again replaces whatever the run archived before). Verifying it later compares the archive
//! with the diary as it is now.
//!
//! The tally: the row count, the units of each column, and a checksum that is the sum of a
//! 64-bit md5 hash of each row's values as text (order-independent, exact as `numeric`, the same
//! under any session time zone). It catches a lost, added or changed row, or a transport error;
//! it is no defence against someone forging rows.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool};

use super::super::categories::SPLIT_WRITE;
use super::super::error::{from_sqlx, Source, SourceError};
use super::fill::filled_dose_sql;

pub mod reapply;
pub mod whole;

/// Rows copied per statement into the state database.
const BATCH: usize = 5_000;

/// What a set of rows adds up to; equal tallies mean the same rows with the same values.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Tally {
    pub rows: i64,
    pub checksum: String,
    pub short_units: Option<String>,
    pub long_units: Option<String>,
    pub dose_units: Option<String>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = |v: &Option<String>| v.clone().unwrap_or_else(|| "0".into());
        write!(
            f,
            "{} rows, checksum {}, insulin_short {} u, insulin_long {} u, dose {} u",
            self.rows,
            self.checksum,
            u(&self.short_units),
            u(&self.long_units),
            u(&self.dose_units)
        )
    }
}

/// Why an archive could not be taken or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the archive does not match the diary: the diary has {diary}; the archive has {archive}")]
    Mismatch { diary: Tally, archive: Tally },
    #[error("run #{0} has no verified archive")]
    Missing(i64),
    #[error("{0}")]
    Refused(String),
    #[error("the archive of the whole table does not match: the diary has {diary}; the archive has {archive}")]
    WholeMismatch { diary: whole::WholeTally, archive: whole::WholeTally },
}

/// A bare `?` on the state database's errors (the diary's name their source: `diary_err`).
impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> ArchiveError {
        ArchiveError::Source(e.into())
    }
}

/// The tally SQL over `from` (a table or subquery) whose record id column is `id`.
fn tally_sql(from: &str, id: &str) -> String {
    let hash = row_hash_sql(id);
    format!(
        "SELECT count(*) AS rows,
                coalesce(sum({hash}), 0)::text AS checksum,
                sum(insulin_short)::text AS short_units, sum(insulin_long)::text AS long_units,
                sum(dose)::text AS dose_units
           FROM {from}"
    )
}

/// A row's 64-bit hash (as `numeric`, to be summed) over its id, user, time (UTC, to the
/// microsecond), dose and both parts as text: the tally's, and the rehearsal's per category.
pub fn row_hash_sql(id: &str) -> String {
    let text = |c: &str| format!("coalesce({c}::text, '\\N')");
    let row = [
        text(id),
        text("user_id"),
        "coalesce(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '\\N')".to_string(),
        text("dose"),
        text("insulin_short"),
        text("insulin_long"),
    ]
    .join(", ");
    format!("('x' || left(md5(concat_ws(E'\\x1f', {row})), 16))::bit(64)::bigint::numeric")
}

fn diary_rows(table: &str) -> String {
    format!("(SELECT id, user_id, created_at, dose, insulin_short, insulin_long FROM {table} WHERE {SPLIT_WRITE}) r")
}

fn diary_err(e: sqlx::Error) -> SourceError {
    from_sqlx(Source::DiaryDatabase, &e)
}

/// The diary's split rows as they are now (a pool, or the fill's own transaction).
pub async fn diary_tally<'c>(diary: impl sqlx::PgExecutor<'c>, table: &str) -> Result<Tally, SourceError> {
    sqlx::query_as(&tally_sql(&diary_rows(table), "id")).fetch_one(diary).await.map_err(diary_err)
}

/// What run `run_id`'s archive holds; with `filled`, as the diary holds it after the fill (the
/// archive keeps the values from before it; the rule is a function of them, `fill.rs`).
async fn archive_tally(db: &mut PgConnection, run_id: i64, filled: bool) -> Result<Tally, SourceError> {
    Ok(sqlx::query_as(&archive_tally_sql(run_id, filled)).fetch_one(db).await?)
}

/// The tally SQL of run `run_id`'s archive (see [`archive_tally`]).
fn archive_tally_sql(run_id: i64, filled: bool) -> String {
    let dose = if filled { filled_dose_sql() } else { "dose".into() };
    let from = format!(
        "(SELECT record_id, user_id, created_at, {dose} AS dose, insulin_short, insulin_long
            FROM rollback_archive_rows WHERE run_id = {run_id}) a"
    );
    tally_sql(&from, "record_id")
}

/// An archive's header: written only by the transaction that verified it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Header {
    pub rows: i64,
    pub archived_at: DateTime<Utc>,
    /// When the fill of `dose` was applied to the diary (`steps/fill_dose.rs`).
    pub filled_at: Option<DateTime<Utc>>,
    /// When the archive was last re-applied (`reapply.rs`).
    pub reapplied_at: Option<DateTime<Utc>>,
    /// When its rows were purged (`retention.rs`, `retention_days` after the re-apply).
    pub purged_at: Option<DateTime<Utc>>,
}

/// Run `run_id`'s archive header, when it has one.
pub async fn header(state: &PgPool, run_id: i64) -> Result<Option<Header>, SourceError> {
    Ok(sqlx::query_as(
        "SELECT rows, archived_at, filled_at, reapplied_at, purged_at FROM rollback_archives WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_optional(state)
    .await?)
}

/// The run whose archive is the newest (the one a roll-forward may use).
pub async fn newest_run(state: &PgPool) -> Result<Option<i64>, SourceError> {
    Ok(sqlx::query_scalar(
        "SELECT run_id FROM rollback_archives WHERE run_id > 0 ORDER BY archived_at DESC, run_id DESC LIMIT 1",
    )
    .fetch_optional(state)
    .await?)
}

/// The key a rehearsal's archive is kept under: below every run's (a rehearsal's archive is of a
/// scratch copy; it never feeds a roll-forward, and it is forgotten when the rehearsal ends).
pub fn rehearsal_key(rehearsal_id: i64) -> i64 {
    -rehearsal_id
}

/// Forgets a rehearsal's archive (its header and rows), in one transaction.
pub async fn forget_rehearsal(state: &PgPool, rehearsal_id: i64) -> Result<(), SourceError> {
    let key = rehearsal_key(rehearsal_id);
    let mut tx = state.begin().await?;
    for table in ["rollback_archive_rows", "rollback_archive_whole", "rollback_archives"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE run_id = $1")).bind(key).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Fills `dose` in `table` under the rules, in one transaction on `writer` that commits only
/// when the diary then equals archive `key` with the rules applied (the archive keeps the values
/// from before). Returns the rows written and the diary's tally after; on a mismatch nothing is
/// written. The caller records the fill in the archive's header.
pub async fn apply_fill(
    writer: &mut sqlx::PgConnection,
    state: &sqlx::PgPool,
    key: i64,
    table: &str,
) -> Result<(u64, Tally), String> {
    use sqlx::Connection as _;
    let want = filled_tally(state, key).await.map_err(|e| e.to_string())?;
    let mut tx = writer.begin().await.map_err(|e| e.to_string())?;
    let written = sqlx::query(&format!("UPDATE {table} SET dose = insulin_short WHERE {}", super::fill::fills_sql()))
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?
        .rows_affected();
    let got = diary_tally(&mut *tx, table).await.map_err(|e| e.to_string())?;
    if got != want {
        tx.rollback().await.map_err(|e| e.to_string())?;
        return Err(format!(
            "after the fill the diary holds {got}, but the archive with the fill says {want}: nothing was written"
        ));
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok((written, got))
}

/// What the diary must hold once the fill is applied: the archive with the fill's rules.
pub async fn filled_tally(state: &PgPool, run_id: i64) -> Result<Tally, SourceError> {
    let mut db = state.acquire().await?;
    archive_tally(&mut db, run_id, true).await
}

/// How many archived rows each fill rule touches (`FillRule::ALL`'s order): decided from the
/// values before the fill, so the same whether or not the fill ran already.
pub async fn fill_counts(state: &PgPool, run_id: i64) -> Result<Vec<i64>, SourceError> {
    let from =
        format!("(SELECT dose, insulin_short, insulin_long FROM rollback_archive_rows WHERE run_id = {run_id}) a");
    Ok(sqlx::query_scalar(&super::fill::counts_sql(&from)).fetch_one(state).await?)
}

/// The first `limit` archived ids under `rule`.
pub async fn ids_under(
    state: &PgPool,
    run_id: i64,
    rule: super::fill::FillRule,
    limit: i64,
) -> Result<Vec<i64>, SourceError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT record_id FROM rollback_archive_rows WHERE run_id = $1 AND {} ORDER BY record_id LIMIT $2",
        rule.predicate()
    ))
    .bind(run_id)
    .bind(limit)
    .fetch_all(state)
    .await?)
}

/// Records that the fill was applied to the diary, with its counts by rule.
pub async fn mark_filled(state: &PgPool, run_id: i64, counts: serde_json::Value) -> Result<(), SourceError> {
    sqlx::query("UPDATE rollback_archives SET filled_at = now(), fill_counts = $2 WHERE run_id = $1")
        .bind(run_id)
        .bind(counts)
        .execute(state)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    user_id: Option<i64>,
    created_at: DateTime<Utc>,
    dose: Option<String>,
    insulin_short: Option<String>,
    insulin_long: Option<String>,
}

async fn insert_rows(write: &mut PgConnection, run_id: i64, batch: &[Row]) -> Result<(), SourceError> {
    let col = |f: fn(&Row) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO rollback_archive_rows (run_id, record_id, user_id, created_at, dose, insulin_short, insulin_long)
         SELECT $1, id, user_id, created_at, d::numeric, s::numeric, l::numeric
           FROM unnest($2::bigint[], $3::bigint[], $4::timestamptz[], $5::text[], $6::text[], $7::text[])
                AS r(id, user_id, created_at, d, s, l)",
    )
    .bind(run_id)
    .bind(batch.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.user_id).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(col(|r| r.dose.clone()))
    .bind(col(|r| r.insulin_short.clone()))
    .bind(col(|r| r.insulin_long.clone()))
    .execute(write)
    .await?;
    Ok(())
}

/// Takes run `run_id`'s archive of `table`'s split rows (replacing one it took before) and
/// verifies it; its tally when it verified.
pub async fn take(diary: &PgPool, state: &PgPool, run_id: i64, table: &str) -> Result<Tally, ArchiveError> {
    let mut read = diary.begin().await.map_err(diary_err)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *read)
        .await
        .map_err(diary_err)?;
    let diary_side: Tally =
        sqlx::query_as(&tally_sql(&diary_rows(table), "id")).fetch_one(&mut *read).await.map_err(diary_err)?;
    // Numerics travel as text: their scale is kept (12.0 stays 12.0, which the checksum sees).
    // Streamed in batches from the snapshot into the state's transaction: memory stays flat.
    let select = format!(
        "SELECT id, user_id::bigint, created_at, dose::text, insulin_short::text, insulin_long::text
           FROM {table} WHERE {SPLIT_WRITE}"
    );
    let mut write = state.begin().await?;
    sqlx::query("DELETE FROM rollback_archive_rows WHERE run_id = $1").bind(run_id).execute(&mut *write).await?;
    let mut stream = sqlx::query_as::<_, Row>(&select).fetch(&mut *read);
    let mut batch: Vec<Row> = Vec::with_capacity(BATCH);
    loop {
        let next = stream.try_next().await.map_err(diary_err)?;
        let end = next.is_none();
        batch.extend(next);
        if batch.len() == BATCH || (end && !batch.is_empty()) {
            insert_rows(&mut write, run_id, &std::mem::take(&mut batch)).await?;
        }
        if end {
            break;
        }
    }
    drop(stream);
    read.commit().await.map_err(diary_err)?;
    let archive_side = archive_tally(&mut write, run_id, false).await?;
    if archive_side != diary_side {
        // Dropped: nothing of this attempt stays.
        return Err(ArchiveError::Mismatch { diary: diary_side, archive: archive_side });
    }
    // The header last: the old one (a verified archive taken before) goes in the same commit.
    sqlx::query("DELETE FROM rollback_archives WHERE run_id = $1").bind(run_id).execute(&mut *write).await?;
    sqlx::query(
        "INSERT INTO rollback_archives (run_id, diary_table, rows, checksum, short_units, long_units, dose_units)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(run_id)
    .bind(table)
    .bind(archive_side.rows)
    .bind(&archive_side.checksum)
    .bind(&archive_side.short_units)
    .bind(&archive_side.long_units)
    .bind(&archive_side.dose_units)
    .execute(&mut *write)
    .await?;
    write.commit().await?;
    Ok(archive_side)
}

/// Verifies run `run_id`'s archive against the diary as it is now (what the downgrade will
/// need: nothing written, changed or lost since the archive was taken, but the fill if it was
/// applied).
pub async fn verify(diary: &PgPool, state: &PgPool, run_id: i64, table: &str) -> Result<Tally, ArchiveError> {
    let Some(header) = header(state, run_id).await? else { return Err(ArchiveError::Missing(run_id)) };
    let mut db = state.acquire().await?;
    let archive_side = archive_tally(&mut db, run_id, header.filled_at.is_some()).await?;
    let diary_side = diary_tally(diary, table).await?;
    if archive_side != diary_side {
        return Err(ArchiveError::Mismatch { diary: diary_side, archive: archive_side });
    }
    Ok(archive_side)
}
