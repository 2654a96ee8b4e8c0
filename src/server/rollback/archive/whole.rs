//! The whole table, archived when the restore is chosen (issue 33, item 3). `pg_restore --clean`
//! replaces the diary's table with the backup's and so drops every row written after the backup,
//! split or legacy. With the restore chosen, the archive step also copies every row, all its
//! columns as JSON, into the state database, verified by count and checksum as the split values
//! are; after `pg_restore`, [`reinsert`] puts back the rows the restore dropped, ids kept, and
//! verifies them before it commits.

use futures::TryStreamExt;
use sqlx::{Connection, PgConnection, PgPool};

use super::super::super::error::SourceError;
use super::super::fill::fills_sql;
use super::{diary_err, tally_sql, ArchiveError, Tally, BATCH};

/// Count and checksum of rows given as JSON text in column `j` of `from`.
fn whole_tally_sql(from: &str) -> String {
    format!(
        "SELECT count(*) AS rows,
                coalesce(sum(('x' || left(md5(j), 16))::bit(64)::bigint::numeric), 0)::text AS checksum
           FROM {from}"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WholeTally {
    pub rows: i64,
    pub checksum: String,
}

impl std::fmt::Display for WholeTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows, checksum {}", self.rows, self.checksum)
    }
}

/// The whole-table archive's row count, when run `run_id` took one.
pub async fn rows(state: &PgPool, run_id: i64) -> Result<Option<i64>, SourceError> {
    let rows: Option<Option<i64>> = sqlx::query_scalar("SELECT whole_rows FROM rollback_archives WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(state)
        .await?;
    Ok(rows.flatten())
}

/// Takes run `run_id`'s archive of every row of `table` (after its split archive, whose header
/// it completes), streamed from one snapshot; committed only when both tallies are equal.
pub async fn take(diary: &PgPool, state: &PgPool, run_id: i64, table: &str) -> Result<WholeTally, ArchiveError> {
    let mut read = diary.begin().await.map_err(diary_err)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *read)
        .await
        .map_err(diary_err)?;
    let rows_json = format!("(SELECT h.id, to_jsonb(h)::text AS j FROM {table} h) w");
    let diary_side: WholeTally =
        sqlx::query_as(&whole_tally_sql(&rows_json)).fetch_one(&mut *read).await.map_err(diary_err)?;
    let mut write = state.begin().await?;
    sqlx::query("DELETE FROM rollback_archive_whole WHERE run_id = $1").bind(run_id).execute(&mut *write).await?;
    let select = format!("SELECT id::bigint, j FROM {rows_json}");
    let mut stream = sqlx::query_as::<_, (i64, String)>(&select).fetch(&mut *read);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = stream.try_next().await.map_err(diary_err)?;
        let end = next.is_none();
        batch.extend(next);
        if batch.len() == BATCH || (end && !batch.is_empty()) {
            let (ids, rows): (Vec<i64>, Vec<String>) = batch.drain(..).unzip();
            sqlx::query(
                "INSERT INTO rollback_archive_whole (run_id, record_id, row)
                 SELECT $1, id, j::jsonb FROM unnest($2::bigint[], $3::text[]) AS r(id, j)",
            )
            .bind(run_id)
            .bind(ids)
            .bind(rows)
            .execute(&mut *write)
            .await?;
        }
        if end {
            break;
        }
    }
    drop(stream);
    read.commit().await.map_err(diary_err)?;
    let archive_side: WholeTally = sqlx::query_as(&whole_tally_sql(&format!(
        "(SELECT row::text AS j FROM rollback_archive_whole WHERE run_id = {run_id}) w"
    )))
    .fetch_one(&mut *write)
    .await?;
    if archive_side != diary_side {
        return Err(ArchiveError::WholeMismatch { diary: diary_side, archive: archive_side });
    }
    let done = sqlx::query("UPDATE rollback_archives SET whole_rows = $2, whole_checksum = $3 WHERE run_id = $1")
        .bind(run_id)
        .bind(archive_side.rows)
        .bind(&archive_side.checksum)
        .execute(&mut *write)
        .await?;
    if done.rows_affected() != 1 {
        return Err(ArchiveError::Missing(run_id));
    }
    write.commit().await?;
    Ok(archive_side)
}

