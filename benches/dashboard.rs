//! Benchmarks that print ratios against baselines measured in the same run (shared, noisy
//! machines make absolute times meaningless).
//!
//! 1. viewers: backend queries caused by 1 and by 100 viewers refreshing every 5 s
//!    (the refresh-interval single-flight cache should make them equal).
//! 2. records: the guide's naive queries against the dashboard's summary and 7-day hourly
//!    series, at 1 M and 10 M rows of history_records by default (p50, p95, ratios); then, per
//!    size, the time from a start (empty rollup) to the first answers, the rows a refresh reads
//!    from the table, and what the rollup holds.
//!
//! Run with `scripts/bench` (or `cargo bench --features ssr --bench dashboard`; DATABASE_URL must
//! name a PostgreSQL server where databases may be created). BENCH_VIEWER_SECS (default 60)
//! shortens a run; BENCH_ROWS (default "1000000,10000000") chooses the sizes, for example
//! "1000000,10000000,100000000" (100 M rows: about 20 minutes to seed once, ~15 GB of disk).

#[path = "../tests/integration/support/mod.rs"]
mod support;

#[path = "common/seeded.rs"]
mod seeded;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use rollout_dashboard::api::window::Window;
use rollout_dashboard::server::error::SourceError;
use rollout_dashboard::server::records::{DiaryRecords, RollupSize};
use seeded::{admin_url, ensure_db, seeded};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tower::ServiceExt;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `f` `n` times after one warm-up; returns (p50, p95) in milliseconds.
async fn timings<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await;
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.95))
}

const NAIVE_SUMMARY: &str = "SELECT count(*),
    count(*) FILTER (WHERE insulin_short IS NOT NULL), count(*) FILTER (WHERE insulin_long IS NOT NULL),
    count(*) FILTER (WHERE insulin_short IS NOT NULL AND insulin_long IS NOT NULL),
    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL),
    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose),
    count(*) FILTER (WHERE dose IS NULL AND insulin_short IS NULL AND insulin_long IS NULL)
  FROM history_records WHERE created_at >= now() - interval '24 hours' AND created_at < now()";

const NAIVE_SERIES: &str = "SELECT date_trunc('hour', created_at), count(*),
    count(*) FILTER (WHERE insulin_short IS NOT NULL), count(*) FILTER (WHERE insulin_long IS NOT NULL),
    count(*) FILTER (WHERE insulin_short IS NOT NULL AND insulin_long IS NOT NULL),
    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL),
    count(*) FILTER (WHERE dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose),
    count(*) FILTER (WHERE dose IS NULL AND insulin_short IS NULL AND insulin_long IS NULL)
  FROM history_records WHERE created_at >= now() - interval '7 days' AND created_at < now() GROUP BY 1 ORDER BY 1";

struct RecordsResult {
    rows: i64,
    naive_summary: (f64, f64),
    naive_series: (f64, f64),
    summary: (f64, f64),
    series: (f64, f64),
    /// Seconds from a start (empty rollup) to the first answer of the 24 h summary and of the
    /// 7-day series, the background counting as it does in the dashboard.
    first_summary: f64,
    first_series: f64,
    /// Rows a refresh reads from the table (the minutes not settled yet), and that statement's
    /// p50/p95 alone: the part of a refresh that is not memory.
    open_rows: i64,
    unsettled: (f64, f64),
    rollup: RollupSize,
}

