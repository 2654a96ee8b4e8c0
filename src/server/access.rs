//! Who may call what: one table for every REST route and every server function. The handlers
//! and services enforce it (the role is checked in the service layer, whatever the page showed);
//! the authorization test walks this table as anonymous, viewer and operator.

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can reach the dashboard, signed in or not: reading, and signing in and out.
    Anyone,
    /// Anyone signed in, as viewer or operator (who am I: 401 for nobody).
    SignedIn,
    /// An operator: everything that changes the rollout, the rollback or the deploy journal.
    Operator,
}

/// (method, path with example parameters, access). Paths with `{...}` in the router appear here
/// with a concrete value.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Anyone),
    ("GET", "/readyz", Access::Anyone),
    ("GET", "/metrics", Access::Anyone),
    ("GET", "/api/v1/status", Access::Anyone),
    ("GET", "/api/v1/records/summary", Access::Anyone),
    ("GET", "/api/v1/records/series", Access::Anyone),
    ("GET", "/api/v1/records/doubled", Access::Anyone),
    ("GET", "/api/v1/adoption", Access::Anyone),
    ("GET", "/api/v1/alerts", Access::Anyone),
    ("GET", "/api/v1/flag/history", Access::Anyone),
    ("GET", "/api/v1/me", Access::SignedIn),
    ("GET", "/api/v1/rollout", Access::Anyone),
    ("POST", "/api/v1/rollout", Access::Operator),
    ("POST", "/api/v1/rollout/kill", Access::Operator),
    ("GET", "/api/v1/audit", Access::Anyone),
    ("GET", "/api/v1/audit.csv", Access::Anyone),
    ("GET", "/api/v1/rollback", Access::Anyone),
    ("POST", "/api/v1/rollback", Access::Operator),
    ("POST", "/api/v1/rollback/plan", Access::Anyone),
    ("GET", "/api/v1/rollback/1", Access::Anyone),
    ("POST", "/api/v1/rollback/1/retry", Access::Operator),
    ("POST", "/api/v1/rollback/1/skip", Access::Operator),
    ("POST", "/api/v1/rollback/1/abort", Access::Operator),
    ("POST", "/api/v1/rollback/1/approve", Access::Operator),
    ("GET", "/api/v1/incidents/1.md", Access::Anyone),
    ("GET", "/api/v1/deploys", Access::Anyone),
    ("POST", "/api/v1/deploys", Access::Operator),
    ("GET", "/api/v1/reports/insulin-units.csv", Access::Anyone),
    ("POST", "/auth/login", Access::Anyone),
    ("POST", "/auth/logout", Access::Anyone),
];

/// Server functions (the pages' door onto the same services), by endpoint name under `/api/`.
pub const SERVER_FNS: &[(&str, Access)] = &[
    ("overview", Access::Anyone),
    ("status", Access::Anyone),
    ("me", Access::Anyone),
    ("audit", Access::Anyone),
    ("rollout", Access::Anyone),
    ("rollout_set", Access::Operator),
    ("rollout_kill", Access::Operator),
    ("rollback", Access::Anyone),
    ("rollback_run", Access::Anyone),
    ("rollback_progress", Access::Anyone),
    ("rollback_start", Access::Operator),
    ("rollback_act", Access::Operator),
    ("deploy_record", Access::Operator),
    ("reports", Access::Anyone),
];
