//! Requests as a browser sends them: the site's own origin, a users file to sign in with, forms.

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

/// The site's own origin: state-changing requests must come from it.
pub const ORIGIN: &str = "http://127.0.0.1:3000";

/// A users file in `dir` with ana (operator, password `operator-pw`) and bo (viewer, `viewer-pw`).
pub fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    use rollout_dashboard::server::auth::hash_password;
    let path = dir.join("users.toml");
    std::fs::write(
        &path,
        format!(
            "[[users]]\nname = \"ana\"\nrole = \"operator\"\npassword_hash = \"{}\"\n\n\
             [[users]]\nname = \"bo\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
            hash_password("operator-pw"),
            hash_password("viewer-pw")
        ),
    )
    .unwrap();
    path
}

/// A form POST of `body` to `path`, from `origin`, with the session `cookie` if any.
pub async fn post_form(
    app: &axum::Router,
    path: &str,
    body: &str,
    origin: &str,
    cookie: Option<&str>,
) -> axum::response::Response {
    let mut req =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded").header("origin", origin);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap()
}
