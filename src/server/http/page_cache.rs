//! The overview rendered once per short interval for each viewer, and served from memory to
//! everyone asking in that interval: the page is the costly part of a request (rendering, three
//! charts, compression), while its values already come from the services' refresh-interval
//! caches, so a second rendering within the interval would say the same thing.
//!
//! Each response still gets its own CSP nonce (csp.rs): the page is kept with its nonce as a hole
//! and compressed once (gzip_template.rs), and every response fills the hole with its own.
//! Only the pages in [`CACHED_PAGES`] are kept, only complete 200 HTML answers that set no
//! cookie, per viewer (whatever identifies them: cookies, the proxy's identity headers, the
//! address) and per query among the page's own choices; anything else is rendered as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leptos::nonce::Nonce;

use super::gzip_template::GzipTemplate;
use crate::api::overview::{RANGES, WINDOWS};
use crate::server::auth::PROXY_HEADERS;
use crate::server::cache::SingleFlight;
use crate::server::own_metrics::OwnMetrics;

/// Read-only pages, the same for everyone apart from the header's sign-in box, whose values come
/// from the services' caches: the overview.
const CACHED_PAGES: &[&str] = &["/"];
/// At most this many pages kept at once; beyond it, pages are rendered for each request.
const MAX_PAGES: usize = 256;
/// A page larger than this is not kept (the overview is about 130 kB).
const LARGEST_PAGE: usize = 4 << 20;

pub struct PageCache {
    pages: SingleFlight<Option<Arc<CachedPage>>>,
}

struct CachedPage {
    headers: HeaderMap,
    body: GzipTemplate,
}

impl PageCache {
    /// Pages are kept for a second at most, and never longer than one refresh interval.
    pub fn new(refresh: Duration, metrics: Arc<OwnMetrics>) -> PageCache {
        PageCache { pages: SingleFlight::new("pages", refresh.min(Duration::from_secs(1)), metrics) }
    }
}

/// The middleware: inside the CSP layer (the request carries its nonce), outside the pages.
pub async fn serve(State(cache): State<Arc<PageCache>>, req: Request, next: Next) -> Response {
    let nonce = req.extensions().get::<Nonce>().map(|n| n.to_string());
    let (Some(key), Some(nonce)) = (key(&req), nonce) else {
        return next.run(req).await;
    };
    if cache.pages.held() >= MAX_PAGES {
        return next.run(req).await;
    }
    let gzip = accepts_gzip(req.headers());
    // The request goes to whichever caller renders: this one if it is first, else it comes back.
    let pending = Arc::new(Mutex::new(Some((req, next))));
    let rendered_here = Arc::new(Mutex::new(None));
    let page = cache.pages.get(&key, || render(pending.clone(), rendered_here.clone(), nonce.clone())).await;
    if let Some(page) = page {
        return page.answer(&nonce, gzip);
    }
    // Not kept: the answer this request rendered, or a rendering of its own.
    let answered = rendered_here.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(answer) = answered {
        return answer;
    }
    let left = pending.lock().unwrap_or_else(|p| p.into_inner()).take();
    match left {
        Some((req, next)) => next.run(req).await,
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

type Pending = Arc<Mutex<Option<(Request, Next)>>>;

async fn render(
    pending: Pending,
    rendered_here: Arc<Mutex<Option<Response>>>,
    nonce: String,
) -> Option<Arc<CachedPage>> {
    let (req, next) = pending.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    let answer = next.run(req).await;
    let keep = answer.status() == StatusCode::OK
        && !answer.headers().contains_key(header::SET_COOKIE)
        && !answer.headers().contains_key(header::CONTENT_ENCODING)
        && answer.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !keep {
        *rendered_here.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
        return None;
    }
    let (mut parts, body) = answer.into_parts();
    let bytes = match axum::body::to_bytes(body, LARGEST_PAGE).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("the page could not be read to be kept: {e}");
            let failed = (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be rendered; try again.");
            *rendered_here.lock().unwrap_or_else(|p| p.into_inner()) = Some(failed.into_response());
            return None;
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let Some(template) = GzipTemplate::new(&bytes, nonce.as_bytes()) else {
        *rendered_here.lock().unwrap_or_else(|p| p.into_inner()) = Some(Response::from_parts(parts, Body::from(bytes)));
        return None;
    };
    Some(Arc::new(CachedPage { headers: parts.headers, body: template }))
}

impl CachedPage {
    fn answer(&self, nonce: &str, gzip: bool) -> Response {
        let body = if gzip { self.body.gzip(nonce.as_bytes()) } else { self.body.plain(nonce.as_bytes()) };
        let mut answer = Response::new(Body::from(body));
        *answer.headers_mut() = self.headers.clone();
        if gzip {
            answer.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        answer.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
        answer
    }
}

/// The cache key of a page request that may be kept: the page, its query (only the page's own
/// choices, so the set stays small), and what identifies the viewer.
fn key(req: &Request) -> Option<String> {
    let path = req.uri().path();
    if req.method() != Method::GET || !CACHED_PAGES.contains(&path) {
        return None;
    }
    let query = req.uri().query().unwrap_or("");
    let known = query.split('&').filter(|p| !p.is_empty()).all(|pair| match pair.split_once('=') {
        Some(("range", v)) => RANGES.contains(&v),
        Some(("window", v)) => WINDOWS.contains(&v),
        _ => false,
    });
    if !known {
        return None;
    }
    let h = req.headers();
    let mut key = format!("{path}?{query}");
    // What tells viewers apart (auth.rs): the session cookie, or an authenticating proxy's headers.
    for name in std::iter::once(header::COOKIE.as_str()).chain(PROXY_HEADERS) {
        for v in h.get_all(name) {
            key.push('\n');
            key.push_str(name);
            key.push(':');
            key.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
    }
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    key.push_str(&format!("\npeer:{peer:?}"));
    Some(key)
}

/// Whether the client takes gzip (`Accept-Encoding`, a q of 0 refusing it).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q = parts.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
        },
    )
}
