//! The kill path over generated histories (issue 31): alert deliveries to either of two replicas,
//! each possibly cut off by its caller at any moment, a person's kills (also possibly cut off),
//! Kubernetes answering, failing or hanging, and the state database cut and restored, in any
//! order. Then the world heals and Alertmanager sends again what was never answered 200 (an
//! alert answered 200 is not resent before its repeat interval, hours later). Checked at once: an
//! answer `acted` means the flag reads 0 % when it comes. After every history:
//! 1. no kill is lost: every alert delivered has acted (a `hook.alert` entry `done`), every kill a
//!    person asked for has landed (no pending kill request), and the flag reads 0 %;
//! 2. what was done is what the audit trail says: per alert, as many `flag.kill` entries done as
//!    the hook's `hook.alert` entries done, and at least as many as deliveries answered `acted`;
//! 3. with the state database up all along, each alert acted exactly once, however often it was
//!    delivered, cut off or resent.
//!
//! The histories come from proptest's generators with a fixed seed (printed with a failure, with
//! the history), against the real PostgreSQL, the real kube-rs client and the emulated API server.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diary_writer::cluster::Fault;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rollout_dashboard::api::auth::{Identity, Role};
use rollout_dashboard::server::caller::Caller;
use rollout_dashboard::server::state::AppState;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::{dashboard_state_at, url_of, PgProxy, SimulatorHarness};

const HOOK_TOKEN: &str = "am-hook-token-histories";
/// Histories per run, and events per history (each event takes up to a few seconds).
const HISTORIES: u32 = 30;
const LONGEST: usize = 10;
const ALERTS: usize = 2;

#[derive(Debug, Clone)]
enum Event {
    /// Alertmanager delivers `alert` to `replica`, giving up after `give_up_ms` if set.
    Deliver {
        replica: usize,
        alert: usize,
        give_up_ms: Option<u64>,
    },
    /// On-call kills from `replica`, the request dropped after `give_up_ms` if set.
    PersonKill {
        replica: usize,
        give_up_ms: Option<u64>,
    },
    Kubernetes(Fault),
    StateDatabase {
        up: bool,
    },
}

fn give_up() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![2 => Just(None), 1 => (0u64..2500).prop_map(Some)]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        5 => (0..2usize, 0..ALERTS, give_up())
            .prop_map(|(replica, alert, give_up_ms)| Event::Deliver { replica, alert, give_up_ms }),
        1 => (0..2usize, give_up()).prop_map(|(replica, give_up_ms)| Event::PersonKill { replica, give_up_ms }),
        2 => prop_oneof![Just(Fault::None), Just(Fault::Error), Just(Fault::Hang)].prop_map(Event::Kubernetes),
        2 => any::<bool>().prop_map(|up| Event::StateDatabase { up }),
    ]
}

/// A history with at least one delivery (the kill it must not lose).
fn history() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(event(), 1..LONGEST)
        .prop_filter("a delivery", |h| h.iter().any(|e| matches!(e, Event::Deliver { .. })))
}

struct World {
    proxy: PgProxy,
    sim: SimulatorHarness,
    replicas: [AppState; 2],
    apps: [axum::Router; 2],
    pool: PgPool,
}

fn alert_body(fingerprint: &str) -> String {
    format!(
        r#"{{"version":"4","status":"firing","receiver":"dashboard","alerts":[{{"status":"firing",
            "labels":{{"alertname":"LegacyDoseSurge","rollout":"insulin_dose_split"}},"annotations":{{}},
            "startsAt":"2026-12-06T10:00:00Z","fingerprint":"{fingerprint}"}}]}}"#
    )
}

