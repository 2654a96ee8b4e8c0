//! Alertmanager both ways, with the real one (Debian's `prometheus-alertmanager`): a Prometheus
//! rule on legacy usage fires, Alertmanager calls the dashboard's hook, the kill switch trips;
//! and the dashboard's own alerts reach Alertmanager while their condition holds and resolve
//! when it ends.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use sqlx::PgPool;

use crate::support::alertmanager::AlertmanagerHarness;
use crate::support::control::{call, flag_value, proxied_state, proxy_auth, As, ControlWorld};
use crate::support::{diary_schema, PrometheusHarness, SimulatorHarness};

const HOOK_TOKEN: &str = "am-hook-token-chain-0123";

/// Legacy writes above 0.05 a second (the backfilled history runs at 0.07): firing at once.
const RULES: &str = "groups:\n  - name: rollout\n    interval: 1s\n    rules:\n      - alert: LegacyDoseSurge\n        \
    expr: sum(rate(legacy_dose_used_total[5m])) > 0.05\n        labels: {severity: critical, rollout: insulin_dose_split}\n        \
    annotations: {summary: legacy dose writes surge}\n";

async fn until_async<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn a_rule_on_legacy_usage_kills_through_alertmanager_and_the_killed_alert_holds_then_resolves(pool: PgPool) {
    diary_schema(&pool).await;
    // The dashboard's port first: Alertmanager must know where the hook is.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://{}", listener.local_addr().unwrap());
    let am = AlertmanagerHarness::start(Some((&format!("{site}/api/v1/hooks/alertmanager"), HOOK_TOKEN)));
    let prom = PrometheusHarness::start_alerting(&synthetic(1.9, 0.07, 7200, 3600, 15), Some(RULES), Some(&am.addr));
    let sim = SimulatorHarness::start("25", 3, None).await;
    let auth = proxy_auth(&["analytics"]);
    let settings = format!(
        "refresh_interval_secs = 1\nenvironment = \"test\"\n{auth}[notify]\nretry_min_secs = 1\nretry_max_secs = 2\n\
         [[notify.receivers]]\nname = \"alerts\"\nkind = \"alertmanager\"\nurl = \"{}\"\nresend_secs = 1\n\
         [[hooks.alertmanager.rules]]\nmatch = {{ alertname = \"LegacyDoseSurge\", rollout = \"insulin_dose_split\" }}\naction = \"kill\"\n",
        am.url
    );
    let state = proxied_state(&pool, &prom, &sim, &settings, &[("ROLLOUT_ALERT_HOOK_TOKEN", HOOK_TOKEN)]).await;
    let app = rollout_dashboard::site::app(state.clone());
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    rollout_dashboard::server::background::start_receivers(&state);
    let w = ControlWorld { app, state, sim, pool, _prom: prom };

    // Prometheus fires, Alertmanager routes to the hook, the hook trips the kill switch.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while flag_value(&w) != "0" {
        if std::time::Instant::now() > deadline {
            let prom_alerts =
                reqwest::get(format!("{}/api/v1/alerts", w._prom.url)).await.unwrap().text().await.unwrap();
            let audit: Vec<(String, String, Option<String>)> =
                sqlx::query_as("SELECT action, outcome, outcome_detail FROM audit_log ORDER BY id")
                    .fetch_all(&w.pool)
                    .await
                    .unwrap();
            panic!(
                "the rule's alert did not kill the rollout within 60 s; Prometheus: {prom_alerts}; Alertmanager: {:?}; audit: {audit:?}",
                am.alerts().await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The flag reads 0 % once the kill is written; the hook's own entry follows it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT actor, action, outcome, reason FROM audit_log WHERE action IN ('flag.kill', 'hook.alert') ORDER BY id",
        )
        .fetch_all(&w.pool)
        .await
        .unwrap();
        if rows.len() >= 2 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()), ("alertmanager", "flag.kill", "done"));
    assert!(rows[0].3.as_deref().unwrap().contains("LegacyDoseSurge"), "{rows:?}");
    assert_eq!((rows[1].1.as_str(), rows[1].2.as_str()), ("hook.alert", "done"), "{rows:?}");
    assert!(rows[1].3.as_deref().unwrap().contains("rollout=insulin_dose_split"), "{rows:?}");

    // The dashboard's own alert: the rollout is killed, held in Alertmanager with its labels.
    until_async("Alertmanager holds RolloutKilled", 20, || async {
        am.names_with("source", "rollout-dashboard").await == ["RolloutKilled"]
    })
    .await;
    let held = am.alerts().await;
    let killed = held.iter().find(|a| a["labels"]["alertname"] == "RolloutKilled").unwrap();
    assert_eq!(
        (&killed["labels"]["severity"], &killed["labels"]["rollout"], &killed["labels"]["environment"]),
        (&serde_json::json!("critical"), &serde_json::json!("insulin_dose_split"), &serde_json::json!("test"))
    );
    assert_eq!(killed["status"]["state"], "active");
    assert!(killed["annotations"]["summary"].as_str().unwrap().contains("killed by alertmanager"), "{killed}");

    // On-call sets the rollout again (over the firing alert's guard, with a reason): the
    // condition ends and the alert resolves. The rule still fires; nothing is killed twice.
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let body = format!(
        r#"{{"percentage": 10, "reason": "surge explained: a client batch import", "expected_version": "{version}",
            "override_guards": true, "override_reason": "the surge is an import, not old clients"}}"#
    );
    let (status, answer) = call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    until_async("RolloutKilled resolves", 20, || async {
        am.names_with("source", "rollout-dashboard").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(flag_value(&w), "10");
    let kills: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'flag.kill'")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(kills, 1, "Alertmanager's repeats acted once");

    // The page's view: the receiver posted, holds nothing now; the change and the resolution
    // are attempts of their own.
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/notifications", None).await;
    let r = view["receivers"].as_array().unwrap().iter().find(|r| r["name"] == "alerts").unwrap().clone();
    assert_eq!((r["kind"].as_str(), r["firing"].as_array().map(Vec::len)), (Some("alertmanager"), Some(0)), "{r}");
    assert!(r["delivered"].as_i64().unwrap() >= 2, "{r}");
    let events: Vec<&str> = view["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["receiver"] == "alerts")
        .map(|a| a["event"].as_str().unwrap())
        .collect();
    // Newest first: the kill's alert alone, then its resolution. On a loaded machine another of the
    // dashboard's own conditions may flap between the two (a slow source), and its change is an
    // attempt of its own: the first and the last are checked exactly, and nothing fires at the end.
    assert_eq!(events.last(), Some(&"alerts: 1 firing, 0 resolved"), "{events:?}");
    assert!(events[0].starts_with("alerts: 0 firing, ") && !events[0].ends_with(" 0 resolved"), "{events:?}");
    assert!(events.len() == 2 || events[1..events.len() - 1].iter().all(|e| e.starts_with("alerts: ")), "{events:?}");
}
