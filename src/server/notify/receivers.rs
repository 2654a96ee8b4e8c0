//! What each kind of receiver is sent, and how its answer is read. The request bodies follow the
//! receivers' published shapes: a signed JSON webhook (ours, documented in the README), Slack's
//! incoming webhooks (text and blocks), Grafana's `POST /api/annotations` and
//! `PATCH /api/annotations/{id}`, and Alertmanager's `POST /api/v2/alerts` (alerting.rs).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::super::config::{ReceiverKind, ReceiverSettings, Secret};
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

    pub fn kind(&self) -> ReceiverKind {
        self.settings.kind
    }

    /// Sends one event (webhook, Slack, Grafana point annotation).
    pub async fn send(&self, event: &Event, origin: &Origin) -> Answer {
        match self.settings.kind {
            ReceiverKind::Webhook => {
                let body = webhook_body(event, origin).to_string();
                let mut req = self.client.post(self.url.expose()).header("content-type", "application/json");
                req = req.header("x-rollout-event", event.name).header("x-rollout-delivery", delivery_id(self, event));
                if let Some(key) = &self.secret {
                    req = req.header("x-rollout-signature", signature(key, chrono::Utc::now().timestamp(), &body));
                }
                answer(req.body(body)).await
            }
            ReceiverKind::Slack => answer(self.client.post(self.url.expose()).json(&slack_body(event, origin))).await,
            ReceiverKind::Grafana => {
                let body = grafana_body(event, origin, None);
                answer(self.grafana(reqwest::Method::POST, "/api/annotations").json(&body)).await
            }
            ReceiverKind::Alertmanager => Answer::Rejected { status: 0, detail: "alerts are sent by condition".into() },
        }
    }

    /// Grafana: closes a region annotation at `end_ms`.
    pub async fn close_region(&self, annotation_id: i64, end_ms: i64) -> Answer {
        let path = format!("/api/annotations/{annotation_id}");
        answer(self.grafana(reqwest::Method::PATCH, &path).json(&json!({ "timeEnd": end_ms }))).await
    }

    fn grafana(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.url.expose()));
        match &self.secret {
            Some(token) => req.bearer_auth(token.expose()),
            None => req,
        }
    }

    /// Alertmanager: posts alerts (firing or resolved).
    pub async fn post_alerts(&self, alerts: &Value) -> Answer {
        answer(self.client.post(format!("{}/api/v2/alerts", self.url.expose())).json(alerts)).await
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

/// The generic webhook's JSON body (README: "Notifications").
pub fn webhook_body(event: &Event, origin: &Origin) -> Value {
    let e = &event.entry;
    json!({
        "id": e.id,
        "event": event.name,
        "severity": event.severity.as_str(),
        "title": event.title,
        "at": e.at.to_rfc3339(),
        "environment": origin.environment,
        "flag": origin.flag,
        "actor": e.actor,
        "role": e.role,
        "target": e.target,
        "before": e.value_before,
        "after": e.value_after,
        "reason": e.reason,
        "detail": e.outcome_detail,
        "request_id": e.request_id,
    })
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

/// Slack's mrkdwn gives `&`, `<` and `>` meaning (`<!channel>` pings everyone, `<url|text>` is a
/// link): in what people typed (a reason) they are escaped, as Slack asks.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's incoming webhook: `text` (the notification's fallback) and `blocks` (a header, the
/// fields, a context line), within Slack's limits (header 150 characters, field 2,000).
pub fn slack_body(event: &Event, origin: &Origin) -> Value {
    let icon = match event.severity {
        super::super::config::Severity::Critical => ":red_circle:",
        super::super::config::Severity::Warning => ":warning:",
        super::super::config::Severity::Info => ":information_source:",
    };
    let fields: Vec<Value> = event
        .details()
        .into_iter()
        .map(|(k, v)| json!({ "type": "mrkdwn", "text": clip(&format!("*{k}*\n{}", slack_escape(&v)), 2000) }))
        .collect();
    json!({
        "text": format!("{icon} [{}] {}", origin.environment, slack_escape(&event.title)),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": clip(&event.title, 150), "emoji": true } },
            { "type": "section", "fields": fields },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!(
                "{icon} {} · {} · flag `{}` · audit entry #{}", event.severity.as_str(), origin.environment, origin.flag, event.entry.id) } ] },
        ],
    })
}

/// Grafana's annotation: a point at the event, or a region when `end_ms` is given.
pub fn grafana_body(event: &Event, origin: &Origin, end_ms: Option<i64>) -> Value {
    let mut text = event.title.clone();
    for (k, v) in event.details() {
        text.push_str(&format!("\n{k}: {v}"));
    }
    let mut body = json!({
        "time": event.entry.at.timestamp_millis(),
        "tags": ["rollout", origin.flag, event.name, event.severity.as_str(), origin.environment],
        "text": text,
    });
    if let Some(end) = end_ms {
        body["timeEnd"] = json!(end);
    }
    body
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
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
mod tests {
    use super::*;
    use crate::api::audit::Action;
    use crate::api::audit::{AuditEntry, Outcome};

    #[test]
    fn what_people_typed_cannot_ping_or_link_in_slack() {
        assert_eq!(
            slack_escape("<!channel> see <http://evil|here> & more"),
            "&lt;!channel&gt; see &lt;http://evil|here&gt; &amp; more"
        );
    }

    fn event() -> Event {
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
        })
        .unwrap()
    }

    fn origin() -> Origin {
        Origin { environment: "demo".into(), flag: "insulin_dose_split".into() }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let s = signature(&Secret::new("key"), 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(s, "t=1700000000,sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03");
    }

    #[test]
    fn bodies_carry_what_each_receiver_documents() {
        let w = webhook_body(&event(), &origin());
        assert_eq!(
            (w["id"].as_i64(), w["event"].as_str(), w["severity"].as_str()),
            (Some(41), Some(Action::FlagKill.as_str()), Some("critical"))
        );
        assert_eq!((w["before"].as_str(), w["after"].as_str()), (Some("25"), Some("0")));
        let s = slack_body(&event(), &origin());
        assert!(s["text"].as_str().unwrap().contains("Kill switch: rollout 25 → 0 % by autopilot"), "{s}");
        assert_eq!(s["blocks"][0]["type"], "header");
        assert_eq!(s["blocks"][1]["fields"][0]["text"], "*by*\nautopilot (system)");
        let g = grafana_body(&event(), &origin(), Some(1_764_000_060_000));
        assert_eq!(g["time"], 1_764_000_000_000i64);
        assert_eq!(g["timeEnd"], 1_764_000_060_000i64);
        assert_eq!(g["tags"], json!(["rollout", "insulin_dose_split", Action::FlagKill, "critical", "demo"]));
    }

    #[test]
    fn long_texts_are_clipped_to_slacks_limits() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