/// What [`reinsert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reinserted {
    /// Archived rows the restore had dropped, put back with their ids.
    pub reinserted: i64,
    /// Archived rows the backup brought back itself.
    pub present: i64,
    /// Rows the backup holds that were not in the table when it was archived (deleted since the
    /// backup): kept, counted.
    pub resurrected: i64,
    /// The id sequence's value after (above every id, so new entries do not collide).
    pub sequence: Option<i64>,
    /// The re-inserted rows, as the diary now holds them and as the archive says.
    pub verified: Tally,
}

/// After `pg_restore`: puts back every archived row of run `run_id` the table lacks, ids kept
/// (with the fill's rule applied to its dose when `filled`), moves the id sequence above them,
/// and commits only when the re-inserted rows tally equal to the archive's. `writer` is a
/// connection to the diary that may write.
pub async fn reinsert(
    mut writer: PgConnection,
    state: &PgPool,
    run_id: i64,
    table: &str,
    filled: bool,
) -> Result<Reinserted, ArchiveError> {
    let mut tx = writer.begin().await.map_err(diary_err)?;
    for create in [
        "CREATE TEMP TABLE rollback_reinsert (id bigint PRIMARY KEY, row jsonb NOT NULL) ON COMMIT DROP",
        "CREATE TEMP TABLE rollback_reinserted (id bigint PRIMARY KEY) ON COMMIT DROP",
    ] {
        sqlx::query(create).execute(&mut *tx).await.map_err(diary_err)?;
    }
    let mut from_state = state.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *from_state).await?;
    let mut stream = sqlx::query_as::<_, (i64, String)>(
        "SELECT record_id, row::text FROM rollback_archive_whole WHERE run_id = $1 ORDER BY record_id",
    )
    .bind(run_id)
    .fetch(&mut *from_state);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = stream.try_next().await?;
        let end = next.is_none();
        batch.extend(next);
        if batch.len() == BATCH || (end && !batch.is_empty()) {
            let (ids, rows): (Vec<i64>, Vec<String>) = batch.drain(..).unzip();
            sqlx::query(
                "INSERT INTO rollback_reinsert SELECT id, j::jsonb FROM unnest($1::bigint[], $2::text[]) AS r(id, j)",
            )
            .bind(ids)
            .bind(rows)
            .execute(&mut *tx)
            .await
            .map_err(diary_err)?;
        }
        if end {
            break;
        }
    }
    drop(stream);
    copied_intact(&mut tx, &mut from_state, run_id).await?;
    from_state.commit().await?;
    if filled {
        fill_in_archive_rows(&mut tx).await?;
    }
    let counted = put_back(&mut tx, table).await?;
    tx.commit().await.map_err(diary_err)?;
    Ok(counted)
}

/// The rows as they reached the diary tally equal to the state database's archive.
async fn copied_intact(tx: &mut PgConnection, state: &mut PgConnection, run_id: i64) -> Result<(), ArchiveError> {
    let want: WholeTally = sqlx::query_as(&whole_tally_sql(&format!(
        "(SELECT row::text AS j FROM rollback_archive_whole WHERE run_id = {run_id}) w"
    )))
    .fetch_one(&mut *state)
    .await?;
    let got: WholeTally = sqlx::query_as(&whole_tally_sql("(SELECT row::text AS j FROM rollback_reinsert) w"))
        .fetch_one(&mut *tx)
        .await
        .map_err(diary_err)?;
    if got != want {
        return Err(ArchiveError::WholeMismatch { diary: got, archive: want });
    }
    Ok(())
}

/// The fill's rule on the archived rows (they were archived before the fill).
async fn fill_in_archive_rows(tx: &mut PgConnection) -> Result<(), ArchiveError> {
    sqlx::query(&format!(
        "UPDATE rollback_reinsert r SET row = jsonb_set(r.row, '{{dose}}', r.row -> 'insulin_short')
           FROM (SELECT id AS vid, (row ->> 'dose')::numeric AS dose, (row ->> 'insulin_short')::numeric AS insulin_short,
                        (row ->> 'insulin_long')::numeric AS insulin_long FROM rollback_reinsert) v
          WHERE v.vid = r.id AND {}",
        fills_sql()
    ))
    .execute(&mut *tx)
    .await
    .map_err(diary_err)?;
    Ok(())
}

