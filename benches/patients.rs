//! What the patients' panels (crossover, dose totals) cost per refresh, against the plain SQL a
//! person would write for the same numbers (one `GROUP BY user_id, day` over the days shown), at
//! 1 M and 10 M rows of history_records by default (BENCH_ROWS chooses), measured in the same run:
//! the first fill (an empty rollup: one statement per day), a refresh (ended days and the current
//! day's settled hours kept; the rows of the hour not settled read), the pure computations, and
//! the growth between the sizes.
//!
//! Run with `scripts/bench patients` (or `cargo bench --features ssr --bench patients`).

#[path = "common/seeded.rs"]
mod seeded;

use std::time::Instant;

use rollout_dashboard::server::config::{CrossoverSettings, DoseTotalsSettings};
use rollout_dashboard::server::patient_days::{patient_days, DayCache};
use rollout_dashboard::server::records::DiaryRecords;
use seeded::{admin_url, seeded};
use sqlx::postgres::PgPoolOptions;

/// The plain statement: every patient's day over the days shown, in one GROUP BY.
const PLAIN: &str = "SELECT user_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AS day,
    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL) AS legacy_rows,
    count(*) FILTER (WHERE insulin_short IS NOT NULL OR insulin_long IS NOT NULL) AS split_rows,
    sum(dose) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL) AS legacy_units,
    sum(insulin_short) AS short_units, sum(insulin_long) AS long_units,
    min(created_at) FILTER (WHERE insulin_short IS NOT NULL OR insulin_long IS NOT NULL) AS first_split,
    max(created_at) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL) AS last_legacy
  FROM history_records
 WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => $1)
   AND created_at < now()
 GROUP BY 1, 2";

fn p50(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

struct Figures {
    rows: i64,
    plain: f64,
    fill: f64,
    refresh: f64,
    compute: f64,
    patient_days: usize,
    today_rows: i64,
}

async fn bench(admin: &sqlx::PgPool, rows: i64) -> Figures {
    let pool = seeded(admin, rows).await;
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let (crossover, totals) = (CrossoverSettings::default(), DoseTotalsSettings::default());
    let span = crossover.days.max(totals.span());
    let mut plain = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        sqlx::query(PLAIN).bind(i32::try_from(span).unwrap() - 1).fetch_all(&pool).await.unwrap();
        plain.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // The first fill, three times with an empty cache each.
    let mut fill = Vec::new();
    let mut kept = None;
    for _ in 0..3 {
        let cache = DayCache::default();
        let t = Instant::now();
        patient_days(&diary, &cache, true, span, std::time::Duration::from_secs(3600)).await.unwrap();
        fill.push(t.elapsed().as_secs_f64() * 1000.0);
        kept = Some(cache);
    }
    let cache = kept.unwrap();
    let mut refresh = Vec::new();
    let mut compute = Vec::new();
    let mut patient_day_count = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let pd = patient_days(&diary, &cache, true, span, std::time::Duration::from_secs(3600)).await.unwrap();
        refresh.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let c = rollout_dashboard::server::crossover::crossover(&pd, &crossover);
        let d = rollout_dashboard::server::dose_totals::totals(&pd, &totals);
        compute.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!c.days.is_empty() && d.moved >= 0);
        patient_day_count = pd.days.iter().map(|d| d.patients.len()).sum();
    }
    let today_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM history_records WHERE created_at >= date_trunc('hour', now() - interval '10 minutes') AND created_at < now()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    Figures {
        rows,
        plain: p50(plain),
        fill: p50(fill),
        refresh: p50(refresh),
        compute: p50(compute),
        patient_days: patient_day_count,
        today_rows,
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let admin = PgPoolOptions::new().max_connections(2).connect(&admin_url()).await.unwrap();
    let sizes: Vec<i64> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("== patients: crossover and dose totals (16 UTC days) against one plain GROUP BY user_id, day; p50, ms");
    println!(
        "  {:>11} {:>10} {:>11} {:>10} {:>10} {:>13} {:>13} {:>16}",
        "rows", "plain SQL", "first fill", "refresh", "compute", "plain/refresh", "patient days", "rows read/refresh"
    );
    let mut all = Vec::new();
    for rows in sizes {
        let f = bench(&admin, rows).await;
        println!(
            "  {:>11} {:>10.1} {:>11.1} {:>10.2} {:>10.2} {:>13.0} {:>13} {:>16}",
            f.rows,
            f.plain,
            f.fill,
            f.refresh,
            f.compute,
            f.plain / (f.refresh + f.compute),
            f.patient_days,
            f.today_rows
        );
        all.push(f);
    }
    if let (Some(a), Some(b)) = (all.first(), all.last()) {
        if b.rows > a.rows {
            println!(
                "  growth {} → {} rows: plain ×{:.2}, first fill ×{:.2}, refresh ×{:.2}, compute ×{:.2}",
                a.rows,
                b.rows,
                b.plain / a.plain,
                b.fill / a.fill,
                b.refresh / a.refresh,
                b.compute / a.compute
            );
        }
    }
}
