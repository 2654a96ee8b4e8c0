//! Who may call what: one table for every REST route, every server function and every page.
//! The server enforces it in two places: [`enforce`] refuses any route that is not in the table
//! (a new route forgotten here is never served), and the services check the role (whatever the
//! page showed), recording every refusal in the audit trail. The authorization test walks this
//! table as anonymous, viewer and operator.

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can reach the dashboard, signed in or not: reading, and signing in and out.
    Anyone,
    /// Anyone signed in, as viewer or operator (who am I: 401 for nobody).
    SignedIn,
    /// An operator: everything that changes the rollout, the rollback or the deploy journal.
    Operator,
    /// A bearer token from the environment, whoever is signed in: Alertmanager's hook.
    Token,
}

/// (method, the router's path, an example of it with concrete parameters, access).
pub const ROUTES: &[(&str, &str, &str, Access)] = &[
    ("GET", "/healthz", "/healthz", Access::Anyone),
    ("GET", "/readyz", "/readyz", Access::Anyone),
    ("GET", "/metrics", "/metrics", Access::Anyone),
    ("GET", "/api/v1/status", "/api/v1/status", Access::Anyone),
    ("GET", "/api/v1/records/summary", "/api/v1/records/summary", Access::Anyone),
    ("GET", "/api/v1/records/series", "/api/v1/records/series", Access::Anyone),
    ("GET", "/api/v1/records/doubled", "/api/v1/records/doubled", Access::Anyone),
    ("GET", "/api/v1/adoption", "/api/v1/adoption", Access::Anyone),
    ("GET", "/api/v1/adoption/versions", "/api/v1/adoption/versions", Access::Anyone),
    ("GET", "/api/v1/adoption/versions.csv", "/api/v1/adoption/versions.csv", Access::Anyone),
    ("GET", "/api/v1/patients/crossover", "/api/v1/patients/crossover", Access::Anyone),
    ("GET", "/api/v1/patients/dose-totals", "/api/v1/patients/dose-totals", Access::Anyone),
    ("GET", "/api/v1/patients/dose-totals.csv", "/api/v1/patients/dose-totals.csv", Access::Anyone),
    ("GET", "/api/v1/alerts", "/api/v1/alerts", Access::Anyone),
    ("GET", "/api/v1/flag/history", "/api/v1/flag/history", Access::Anyone),
    ("GET", "/api/v1/me", "/api/v1/me", Access::SignedIn),
    ("GET", "/api/v1/rollout", "/api/v1/rollout", Access::Anyone),
    ("POST", "/api/v1/rollout", "/api/v1/rollout", Access::Operator),
    ("POST", "/api/v1/rollout/kill", "/api/v1/rollout/kill", Access::Operator),
    ("GET", "/api/v1/audit", "/api/v1/audit", Access::Anyone),
    ("GET", "/api/v1/audit.csv", "/api/v1/audit.csv", Access::Anyone),
    ("GET", "/api/v1/rollback", "/api/v1/rollback", Access::Anyone),
    ("POST", "/api/v1/rollback", "/api/v1/rollback", Access::Operator),
    // The plan's survey counts the diary's rows and runs the backup-status program: signed in.
    ("POST", "/api/v1/rollback/plan", "/api/v1/rollback/plan", Access::SignedIn),
    // What the rehearsal's commands printed: signed in.
    ("GET", "/api/v1/rollback/rehearsals", "/api/v1/rollback/rehearsals", Access::SignedIn),
    ("POST", "/api/v1/rollback/rehearsals", "/api/v1/rollback/rehearsals", Access::Operator),
    ("GET", "/api/v1/rollback/{id}", "/api/v1/rollback/1", Access::Anyone),
    ("POST", "/api/v1/rollback/{id}/{action}", "/api/v1/rollback/1/retry", Access::Operator),
    ("POST", "/api/v1/rollback/{id}/{action}", "/api/v1/rollback/1/skip", Access::Operator),
    ("POST", "/api/v1/rollback/{id}/{action}", "/api/v1/rollback/1/abort", Access::Operator),
    ("POST", "/api/v1/rollback/{id}/{action}", "/api/v1/rollback/1/approve", Access::Operator),
    ("POST", "/api/v1/rollback/{id}/{action}", "/api/v1/rollback/1/scale_back", Access::Operator),
    ("POST", "/api/v1/rollback/{id}/roll_forward/plan", "/api/v1/rollback/1/roll_forward/plan", Access::SignedIn),
    ("POST", "/api/v1/rollback/{id}/roll_forward/apply", "/api/v1/rollback/1/roll_forward/apply", Access::Operator),
    ("GET", "/api/v1/incidents/{file}", "/api/v1/incidents/1.md", Access::Anyone),
    ("GET", "/api/v1/deploys", "/api/v1/deploys", Access::Anyone),
    ("POST", "/api/v1/deploys", "/api/v1/deploys", Access::Operator),
    ("GET", "/api/v1/reports/{file}", "/api/v1/reports/insulin-units.csv", Access::Anyone),
    ("GET", "/api/v1/notifications", "/api/v1/notifications", Access::Anyone),
    ("POST", "/api/v1/notifications/{receiver}/resend", "/api/v1/notifications/pager/resend", Access::Operator),
    ("POST", "/api/v1/hooks/alertmanager", "/api/v1/hooks/alertmanager", Access::Token),
    ("GET", "/api/v1/autopilot", "/api/v1/autopilot", Access::Anyone),
    ("POST", "/api/v1/autopilot", "/api/v1/autopilot", Access::Operator),
    ("POST", "/api/v1/autopilot/{action}", "/api/v1/autopilot/pause", Access::Operator),
    ("POST", "/api/v1/autopilot/{action}", "/api/v1/autopilot/resume", Access::Operator),
    ("POST", "/api/v1/autopilot/{action}", "/api/v1/autopilot/promote", Access::Operator),
    ("POST", "/api/v1/autopilot/{action}", "/api/v1/autopilot/dismiss", Access::Operator),
    ("POST", "/api/v1/autopilot/{action}", "/api/v1/autopilot/abort", Access::Operator),
    ("POST", "/auth/login", "/auth/login", Access::Anyone),
    ("POST", "/auth/logout", "/auth/logout", Access::Anyone),
];

