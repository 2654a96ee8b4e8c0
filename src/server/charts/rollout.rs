//! The rollout's charts, built from the same service answers the API returns.

use crate::api::adoption::Adoption;
use crate::api::alerts::FlagObservation;
use crate::api::audit::AuditEntry;
use crate::api::records::RecordSeries;

use super::{palette, Chart, Line, Marker, MarkerKind, TimeZoneOffset};

/// Flag observations as (time, percentage) points, starting at the left edge of the chart.
fn flag_points(history: &[FlagObservation], x0: f64) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|o| o.percentage.map(|p| ((o.observed_at.timestamp() as f64).max(x0), f64::from(p))))
        .collect()
}

/// A marker per flag change; `version_field` is what the flag's backend calls its version.
fn flag_markers(history: &[FlagObservation], version_field: &str, x0: f64) -> Vec<Marker> {
    history
        .windows(2)
        .filter(|w| w[1].observed_at.timestamp() as f64 >= x0)
        .map(|w| Marker {
            at: w[1].observed_at.timestamp() as f64,
            text: format!(
                "flag {} → {} ({}, {version_field} {})\n{}",
                w[0].raw.as_deref().unwrap_or("?"),
                w[1].raw.as_deref().unwrap_or("?"),
                w[1].source,
                w[1].version.as_deref().unwrap_or("?"),
                match (&w[1].changed_by, &w[1].reason) {
                    (Some(who), Some(why)) => format!("by {who}: {why}"),
                    (Some(who), None) => format!("by {who}, no reason given"),
                    _ => "changed outside the dashboard".to_string(),
                }
            ),
            kind: MarkerKind::FlagChange,
        })
        .collect()
}

/// The flag changes and, beside them, the autopilot's events (start, pause, dismissal, kill,
/// end): the audit entries `service::autopilot_events` returns.
fn markers(history: &[FlagObservation], events: &[AuditEntry], version_field: &str, x0: f64) -> Vec<Marker> {
    let mut all = flag_markers(history, version_field, x0);
    all.extend(events.iter().filter(|e| e.at.timestamp() as f64 >= x0).map(|e| {
        let what = e.action.strip_prefix("autopilot.").unwrap_or(&e.action);
        let mut text = format!("autopilot {what}, by {}", e.actor);
        for part in [&e.value_after, &e.reason, &e.outcome_detail].into_iter().flatten() {
            text.push('\n');
            text.push_str(part);
        }
        Marker { at: e.at.timestamp() as f64, text, kind: MarkerKind::Autopilot }
    }));
    all
}

/// Split and legacy doses per second, with the rollout percentage as a step line.
pub fn usage(a: &Adoption, history: &[FlagObservation], events: &[AuditEntry], version_field: &str) -> Chart {
    let x0 = a.range_start.timestamp() as f64;
    Chart {
        title: "Split versus legacy doses".into(),
        y_label: "doses per second".into(),
        x_range: (x0, a.range_end.timestamp() as f64),
        step: a.step_secs,
        lines: vec![
            Line {
                name: "split (insulin_short / insulin_long)".into(),
                color: palette::BLUE,
                points: a.split_per_s.clone(),
                step: false,
                unit: "/s",
                thick: false,
            },
            Line {
                name: "legacy (dose)".into(),
                color: palette::ORANGE,
                points: a.legacy_per_s.clone(),
                step: false,
                unit: "/s",
                thick: false,
            },
        ],
        secondary: vec![Line {
            name: "rollout %".into(),
            color: palette::GREY,
            points: flag_points(history, x0),
            step: true,
            unit: "%",
            thick: false,
        }],
        secondary_label: Some("rollout percentage".into()),
        thresholds: vec![],
        markers: markers(history, events, version_field, x0),
        tz: TimeZoneOffset::UTC,
    }
}

/// Legacy share over time against the target.
pub fn legacy_share(a: &Adoption, history: &[FlagObservation], events: &[AuditEntry], version_field: &str) -> Chart {
    let x0 = a.range_start.timestamp() as f64;
    Chart {
        title: "Legacy share of dose writes".into(),
        y_label: "legacy share, %".into(),
        x_range: (x0, a.range_end.timestamp() as f64),
        step: a.step_secs,
        lines: vec![Line {
            name: "legacy / (legacy + split)".into(),
            color: palette::ORANGE,
            points: a.legacy_share.iter().map(|(t, v)| (*t, v * 100.0)).collect(),
            step: false,
            unit: "%",
            thick: true,
        }],
        secondary: vec![],
        secondary_label: None,
        thresholds: vec![(a.target * 100.0, format!("target {:.1} %", a.target * 100.0))],
        markers: markers(history, events, version_field, x0),
        tz: TimeZoneOffset::UTC,
    }
}

