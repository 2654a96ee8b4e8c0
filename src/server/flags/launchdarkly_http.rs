//! The LaunchDarkly REST API client, call by call as its published OpenAPI specification says
//! (launchdarkly/api-client-go, `api/openapi.yaml`; the spec's words are quoted where the
//! behaviour is not obvious). The flag's representation and the patch it needs are in
//! `launchdarkly_api.rs`.
//!
//! - Every call sends `LD-API-Version` explicitly, so a token created for another version cannot
//!   change the shapes under us: "You can set the API version on a specific request by sending an
//!   `LD-API-Version` header ... The header value is the version number ... in `yyyymmdd` format."
//! - The write is a JSON Patch whose first operation tests the environment's `version`. The spec's
//!   own example tests a field without an underscore (`{ "op": "test", "path": "/version", ... }`)
//!   and says "Attributes that are not editable ... have names that start with an underscore";
//!   the flag's `_version` also moves when another environment is edited, so the lock is
//!   `/environments/{env}/version`, which moves only with this environment.
//! - 429 ("Rate limited"): waits until `X-Ratelimit-Reset` ("The time at which the current rate
//!   limit window resets in epoch milliseconds") or `Retry-After`, and tries again while the source
//!   timeout allows; past it, says when the limit resets.
//! - 405 ("Approval is required to make this request") and 400 for a clash with a pending
//!   scheduled change or approval request (the `ignoreConflicts` parameter: "the patch will be
//!   applied even if it causes a pending scheduled change or approval request to fail"; the
//!   dashboard never sets it) are sentences that tell the operator what to do.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::super::config::{Secret, Settings};
use super::super::error::SourceError;
use super::super::redact::outside_error;
use super::launchdarkly_api::{Flag, Reading, SOURCE};

/// The API version every request asks for (`LD-API-Version`).
pub const API_VERSION: &str = "20240415";

#[derive(Clone)]
pub struct LaunchDarkly {
    http: reqwest::Client,
    base: String,
    project: String,
    environment: String,
    flag: String,
    token: Secret,
    timeout: Duration,
}

/// Why a patch did not apply.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// LaunchDarkly refused the version test (the flag moved on before the write).
    Conflict(String),
    Source(SourceError),
}

