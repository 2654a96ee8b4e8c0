//! Security headers, and the Content-Security-Policy decided from the response itself: an HTML
//! document gets the page policy with a nonce this middleware generated and handed to Leptos
//! before rendering; anything else gets a policy that lets nothing run.
//!
//! Why here and not in the shell: the shell used to insert the page policy through leptos_axum's
//! `ResponseOptions`, which leptos_axum copies into the response once the first chunk is ready.
//! Whatever lost that hand-over (see issue 13) left a page with the JSON policy: no styles, no
//! scripts. Now no HTML document can leave without the page policy, whatever rendered it.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use leptos::nonce::Nonce;

/// The CSP of an HTML page: no inline script without the response's nonce, wasm allowed to
/// compile, nothing framed, forms and requests to this origin only. Inline styles stay allowed
/// (the charts' SVG carries style attributes).
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )
}

/// The CSP of every response that is not an HTML document (JSON, CSV, images, assets).
pub const NOTHING_RUNS_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Hands this request's nonce to Leptos: called in the context of every render (pages, the
/// fallback page), after leptos_axum provided its own random nonce, which this one replaces.
pub fn provide_request_nonce() {
    use leptos::prelude::{provide_context, use_context};
    let nonce = use_context::<axum::http::request::Parts>().and_then(|parts| parts.extensions.get::<Nonce>().cloned());
    if let Some(nonce) = nonce {
        provide_context(nonce);
    }
}

/// Headers on every response: no sniffing, no referrer outside this origin (`same-origin`: with
/// `no-referrer`, browsers send `Origin: null` on form posts and the CSRF check refuses them), no
/// framing, and the CSP chosen by what the response is (see [`policy_for`]).
pub async fn security_headers(mut req: Request, next: Next) -> Response {
    let nonce = Nonce::new();
    req.extensions_mut().insert(nonce.clone());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let policy = policy_for(h, &nonce);
    h.insert(header::CONTENT_SECURITY_POLICY, policy);
    resp
}

/// The page policy with this request's nonce for an HTML document, whatever its status or any
/// CSP a handler set; otherwise the handler's own CSP if it set one, else nothing runs.
fn policy_for(headers: &HeaderMap, nonce: &str) -> HeaderValue {
    if is_html(headers) {
        // A nonce from `Nonce::new` is URL-safe base64: always a valid header value.
        return HeaderValue::from_str(&page_csp(nonce)).unwrap_or(HeaderValue::from_static(NOTHING_RUNS_CSP));
    }
    headers.get(header::CONTENT_SECURITY_POLICY).cloned().unwrap_or(HeaderValue::from_static(NOTHING_RUNS_CSP))
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    /// A handler that renders the nonce it was handed into its HTML, as the shell does.
    async fn html_without_csp(req: Request) -> Response {
        let nonce = req.extensions().get::<Nonce>().map(|n| n.to_string()).unwrap_or_default();
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from(format!("<script nonce=\"{nonce}\"></script>")))
            .unwrap()
    }

    fn app() -> Router {
        Router::new()
            .route("/page", get(html_without_csp))
            .route("/json", get(|| async { axum::Json(serde_json::json!({"ok": true})) }))
            .route(
                "/html-with-json-csp",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "TEXT/HTML"), (header::CONTENT_SECURITY_POLICY, NOTHING_RUNS_CSP)],
                        "<p>x</p>",
                    )
                }),
            )
            .route(
                "/own-csp",
                get(|| async {
                    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CONTENT_SECURITY_POLICY, "sandbox")], "<svg/>")
                }),
            )
            .layer(axum::middleware::from_fn(security_headers))
    }

    async fn fetch(path: &str) -> (HeaderMap, String) {
        let resp = app().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn csp(headers: &HeaderMap) -> &str {
        headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn an_html_response_without_a_csp_gets_the_page_policy_with_the_nonce_its_scripts_carry() {
        let (headers, body) = fetch("/page").await;
        let nonce = body.split('"').nth(1).unwrap();
        assert!(nonce.len() >= 16, "the handler was handed a nonce: {body}");
        assert_eq!(csp(&headers), page_csp(nonce));
        assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert_eq!(headers.get(header::REFERRER_POLICY).unwrap(), "same-origin");
        // Another request, another nonce.
        let (again, _) = fetch("/page").await;
        assert_ne!(csp(&again), csp(&headers));
    }

    #[tokio::test]
    async fn an_html_response_never_leaves_with_the_policy_meant_for_data() {
        let (headers, _) = fetch("/html-with-json-csp").await;
        assert!(csp(&headers).starts_with("default-src 'self'; script-src 'self' 'nonce-"), "{}", csp(&headers));
    }

    #[tokio::test]
    async fn other_responses_let_nothing_run_unless_they_chose_their_own_policy() {
        let (headers, _) = fetch("/json").await;
        assert_eq!(csp(&headers), NOTHING_RUNS_CSP);
        let (headers, _) = fetch("/own-csp").await;
        assert_eq!(csp(&headers), "sandbox");
        let (headers, _) = fetch("/missing").await;
        assert_eq!(csp(&headers), NOTHING_RUNS_CSP);
    }
}
