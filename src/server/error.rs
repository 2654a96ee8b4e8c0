//! Errors as values: what went wrong with an outside system (shown in its panel), and what a
//! REST client gets back (a status code and a stable JSON body).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The outside systems the dashboard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Prometheus,
    DiaryDatabase,
    StateDatabase,
    Kubernetes,
    LaunchDarkly,
}

impl Source {
    /// A stable identifier, for metrics labels and JSON keys.
    pub fn key(self) -> &'static str {
        match self {
            Source::Prometheus => "prometheus",
            Source::DiaryDatabase => "diary_database",
            Source::StateDatabase => "state_database",
            Source::Kubernetes => "kubernetes",
            Source::LaunchDarkly => "launchdarkly",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Prometheus => "Prometheus",
            Source::DiaryDatabase => "the diary database",
            Source::StateDatabase => "the state database",
            Source::Kubernetes => "Kubernetes",
            Source::LaunchDarkly => "LaunchDarkly",
        }
    }
}

/// Why one outside system gave no usable answer. Its Display is the sentence users read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("{} is not configured: {hint}", .system.name())]
    NotConfigured { system: Source, hint: &'static str },
    #[error("{} did not answer within {} s", .system.name(), seconds(*.after))]
    Timeout { system: Source, after: Duration },
    #[error("{} is unreachable: {detail}", .system.name())]
    Unreachable { system: Source, detail: String },
    #[error("{} refused the request: {detail}", .system.name())]
    Rejected { system: Source, detail: String },
    #[error("{} answered in a form the dashboard cannot read: {detail}", .system.name())]
    Malformed { system: Source, detail: String },
    #[error("{detail}")]
    Missing { system: Source, detail: String },
    /// Answering needs history not counted yet (the first count after a start); not a fault.
    #[error("{} is still being counted: {detail}", .system.name())]
    Counting { system: Source, detail: String },
}

impl SourceError {
    pub fn system(&self) -> Source {
        match self {
            SourceError::NotConfigured { system, .. }
            | SourceError::Timeout { system, .. }
            | SourceError::Unreachable { system, .. }
            | SourceError::Rejected { system, .. }
            | SourceError::Malformed { system, .. }
            | SourceError::Missing { system, .. }
            | SourceError::Counting { system, .. } => *system,
        }
    }
}

/// "5" for whole seconds, "0.3" otherwise.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", d.as_secs_f64())
    }
}

/// Runs `fut` with the per-source time limit.
pub async fn within<T>(
    source: Source,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(SourceError::Timeout { system: source, after: limit }),
    }
}

/// A state-database error. The state database is the one a bare `?` names: every store module
/// (audit, runs, plans, notifications, kills) writes `query.fetch_one(db).await?`. The diary
/// database's queries (`records/`) name their source themselves (`from_sqlx(SOURCE, &e)`).
impl From<sqlx::Error> for SourceError {
    fn from(e: sqlx::Error) -> SourceError {
        db_err(e)
    }
}

/// Maps a state-database error to a sentence; connection strings never appear in it (for a
/// result returned as it is, where `?` has nothing to carry).
pub fn db_err(e: sqlx::Error) -> SourceError {
    from_sqlx(Source::StateDatabase, &e)
}

pub fn from_sqlx(source: Source, e: &sqlx::Error) -> SourceError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => {
            SourceError::Unreachable { system: source, detail: short_sqlx(e) }
        }
        sqlx::Error::Database(db) => SourceError::Rejected { system: source, detail: db.message().to_string() },
        _ => SourceError::Unreachable { system: source, detail: short_sqlx(e) },
    }
}

fn short_sqlx(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "no connection could be made (timed out)".into(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// What a REST client gets: `{"error": "...", "code": "..."}` with a matching status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String, details: Option<serde_json::Value> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(SourceError),
    /// The outside system answered, but the change did not happen as asked.
    #[error("{0}")]
    Failed(String),
}

/// An outside system that failed is the API's 503 with the system's own sentence.
impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        ApiError::Unavailable(e)
    }
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Failed(_) => StatusCode::BAD_GATEWAY,
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Unavailable(_) => "backend_unavailable",
            ApiError::Failed(_) => "backend_failed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::warn!(code = self.code(), "request failed: {self}");
        let mut body = json!({"error": self.to_string(), "code": self.code()});
        if let ApiError::Conflict { details: Some(d), .. } = &self {
            body["details"] = d.clone();
        }
        (self.status_code(), Json(body)).into_response()
    }
}
