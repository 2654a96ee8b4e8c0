//! The autopilot's figures (issue 15), measured, not asserted:
//!
//! 1. From the first doubled record written to the flag at 0 %: the driver running as in
//!    production (its own loop, the default 15 s interval unless BENCH_AUTOPILOT_INTERVAL), the
//!    record written at a random moment of the round cycle, BENCH_AUTOPILOT_RUNS times (10).
//! 2. The sample-ratio test: false alarms over 1,000 simulated healthy windows at 5 % and 50 %,
//!    and how often it catches writers stuck at 5 % while the flag says 25 %, by window size.
//!
//! Run with `scripts/bench autopilot` (or `cargo bench --features ssr --bench autopilot` with
//! DATABASE_URL naming a PostgreSQL server where databases may be created).

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use diary_writer::openmetrics::synthetic;
use rollout_dashboard::api::auth::{Identity, Role};
use rollout_dashboard::api::autopilot::{PlanStep, StartPlan};
use rollout_dashboard::server::autopilot::{drive_forever, stats::sample_ratio_p_value, Service};
use rollout_dashboard::server::caller::Caller;
use sqlx::postgres::PgPoolOptions;
use support::*;

/// A small xorshift generator: the same numbers every run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sample_ratio_figures() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    println!("sample-ratio test (chi-square, alpha 0.001), simulated windows:");
    for p in [0.05, 0.5] {
        let n = 2000;
        let alarms = (0..1000)
            .filter(|_| {
                let split = (0..n).filter(|_| rng.uniform() < p).count() as f64;
                sample_ratio_p_value(split, n as f64, p) < 0.001
            })
            .count();
        println!("  healthy at {:>4.0} %: {alarms} false alarm(s) in 1,000 windows of {n} writes", p * 100.0);
    }
    for n in [200, 500, 1000, 5000] {
        let caught = (0..1000)
            .filter(|_| {
                let split = (0..n).filter(|_| rng.uniform() < 0.05).count() as f64;
                sample_ratio_p_value(split, n as f64, 0.25) < 0.001
            })
            .count();
        println!("  writers at 5 % under a 25 % flag, windows of {n:>4} writes: caught in {caught} of 1,000");
    }
}

#[tokio::main]
async fn main() {
    sample_ratio_figures();

    let runs: usize = std::env::var("BENCH_AUTOPILOT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let interval: u64 = std::env::var("BENCH_AUTOPILOT_INTERVAL").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL must name the PostgreSQL server");
    let admin = PgPoolOptions::new().max_connections(2).connect(&admin_url).await.unwrap();
    let name = "rollout_bench_autopilot";
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
    let pool = PgPoolOptions::new().max_connections(8).connect(&url).await.unwrap();
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("0", 3, None).await;
    // The synthetic history does not follow the flag: the sample ratio is a dry run here.
    let settings =
        format!("[autopilot]\ninterval_secs = {interval}\n[autopilot.actions]\nsample_ratio = \"dry_run\"\n");
    let state =
        dashboard_state_with(&pool, Some(url.clone()), Some(&prom.url), Some(&sim.kubeconfig), Some(&settings)).await;
    tokio::spawn(drive_forever(state.clone()));
    let flag = || sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone();
    let ana = Caller::new(Some(Identity { user: "ana".into(), role: Role::Operator, via: "bench".into() }), "bench");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut seconds = Vec::new();
    println!("\nfrom the first doubled record to the flag at 0 % (driver interval {interval} s), {runs} runs:");
    for run in 1..=runs {
        let body = StartPlan {
            reason: format!("bench run {run}"),
            steps: Some(vec![PlanStep { percentage: 10, bake_secs: 86400, legacy_ceiling: None }]),
            override_guards_reason: Some("the bench's own doubled records from earlier runs".into()),
        };
        Service::new(&state).start(&ana, body).await.expect("start");
        let deadline = Instant::now() + Duration::from_secs(interval * 4 + 30);
        while flag() != "10" {
            assert!(Instant::now() < deadline, "run {run}: the first step was not written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A random moment of the driver's cycle.
        tokio::time::sleep(Duration::from_secs_f64(rng.uniform() * interval as f64)).await;
        sqlx::query("INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES (9, now(), 4, 4, 4)")
            .execute(&pool)
            .await
            .unwrap();
        let t0 = Instant::now();
        while flag() != "0" {
            assert!(t0.elapsed() < Duration::from_secs(interval * 4 + 30), "run {run}: no kill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = t0.elapsed().as_secs_f64();
        println!("  run {run:>2}: {s:>6.2} s");
        seconds.push(s);
        // The plan's end is written just after the flag's: wait for it before the next start.
        while rollout_dashboard::server::autopilot::store::active_id(&pool).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "  min {:.2} s, p50 {:.2} s, p90 {:.2} s, max {:.2} s; two intervals: {} s; the max is {:.2} intervals",
        seconds[0],
        percentile(&seconds, 0.5),
        percentile(&seconds, 0.9),
        seconds[seconds.len() - 1],
        2 * interval,
        seconds[seconds.len() - 1] / interval as f64
    );
    drop(pool);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await.unwrap();
}