/// Server functions (the pages' door onto the same services), by endpoint name under `/api/`.
pub const SERVER_FNS: &[(&str, Access)] = &[
    ("overview", Access::Anyone),
    ("me", Access::Anyone),
    ("audit", Access::Anyone),
    ("rollout", Access::Anyone),
    ("rollback", Access::Anyone),
    ("rollback_progress", Access::Anyone),
    ("reports", Access::Anyone),
    ("autopilot", Access::Anyone),
    ("notifications", Access::Anyone),
];

/// The pages (leptos routes), open to anyone: their data comes through the server functions.
pub const PAGES: &[&str] = &["/", "/login", "/rollout", "/autopilot", "/rollback", "/audit", "/reports"];

/// Whether a request that the router matched to `template` (its route, as `MatchedPath` says)
/// is in the table: a page, a server function by name, or a REST route.
pub fn is_listed(method: &str, template: &str, path: &str) -> bool {
    let method = if method == "HEAD" { "GET" } else { method };
    if template.starts_with("/api/") && !template.starts_with("/api/v1/") {
        let name = path.strip_prefix("/api/").unwrap_or_default();
        return SERVER_FNS.iter().any(|(n, _)| *n == name);
    }
    if PAGES.contains(&template) {
        return method == "GET";
    }
    ROUTES.iter().any(|(m, route, _, _)| *m == method && *route == template)
}

/// Refuses, with 403 and a JSON body, every routed request whose route is not in the table;
/// requests no route matched (static files, the not-found page) pass on.
pub async fn enforce(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(template) = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    if is_listed(req.method().as_str(), &template, req.uri().path()) {
        return next.run(req).await;
    }
    tracing::error!(method = %req.method(), route = %template, "refused: the route is not in the access table");
    (
        axum::http::StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "this route is not in the dashboard's access table, so nobody may call it",
            "code": "not_in_access_table"
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    async fn status(app: &Router, method: &str, path: &str) -> StatusCode {
        app.clone()
            .oneshot(Request::builder().method(method).uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_route_missing_from_the_table_is_refused_and_listed_ones_are_served() {
        let ok = || async { "ok" };
        let app = Router::new()
            .route("/api/v1/status", get(ok))
            .route("/api/v1/rollback/{id}/{action}", post(ok))
            .route("/api/v1/drop_everything", post(ok))
            .route("/api/{fn_name}", get(ok))
            .route("/", get(ok))
            .route("/secret-page", get(ok))
            .route_layer(axum::middleware::from_fn(enforce))
            .fallback(|| async { "static" });
        assert_eq!(status(&app, "GET", "/api/v1/status").await, StatusCode::OK);
        assert_eq!(status(&app, "HEAD", "/api/v1/status").await, StatusCode::OK);
        assert_eq!(status(&app, "POST", "/api/v1/rollback/7/abort").await, StatusCode::OK);
        assert_eq!(status(&app, "GET", "/api/overview").await, StatusCode::OK);
        assert_eq!(status(&app, "GET", "/").await, StatusCode::OK);
        assert_eq!(status(&app, "GET", "/pkg/app.wasm").await, StatusCode::OK);
        for (method, path) in
            [("POST", "/api/v1/drop_everything"), ("GET", "/secret-page"), ("GET", "/api/unlisted_fn")]
        {
            assert_eq!(status(&app, method, path).await, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }

    #[test]
    fn routes_are_matched_by_the_routers_own_path() {
        assert!(is_listed("POST", "/api/v1/rollback/{id}/{action}", "/api/v1/rollback/3/skip"));
        assert!(is_listed("GET", "/api/v1/reports/{file}", "/api/v1/reports/usage.png"));
        assert!(!is_listed("DELETE", "/api/v1/rollout", "/api/v1/rollout"));
        assert!(!is_listed("POST", "/api/v1/rollback/{id}", "/api/v1/rollback/3"));
        assert!(is_listed("GET", "/api/autopilot", "/api/autopilot"));
        // Removed with the REST door for the rollout's and the autopilot's forms: no longer answered.
        assert!(!is_listed("POST", "/api/rollout_set", "/api/rollout_set"));
        assert!(!is_listed("POST", "/api/autopilot_start", "/api/autopilot_start"));
    }
}

#[cfg(test)]
mod table_tests {
    use super::ROUTES;

    /// Each example is its route with the `{...}` segments filled in.
    #[test]
    fn every_example_fits_its_route() {
        for (method, route, example, _) in ROUTES {
            let (r, e): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), example.split('/').collect());
            let fits =
                r.len() == e.len() && r.iter().zip(&e).all(|(r, e)| r == e || (r.starts_with('{') && r.ends_with('}')));
            assert!(fits, "{method} {example} is not an example of {route}");
        }
    }
}