/// history_records per bucket: split, legacy-only, and the forbidden doubled rows.
pub fn records(s: &RecordSeries) -> Chart {
    let step = s.buckets.first().map(|b| (b.end - b.start).num_seconds() as f64).unwrap_or(3600.0);
    // Plotted at the bucket's middle, so a point stands for the whole bucket.
    let at = |b: &crate::api::records::RecordBucket| b.start.timestamp() as f64 + step / 2.0;
    // The last bucket is still filling up; drawn, it would look like a collapse.
    let finished = &s.buckets[..s.buckets.iter().take_while(|b| b.end <= s.range_end).count()];
    let series = |f: &dyn Fn(&crate::api::records::RecordBucket) -> Option<i64>| -> Vec<(f64, f64)> {
        finished.iter().filter_map(|b| f(b).map(|v| (at(b), v as f64))).collect()
    };
    let split =
        series(&|b| Some(b.counts.total - b.counts.legacy_only - b.counts.empty - b.counts.doubled.unwrap_or(0)));
    Chart {
        title: format!("history_records per {}", s.step),
        y_label: format!("records per {}", s.step),
        x_range: (s.range_start.timestamp() as f64, s.range_end.timestamp() as f64),
        step,
        lines: vec![
            Line {
                name: "split parts".into(),
                color: palette::BLUE,
                points: split,
                step: false,
                unit: "",
                thick: false,
            },
            Line {
                name: "legacy dose only".into(),
                color: palette::ORANGE,
                points: series(&|b| Some(b.counts.legacy_only)),
                step: false,
                unit: "",
                thick: false,
            },
            Line {
                name: "doubled (forbidden)".into(),
                color: palette::VERMILLION,
                points: series(&|b| b.counts.doubled),
                step: false,
                unit: "",
                thick: true,
            },
        ],
        secondary: vec![],
        secondary_label: None,
        thresholds: vec![],
        markers: vec![],
        tz: TimeZoneOffset::UTC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::audit::Action;

    fn observed(minute: i64, raw: &str, version: &str, source: &str) -> FlagObservation {
        FlagObservation {
            observed_at: chrono::DateTime::from_timestamp(1_700_000_000 + minute * 60, 0).unwrap(),
            raw: Some(raw.into()),
            percentage: raw.parse().ok(),
            version: Some(version.into()),
            source: source.into(),
            changed_by: Some("ana".into()),
            reason: Some("step two".into()),
        }
    }

    #[test]
    fn a_flag_marker_names_the_version_as_the_backend_calls_it() {
        let history = [observed(0, "5", "41", "launchdarkly"), observed(5, "25", "42", "launchdarkly")];
        let markers = flag_markers(&history, "version", 0.0);
        assert_eq!(markers.len(), 1);
        assert_eq!(markers[0].text, "flag 5 → 25 (launchdarkly, version 42)\nby ana: step two");
        let markers = flag_markers(&history, "resourceVersion", 0.0);
        assert!(markers[0].text.contains("(launchdarkly, resourceVersion 42)"), "{}", markers[0].text);
    }

    #[test]
    fn autopilot_events_become_markers_of_their_own_beside_the_flag_changes() {
        let history = [observed(0, "5", "41", "configmap"), observed(5, "25", "42", "configmap")];
        let event = |minute: i64, action: &str, detail: &str| AuditEntry {
            id: minute,
            at: chrono::DateTime::from_timestamp(1_700_000_000 + minute * 60, 0).unwrap(),
            actor: "autopilot".into(),
            role: "system".into(),
            action: action.into(),
            target: String::new(),
            value_before: None,
            value_after: None,
            reason: None,
            outcome: crate::api::audit::Outcome::Done,
            outcome_detail: Some(detail.into()),
            request_id: None,
            run_id: None,
            plan_id: None,
        };
        let events = [
            event(-3, Action::AutopilotStart.as_str(), "too early"),
            event(7, Action::AutopilotPause.as_str(), "sample_ratio failed"),
        ];
        let all = markers(&history, &events, "resourceVersion", 1_700_000_000.0);
        let kinds: Vec<_> = all.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [MarkerKind::FlagChange, MarkerKind::Autopilot], "the event before the chart is left out");
        assert_eq!(all[1].text, "autopilot pause, by autopilot\nsample_ratio failed");
        assert_eq!(all[1].at, 1_700_000_420.0);
    }
}
