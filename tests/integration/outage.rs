//! The kill path through a state-database outage (issue 31): while the state database refuses
//! connections, a signed-in operator's kill and the alert hook's kill still set the flag to 0 %,
//! `/readyz` stays ready and the status says what is degraded; once the database answers again,
//! the journal's entries are in the audit trail, one per action taken.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diary_writer::openmetrics::synthetic;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::web::{post_form, users_file, ORIGIN};
use crate::support::{dashboard_state_at, diary_schema, url_of, PgProxy, PrometheusHarness, SimulatorHarness};

const HOOK_TOKEN: &str = "am-hook-token-outage";

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn alert(fingerprint: &str) -> String {
    format!(
        r#"{{"version":"4","status":"firing","receiver":"dashboard","alerts":[{{"status":"firing",
            "labels":{{"alertname":"LegacyDoseSurge","rollout":"insulin_dose_split"}},"annotations":{{}},
            "startsAt":"2026-12-06T10:00:00Z","fingerprint":"{fingerprint}"}}]}}"#
    )
}

#[sqlx::test(migrations = false)]
async fn on_call_kills_while_the_state_database_is_down(pool: PgPool) {
    diary_schema(&pool).await;
    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("25", 3, None).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "refresh_interval_secs = 1\nsource_timeout_secs = 2\naudit_journal_file = \"{}\"\n\
         [auth]\nmode = \"local\"\nusers_file = \"{}\"\n\
         [[hooks.alertmanager.rules]]\nmatch = {{ alertname = \"LegacyDoseSurge\" }}\naction = \"kill\"\n",
        dir.path().join("journal.jsonl").display(),
        users_file(dir.path()).display()
    );
    let state = dashboard_state_at(
        proxy.url_for(&url_of(&pool)),
        Some(url_of(&pool)),
        Some(&prom.url),
        Some(&sim.kubeconfig),
        Some(&settings),
        &[
            ("ROLLOUT_ALERT_HOOK_TOKEN", HOOK_TOKEN),
            ("ROLLOUT_SESSION_KEY", "outage-test-session-key-0123456789abcdef"),
        ],
    )
    .await;
    rollout_dashboard::server::background::start(&state);
    let app = rollout_dashboard::site::app(state.clone());
    let flag = || sim.cluster.snapshot().0.configmap_data["insulin_dose_split"].clone();
    let signed_in = post_form(&app, "/auth/login", "username=ana&password=operator-pw", ORIGIN, None).await;
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    // A second session, signed out before the outage: its signature must not bring it back.
    let second = post_form(&app, "/auth/login", "username=ana&password=operator-pw", ORIGIN, None).await;
    let signed_out = second.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    post_form(&app, "/auth/logout", "", ORIGIN, Some(&signed_out)).await;

    // No statement holds a state-database connection for long.
    let limit: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&state.state_db).await.unwrap();
    assert_eq!(limit, "30s");

    proxy.cut();
    // The dashboard stays in its Service, and says what is degraded.
    let (status, ready) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, st) = send(&app, Request::get("/api/v1/status").body(Body::empty()).unwrap()).await;
        let degraded = st["degraded"].as_array().cloned().unwrap_or_default();
        if degraded.iter().any(|d| d.as_str().unwrap().contains("the kill switch and the alert hook still kill")) {
            assert!(st["failing_since"]["state_database"].is_string(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "the status never said the state database is down: {st}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The operator's kill, from the signed session cookie alone.
    let started = Instant::now();
    let kill = Request::post("/api/v1/rollout/kill")
        .header("origin", ORIGIN)
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"reason":"outage drill"}"#))
        .unwrap();
    let (status, done) = send(&app, kill).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(flag(), "0");
    let browser_kill = started.elapsed();
    assert!(browser_kill < Duration::from_secs(10), "the kill took {browser_kill:?}");
    let (status, _) = send(
        &app,
        Request::post("/api/v1/rollout/kill")
            .header("origin", ORIGIN)
            .header("cookie", &signed_out)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a session signed out before the outage stays signed out");
    // A viewer's cookie does not become an operator's, and a forged one is nobody.
    let forged = cookie.replace("operator", "viewer");
    let (status, _) = send(
        &app,
        Request::post("/api/v1/rollout/kill")
            .header("origin", ORIGIN)
            .header("cookie", forged)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Someone raises the flag with kubectl; the alert hook kills it again, twice delivered.
    let data = [("insulin_dose_split".to_string(), "30".to_string())].into();
    sim.cluster.write_configmap(None, data).unwrap();
    let started = Instant::now();
    let hook = |body: String| {
        Request::post("/api/v1/hooks/alertmanager")
            .header("authorization", format!("Bearer {HOOK_TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, ans) = send(&app, hook(alert("outage1"))).await;
    assert_eq!((status, ans["acted"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{ans}");
    assert_eq!(flag(), "0");
    let hook_kill = started.elapsed();
    let (_, again) = send(&app, hook(alert("outage1"))).await;
    assert_eq!(again["repeated"].as_array().map(Vec::len), Some(1), "{again}");
    eprintln!("state database down: browser kill {browser_kill:?}, hook kill {hook_kill:?}");

    // The database answers again: every action taken is in the audit trail, once.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT actor, action, outcome FROM audit_log WHERE action IN ('flag.kill', 'hook.alert') ORDER BY at, id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.len() >= 4 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut summary: Vec<(&str, &str, &str)> =
        rows.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            ("alertmanager", "flag.kill", "done"),
            ("alertmanager", "hook.alert", "done"),
            ("alertmanager", "hook.alert", "refused"),
            ("ana", "flag.kill", "done"),
        ],
        "{rows:?}"
    );
    // The signed-out and the forged cookies' attempts: refused, and counted, not audited (they
    // are nobody's).
    let metrics = state.services.metrics.render();
    assert!(metrics.contains("rollout_dashboard_anonymous_refusals_total{action=\"flag.kill\"} 2"), "{metrics}");
}
