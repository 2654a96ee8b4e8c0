//! The overview page's answer: every service at once, the charts drawn from their results.

use crate::api::overview::{AdoptionSummary, ChartView, Overview};
use crate::api::window::Window;

use super::charts::{draw_svg, rollout};
use super::error::Source;
use super::service;
use super::state::AppState;

pub const CHART_SIZE: (u32, u32) = (960, 320);

/// The records chart's bucket for a range: a few dozen to a few hundred points.
pub fn records_step(range: Window) -> Window {
    let m = range.as_minutes();
    let step = if m <= 6 * 60 {
        Window::minutes(if m <= 60 { 5 } else { 15 })
    } else if m <= 7 * 24 * 60 {
        Window::hours(1)
    } else if m <= 30 * 24 * 60 {
        Window::hours(6)
    } else {
        Window::days(1)
    };
    step.unwrap_or(range)
}

/// The overview for a viewer; `signed_in`: whether they may see patients' ids.
pub async fn overview(state: &AppState, range: &str, window: &str, signed_in: bool) -> Result<Overview, String> {
    let range_w: Window =
        range.parse().map(Window::snapped).map_err(|e: crate::api::window::BadWindow| format!("range: {e}"))?;
    let window_w: Window =
        window.parse().map(Window::snapped).map_err(|e: crate::api::window::BadWindow| format!("window: {e}"))?;
    let step = records_step(range_w);
    // Each boxed, so that the joined future stays small wherever it is polled.
    let (status, summary, doubled, alerts, adoption, series, history, events, versions, crossover, totals) = tokio::join!(
        Box::pin(service::status(state)),
        Box::pin(service::records_summary(state, window_w)),
        Box::pin(service::doubled_records(state, 20)),
        Box::pin(service::alerts(state)),
        Box::pin(service::adoption(state, range_w)),
        Box::pin(service::records_series(state, range_w, step)),
        Box::pin(service::flag_history(state, range_w)),
        Box::pin(service::autopilot_events(state, range_w)),
        Box::pin(service::client_versions(state, range_w)),
        Box::pin(service::crossover(state, signed_in)),
        Box::pin(service::dose_totals(state, signed_in)),
    );
    // Markers only: without them the charts still say what they measure.
    let history = history.unwrap_or_default();
    let events = events.unwrap_or_default();
    let prom_caption = format!(
        "Prometheus: {} and {}, last {range}, UTC",
        state.settings.metrics.split_rate("…"),
        state.settings.metrics.legacy_rate("…"),
    );
    let (usage, share) = match &adoption {
        Ok(a) => {
            let u = draw_svg(&rollout::usage(a, &history, &events, state.flags.version_field()), CHART_SIZE);
            let s = draw_svg(&rollout::legacy_share(a, &history, &events, state.flags.version_field()), CHART_SIZE);
            (
                chart("usage", "Split versus legacy doses", Some(u), &prom_caption, None),
                chart("share", "Legacy share", Some(s), &prom_caption, None),
            )
        }
        Err(e) => (
            chart("usage", "Split versus legacy doses", None, &prom_caption, Some(e.to_string())),
            chart("share", "Legacy share", None, &prom_caption, Some(e.to_string())),
        ),
    };
    let records = records_chart(state, &series, range, step);
    let by_version = versions_chart(state, &versions, range);
    let (usage, share) = (
        ChartView { source: Source::Prometheus.key().into(), ..usage },
        ChartView { source: Source::Prometheus.key().into(), ..share },
    );
    Ok(Overview {
        status,
        range: range.to_string(),
        window: window.to_string(),
        summary: summary.map_err(|e| e.to_string()),
        doubled: doubled.map_err(|e| e.to_string()),
        alerts: alerts.map_err(|e| e.to_string()),
        adoption: adoption
            .map(|a| AdoptionSummary { current_share: a.current_share, target: a.target, check: a.check })
            .map_err(|e| e.to_string()),
        charts: vec![usage, share, records, by_version],
        versions: versions.map_err(|e| e.to_string()),
        crossover: crossover.map_err(|e| e.to_string()),
        dose_totals: totals.map_err(|e| e.to_string()),
        // A kill that has not landed is said above everything (none shown when the state
        // database cannot be read: the status panels say that).
        pending_kills: super::kill_requests::pending(&state.state_db).await.unwrap_or_default(),
    })
}

/// `history_records` per step over the range, from the rollup.
fn records_chart(
    state: &AppState,
    series: &Result<crate::api::records::RecordSeries, super::error::SourceError>,
    range: &str,
    step: Window,
) -> ChartView {
    let caption = format!(
        "PostgreSQL: {} counted per {step} over the last {range} (created_at, UTC); doubled rows drawn on their own; \
         the current, unfinished {step} is not drawn",
        state.settings.schema.table
    );
    let view = match series {
        Ok(s) => chart("records", "history_records", Some(draw_svg(&rollout::records(s), CHART_SIZE)), &caption, None),
        Err(e) => chart("records", "history_records", None, &caption, Some(e.to_string())),
    };
    ChartView { source: Source::DiaryDatabase.key().into(), ..view }
}

/// Legacy doses per second by app version.
fn versions_chart(
    state: &AppState,
    versions: &Result<crate::api::versions::ClientVersions, super::error::SourceError>,
    range: &str,
) -> ChartView {
    let s = &state.settings.client_versions;
    let caption = format!("Prometheus: {} and {} by {}, last {range}, UTC", s.legacy_counter, s.split_counter, s.label);
    let title = "Legacy doses by app version";
    let view = match versions {
        Ok(v) => {
            let drawn = draw_svg(&super::charts::versions::legacy_by_version(v), CHART_SIZE);
            chart("versions", title, Some(drawn), &caption, None)
        }
        Err(e) => chart("versions", title, None, &caption, Some(e.to_string())),
    };
    ChartView { source: Source::Prometheus.key().into(), ..view }
}

fn chart(
    id: &str,
    title: &str,
    drawn: Option<super::charts::Drawn>,
    caption: &str,
    error: Option<String>,
) -> ChartView {
    ChartView {
        id: id.into(),
        title: title.into(),
        points: drawn.as_ref().map(|d| d.points).unwrap_or(0),
        svg: drawn.map(|d| d.svg),
        caption: caption.into(),
        error,
        source: String::new(),
    }
}