/// Inserts the missing rows, moves the sequence, counts and verifies.
async fn put_back(tx: &mut PgConnection, table: &str) -> Result<Reinserted, ArchiveError> {
    let reinserted = sqlx::query(&format!(
        "WITH ins AS (
           INSERT INTO {table} OVERRIDING SYSTEM VALUE
           SELECT (jsonb_populate_record(NULL::{table}, r.row)).* FROM rollback_reinsert r
            WHERE NOT EXISTS (SELECT 1 FROM {table} h WHERE h.id = r.id) RETURNING id)
         INSERT INTO rollback_reinserted SELECT id FROM ins"
    ))
    .execute(&mut *tx)
    .await
    .map_err(diary_err)?
    .rows_affected() as i64;
    let (present, resurrected): (i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM rollback_reinsert r WHERE EXISTS (SELECT 1 FROM {table} h WHERE h.id = r.id)) - $1,
                (SELECT count(*) FROM {table} h WHERE NOT EXISTS (SELECT 1 FROM rollback_reinsert r WHERE r.id = h.id))"
    ))
    .bind(reinserted)
    .fetch_one(&mut *tx)
    .await
    .map_err(diary_err)?;
    let sequence: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT setval(s, (SELECT coalesce(max(id), 1) FROM {table}))
           FROM (SELECT pg_get_serial_sequence('{table}', 'id') AS s) q WHERE s IS NOT NULL"
    ))
    .fetch_optional(&mut *tx)
    .await
    .map_err(diary_err)?;
    let diary_side: Tally = sqlx::query_as(&tally_sql(
        &format!(
            "(SELECT h.id, h.user_id, h.created_at, h.dose, NULL::numeric AS insulin_short, NULL::numeric AS insulin_long
                FROM {table} h JOIN rollback_reinserted USING (id)) d"
        ),
        "id",
    ))
    .fetch_one(&mut *tx)
    .await
    .map_err(diary_err)?;
    let archive_side: Tally = sqlx::query_as(&tally_sql(
        "(SELECT r.id, (r.row ->> 'user_id')::bigint AS user_id, (r.row ->> 'created_at')::timestamptz AS created_at,
                 (r.row ->> 'dose')::numeric AS dose, NULL::numeric AS insulin_short, NULL::numeric AS insulin_long
            FROM rollback_reinsert r JOIN rollback_reinserted USING (id)) a",
        "id",
    ))
    .fetch_one(&mut *tx)
    .await
    .map_err(diary_err)?;
    if diary_side != archive_side {
        return Err(ArchiveError::Mismatch { diary: diary_side, archive: archive_side });
    }
    Ok(Reinserted { reinserted, present, resurrected, sequence, verified: diary_side })
}

/// Records what the re-insert did on the archive's header.
pub async fn mark_reinserted(state: &PgPool, run_id: i64, counts: serde_json::Value) -> Result<(), SourceError> {
    sqlx::query("UPDATE rollback_archives SET reinserted_at = now(), reinsert_counts = $2 WHERE run_id = $1")
        .bind(run_id)
        .bind(counts)
        .execute(state)
        .await?;
    Ok(())
}

/// The diary now against run `run_id`'s whole-table archive, by what both schemas hold for every
/// row: id, user, time and dose (the fill's rule applied when `filled`). Before `pg_restore`:
/// a row written or changed since the archive would be dropped or reverted without a copy.
pub async fn verify_legacy(
    diary: &PgPool,
    state: &PgPool,
    run_id: i64,
    table: &str,
    filled: bool,
) -> Result<Tally, ArchiveError> {
    let no_split = "NULL::numeric AS insulin_short, NULL::numeric AS insulin_long";
    let diary_side: Tally =
        sqlx::query_as(&tally_sql(&format!("(SELECT id, user_id, created_at, dose, {no_split} FROM {table}) d"), "id"))
            .fetch_one(diary)
            .await
            .map_err(diary_err)?;
    let dose = if filled { super::super::fill::filled_dose_sql() } else { "dose".into() };
    let archive_side: Tally = sqlx::query_as(&tally_sql(
        &format!(
            "(SELECT id, user_id, created_at, {dose} AS dose, {no_split}
                FROM (SELECT record_id AS id, (row ->> 'user_id')::bigint AS user_id,
                             (row ->> 'created_at')::timestamptz AS created_at, (row ->> 'dose')::numeric AS dose,
                             (row ->> 'insulin_short')::numeric AS insulin_short,
                             (row ->> 'insulin_long')::numeric AS insulin_long
                        FROM rollback_archive_whole WHERE run_id = {run_id}) j) a"
        ),
        "id",
    ))
    .fetch_one(state)
    .await?;
    if diary_side != archive_side {
        return Err(ArchiveError::Mismatch { diary: diary_side, archive: archive_side });
    }
    Ok(diary_side)
}
