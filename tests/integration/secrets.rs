//! No secret reaches anything a client can read: every receiver is configured with a secret URL
//! on a port where nothing listens, events are sent (each attempt fails with reqwest's error,
//! whose text names the URL), and then every page, API answer, CSV and server function a client
//! can GET, signed in or not, and every log line written meanwhile, is searched for each secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::server::access::{PAGES, ROUTES, SERVER_FNS};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::control::{call, proxied_state, proxy_auth, As, ControlWorld, SECRET};
use crate::support::web::ORIGIN;
use crate::support::{diary_schema, free_port, PrometheusHarness, SimulatorHarness};

/// What the log writes, kept for the search.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// GETs `path` as `who`; the body as text.
async fn text(w: &ControlWorld, who: As, path: &str) -> (StatusCode, String) {
    let mut req = axum::http::Request::get(path).header("origin", ORIGIN);
    if let As::Operator = who {
        req = req
            .header("x-forwarded-user", "ana")
            .header("x-forwarded-groups", "oncall")
            .header("x-proxy-secret", SECRET);
    }
    let resp = w.app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[sqlx::test(migrations = false)]
async fn no_receiver_secret_reaches_a_page_an_answer_a_csv_or_the_log(pool: PgPool) {
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    // The test's runtime has one thread: every task the dashboard spawns logs here.
    let _logging = tracing::subscriber::set_default(subscriber);

    diary_schema(&pool).await;
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("25", 3, None).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let secrets = [
        format!("{dead}/hooks/pager-PATHSECRET1?token=QUERYSECRET2"),
        format!("{dead}/services/T000/B000/SLACKSECRET3"),
        format!("{dead}/grafana-GRAFANASECRET4"),
    ];
    let auth = proxy_auth(&["analytics"]);
    let settings = format!(
        "refresh_interval_secs = 1\nenvironment = \"test\"\n{auth}[notify]\nretry_min_secs = 1\nretry_max_secs = 1\n\
         [[notify.receivers]]\nname = \"pager\"\nkind = \"webhook\"\nurl_env = \"TEST_WEBHOOK_URL\"\nsecret_env = \"TEST_WEBHOOK_KEY\"\n\
         [[notify.receivers]]\nname = \"chat\"\nkind = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\n\
         [[notify.receivers]]\nname = \"grafana\"\nkind = \"grafana\"\nurl_env = \"TEST_GRAFANA_URL\"\nsecret_env = \"TEST_GRAFANA_TOKEN\"\n"
    );
    let state = proxied_state(
        &pool,
        &prom,
        &sim,
        &settings,
        &[
            ("TEST_WEBHOOK_URL", &secrets[0]),
            ("TEST_WEBHOOK_KEY", "WEBHOOKKEYSECRET5"),
            ("TEST_SLACK_URL", &secrets[1]),
            ("TEST_GRAFANA_URL", &secrets[2]),
            ("TEST_GRAFANA_TOKEN", "glsa_GRAFANATOKENSECRET6"),
        ],
    )
    .await;
    let w = ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool, _prom: prom };
    let words =
        ["PATHSECRET1", "QUERYSECRET2", "SLACKSECRET3", "GRAFANASECRET4", "WEBHOOKKEYSECRET5", "GRAFANATOKENSECRET6"];

    rollout_dashboard::server::background::start_receivers(&w.state);
    // An event for every receiver: a kill (critical).
    let (status, body) =
        call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some(r#"{"reason":"secrets test"}"#.into())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Every receiver has failed at least twice, with reqwest's error in hand.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, notes) = text(&w, As::Anonymous, "/api/v1/notifications").await;
        if notes.matches("cannot reach it").count() >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the receivers' failures were never shown: {notes}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Everything a client can GET, as anyone and as an operator.
    let mut paths: Vec<String> = ROUTES.iter().filter(|r| r.0 == "GET").map(|r| r.2.to_string()).collect();
    paths.extend(PAGES.iter().map(|p| p.to_string()));
    paths.extend(SERVER_FNS.iter().map(|(name, _)| format!("/api/{name}")));
    paths.extend([
        "/api/v1/audit.csv?limit=1000".to_string(),
        "/api/v1/reports/usage.csv".to_string(),
        "/api/v1/reports/legacy-share.svg".to_string(),
    ]);
    let mut read = 0;
    for path in &paths {
        for who in [As::Anonymous, As::Operator] {
            let (status, body) = text(&w, who, path).await;
            read += usize::from(status.is_success());
            for word in words {
                assert!(!body.contains(word), "{path} as {who:?} ({status}) shows the secret {word}");
            }
        }
    }
    assert!(read > 40, "only {read} answers were read");
    let (_, notes) = text(&w, As::Anonymous, "/api/v1/notifications").await;
    assert!(notes.contains("connection refused or failed"), "the failure is still said, in words: {notes}");
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(logged.contains("retried with back-off"), "the receivers' failures were logged: {} bytes", logged.len());
    for word in words {
        assert!(!logged.contains(word), "the log shows the secret {word}");
    }
}
