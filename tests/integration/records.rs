//! The records rollup against PostgreSQL: whatever the window's edges, its counters equal a
//! direct count of the table, before and after the rollup holds the history, for rows written
//! in flight and (after the background's recount) rows written late.

use chrono::{DateTime, Duration, Utc};
use rollout_dashboard::api::records::RecordCounts;
use rollout_dashboard::api::window::Window;
use rollout_dashboard::server::records::{DiaryRecords, SchemaState};
use sqlx::PgPool;

use crate::support::diary_schema;

/// Every counter over [from, to) by the definitions, straight from the table.
async fn direct(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> RecordCounts {
    let (total, short, long, both, legacy, doubled, empty): (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(insulin_short), count(insulin_long),
                count(*) FILTER (WHERE insulin_short IS NOT NULL AND insulin_long IS NOT NULL),
                count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL),
                count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose),
                count(*) FILTER (WHERE dose IS NULL AND insulin_short IS NULL AND insulin_long IS NULL)
           FROM history_records WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await
    .unwrap();
    RecordCounts {
        total,
        with_short: Some(short),
        with_long: Some(long),
        with_both: Some(both),
        legacy_only: legacy,
        doubled: Some(doubled),
        empty,
    }
}

/// 3,000 rows over the last 30 hours at scattered microseconds, of every category.
async fn scattered_rows(pool: &PgPool) {
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long)
         SELECT n, now() - make_interval(secs => (n * 7919 % 108000) + (n * 104729 % 1000000) / 1e6),
                CASE WHEN n % 5 IN (0, 1) THEN 4 END,
                CASE WHEN n % 5 IN (1, 2) THEN 4 WHEN n % 5 = 3 THEN 2 END,
                CASE WHEN n % 5 = 1 THEN 4 WHEN n % 5 = 3 THEN 9 END
           FROM generate_series(1, 3000) AS n",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The diary schema with `scattered_rows`, and a rollup over it that holds nothing yet.
async fn scattered_world(pool: &PgPool) -> (DiaryRecords, SchemaState) {
    diary_schema(pool).await;
    scattered_rows(pool).await;
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    (diary, schema)
}

#[sqlx::test(migrations = false)]
async fn windows_cut_anywhere_equal_a_direct_count(pool: PgPool) {
    let (diary, schema) = scattered_world(&pool).await;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&pool).await.unwrap();
    // Edges inside minutes, on minutes, on hours, one microsecond apart, and inside one minute.
    let cuts = [
        (Duration::hours(29) + Duration::microseconds(123_457), Duration::minutes(7) + Duration::microseconds(1)),
        (Duration::hours(24), Duration::hours(3)),
        (Duration::minutes(61) + Duration::seconds(17), Duration::minutes(61) + Duration::seconds(3)),
        (Duration::hours(5) + Duration::microseconds(1), Duration::hours(5)),
        (Duration::minutes(10), Duration::zero()),
    ];
    for round in 0..2 {
        for (back_from, back_to) in cuts {
            let (from, to) = (now - back_from, now - back_to);
            let got = diary.summary_between(from, to, &schema).await.unwrap().counts;
            assert_eq!(got, direct(&pool, from, to).await, "round {round}: {from} .. {to}");
        }
        for w in ["1m", "3m", "59m", "24h", "2d"] {
            let window: Window = w.parse().unwrap();
            let s = diary.summary(window, &schema).await.unwrap();
            assert_eq!(s.counts, direct(&pool, s.window_start, s.window_end).await, "round {round}: {w}");
        }
        // 3m: the shortest step cut in two sums; its cut falls inside the unsettled minutes most of the time.
        for (range, step) in [("2h", "1m"), ("1h", "3m"), ("30h", "15m"), ("2d", "1h")] {
            let series = diary.series(range.parse().unwrap(), step.parse().unwrap(), &schema).await.unwrap();
            for b in &series.buckets {
                let to = b.end.min(series.range_end);
                assert_eq!(b.counts, direct(&pool, b.start, to).await, "round {round}: {range}/{step} {}", b.start);
            }
        }
    }
    let size = diary.rollup_size();
    assert!(size.hours >= 29 && size.minutes > 1000 && size.edge_rows > 0, "{size:?}");
}

#[sqlx::test(migrations = false)]
async fn rows_in_flight_count_at_once_and_late_rows_after_the_recount(pool: PgPool) {
    let (diary, schema) = scattered_world(&pool).await;
    let day: Window = "24h".parse().unwrap();
    let before = diary.summary(day, &schema).await.unwrap().counts;
    // Written with a time a minute back (a transaction that began then): not settled, counted now.
    sqlx::query("INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES (1, now() - interval '1 minute', 4, 4, 4)")
        .execute(&pool)
        .await
        .unwrap();
    let after = diary.summary(day, &schema).await.unwrap().counts;
    assert_eq!((after.total, after.doubled), (before.total + 1, before.doubled.map(|d| d + 1)));
    // Written late into an hour the rollup holds: counted once the recent history is recounted.
    sqlx::query("INSERT INTO history_records (user_id, created_at, dose) VALUES (2, now() - interval '5 hours', 3)")
        .execute(&pool)
        .await
        .unwrap();
    diary.recount_recent().await.unwrap();
    let s = diary.summary(day, &schema).await.unwrap();
    assert_eq!(s.counts, direct(&pool, s.window_start, s.window_end).await);
    assert_eq!(s.counts.legacy_only, after.legacy_only + 1);
}

#[sqlx::test(migrations = false)]
async fn the_background_counts_the_week_after_a_start(pool: PgPool) {
    let (diary, _) = scattered_world(&pool).await;
    let upkeep = diary.start_upkeep();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while diary.rollup_size().hours < 7 * 24 - 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", diary.rollup_size());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(diary);
    // Holding the rollup weakly, the background ends with its DiaryRecords.
    tokio::time::timeout(std::time::Duration::from_secs(40), upkeep).await.unwrap().unwrap();
}
