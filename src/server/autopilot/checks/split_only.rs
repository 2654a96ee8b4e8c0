//! The built-in check `split_only_versions`.

use chrono::{DateTime, Utc};

use crate::api::autopilot::Verdict;

use super::super::super::error::Source;
use super::super::super::service::ask;
use super::super::super::state::AppState;
use super::super::super::versions::{violations, writes_at, UNLABELLED};
use super::{Check, Found, Look, Round};

/// No app version set as split-only (`client_versions.split_only`) wrote a legacy dose in the
/// last `WINDOW_SECS` since the plan started (writes from before it, e.g. every client falling
/// back while a rollback had the split columns dropped, are not its business; in the plan's first
/// 30 s it looks at the last 30 s). The unit is a write: a version set as split-only that writes
/// even one legacy dose ignores the split. Without the setting it passes and says so; with no
/// series carrying the version label it is inconclusive (missing data is never a pass).
pub struct SplitOnlyVersions;

pub const WINDOW_SECS: i64 = 300;

impl Check for SplitOnlyVersions {
    fn name(&self) -> &'static str {
        "split_only_versions"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(split_only(r.state, r.plan.created_at, r.now))
    }
}

async fn split_only(state: &AppState, since: DateTime<Utc>, now: DateTime<Utc>) -> Found {
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
    // Since the plan started, over at least 30 s (a counter's increase needs two samples).
    let window = (now - since).num_seconds().clamp(30, WINDOW_SECS);
    let prom = match state.prometheus.as_ref() {
        Ok(p) => p,
        Err(e) => return Found::inconclusive(threshold, "", e),
    };
    match ask(state, Source::Prometheus, writes_at(prom, s, window, now)).await {
        Err(e) => Found::inconclusive(threshold, "", e),
        Ok((writes, queries)) if writes.iter().all(|w| w.version == UNLABELLED) => Found::inconclusive(
            threshold,
            queries[1].clone(),
            format!("no series of {} or {} carries the label {}", s.legacy_counter, s.split_counter, s.label),
        ),
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
                    format!("no version {requirement} wrote a legacy dose in the last {window} s")
                } else {
                    let list: Vec<String> = found.iter().map(|(v, n)| format!("{v} wrote {n}")).collect();
                    format!(
                        "versions set as split-only ({requirement}) wrote legacy doses in the last {window} s: {}",
                        list.join(", ")
                    )
                },
            }
        }
    }
}
