//! The autopilot's figures (issue 15), measured, not asserted:
//!
//! 1. From the first doubled record written to the flag at 0 %: the driver running as in
//!    production (its own loop, the default 15 s interval unless BENCH_AUTOPILOT_INTERVAL), the
//!    record written at a random moment of the round cycle, BENCH_AUTOPILOT_RUNS times (10).
//! 2. The sample-ratio test: false alarms over 1,000 simulated healthy windows at 5 % and 50 %,
//!    and how often it catches writers stuck at 5 % while the flag says 25 %, by window size.
//! 3. The cost of one evaluation round (every check, as the driver runs them) at BENCH_ROWS rows
//!    of history_records (default "1000000,10000000", the databases `scripts/bench dashboard`
//!    seeds), for a plan started 24 hours and 7 days earlier, against the doubled-dose count
//!    straight from the table (the guide's way) measured in the same run.
//!
//! 4. Issue 30: the same doubled record in each plan state (running, paused by a person, paused
//!    because the flag was changed elsewhere), BENCH_AUTOPILOT_RUNS times each, in intervals.
//! 5. Issue 30: a person's kill racing a round's step write and a colleague's Promote, 100 races
//!    each (BENCH_AUTOPILOT_RACES) at random offsets: the flag must end at 0 % every time, with no
//!    automatic write after the kill.
//!
//! Run with `scripts/bench autopilot` (or `cargo bench --features ssr --bench autopilot` with
//! DATABASE_URL naming a PostgreSQL server where databases may be created).

#[path = "../tests/integration/support/mod.rs"]
mod support;

#[path = "common/seeded.rs"]
mod seeded;

use std::time::{Duration, Instant};

use diary_writer::openmetrics::synthetic;
use rollout_dashboard::api::auth::{Identity, Role};
use rollout_dashboard::api::autopilot::PlanState;
use rollout_dashboard::api::autopilot::{PlanAction, PlanActionBody, PlanStep, StartPlan};
use rollout_dashboard::server::autopilot::store::Plan;
use rollout_dashboard::server::autopilot::{checks, stats::sample_ratio_p_value, Service};
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
    println!("the old sample-ratio test on writes (chi-square, alpha 0.001, one look), for comparison:");
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

/// p50 and p95 in milliseconds of `n` runs of `f`, after one run to warm caches.
async fn timed<F, Fut>(n: usize, mut f: F) -> (f64, f64)
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

/// One evaluation round at `rows` rows, for plans started 24 h and 7 days before the newest
/// record: (direct count p50 24 h, 7 d; round p50 24 h, 7 d; round p95 7 d).
async fn round_cost(admin: &sqlx::PgPool, rows: i64, prom: &str, kubeconfig: &std::path::Path) -> [f64; 5] {
    let diary = seeded::seeded(admin, rows).await;
    let name = "rollout_bench_autopilot_state";
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin).await.unwrap();
    let state_db = PgPoolOptions::new().max_connections(4).connect(&seeded::db_url(name)).await.unwrap();
    let diary_url = seeded::db_url(&format!("rollout_bench_{rows}"));
    let settings = "[autopilot]\ninterval_secs = 15\n";
    let state = dashboard_state_with(&state_db, Some(diary_url), Some(prom), Some(kubeconfig), Some(settings)).await;
    let newest: chrono::DateTime<chrono::Utc> =
        // The seeded history reaches days ahead (a live service's last minutes): plans start before now.
        sqlx::query_scalar("SELECT least(max(created_at), now()) FROM history_records").fetch_one(&diary).await.unwrap();
    let mut out = [0.0; 5];
    for (i, hours) in [24i64, 24 * 7].into_iter().enumerate() {
        let since = newest - chrono::Duration::hours(hours);
        let direct = timed(10, || async {
            let sql = "SELECT count(*) FROM history_records WHERE created_at >= $1 AND created_at < now() \
                       AND dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose";
            let _: i64 = sqlx::query_scalar(sql).bind(since).fetch_one(&diary).await.unwrap();
        })
        .await;
        let plan = Plan {
            id: 1,
            state: PlanState::Running,
            actor: "bench".into(),
            reason: "bench".into(),
            created_at: since,
            finished_at: None,
            steps: vec![PlanStep { percentage: 10, bake_secs: 86_400, legacy_ceiling: None }],
            current_step: 0,
            step_started_at: Some(since),
            pending_step: None,
            clean_since: Some(since),
            pause_reason: None,
            dismissed: vec![],
            guard_override: None,
            start_percentage: Some(10),
            lower_confirmed: None,
            doubled_at_start: vec![],
            flag_version: None,
        };
        let round = timed(20, || async {
            let found = checks::evaluate(&state, &plan, Some(10), chrono::Utc::now()).await;
            assert!(found.iter().any(|e| e.check == "doubled_doses" && e.value.is_some()), "{found:?}");
        })
        .await;
        out[i] = direct.0;
        out[2 + i] = round.0;
        out[4] = round.1;
    }
    drop(state_db);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await.unwrap();
    out
}

