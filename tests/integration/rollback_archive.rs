//! The rollback's archive of split values (issue 33, item 1): taken from one snapshot of the
//! diary into the state database, verified by count and checksum, replaced when taken again,
//! nothing left by a failed attempt, and a change to the diary since seen by `verify`.

use rollout_dashboard::server::rollback::archive::{self, ArchiveError};
use sqlx::PgPool;

use crate::support::{dashboard_state, diary_schema};

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn the_archive_holds_every_split_value_verified_and_sees_a_change_since(pool: PgPool) {
    let _state = dashboard_state(&pool, None, None, None).await; // the state database's migrations
    diary_schema(&pool).await;
    // One row of each category, a value with a scale (12.0), and 3,000 generated rows.
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES
           (1, '2026-12-01 08:00+00', 4,    NULL, NULL),   -- legacy only: not archived
           (1, '2026-12-01 09:00+00', NULL, 4,    NULL),   -- short only
           (2, '2026-12-01 10:00+00', NULL, NULL, 12.0),   -- long only, scale 1
           (2, '2026-12-01 11:00+00', NULL, 5,    14),     -- both
           (3, '2026-12-01 12:00+00', 6,    6,    6),      -- doubled
           (3, '2026-12-01 13:00+00', NULL, NULL, NULL);   -- empty: not archived
         INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long)
         SELECT g % 97, '2026-12-02 00:00+00'::timestamptz + g * interval '1 min',
                CASE WHEN g % 3 = 0 THEN 2.5 END, CASE WHEN g % 2 = 0 THEN 3.25 END, CASE WHEN g % 5 = 0 THEN 10 END
           FROM generate_series(1, 3000) g;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let split = count(
        &pool,
        "SELECT count(*) FROM history_records WHERE insulin_short IS NOT NULL OR insulin_long IS NOT NULL",
    )
    .await;
    assert_eq!(split, 4 + 1500 + 300, "the fixture's split rows");

    let taken = archive::take(&pool, &pool, 7, "history_records").await.unwrap();
    assert_eq!(taken.rows, split);
    assert_eq!(count(&pool, "SELECT count(*) FROM rollback_archive_rows WHERE run_id = 7").await, split);
    assert_eq!(count(&pool, "SELECT rows FROM rollback_archives WHERE run_id = 7").await, split);
    // Every value kept as it was, scale included; the units add up on both sides.
    let long: String = sqlx::query_scalar(
        "SELECT a.insulin_long::text FROM rollback_archive_rows a JOIN history_records h ON h.id = a.record_id
          WHERE a.run_id = 7 AND h.insulin_short IS NULL AND h.created_at = '2026-12-01 10:00+00'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(long, "12.0");
    assert_eq!(taken.short_units.as_deref(), Some("4890.00"), "4 + 5 + 6 + 1,500 × 3.25: {taken}");
    assert_eq!(archive::verify(&pool, &pool, 7, "history_records").await.unwrap(), taken);

    // Taken again (a retried step, a run resumed after a crash): replaced, never doubled.
    let again = archive::take(&pool, &pool, 7, "history_records").await.unwrap();
    assert_eq!(again, taken);
    assert_eq!(count(&pool, "SELECT count(*) FROM rollback_archive_rows WHERE run_id = 7").await, split);

    // A failed attempt leaves nothing: no header, no rows.
    assert!(matches!(archive::take(&pool, &pool, 8, "no_such_table").await, Err(ArchiveError::Source(_))));
    assert_eq!(count(&pool, "SELECT count(*) FROM rollback_archive_rows WHERE run_id = 8").await, 0);
    assert!(matches!(archive::verify(&pool, &pool, 8, "history_records").await, Err(ArchiveError::Missing(8))));

    // The diary changes since: a value's scale, then a new split row. The archive no longer verifies.
    sqlx::query("UPDATE history_records SET insulin_long = 12 WHERE insulin_long = 12.0 AND insulin_short IS NULL AND created_at = '2026-12-01 10:00+00'")
        .execute(&pool)
        .await
        .unwrap();
    match archive::verify(&pool, &pool, 7, "history_records").await {
        Err(ArchiveError::Mismatch { diary, archive }) => {
            assert_eq!(diary.rows, archive.rows, "same rows, one value written differently");
            assert_ne!(diary.checksum, archive.checksum);
        }
        other => panic!("a changed value must not verify: {other:?}"),
    }
    sqlx::query("INSERT INTO history_records (user_id, insulin_short) VALUES (9, 1)").execute(&pool).await.unwrap();
    let Err(ArchiveError::Mismatch { diary, archive }) = archive::verify(&pool, &pool, 7, "history_records").await
    else {
        panic!("a new split row must not verify");
    };
    assert_eq!(diary.rows, archive.rows + 1);
}

/// The fill's rules as SQL and as Rust agree on every combination of empty, 0, 4 and 8 in the
/// three columns; each row falls under exactly one rule.
#[sqlx::test(migrations = false)]
async fn the_fill_rules_in_sql_and_in_rust_agree_and_are_disjoint(pool: PgPool) {
    use rollout_dashboard::server::rollback::fill::FillRule;
    let values = [None, Some(0.0), Some(4.0), Some(8.0)];
    let mut rows = Vec::new();
    for d in values {
        for s in values {
            for l in values {
                rows.push((d, s, l));
            }
        }
    }
    let sql_of = |v: Option<f64>| v.map(|x| format!("{x}::numeric")).unwrap_or("NULL::numeric".into());
    let list: Vec<String> =
        rows.iter().map(|(d, s, l)| format!("({}, {}, {})", sql_of(*d), sql_of(*s), sql_of(*l))).collect();
    let matches: Vec<String> = FillRule::ALL.iter().map(|r| format!("({})::int", r.predicate())).collect();
    let sql = format!(
        "SELECT ARRAY[{}] FROM (VALUES {}) AS v(dose, insulin_short, insulin_long)",
        matches.join(", "),
        list.join(", ")
    );
    let answers: Vec<Vec<i32>> = sqlx::query_scalar(&sql).fetch_all(&pool).await.unwrap();
    assert_eq!(answers.len(), 64);
    for ((d, s, l), hits) in rows.iter().zip(&answers) {
        assert_eq!(hits.iter().sum::<i32>(), 1, "exactly one rule for {d:?} {s:?} {l:?}: {hits:?}");
        let sql_rule = FillRule::ALL[hits.iter().position(|h| *h == 1).unwrap()];
        assert_eq!(sql_rule, FillRule::of(*d, *s, *l), "{d:?} {s:?} {l:?}");
    }
}