/// One delivery; None when the caller gave up first.
async fn deliver(
    app: &axum::Router,
    fingerprint: &str,
    give_up: Option<u64>,
) -> Option<(StatusCode, serde_json::Value)> {
    let req = Request::post("/api/v1/hooks/alertmanager")
        .header("authorization", format!("Bearer {HOOK_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(alert_body(fingerprint)))
        .unwrap();
    let call = async {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    };
    match give_up {
        Some(ms) => tokio::time::timeout(Duration::from_millis(ms), call).await.ok(),
        None => Some(call.await),
    }
}

fn acted(answer: &serde_json::Value) -> bool {
    answer["acted"].as_array().is_some_and(|a| !a.is_empty())
}

async fn count(pool: &PgPool, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sql).bind(bind).fetch_one(pool).await.unwrap()
}

/// Runs one history; Err(why) names the invariant broken.
/// What a history did, as the invariants need it.
struct Played {
    delivered: [bool; ALERTS],
    /// Alerts Alertmanager got a 200 for (it does not resend those before their repeat interval).
    answered_ok: [bool; ALERTS],
    answered_acted: [i64; ALERTS],
    database_cut: bool,
}

fn fingerprint(case: u32, alert: usize) -> String {
    format!("h{case}a{alert}")
}

fn flag_of(w: &World) -> String {
    w.sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone()
}

/// Runs one history, heals the world and checks the invariants; Err(why) names the one broken.
async fn run(w: &World, case: u32, history: &[Event]) -> Result<(), String> {
    let mut played = play(w, case, history).await?;
    heal(w, case, &mut played).await?;
    check(w, case, &played).await
}

/// The history's events, in order (an `acted` answer with the flag not at 0 is an error at once).
async fn play(w: &World, case: u32, history: &[Event]) -> Result<Played, String> {
    w.sim.set_fault(Fault::None);
    w.proxy.restore();
    let data = [("insulin_dose_split".to_string(), "20".to_string())].into();
    w.sim.cluster.write_configmap(None, data).unwrap();
    let mut delivered = [false; ALERTS];
    let mut answered_ok = [false; ALERTS];
    let mut answered_acted = [0i64; ALERTS];
    let mut database_cut = false;
    for (i, e) in history.iter().enumerate() {
        match e {
            Event::Deliver { replica, alert, give_up_ms } => {
                delivered[*alert] = true;
                let answer = deliver(&w.apps[*replica], &fingerprint(case, *alert), *give_up_ms).await;
                if let Some((StatusCode::OK, body)) = answer {
                    answered_ok[*alert] = true;
                    answered_acted[*alert] += i64::from(acted(&body));
                    if acted(&body) && flag_of(w) != "0" {
                        return Err(format!("alert {alert} answered acted while the flag reads {}", flag_of(w)));
                    }
                }
            }
            Event::PersonKill { replica, give_up_ms } => {
                // As the REST handler runs it: in a task of its own, which a browser that gives up
                // does not cancel.
                let who = Identity { user: "ana".into(), role: Role::Operator, via: "test".into() };
                let caller = Caller::new(Some(who), format!("h{case}-person-{i}"));
                let state = w.replicas[*replica].clone();
                let kill = tokio::spawn(async move {
                    rollout_dashboard::server::rollout::kill(&state, &caller, Some("drill".into())).await
                });
                match give_up_ms {
                    Some(ms) => drop(tokio::time::timeout(Duration::from_millis(*ms), kill).await),
                    None => drop(kill.await),
                }
            }
            Event::Kubernetes(fault) => w.sim.set_fault(*fault),
            Event::StateDatabase { up: true } => w.proxy.restore(),
            Event::StateDatabase { up: false } => {
                database_cut = true;
                w.proxy.cut();
            }
        }
    }
    Ok(Played { delivered, answered_ok, answered_acted, database_cut })
}

/// The world heals; Alertmanager resends every alert it never got a 200 for until the hook
/// takes it (a 503 means an earlier attempt still holds the alert: sent again, as it does).
async fn heal(w: &World, case: u32, p: &mut Played) -> Result<(), String> {
    w.sim.set_fault(Fault::None);
    w.proxy.restore();
    for a in (0..ALERTS).filter(|a| p.delivered[*a] && !p.answered_ok[*a]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let replica = (a + case as usize) % 2;
            match deliver(&w.apps[replica], &fingerprint(case, a), None).await {
                Some((StatusCode::OK, body)) => {
                    p.answered_acted[a] += i64::from(acted(&body));
                    break;
                }
                other if Instant::now() > deadline => return Err(format!("alert {a} never taken: {other:?}")),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    // The kill retry and the journals' replay run in the replicas' background loops.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM kill_requests WHERE landed_at IS NULL")
            .fetch_one(&w.pool)
            .await
            .unwrap();
        let journaled: usize = w.replicas.iter().map(|r| r.journal.len()).sum();
        let flag = flag_of(w);
        // And the kill path's breakers closed again, so that the next history starts healthy.
        let breakers = w.replicas.iter().filter(|r| r.services.state_db.is_open()).count();
        if pending == 0 && journaled == 0 && flag == "0" && breakers == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not healed: {pending} pending kill(s), {journaled} journaled entries, flag {flag}, {breakers} open breaker(s)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// The invariants, once the world has healed.
async fn check(w: &World, case: u32, p: &Played) -> Result<(), String> {
    for a in (0..ALERTS).filter(|a| p.delivered[*a]) {
        let fp = fingerprint(case, a);
        let hook_done = count(
            &w.pool,
            "SELECT count(*) FROM audit_log WHERE action = 'hook.alert' AND outcome = 'done' AND target = 'alert ' || $1",
            &fp,
        )
        .await;
        let kills_done = count(
            &w.pool,
            "SELECT count(*) FROM audit_log WHERE action = 'flag.kill' AND outcome = 'done' AND actor = 'alertmanager'
                AND request_id LIKE '%/' || $1 || '/kill'",
            &fp,
        )
        .await;
        if hook_done == 0 {
            return Err(format!("alert {a}: its kill was lost (no hook.alert done)"));
        }
        if kills_done != hook_done {
            return Err(format!("alert {a}: {kills_done} flag.kill done, {hook_done} hook.alert done"));
        }
        if hook_done < p.answered_acted[a] {
            return Err(format!(
                "alert {a}: answered acted {} times, {hook_done} in the audit trail",
                p.answered_acted[a]
            ));
        }
        if !p.database_cut && hook_done != 1 {
            let entries: Vec<(chrono::DateTime<chrono::Utc>, String, Option<String>, String)> = sqlx::query_as(
                "SELECT at, outcome, outcome_detail, request_id FROM audit_log WHERE target = 'alert ' || $1 ORDER BY id",
            )
            .bind(&fp)
            .fetch_all(&w.pool)
            .await
            .unwrap();
            return Err(format!(
                "alert {a}: acted {hook_done} times with the state database up all along: {entries:#?}"
            ));
        }
    }
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn no_history_of_cut_calls_outages_and_failures_loses_a_kill(pool: PgPool) {
    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let sim = SimulatorHarness::start("20", 3, None).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = |n: usize| {
        format!(
            "refresh_interval_secs = 1\nsource_timeout_secs = 1\naudit_journal_file = \"{}\"\n\
             [[hooks.alertmanager.rules]]\nmatch = {{ alertname = \"LegacyDoseSurge\" }}\naction = \"kill\"\n",
            dir.path().join(format!("journal-{n}.jsonl")).display(),
        )
    };
    let mut replicas = Vec::new();
    for n in 0..2 {
        let state = dashboard_state_at(
            proxy.url_for(&url_of(&pool)),
            None,
            None,
            Some(&sim.kubeconfig),
            Some(&settings(n)),
            &[("ROLLOUT_ALERT_HOOK_TOKEN", HOOK_TOKEN)],
        )
        .await;
        rollout_dashboard::server::background::start(&state);
        replicas.push(state);
    }
    let replicas: [AppState; 2] = replicas.try_into().unwrap_or_else(|_| unreachable!());
    let apps = replicas.clone().map(rollout_dashboard::site::app);
    let w = World { proxy, sim, replicas, apps, pool };

    let seed = *b"rollout-dashboard kill histories";
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let started = Instant::now();
    // What the histories held, so that a run shows it tried the hard cases.
    let (mut deliveries, mut cut, mut database_down, mut kubernetes_failing) = (0, 0, 0, 0);
    for case in 0..HISTORIES {
        let history = history().new_tree(&mut runner).unwrap().current();
        let (mut down, mut failing) = (false, false);
        for e in &history {
            match e {
                Event::Deliver { give_up_ms, .. } => {
                    deliveries += 1;
                    cut += usize::from(give_up_ms.is_some());
                    database_down += usize::from(down);
                    kubernetes_failing += usize::from(failing);
                }
                Event::StateDatabase { up } => down = !up,
                Event::Kubernetes(f) => failing = *f != Fault::None,
                Event::PersonKill { .. } => {}
            }
        }
        if let Err(why) = run(&w, case, &history).await {
            panic!("history {case} broke an invariant: {why}\n{history:#?}");
        }
    }
    eprintln!(
        "{HISTORIES} kill-path histories held every invariant in {:?}: {deliveries} deliveries, {cut} of them cut off, \
         {database_down} with the state database down, {kubernetes_failing} with Kubernetes failing or hanging",
        started.elapsed()
    );
    assert!(cut > 0 && database_down > 0 && kubernetes_failing > 0, "the histories must try the hard cases");
}
