//! A Slack-compatible incoming webhook: text and blocks.

use serde_json::{json, Value};

use super::super::super::config::Severity;
use super::super::event::Event;
use super::super::receivers::{answer, clip, Origin};
use super::{Delivery, Kind, Sending};

pub struct Slack;

impl Kind for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn deliver<'a>(&'a self, d: Delivery<'a>) -> Sending<'a> {
        Box::pin(async move {
            Ok(answer(d.receiver.request(reqwest::Method::POST, "").json(&slack_body(d.event, d.origin))).await)
        })
    }
}

/// Slack's mrkdwn gives `&`, `<` and `>` meaning (`<!channel>` pings everyone, `<url|text>` is a
/// link): in what people typed (a reason) they are escaped, as Slack asks.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Slack's incoming webhook: `text` (the notification's fallback) and `blocks` (a header, the
/// fields, a context line), within Slack's limits (header 150 characters, field 2,000).
pub fn slack_body(event: &Event, origin: &Origin) -> Value {
    let icon = match event.severity {
        Severity::Critical => ":red_circle:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
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

#[cfg(test)]
mod tests {
    use super::super::super::receivers::tests::{event, origin};
    use super::*;

    #[test]
    fn what_people_typed_cannot_ping_or_link_in_slack() {
        assert_eq!(
            slack_escape("<!channel> see <http://evil|here> & more"),
            "&lt;!channel&gt; see &lt;http://evil|here&gt; &amp; more"
        );
    }

    #[test]
    fn the_body_has_a_text_a_header_and_fields() {
        let s = slack_body(&event(), &origin());
        assert!(s["text"].as_str().unwrap().contains("Kill switch: rollout 25 → 0 % by autopilot"), "{s}");
        assert_eq!(s["blocks"][0]["type"], "header");
        assert_eq!(s["blocks"][1]["fields"][0]["text"], "*by*\nautopilot (system)");
    }
}