/// A person's kill at a random moment of a round that writes the next step, and of a colleague's
/// Promote: the flag ends at 0 % and no automatic write follows the kill.
async fn kill_race_figures(
    state: &rollout_dashboard::server::state::AppState,
    pool: &sqlx::PgPool,
    sim: &SimulatorHarness,
    ana: &Caller,
    rng: &mut Rng,
) {
    use rollout_dashboard::server::autopilot::{driver, store};
    let races: usize = std::env::var("BENCH_AUTOPILOT_RACES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let flag = || sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone();
    let cy = Caller::new(Some(Identity { user: "cy".into(), role: Role::Operator, via: "bench".into() }), "bench");
    for racer in ["a round's step write", "a colleague's Promote"] {
        let (mut at_zero, mut late_writes, mut stepped_first) = (0, 0, 0);
        for race in 0..races {
            let body = StartPlan {
                reason: format!("bench race {race}"),
                steps: Some(vec![
                    PlanStep { percentage: 10, bake_secs: 5, legacy_ceiling: None },
                    PlanStep { percentage: 60, bake_secs: 3600, legacy_ceiling: None },
                ]),
                override_guards_reason: Some("the bench's own doubled records".into()),
                confirm_lower: None,
                ..Default::default()
            };
            // The driver loop is running too: wait for a plan slot and the first step.
            let mut started = Service::new(state).start(ana, body.clone()).await;
            while started.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                started = Service::new(state).start(ana, body.clone()).await;
            }
            let id = store::active_id(pool).await.unwrap().unwrap();
            while flag() != "10" {
                let _ = driver::tick(state).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The step has baked (as if its hour had passed).
            sqlx::query(
                "UPDATE autopilot_plans SET step_started_at = now() - interval '1 hour',
                        clean_since = now() - interval '1 hour' WHERE id = $1",
            )
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
            let delay = Duration::from_secs_f64(rng.uniform() * 0.25);
            let racing = async {
                if racer.starts_with("a round") {
                    let _ = driver::tick(state).await;
                } else {
                    let body = PlanActionBody { reason: Some("bench: promote".into()), check: None };
                    let _ = Service::new(state).act(&cy, PlanAction::Promote, body).await;
                }
            };
            let kill = async {
                tokio::time::sleep(delay).await;
                rollout_dashboard::server::rollout::kill(state, ana, Some("bench: the race".into())).await.unwrap()
            };
            let (_, killed) = tokio::join!(racing, kill);
            for _ in 0..3 {
                let _ = driver::tick(state).await;
            }
            if flag() == "0" {
                at_zero += 1;
            }
            if killed.before == "60" {
                stepped_first += 1;
            }
            let late: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM audit_log WHERE action = 'flag.set' AND outcome = 'done' AND actor = 'autopilot'
                   AND id > $1",
            )
            .bind(killed.audit_id)
            .fetch_one(pool)
            .await
            .unwrap();
            late_writes += late;
        }
        println!(
            "\na kill racing {racer}, {races} races (kill 0 to 250 ms into it): the flag at 0 % after {at_zero}; \
             automatic writes after the kill {late_writes}; the step landed before the kill in {stepped_first}"
        );
    }
}