impl LaunchDarkly {
    pub fn new(settings: &Settings, token: Option<&Secret>, timeout: Duration) -> Result<LaunchDarkly, SourceError> {
        let token = token.cloned().ok_or(SourceError::NotConfigured {
            system: SOURCE,
            hint: "set LAUNCHDARKLY_API_TOKEN to an access token with writer rights on the flag",
        })?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: outside_error(e) })?;
        let ld = &settings.flag.launchdarkly;
        Ok(LaunchDarkly {
            http,
            base: ld.base_url.trim_end_matches('/').to_string(),
            project: ld.project.clone(),
            environment: ld.environment.clone(),
            flag: settings.flag.launchdarkly_key().to_string(),
            token,
            timeout,
        })
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn flag_key(&self) -> &str {
        &self.flag
    }

    fn url(&self) -> String {
        format!("{}/api/v2/flags/{}/{}", self.base, self.project, self.flag)
    }

    /// Sends `req` with the token and the API version; a 429 is waited out and retried while the
    /// source timeout allows.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Vec<u8>), SourceError> {
        let req = req.header("authorization", self.token.expose()).header("ld-api-version", API_VERSION);
        let deadline = Instant::now() + self.timeout;
        loop {
            let attempt = req.try_clone().expect("LaunchDarkly requests have buffered bodies");
            let resp = attempt
                .send()
                .await
                .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: outside_error(e) })?;
            if resp.status().as_u16() != 429 {
                return read(resp).await;
            }
            let wait = rate_limit_wait(resp.headers(), chrono::Utc::now().timestamp_millis());
            if Instant::now() + wait > deadline {
                let (_, body) = read(resp).await?;
                return Err(SourceError::Rejected {
                    system: SOURCE,
                    detail: format!(
                        "HTTP 429: rate limited ({}); the limit resets in {:.1} s, after this request's {} s; try again then",
                        ld_message(&body),
                        wait.as_secs_f64(),
                        self.timeout.as_secs()
                    ),
                });
            }
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "LaunchDarkly rate-limited a request; waiting for its reset"
            );
            tokio::time::sleep(wait).await;
        }
    }

    pub async fn flag(&self) -> Result<Flag, SourceError> {
        let (status, body) = self.send(self.http.get(self.url()).query(&[("env", &self.environment)])).await?;
        if !status.is_success() {
            return Err(rejected(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| SourceError::Malformed { system: SOURCE, detail: format!("flag representation: {e}") })
    }

    pub async fn read(&self) -> Result<Reading, SourceError> {
        self.flag().await?.reading(&self.environment)
    }

    /// Applies `ops` only if the environment is still at `version`.
    pub async fn patch(&self, version: i64, ops: Vec<Value>, comment: &str) -> Result<(), PatchError> {
        let path = format!("/environments/{}/version", self.environment);
        let mut patch = vec![json!({"op": "test", "path": path, "value": version})];
        patch.extend(ops);
        let req = self
            .http
            .patch(self.url())
            .header("content-type", "application/json")
            .json(&json!({"comment": comment, "patch": patch}));
        let (status, body) = self.send(req).await.map_err(PatchError::Source)?;
        match status.as_u16() {
            200..=299 => Ok(()),
            409 => Err(PatchError::Conflict(ld_message(&body))),
            405 => Err(PatchError::Source(SourceError::Rejected {
                system: SOURCE,
                detail: format!(
                    "changes to this flag in {} need an approval (HTTP 405: {}). Request the change in LaunchDarkly, \
                     where an approver can apply it; the dashboard does not bypass approvals",
                    self.environment,
                    ld_message(&body)
                ),
            })),
            400 if clashes_with_pending(&body) => Err(PatchError::Source(SourceError::Rejected {
                system: SOURCE,
                detail: format!(
                    "the change clashes with a scheduled change or an approval request pending on this flag \
                     (HTTP 400: {}). Review the flag's scheduled changes and approvals in LaunchDarkly, then try again",
                    ld_message(&body)
                ),
            })),
            _ => Err(PatchError::Source(rejected(status, &body))),
        }
    }
}

/// How long a 429 asks to wait: `Retry-After` seconds, else until `X-Ratelimit-Reset` (epoch
/// milliseconds), else one second; at least 50 ms.
pub fn rate_limit_wait(headers: &reqwest::header::HeaderMap, now_ms: i64) -> Duration {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let ms = match (get("retry-after"), get("x-ratelimit-reset")) {
        (Some(secs), _) => secs.saturating_mul(1000),
        (None, Some(reset)) => reset - now_ms,
        (None, None) => 1000,
    };
    Duration::from_millis(ms.max(50) as u64)
}

/// A 400 about a pending scheduled change or approval request.
fn clashes_with_pending(body: &[u8]) -> bool {
    let m = ld_message(body).to_lowercase();
    m.contains("scheduled") || m.contains("pending") || m.contains("approval request")
}

async fn read(resp: reqwest::Response) -> Result<(reqwest::StatusCode, Vec<u8>), SourceError> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| SourceError::Unreachable { system: SOURCE, detail: outside_error(e) })?;
    Ok((status, body.to_vec()))
}

/// LaunchDarkly errors are `{"code": "...", "message": "..."}`.
fn ld_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct LdError {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<LdError>(body) {
        Ok(LdError { message: Some(m), code }) => match code {
            Some(c) => format!("{m} ({c})"),
            None => m,
        },
        _ => "no error message".into(),
    }
}

fn rejected(status: reqwest::StatusCode, body: &[u8]) -> SourceError {
    SourceError::Rejected { system: SOURCE, detail: format!("HTTP {}: {}", status.as_u16(), ld_message(body)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_is_waited_out_by_its_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(rate_limit_wait(&h, 0), Duration::from_secs(1));
        h.insert("x-ratelimit-reset", "1764000000750".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, 1_764_000_000_000), Duration::from_millis(750));
        assert_eq!(rate_limit_wait(&h, 1_764_000_001_000), Duration::from_millis(50), "already reset");
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, 1_764_000_000_000), Duration::from_secs(2));
    }

    #[test]
    fn a_clash_with_pending_changes_is_recognised() {
        assert!(clashes_with_pending(
            br#"{"code":"invalid_request","message":"conflicts with a pending scheduled change"}"#
        ));
        assert!(!clashes_with_pending(br#"{"code":"invalid_request","message":"invalid JSON patch"}"#));
    }
}
