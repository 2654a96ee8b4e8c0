//! A receiver ready to send (its settings, secrets, client and kind), and how any receiver's
//! answer is read. What each kind is sent is its own file under `kinds/`.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::super::config::{ReceiverSettings, Secret};
use super::event::Event;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx; Grafana also says the annotation's id.
    Delivered { status: u16, annotation_id: Option<i64> },
    /// 4xx other than 408 and 429: sending the same again would not help.
    Rejected { status: u16, detail: String },
    /// No answer, 408, 429 or 5xx: try again later (no sooner than `retry_after` if said).
    Failed { status: Option<u16>, detail: String, retry_after: Option<Duration> },
}

impl Answer {
    /// Whether it was delivered, the HTTP status if any, and what went wrong (for the attempt's
    /// record).
    pub fn summary(&self) -> (bool, Option<u16>, Option<String>) {
        match self {
            Answer::Delivered { status, .. } => (true, Some(*status), None),
            Answer::Rejected { status, detail } => (false, Some(*status), Some(detail.clone())),
            Answer::Failed { status, detail, .. } => (false, *status, Some(detail.clone())),
        }
    }

    /// The outcome's name in `/metrics` (`rollout_dashboard_notifications_total{outcome}`).
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Delivered { .. } => "delivered",
            Answer::Rejected { .. } => "rejected",
            Answer::Failed { .. } => "failed",
        }
    }
}

/// A receiver ready to send: its settings and its secrets, read once at start.
#[derive(Clone)]
pub struct Receiver {
    pub settings: ReceiverSettings,
    url: Secret,
    secret: Option<Secret>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("name", &self.settings.name).finish_non_exhaustive()
    }
}

/// Where the event happened, in every message.
#[derive(Debug, Clone)]
pub struct Origin {
    pub environment: String,
    pub flag: String,
}

impl Receiver {
    /// None, with the reason, when a secret the settings name is not set.
    pub fn new(
        settings: &ReceiverSettings,
        secrets: &std::collections::BTreeMap<String, Secret>,
    ) -> Result<Receiver, String> {
        let read = |name: &str| {
            secrets.get(name).cloned().ok_or_else(|| format!("receiver {}: {name} is not set", settings.name))
        };
        let url = match (&settings.url, &settings.url_env) {
            (Some(u), _) => Secret::new(u.trim_end_matches('/')),
            (None, Some(env)) => read(env)?,
            (None, None) => return Err(format!("receiver {}: no url", settings.name)),
        };
        let secret = settings.secret_env.as_deref().map(read).transpose()?;
        // No redirects: a receiver that moved answers 3xx, which is shown, never followed to
        // wherever it points (with the event and its signature).
        let client = reqwest::Client::builder()
            .timeout(settings.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("receiver {}: {}", settings.name, crate::server::redact::outside_error(e)))?;
        Ok(Receiver { settings: settings.clone(), url, secret, client })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// A request to the receiver's URL with `path` appended (Grafana's and Alertmanager's APIs).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url.expose()))
    }

    /// The key the settings name in `secret_env` (the webhook's HMAC key, Grafana's token).
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }
}

/// The id receivers may use to drop a repeated delivery (at least once means sometimes twice).
pub fn delivery_id(r: &Receiver, event: &Event) -> String {
    format!("{}-{}", r.name(), event.entry.id)
}

/// `t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with
/// the shared key and rejects a stale `t` (replays).
pub fn signature(key: &Secret, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},sha256={hex}")
}

/// The most of a receiver's answer read: enough for an error message or Grafana's id.
const ANSWER_CAP: usize = 16 * 1024;

/// At most `cap` bytes of the answer's body (the rest is not read).
async fn capped_text(mut resp: reqwest::Response, cap: usize) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]);
        if body.len() >= cap {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = format!("cannot reach it: {}", crate::server::redact::outside_error(e));
            return Answer::Failed { status: None, detail: what, retry_after: None };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = capped_text(resp, ANSWER_CAP).await;
    // What the receiver answered may echo the URL it was called on (its secret).
    let said = crate::server::redact::without_urls(text.trim());
    let detail = format!("HTTP {status} in {} ms: {}", started.elapsed().as_millis(), clip(&said, 200));
    match status {
        200..=299 => {
            let annotation_id = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["id"].as_i64());
            Answer::Delivered { status, annotation_id }
        }
        // 401, 403 and 404: the receiver refuses *us* (a revoked token, a moved webhook), not the
        // event: kept and retried with back-off, and raised as `NotificationReceiverRefusing`.
        401 | 403 | 404 | 408 | 429 | 500..=599 => Answer::Failed { status: Some(status), detail, retry_after },
        _ => Answer::Rejected { status, detail },
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::api::audit::Action;
    use crate::api::audit::{AuditEntry, Outcome};

    pub fn event() -> Event {
        Event::of(&AuditEntry {
            id: 41,
            at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            actor: "autopilot".into(),
            role: "system".into(),
            action: Action::FlagKill.as_str().into(),
            target: "feature-flags/insulin_dose_split".into(),
            value_before: Some("25".into()),
            value_after: Some("0".into()),
            reason: Some("autopilot plan #3: doubled_doses failed".into()),
            outcome: Outcome::Done,
            outcome_detail: None,
            request_id: Some("r-1".into()),
            run_id: None,
            plan_id: None,
        })
        .unwrap()
    }

    pub fn origin() -> Origin {
        Origin { environment: "demo".into(), flag: "insulin_dose_split".into() }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let s = signature(&Secret::new("key"), 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(s, "t=1700000000,sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03");
    }

    #[test]
    fn long_texts_are_clipped_to_slacks_limits() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
