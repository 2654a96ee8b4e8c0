//! The pages as served: the overview kept for a short interval per viewer (http/page_cache.rs),
//! each response with its own CSP nonce, gzip spliced around it (http/gzip_template.rs).

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::{dashboard_state, diary_fixture, diary_schema};

/// The page at `path`: its headers and its HTML (gunzipped when it came compressed).
async fn page(app: &axum::Router, path: &str, accept: &str, cookie: Option<&str>) -> (HeaderMap, String) {
    let mut req = Request::get(path).header("accept-encoding", accept);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    let html = match headers.get("content-encoding").map(|v| v.to_str().unwrap()) {
        Some("gzip") => {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut s).expect("a valid gzip body");
            s
        }
        None => String::from_utf8(body.to_vec()).unwrap(),
        Some(other) => panic!("{path}: unexpected encoding {other}"),
    };
    (headers, html)
}

fn nonce(headers: &HeaderMap) -> String {
    let csp = headers["content-security-policy"].to_str().unwrap();
    csp.split("'nonce-").nth(1).and_then(|r| r.split('\'').next()).expect("a nonce in the page's CSP").to_string()
}

fn counted(app_metrics: &str, kind: &str) -> u64 {
    let prefix = format!("rollout_dashboard_cache_{kind}_total{{cache=\"pages\"}} ");
    app_metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

#[sqlx::test(migrations = false)]
async fn the_overview_is_rendered_once_per_interval_and_each_response_has_its_own_nonce(pool: PgPool) {
    diary_schema(&pool).await;
    diary_fixture(&pool).await;
    let state = dashboard_state(&pool, Some(&pool), None, None).await;
    let app = rollout_dashboard::site::app(state.clone());
    let metrics = || state.services.metrics.render();

    let (h1, plain) = page(&app, "/", "identity", None).await;
    let (h2, zipped) = page(&app, "/", "gzip, deflate, br", None).await;
    assert_eq!(h1.get("content-encoding"), None);
    assert_eq!(h2["content-encoding"], "gzip");
    assert_eq!((counted(&metrics(), "misses"), counted(&metrics(), "hits")), (1, 1), "rendered once, served twice");
    let (n1, n2) = (nonce(&h1), nonce(&h2));
    assert_ne!(n1, n2, "each response has its own nonce");
    assert!(plain.contains(&format!("nonce=\"{n1}\"")) && !plain.contains(&n2), "the first page carries its own nonce");
    assert!(zipped.contains(&format!("nonce=\"{n2}\"")) && !zipped.contains(&n1), "the second page carries its own");
    assert_eq!(plain.replace(&n1, "N"), zipped.replace(&n2, "N"), "otherwise the same page");
    assert!(plain.contains("data-testid=\"records-total\""), "the overview with its values");
    assert_eq!(h2["cache-control"], "no-store", "the page itself is still not stored by browsers");

    // Queries outside the page's own choices are rendered for the request and not kept; another
    // viewer (another cookie) gets a rendering of their own.
    let _ = page(&app, "/?range=7d&window=1h", "gzip", None).await;
    let _ = page(&app, "/?range=bogus", "gzip", None).await;
    let _ = page(&app, "/", "gzip", Some("rd_session=someone-else")).await;
    assert_eq!((counted(&metrics(), "misses"), counted(&metrics(), "hits")), (3, 1), "{}", metrics());

    // After the interval (the fixture's refresh interval, at most one second) it is rendered again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = page(&app, "/", "gzip", None).await;
    assert_eq!(counted(&metrics(), "misses"), 4);
}
