//! What the round trip did to the rows: before the rehearsal's rollback every row's category and
//! hash go into a table of the scratch database; after its roll-forward each row is compared with
//! itself, by the category it had. A row back with the same id, user, time, dose and parts is
//! identical; a doubled row back as a legacy row with its dose was kept legacy on purpose (the
//! roll-forward never brings a doubled dose back); anything else changed or is gone, and the
//! rehearsal fails.

use sqlx::PgPool;

use crate::api::rehearsal::CategoryRoundTrip;

use super::super::super::categories::Category;
use super::super::archive::row_hash_sql;

const BEFORE: &str = "rollout_rehearsal_before";

/// The rows as they are now: id, category, the archive's row hash (summed into the checksums),
/// a hash of every column (`whole`: a column the round trip lost or changed shows), and one of
/// every column but the split parts (`legacy`: a doubled row kept legacy keeps the rest).
fn rows_now(table: &str) -> String {
    format!(
        "SELECT id, {} AS category, {} AS hash, md5(to_jsonb(t)::text) AS whole,
                md5((to_jsonb(t) - 'insulin_short' - 'insulin_long')::text) AS legacy
           FROM {table} t",
        Category::case_sql(true),
        row_hash_sql("id")
    )
}

/// Keeps every row's category and hash before the rollback; returns the rows per category.
pub async fn snapshot(scratch: &PgPool, table: &str) -> Result<Vec<(String, i64)>, String> {
    let sql = format!("CREATE TABLE {BEFORE} AS {}", rows_now(table));
    sqlx::query(&sql).execute(scratch).await.map_err(|e| format!("cannot keep the rows before: {e}"))?;
    sqlx::query_as(&format!("SELECT category, count(*) FROM {BEFORE} GROUP BY 1 ORDER BY 1"))
        .fetch_all(scratch)
        .await
        .map_err(|e| e.to_string())
}

/// Each category's rows after the round trip, compared with before.
pub async fn compare(scratch: &PgPool, table: &str) -> Result<Vec<CategoryRoundTrip>, String> {
    type Row = (String, i64, String, String, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT b.category, count(*), coalesce(sum(b.hash), 0)::text, coalesce(sum(a.hash), 0)::text,
                count(*) FILTER (WHERE a.whole = b.whole),
                count(*) FILTER (WHERE b.category = 'doubled' AND a.category = 'legacy_only' AND a.legacy = b.legacy),
                count(*) FILTER (WHERE a.id IS NULL)
           FROM {BEFORE} b LEFT JOIN ({}) a USING (id)
          GROUP BY 1 ORDER BY 1",
        rows_now(table)
    ))
    .fetch_all(scratch)
    .await
    .map_err(|e| format!("cannot compare the rows after: {e}"))?;
    let split = |c: &str| matches!(c, "doubled" | "both" | "short_only" | "long_only");
    Ok(rows
        .into_iter()
        .map(|(category, rows, before, after, identical, kept_legacy, gone)| CategoryRoundTrip {
            guide_plan_loses: if split(&category) { rows } else { 0 },
            changed: rows - identical - kept_legacy - gone,
            category,
            rows,
            checksum_before: before,
            checksum_after: after,
            identical,
            kept_legacy,
            gone,
        })
        .collect())
}

/// Rows there now that were not there before the round trip.
pub async fn added(scratch: &PgPool, table: &str) -> Result<i64, String> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} a WHERE NOT EXISTS (SELECT 1 FROM {BEFORE} b WHERE b.id = a.id)"
    ))
    .fetch_one(scratch)
    .await
    .map_err(|e| format!("cannot count the rows added: {e}"))
}

/// Why the round trip lost, changed or added a record, if it did.
pub fn verdict(categories: &[CategoryRoundTrip], added: i64) -> Result<(), String> {
    let mut bad: Vec<String> = categories
        .iter()
        .filter(|c| c.changed != 0 || c.gone != 0)
        .map(|c| format!("{}: {} changed, {} gone", c.category, c.changed, c.gone))
        .collect();
    if added != 0 {
        bad.push(format!("{added} row(s) added"));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("the round trip did not give every record back: {}", bad.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(category: &str, rows: i64, identical: i64, kept_legacy: i64, gone: i64) -> CategoryRoundTrip {
        CategoryRoundTrip {
            category: category.into(),
            rows,
            checksum_before: "1".into(),
            checksum_after: "1".into(),
            identical,
            kept_legacy,
            changed: rows - identical - kept_legacy - gone,
            gone,
            guide_plan_loses: 0,
        }
    }

    #[test]
    fn a_record_changed_or_gone_fails_and_a_doubled_one_kept_legacy_does_not() {
        assert!(verdict(&[cat("short_only", 5, 5, 0, 0), cat("doubled", 2, 0, 2, 0)], 0).is_ok());
        assert!(verdict(&[cat("long_only", 2, 1, 0, 1)], 0).unwrap_err().contains("long_only: 0 changed, 1 gone"));
        assert!(verdict(&[cat("both", 3, 2, 0, 0)], 0).unwrap_err().contains("both: 1 changed"));
        assert!(verdict(&[cat("both", 3, 3, 0, 0)], 2).unwrap_err().contains("2 row(s) added"));
    }
}
