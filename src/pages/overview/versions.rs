//! The overview's table of app versions: which versions still write the legacy `dose`, and
//! adoption by version, over the chart range.

use leptos::prelude::*;

use crate::api::numbers::count;
use crate::api::versions::ClientVersions;
use crate::components::panel::Panel;
use crate::components::time::{self, Shown};

fn share(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1} %", v * 100.0)).unwrap_or_else(|| "—".into())
}

#[component]
pub fn VersionsPanel(versions: Result<ClientVersions, String>, range: String, since: Option<String>) -> impl IntoView {
    let title = "App versions (Prometheus)";
    let v = match versions {
        Ok(v) => v,
        Err(e) => {
            return view! { <Panel title id="versions" error=Some(e) since=since><p>"Versions unknown."</p></Panel> }
                .into_any()
        }
    };
    let seen = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| time::utc(t, Shown::MonthDayMinutes)).unwrap_or_else(|| "—".into())
    };
    let csv = format!("/api/v1/adoption/versions.csv?range={range}");
    view! {
        <Panel title id="versions" error=None updated=v.range_end class="panel-wide">
            {v.violations.first().map(|_| view! {
                <p class="bad-text" role="alert" data-testid="versions-violations">
                    {format!("Set as split-only ({}) yet writing the legacy dose: {}.",
                        v.split_only.clone().unwrap_or_default(), v.violations.join(", "))}
                </p>
            })}
            <p data-testid="versions-blame">{v.blame.clone().unwrap_or_else(|| format!("No legacy write in the last {range}."))}</p>
            <table class="data versions" data-testid="versions-table">
                <thead><tr>
                    <th>{v.label.clone()}</th><th class="num">"Legacy writes"</th><th class="num">"Split writes"</th>
                    <th class="num">"Legacy share of its writes"</th><th class="num">"Share of all legacy"</th>
                    <th>"First seen (UTC)"</th><th>"Last seen (UTC)"</th>
                </tr></thead>
                <tbody>
                    {v.versions.iter().map(|r| view! {
                        <tr data-version=r.version.clone() class:bad-row={r.split_only && r.legacy_writes > 0}>
                            <td>{r.version.clone()}{r.split_only.then_some(" (split-only)")}</td>
                            <td class="num">{count(r.legacy_writes)}</td>
                            <td class="num">{count(r.split_writes)}</td>
                            <td class="num">{share(r.legacy_share)}</td>
                            <td class="num">{share(r.share_of_legacy)}</td>
                            <td>{seen(r.first_seen)}</td>
                            <td>{seen(r.last_seen)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <p class="detail">{format!("Writes over the last {range} by the counters' {} label ({} legacy, {} split). ",
                v.label, count(v.legacy_writes), count(v.split_writes))}
                <a href=csv download="">"CSV"</a></p>
        </Panel>
    }
    .into_any()
}
