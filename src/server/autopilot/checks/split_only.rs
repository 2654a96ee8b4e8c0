//! The built-in check `split_only_versions`.

use chrono::{DateTime, Utc};

use crate::api::autopilot::Verdict;

use super::super::super::error::Source;
use super::super::super::service::ask;
use super::super::super::state::AppState;
use super::super::super::versions::{violations, writes_at};
use super::{Check, Found, Look, Round};

/// No app version set as split-only (`client_versions.split_only`) wrote a legacy dose in the
/// last `WINDOW_SECS`. The unit is a write (a version that writes even one legacy dose ignores
/// the split); without the setting it passes and says so.
pub struct SplitOnlyVersions;

pub const WINDOW_SECS: i64 = 300;

impl Check for SplitOnlyVersions {
    fn name(&self) -> &'static str {
        "split_only_versions"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(split_only(r.state, r.now))
    }
}

async fn split_only(state: &AppState, now: DateTime<Utc>) -> Found {
    let s = &state.settings.client_versions;
    let Some(rule) = s.split_only_rule() else {
        return Found {
            verdict: Verdict::Pass,
            value: None,
            threshold: "no version set as split-only".into(),
            sample: None,
            query: String::new(),
            detail: "client_versions.split_only is not set: no version is expected to write only split doses".into(),
        };
    };
    let requirement = s.split_only.clone().unwrap_or_default();
    let threshold = format!("0 legacy writes from versions {requirement} in {WINDOW_SECS} s");
    let prom = match state.prometheus.as_ref() {
        Ok(p) => p,
        Err(e) => return Found::inconclusive(threshold, "", e),
    };
    match ask(state, Source::Prometheus, writes_at(prom, s, WINDOW_SECS, now)).await {
        Err(e) => Found::inconclusive(threshold, "", e),
        Ok((writes, queries)) => {
            let found = violations(&writes, Some(&rule));
            let legacy: i64 = found.iter().map(|(_, n)| n).sum();
            Found {
                verdict: if found.is_empty() { Verdict::Pass } else { Verdict::Fail },
                value: Some(legacy as f64),
                threshold,
                sample: Some(writes.iter().map(|w| (w.legacy + w.split).round() as i64).sum()),
                query: queries[1].clone(),
                detail: if found.is_empty() {
                    format!("no version {requirement} wrote a legacy dose in the last {WINDOW_SECS} s")
                } else {
                    let list: Vec<String> = found.iter().map(|(v, n)| format!("{v} wrote {n}")).collect();
                    format!(
                        "versions set as split-only ({requirement}) wrote legacy doses in the last {WINDOW_SECS} s: {}",
                        list.join(", ")
                    )
                },
            }
        }
    }
}