/// Calls `f` until it no longer answers "still being counted"; seconds taken.
async fn first_answer<T, F, Fut>(started: Instant, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    loop {
        match f().await {
            Ok(_) => return started.elapsed().as_secs_f64(),
            Err(SourceError::Counting { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn bench_records(admin: &PgPool, rows: i64) -> RecordsResult {
    let pool = seeded(admin, rows).await;
    let n = 30;
    // The guide's queries scan tens of millions of rows at 100 M: fewer runs of them there.
    let n_naive = if rows > 10_000_000 { 5 } else { n };
    let naive_summary = timings(n_naive, || async {
        sqlx::query(NAIVE_SUMMARY).fetch_one(&pool).await.unwrap();
    })
    .await;
    let naive_series = timings(n_naive, || async {
        sqlx::query(NAIVE_SERIES).fetch_all(&pool).await.unwrap();
    })
    .await;
    let (day, week, hour): (Window, Window, Window) =
        ("24h".parse().unwrap(), "7d".parse().unwrap(), "1h".parse().unwrap());
    // A start: an empty rollup, its background counting, and a viewer refreshing meanwhile.
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    let started = Instant::now();
    let upkeep = diary.start_upkeep();
    let first_summary = first_answer(started, || diary.summary(day, &schema)).await;
    let first_series = first_answer(started, || diary.series(week, hour, &schema)).await;
    let summary = timings(n, || async {
        diary.summary(day, &schema).await.unwrap();
    })
    .await;
    let series = timings(n, || async {
        diary.series(week, hour, &schema).await.unwrap();
    })
    .await;
    let open_rows = diary.read_unsettled().await.unwrap();
    let unsettled = timings(n, || async {
        diary.read_unsettled().await.unwrap();
    })
    .await;
    let rollup = diary.rollup_size();
    upkeep.abort();
    RecordsResult {
        rows,
        naive_summary,
        naive_series,
        summary,
        series,
        first_summary,
        first_series,
        open_rows,
        unsettled,
        rollup,
    }
}

/// `viewers` clients each fetch the overview's data every 5 s for `secs` seconds; returns the
/// backend queries per source that caused.
async fn bench_viewers(admin: &PgPool, prom: &str, viewers: usize, secs: u64) -> (u64, u64, u64) {
    let db = ensure_db(admin, "rollout_bench_viewers").await;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS history_records (id bigserial PRIMARY KEY, user_id bigint NOT NULL,
           created_at timestamptz NOT NULL DEFAULT now(), dose numeric, note text,
           insulin_short numeric, insulin_long numeric)",
    )
    .execute(&db)
    .await
    .unwrap();
    let state = support::dashboard_state(&db, Some(&db), Some(prom), None).await;
    let app = rollout_dashboard::site::app(state.clone());
    let paths = [
        "/api/v1/status",
        "/api/v1/records/summary?window=24h",
        "/api/v1/records/series?range=7d&step=1h",
        "/api/v1/adoption?range=24h",
        "/api/v1/alerts",
    ];
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for v in 0..viewers {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Viewers do not refresh in lockstep.
            tokio::time::sleep(Duration::from_millis((v as u64 * 37) % 5000)).await;
            while Instant::now() < end {
                for p in paths {
                    let resp = app.clone().oneshot(Request::get(p).body(Body::empty()).unwrap()).await.unwrap();
                    assert!(resp.status().is_success(), "{p}: {}", resp.status());
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = &state.services.metrics;
    (m.backend_queries("prometheus"), m.backend_queries("diary_database"), m.backend_queries("state_database"))
}

/// The records tables: against the guide's queries, then after a start and the rollup's size.
fn print_records(results: &[RecordsResult]) {
    println!(
        "  {:>10} | {:>17} | {:>17} | {:>17} | {:>17} | {:>8} {:>8}",
        "rows", "naive 24h p50/p95", "summary p50/p95", "naive 7d p50/p95", "series p50/p95", "sum ×", "series ×"
    );
    for r in results {
        println!(
            "  {:>10} | {:>8.1} {:>8.1} | {:>8.2} {:>8.2} | {:>8.1} {:>8.1} | {:>8.2} {:>8.2} | {:>8.1} {:>8.1}",
            r.rows,
            r.naive_summary.0,
            r.naive_summary.1,
            r.summary.0,
            r.summary.1,
            r.naive_series.0,
            r.naive_series.1,
            r.series.0,
            r.series.1,
            r.naive_summary.0 / r.summary.0,
            r.naive_series.0 / r.series.0
        );
    }
    println!("\n== records: after a start, and what the rollup holds");
    println!(
        "  {:>10} | {:>13} | {:>13} | {:>14} | {:>8} {:>6} {:>9} | {:>9} | {:>14}",
        "rows",
        "first 24h (s)",
        "first 7d (s)",
        "rows/refresh",
        "minutes",
        "hours",
        "edge rows",
        "bytes",
        "90 d (MB est.)"
    );
    for r in results {
        // What the rollup holds for 90 days at one minute: every minute with rows, 91 days kept.
        let per_minute = r.rollup.bytes as f64 / (r.rollup.minutes.max(1)) as f64;
        println!(
            "  {:>10} | {:>13.2} | {:>13.2} | {:>12} {:>8.2} {:>8.2} | {:>8} {:>6} {:>9} | {:>9} | {:>14.1}",
            r.rows,
            r.first_summary,
            r.first_series,
            r.open_rows,
            r.unsettled.0,
            r.unsettled.1,
            r.rollup.minutes,
            r.rollup.hours,
            r.rollup.edge_rows,
            r.rollup.bytes,
            per_minute * 91.0 * 1440.0 / 1e6
        );
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to run there.
    }
    let admin = PgPoolOptions::new().max_connections(2).connect(&admin_url()).await.unwrap();
    let secs: u64 = std::env::var("BENCH_VIEWER_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);

    println!(
        "== viewers: backend queries for 1 and 100 viewers refreshing every 5 s for {secs} s (cache interval 15 s)"
    );
    let prom = support::PrometheusHarness::start(&diary_writer::openmetrics::synthetic(1.9, 0.07, 7200, 3600, 15));
    let one = bench_viewers(&admin, &prom.url, 1, secs).await;
    let hundred = bench_viewers(&admin, &prom.url, 100, secs).await;
    println!("  {:<10} {:>12} {:>16} {:>16}", "viewers", "prometheus", "diary database", "state database");
    println!("  {:<10} {:>12} {:>16} {:>16}", 1, one.0, one.1, one.2);
    println!("  {:<10} {:>12} {:>16} {:>16}", 100, hundred.0, hundred.1, hundred.2);
    let total = |t: (u64, u64, u64)| (t.0 + t.1 + t.2) as f64;
    println!(
        "  ratio 100 viewers / 1 viewer: {:.2} (target: at most 1.00 plus timing jitter)",
        total(hundred) / total(one)
    );

    let rows: Vec<i64> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("\n== records: naive SQL against the dashboard (hour cache warm), 30 runs each (the naive ones 5 above 10 M rows), milliseconds");
    let mut results = Vec::new();
    for r in rows {
        results.push(bench_records(&admin, r).await);
    }
    print_records(&results);
    if let (Some(small), Some(big)) = (results.first(), results.last()) {
        if big.rows > small.rows {
            println!(
                "  growth {} → {} rows: summary p50 ×{:.2}, series p50 ×{:.2} (target: at most 1.2)",
                small.rows,
                big.rows,
                big.summary.0 / small.summary.0,
                big.series.0 / small.series.0
            );
        }
    }
}
