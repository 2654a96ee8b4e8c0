//! Notifications and the Alertmanager hook, against a receiver that records what it gets and
//! fails on demand (500s, 429 with Retry-After), the state database and the emulated cluster.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use diary_writer::receivers_api::{Fault, FaultMode, Received};
use sqlx::PgPool;

use crate::support::control::{call, flag_value, proxied_state, proxy_auth, As, ControlWorld};
use crate::support::{diary_schema, PrometheusHarness, SimulatorHarness};

/// What the simulator's receiver stand-in `target` (webhook, slack, grafana) got.
fn got(w: &ControlWorld, target: &str) -> Vec<Received> {
    w.sim.stand_ins().received(Some(target))
}

const WEBHOOK_KEY: &str = "whk-test-0123456789";
const HOOK_TOKEN: &str = "am-hook-token-abcdef";

/// Receivers pointed at the simulator's stand-ins (Grafana's demands the token `glsa_test`).
async fn notify_world(pool: PgPool) -> ControlWorld {
    notify_world_with(pool, "").await
}

/// `notify`: more lines for the `[notify]` section.
async fn notify_world_with(pool: PgPool, notify: &str) -> ControlWorld {
    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("25", 3, None).await;
    let receiver_url = format!("{}/stand-ins", sim.url);
    let auth = proxy_auth(&["analytics"]);
    let settings = format!(
        "refresh_interval_secs = 1\nenvironment = \"test\"\n{auth}[notify]\nretry_min_secs = 1\nretry_max_secs = 2\n{notify}\
         [[notify.receivers]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"{receiver_url}/webhook/pager\"\nsecret_env = \"TEST_WEBHOOK_KEY\"\n\
         [[notify.receivers]]\nname = \"chat\"\nkind = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\nmin_severity = \"critical\"\n\
         [[notify.receivers]]\nname = \"grafana\"\nkind = \"grafana\"\nurl = \"{receiver_url}/grafana\"\nsecret_env = \"TEST_GRAFANA_TOKEN\"\nevents = [\"flag.*\"]\n\
         [[hooks.alertmanager.rules]]\nmatch = {{ alertname = \"LegacyDoseSurge\" }}\naction = \"kill\"\n"
    );
    let slack = format!("{receiver_url}/slack/oncall");
    let state = proxied_state(
        &pool,
        &prom,
        &sim,
        &settings,
        &[
            ("TEST_WEBHOOK_KEY", WEBHOOK_KEY),
            ("TEST_SLACK_URL", &slack),
            ("TEST_GRAFANA_TOKEN", "glsa_test"),
            ("ROLLOUT_ALERT_HOOK_TOKEN", HOOK_TOKEN),
        ],
    )
    .await;
    ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom }
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Recomputes the webhook's signature with openssl, apart from the dashboard's own code.
fn openssl_hmac(key: &str, data: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

#[sqlx::test(migrations = false)]
async fn events_reach_every_receiver_in_order_through_failures_signed_and_counted(pool: PgPool) {
    let w = notify_world(pool).await;
    // The webhook fails twice (500, then 429 with Retry-After) before it takes anything.
    let fault = |mode| Fault { target: "webhook".into(), mode, count: Some(1), for_secs: None, retry_after_secs: None };
    w.sim.stand_ins().add_fault(fault(FaultMode::ServerError));
    w.sim.stand_ins().add_fault(fault(FaultMode::TooMany));
    rollout_dashboard::server::background::start_receivers(&w.state);

    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let body = format!(r#"{{"percentage": 30, "reason": "step up", "expected_version": "{version}"}}"#);
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await.0, StatusCode::OK);
    let kill = Some(r#"{"reason": "doubled doses seen"}"#.to_string());
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout/kill", kill).await.0, StatusCode::OK);
    assert_eq!(flag_value(&w), "0");

    until("the webhook gets both events", 20, || got(&w, "webhook").len() >= 4).await;
    let hook = got(&w, "webhook");
    // Two failed attempts of the first event, then the first event and the second, in order.
    let events: Vec<(&str, u16)> = hook.iter().map(|r| (r.body["event"].as_str().unwrap(), r.status)).collect();
    assert_eq!(events, [("flag.set", 500), ("flag.set", 429), ("flag.set", 204), ("flag.kill", 204)], "{hook:?}");
    let (h, b) = (&hook[3].headers, &hook[3].body);
    assert_eq!(
        (b["before"].as_str(), b["after"].as_str(), b["severity"].as_str()),
        (Some("30"), Some("0"), Some("critical"))
    );
    assert_eq!((b["actor"].as_str(), b["environment"].as_str()), (Some("ana"), Some("test")));
    let sig = &h["x-rollout-signature"];
    let (t, mac) = sig.strip_prefix("t=").unwrap().split_once(",sha256=").unwrap();
    assert_eq!(
        mac,
        openssl_hmac(WEBHOOK_KEY, &format!("{t}.{}", hook[3].raw)),
        "the signature verifies with the shared key"
    );
    assert_eq!(h["x-rollout-delivery"], format!("pager-{}", b["id"]));

    // Slack takes critical events only: the kill, as text and blocks (the stand-in checks them
    // as Slack does: 200 "ok").
    until("Slack gets the kill", 10, || !got(&w, "slack").is_empty()).await;
    let slack = got(&w, "slack");
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(slack[0].status, 200, "{slack:?}");
    assert!(slack[0].body["text"].as_str().unwrap().contains("Kill switch: rollout 30 → 0 % by ana"), "{slack:?}");
    assert_eq!(slack[0].body["blocks"][0]["type"], "header");
    // Grafana: an annotation per flag event, with the token and the tags.
    until("Grafana gets both annotations", 10, || got(&w, "grafana").len() >= 2).await;
    let ann = got(&w, "grafana");
    assert_eq!((ann[0].status, ann[0].headers["authorization"].as_str()), (200, "Bearer glsa_test"));
    assert_eq!(
        ann[1].body["tags"],
        serde_json::json!(["rollout", "insulin_dose_split", "flag.kill", "critical", "test"])
    );

    // The page's view: every receiver, the failures and that they are over; /metrics counts.
    // (The stand-in has the kill before the outbox has recorded its answer: wait for that.)
    let pager_of = |view: &serde_json::Value| {
        view["receivers"].as_array().unwrap().iter().find(|r| r["name"] == "pager").unwrap().clone()
    };
    let mut view = serde_json::Value::Null;
    let mut calls = 0;
    for _ in 0..50 {
        let (status, v) = call(&w, As::Viewer, "GET", "/api/v1/notifications", None).await;
        calls += 1;
        assert_eq!(status, StatusCode::OK);
        view = v;
        if pager_of(&view)["due"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pager = pager_of(&view);
    assert_eq!((pager["delivered"].as_i64(), pager["due"].as_i64()), (Some(2), Some(0)), "{pager}");
    assert!(pager["failing_since"].is_null(), "the failures are over: {pager}");
    let failed: Vec<&serde_json::Value> =
        view["attempts"].as_array().unwrap().iter().filter(|a| a["receiver"] == "pager" && a["ok"] == false).collect();
    assert_eq!(failed.iter().map(|a| a["status"].as_i64().unwrap()).collect::<Vec<_>>(), [429, 500]);
    assert!(!view.to_string().contains(WEBHOOK_KEY) && !view.to_string().contains("glsa_test"), "no secret shown");
    let metrics = call_text(&w, "/metrics").await;
    assert!(
        metrics.contains(r#"rollout_dashboard_notifications_total{receiver="pager",outcome="delivered"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rollout_dashboard_notifications_total{receiver="pager",outcome="failed"} 2"#),
        "{metrics}"
    );
    // Every request is timed by the route it matched, not by its raw path.
    // (As many as the page's view was asked for above: it may have taken more than one look.)
    let route = format!(
        r#"rollout_dashboard_http_request_duration_seconds_count{{route="/api/v1/notifications",method="GET",status="2xx"}} {calls}"#
    );
    assert!(metrics.contains(&route), "{route} in {metrics}");
    assert!(metrics.contains("rollout_dashboard_backend_query_duration_seconds_bucket{"), "{metrics}");
    // Nothing is sent twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(got(&w, "webhook").len(), 4);
    assert_eq!(got(&w, "slack").len(), 1);
}

#[sqlx::test(migrations = false)]
async fn an_event_a_receiver_keeps_failing_is_set_aside_and_sent_again_on_request(pool: PgPool) {
    let w = notify_world_with(pool, "dead_letter_after = 2\n").await;
    // The webhook fails the first event twice: it is set aside, and the event behind it goes on.
    let fault = Fault {
        target: "webhook".into(),
        mode: FaultMode::ServerError,
        count: Some(2),
        for_secs: None,
        retry_after_secs: None,
    };
    w.sim.stand_ins().add_fault(fault);
    rollout_dashboard::server::background::start_receivers(&w.state);
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let body = format!(r#"{{"percentage": 30, "reason": "step up", "expected_version": "{version}"}}"#);
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await.0, StatusCode::OK);
    let kill = Some(r#"{"reason": "doubled doses seen"}"#.to_string());
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout/kill", kill).await.0, StatusCode::OK);
    until("the kill reaches the webhook", 20, || got(&w, "webhook").iter().any(|r| r.status == 204)).await;
    let events: Vec<(String, u16)> =
        got(&w, "webhook").iter().map(|r| (r.body["event"].as_str().unwrap().to_string(), r.status)).collect();
    let events: Vec<(&str, u16)> = events.iter().map(|(e, s)| (e.as_str(), *s)).collect();
    assert_eq!(events, [("flag.set", 500), ("flag.set", 500), ("flag.kill", 204)]);
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/notifications", None).await;
    let dead = view["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "{view}");
    assert_eq!((dead[0]["receiver"].as_str(), dead[0]["event"].as_str()), (Some("pager"), Some("flag.set")));
    assert_eq!(dead[0]["attempts"], 2);
    let pager = view["receivers"].as_array().unwrap().iter().find(|r| r["name"] == "pager").unwrap().clone();
    assert_eq!((pager["dead"].as_i64(), pager["due"].as_i64()), (Some(1), Some(0)), "{pager}");
    let metrics = call_text(&w, "/metrics").await;
    assert!(
        metrics.contains(r#"rollout_dashboard_notifications_total{receiver="pager",outcome="dead"} 1"#),
        "{metrics}"
    );

    // Sent again on an operator's request: a viewer may not, an unknown letter is 404.
    let resend = |id: i64| Some(format!(r#"{{"audit_id": {id}}}"#));
    let id = dead[0]["audit_id"].as_i64().unwrap();
    let path = "/api/v1/notifications/pager/resend";
    assert_eq!(call(&w, As::Viewer, "POST", path, resend(id)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&w, As::Operator, "POST", path, resend(id + 1000)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&w, As::Operator, "POST", "/api/v1/notifications/nobody/resend", resend(id)).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, ans) = call(&w, As::Operator, "POST", path, resend(id)).await;
    assert_eq!(status, StatusCode::OK, "{ans}");
    until("the set-aside event reaches the webhook", 20, || {
        got(&w, "webhook").iter().any(|r| r.status == 204 && r.body["event"] == "flag.set")
    })
    .await;
    let (_, view) = call(&w, As::Viewer, "GET", "/api/v1/notifications", None).await;
    assert_eq!(view["dead_letters"].as_array().unwrap().len(), 0, "{view}");
    let resends: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'notify.resend' AND outcome = 'done' AND actor = 'ana'",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(resends, 1);
}

async fn call_text(w: &ControlWorld, path: &str) -> String {
    use tower::ServiceExt;
    let req = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let resp = w.app.clone().oneshot(req).await.unwrap();
    String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
}

/// Posts to the hook with `token` (None: no Authorization header).
async fn hook(w: &ControlWorld, token: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::post("/api/v1/hooks/alertmanager").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = w.app.clone().oneshot(req.body(axum::body::Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// (actor, action, outcome, reason, outcome_detail)
type AuditRow = (String, String, String, Option<String>, Option<String>);

fn payload(alertname: &str, fingerprint: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"{alertname}\"}}","truncatedAlerts":0,"status":"firing",
            "receiver":"dashboard","groupLabels":{{"alertname":"{alertname}"}},"commonLabels":{{}},"commonAnnotations":{{}},
            "externalURL":"http://alertmanager","alerts":[{{"status":"firing",
            "labels":{{"alertname":"{alertname}","rollout":"insulin_dose_split","severity":"page"}},
            "annotations":{{"summary":"legacy writes surge"}},"startsAt":"2026-12-03T10:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus/graph","fingerprint":"{fingerprint}"}}]}}"#
    )
}

#[sqlx::test(migrations = false)]
async fn a_matching_alert_kills_the_rollout_once_and_bad_calls_are_refused_and_audited(pool: PgPool) {
    let w = notify_world(pool).await;
    // Bad tokens and bad bodies: 4xx with a JSON error, nothing done; a bad body is audited, a
    // caller without the token (anybody) is counted in /metrics instead.
    let (status, err) = hook(&w, None, &payload("LegacyDoseSurge", "f1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(err["error"].as_str().unwrap().contains("Bearer"), "{err}");
    assert_eq!(hook(&w, Some("wrong"), &payload("LegacyDoseSurge", "f1")).await.0, StatusCode::UNAUTHORIZED);
    let (status, err) = hook(&w, Some(HOOK_TOKEN), r#"{"version": "4", "alerts": "nope"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["error"].as_str().unwrap().contains("not Alertmanager's webhook payload"), "{err}");
    let (status, _) =
        hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "f1").replace(r#""version":"4""#, r#""version":"3""#))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(flag_value(&w), "25", "nothing acted");
    // An alert no rule matches: ignored.
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &payload("SomethingElse", "f0")).await;
    assert_eq!((status, ans["ignored"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(flag_value(&w), "25");

    // The matching alert trips the kill switch as the actor alertmanager.
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "f1")).await;
    assert_eq!(status, StatusCode::OK, "{ans}");
    assert_eq!(ans["acted"][0], "LegacyDoseSurge (f1): kill");
    assert_eq!(flag_value(&w), "0");
    // Alertmanager repeats the notification: no second action.
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "f1")).await;
    assert_eq!((status, ans["repeated"].as_array().unwrap().len()), (StatusCode::OK, 1), "{ans}");
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT actor, action, outcome, reason, outcome_detail FROM audit_log
          WHERE action IN ('hook.alert', 'flag.kill') ORDER BY id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    let summary: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("alertmanager", "hook.alert", "refused"),
            ("alertmanager", "hook.alert", "refused"),
            ("alertmanager", "flag.kill", "done"),
            ("alertmanager", "hook.alert", "done"),
            ("alertmanager", "hook.alert", "refused"),
        ],
        "{rows:?}"
    );
    let metrics = w.state.services.metrics.render();
    assert!(metrics.contains("rollout_dashboard_anonymous_refusals_total{action=\"hook.alert\"} 2"), "{metrics}");
    let kill = &rows[2];
    assert!(kill.3.as_deref().unwrap().contains("LegacyDoseSurge (fingerprint f1"), "{kill:?}");
    let done = &rows[3];
    assert!(
        done.3.as_deref().unwrap().contains("alertname=LegacyDoseSurge")
            && done.3.as_deref().unwrap().contains("severity=page"),
        "{done:?}"
    );
    assert!(rows[4].4.as_deref().unwrap().contains("already acted"), "{:?}", rows[4]);
}

/// Issue 31: a call Alertmanager gives up on while Kubernetes hangs, a claim left by an attempt
/// whose process died, and the dashboard's own alerts.
#[sqlx::test(migrations = false)]
async fn the_hook_never_loses_a_kill_to_a_cut_off_call_or_a_dead_attempt(pool: PgPool) {
    use diary_writer::cluster::Fault as ClusterFault;
    let w = notify_world(pool).await;
    w.sim.set_fault(ClusterFault::Hang);
    // Alertmanager's timeout: the call is dropped after 1 s, mid-action.
    let alert = payload("LegacyDoseSurge", "cut1");
    let cut = tokio::time::timeout(Duration::from_secs(1), hook(&w, Some(HOOK_TOKEN), &alert));
    assert!(cut.await.is_err(), "the call was cut off");
    w.sim.set_fault(ClusterFault::None);
    // Alertmanager resends: once the cut-off attempt has finished (its kill failed and gave its
    // claim back), a resend acts; the flag reaches 0 %.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut answers = Vec::new();
    while flag_value(&w) != "0" {
        assert!(std::time::Instant::now() < deadline, "the kill was lost: {answers:?}");
        answers.push(hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "cut1")).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (done, _): (bool, i32) =
        sqlx::query_as("SELECT done, 0 FROM alert_hook_actions WHERE fingerprint = 'cut1' AND action = 'kill'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert!(done, "the claim is done once the kill landed");
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "cut1")).await;
    assert_eq!((status, ans["repeated"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{ans}");

    // A claim whose attempt died 10 minutes ago, not done: a resend takes it over and acts.
    // One claimed a moment ago is still that attempt's: 503, so that Alertmanager sends again
    // (that attempt may yet fail), never "repeated".
    sqlx::query(
        "INSERT INTO alert_hook_actions (fingerprint, starts_at, action, done, claimed_at) VALUES
           ('dead1', '2026-12-03T10:00:00Z', 'kill', false, now() - interval '10 minutes'),
           ('busy1', '2026-12-03T10:00:00Z', 'kill', false, now())",
    )
    .execute(&w.pool)
    .await
    .unwrap();
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "dead1")).await;
    assert_eq!((status, ans["acted"][0].as_str()), (StatusCode::OK, Some("LegacyDoseSurge (dead1): kill")), "{ans}");
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &payload("LegacyDoseSurge", "busy1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ans}");
    assert!(ans["error"].as_str().unwrap().contains("still acting"), "{ans}");

    // The dashboard's own alert (RolloutKillFailing, say) matching a kill rule: never acted on.
    let own = payload("LegacyDoseSurge", "own1")
        .replace(r#""severity":"page""#, r#""severity":"page","source":"rollout-dashboard""#);
    let (status, ans) = hook(&w, Some(HOOK_TOKEN), &own).await;
    assert_eq!(
        (status, ans["ignored"].as_u64(), ans["acted"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1), Some(0))
    );
}

/// Issue 31: a receiver that refuses *us* (401: a revoked token) is not given up on: its event is
/// retried with back-off, an alert condition holds while it refuses, and the event is delivered
/// once the token works again.
#[sqlx::test(migrations = false)]
async fn a_receiver_that_refuses_us_is_retried_and_raised(pool: PgPool) {
    let w = notify_world(pool).await;
    let refuse = Fault {
        target: "webhook".into(),
        mode: FaultMode::Unauthorized,
        count: Some(3),
        for_secs: None,
        retry_after_secs: None,
    };
    w.sim.stand_ins().add_fault(refuse);
    rollout_dashboard::server::background::start_receivers(&w.state);
    let kill = Some(r#"{"reason": "doubled doses seen"}"#.to_string());
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout/kill", kill).await.0, StatusCode::OK);
    until("the webhook refused twice", 20, || got(&w, "webhook").iter().filter(|r| r.status == 401).count() >= 2).await;
    let held = rollout_dashboard::server::notify::alerting::conditions(&w.state).await.unwrap();
    let refusing = held.iter().find(|c| c.alertname == "NotificationReceiverRefusing").expect("the condition holds");
    assert!(refusing.summary.contains("pager") && refusing.summary.contains("401"), "{}", refusing.summary);
    // The token works again (the fault's three refusals are used up): the event arrives, once.
    until("the webhook gets the kill", 20, || got(&w, "webhook").iter().any(|r| r.status == 204)).await;
    let hook = got(&w, "webhook");
    let delivered: Vec<&str> =
        hook.iter().filter(|r| r.status == 204).map(|r| r.body["event"].as_str().unwrap()).collect();
    assert_eq!(delivered, ["flag.kill"], "{hook:?}");
    let held = rollout_dashboard::server::notify::alerting::conditions(&w.state).await.unwrap();
    assert!(held.iter().all(|c| c.alertname != "NotificationReceiverRefusing"), "resolved once it takes events again");
}