async fn round_cost_figures(admin: &sqlx::PgPool) {
    let rows: Vec<i64> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("10", 3, None).await;
    println!("\none evaluation round (every check) against the doubled-dose count read from the table, p50 ms:");
    println!(
        "  {:>10} | {:>12} {:>12} | {:>12} {:>12} {:>12} | {:>8} {:>8}",
        "rows", "direct 24 h", "direct 7 d", "round 24 h", "round 7 d", "round 7d p95", "24 h ×", "7 d ×"
    );
    let mut p50s = Vec::new();
    for r in rows {
        let f = round_cost(admin, r, &prom.url, &sim.kubeconfig).await;
        println!(
            "  {:>10} | {:>12.2} {:>12.2} | {:>12.2} {:>12.2} {:>12.2} | {:>8.1} {:>8.1}",
            r,
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[0] / f[2],
            f[1] / f[3]
        );
        p50s.push((r, f[3]));
    }
    if let (Some(small), Some(big)) = (p50s.first(), p50s.last()) {
        if big.0 > small.0 {
            println!("  growth {} → {} rows, round for a 7-day plan: ×{:.2}", small.0, big.0, big.1 / small.1);
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to run there.
    }
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
    rollout_dashboard::server::background::start(&state);
    let flag = || sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone();
    let ana = Caller::new(Some(Identity { user: "ana".into(), role: Role::Operator, via: "bench".into() }), "bench");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for plan_state in ["running", "paused", "changed elsewhere"] {
        println!(
            "\nfrom the first doubled record to the flag at 0 %, plan {plan_state} (driver interval {interval} s), {runs} runs:"
        );
        let mut seconds = Vec::new();
        for run in 1..=runs {
            let body = StartPlan {
                reason: format!("bench run {run}"),
                steps: Some(vec![PlanStep { percentage: 10, bake_secs: 86400, legacy_ceiling: None }]),
                override_guards_reason: Some("the bench's own doubled records from earlier runs".into()),
                confirm_lower: None,
                ..Default::default()
            };
            Service::new(&state).start(&ana, body).await.expect("start");
            let deadline = Instant::now() + Duration::from_secs(interval * 4 + 30);
            while flag() != "10" {
                assert!(Instant::now() < deadline, "run {run}: the first step was not written");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let id = rollout_dashboard::server::autopilot::store::active_id(&pool).await.unwrap().unwrap();
            let paused = || async {
                rollout_dashboard::server::autopilot::store::load(&pool, id).await.unwrap().unwrap().state
                    == PlanState::Paused
            };
            match plan_state {
                "paused" => {
                    let body = PlanActionBody { reason: Some("bench: a person holds the plan".into()), check: None };
                    Service::new(&state).act(&ana, PlanAction::Pause, body).await.expect("pause");
                }
                "changed elsewhere" => {
                    sim.cluster
                        .write_configmap(None, [("insulin_dose_split".to_string(), "15".to_string())].into())
                        .unwrap();
                    let deadline = Instant::now() + Duration::from_secs(interval * 4 + 30);
                    while !paused().await {
                        assert!(Instant::now() < deadline, "run {run}: the change elsewhere did not pause the plan");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                _ => {}
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
            seconds.push(s);
            // The plan's end is written before the flag's: it is over now. The kill's request is
            // marked landed just after the flag's write answers: wait for that before the next start.
            assert!(rollout_dashboard::server::autopilot::store::active_id(&pool).await.unwrap().is_none());
            while !rollout_dashboard::server::kill_requests::pending(&pool).await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        seconds.sort_by(f64::total_cmp);
        if seconds.is_empty() {
            println!("  (BENCH_AUTOPILOT_RUNS=0: no runs)");
        } else {
            println!(
                "  min {:.2} s, p50 {:.2} s, p90 {:.2} s, max {:.2} s; two intervals: {} s; the max is {:.2} intervals",
                seconds[0],
                percentile(&seconds, 0.5),
                percentile(&seconds, 0.9),
                seconds[seconds.len() - 1],
                2 * interval,
                seconds[seconds.len() - 1] / interval as f64
            );
        }
    }
    kill_race_figures(&state, &pool, &sim, &ana, &mut rng).await;
    drop(pool);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await.unwrap();
    round_cost_figures(&admin).await;
}
