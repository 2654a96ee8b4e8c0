//! The overview's panel of each patient's daily insulin total before and after their move to
//! the split path, and the short-versus-legacy consistency; which patients only for a signed-in
//! viewer.

use leptos::prelude::*;

use crate::api::numbers::count;
use crate::api::patients::DoseTotals;
use crate::components::panel::Panel;

fn share(part: i64, of: i64) -> String {
    if of > 0 {
        format!("{:.1} %", part as f64 * 100.0 / of as f64)
    } else {
        "–".into()
    }
}

#[component]
pub fn DoseTotalsPanel(totals: Result<DoseTotals, String>, since: Option<String>) -> impl IntoView {
    let title = "Daily dose totals, before and after the move (history_records)";
    let t = match totals {
        Ok(t) => t,
        Err(e) => {
            return view! { <Panel title id="dose-totals" error=Some(e) since=since><p>"Not counted."</p></Panel> }
                .into_any()
        }
    };
    // Red as the check would fail: enough patients compared, and too many of them changed.
    let over = t.both_sides >= t.min_patients && t.changed as f64 > t.max_changed_share * t.both_sides as f64;
    let days = match (t.from, t.to) {
        (Some(f), Some(to)) => format!("{f} to {to} (UTC)"),
        _ => "no whole day yet".into(),
    };
    let c = t.consistency.clone();
    view! {
        <Panel title id="dose-totals" error=None class="panel-wide">
            <p class="detail">{format!(
                "Each patient's mean daily short total over up to {n} whole days after their first split record (insulin_short) \
                 against up to {n} whole days before it (legacy dose, the short dose), with at least {m} on each side; days {days}. \
                 The autopilot's dose_totals check fails when more than {:.1} % of the patients compared changed by ×{f} or more.",
                t.max_changed_share * 100.0, n = t.days_each_side, m = t.min_days, f = t.factor)}</p>
            <p data-testid="dose-totals-summary" class:bad-text={over}>
                <strong>{count(t.changed)}</strong>{format!(" of {} patients compared ({}) changed their daily short total by ×{} or more; ",
                    count(t.both_sides), share(t.changed, t.both_sides), t.factor)}
                <strong>{count(t.no_long_after)}</strong>" logged no long dose after the move; "
                {format!("{} moved in these days; median after/before {}.", count(t.moved),
                    t.median_ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into()))}
            </p>
            <table class="data" data-testid="dose-totals-buckets">
                <thead><tr><th>"Short total after/before"</th><th class="num">"Patients"</th><th class="num">"Share"</th></tr></thead>
                <tbody>
                    {t.buckets.iter().map(|b| view! {
                        <tr data-bucket=b.label.clone()><td>{b.label.clone()}</td><td class="num">{count(b.patients)}</td>
                            <td class="num">{share(b.patients, t.both_sides)}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
            <p class="detail" data-testid="dose-consistency">{format!(
                "Short doses in the patient's own legacy range (widened ×{} both ways): {} of {} split patient days ({}); shown, not acted on.",
                c.scale, count(c.in_range), count(c.patient_days), share(c.in_range, c.patient_days))}</p>
            {match t.examples {
                None => view! { <p class="detail" data-testid="dose-totals-sign-in">"Sign in to see which patients changed."</p> }.into_any(),
                Some(v) if v.is_empty() => view! { <p class="detail">"No patient compared changed by the factor."</p> }.into_any(),
                Some(v) => view! {
                    <table class="data" data-testid="dose-totals-examples">
                        <thead><tr><th>"user_id"</th><th>"Moved (UTC)"</th><th class="num">"Short before /day"</th>
                            <th class="num">"Short after /day"</th><th class="num">"Long after /day"</th><th class="num">"After/before"</th><th class="num">"Days"</th></tr></thead>
                        <tbody>
                            {v.into_iter().map(|e| view! {
                                <tr>
                                    <td>{e.user_id}</td>
                                    <td>{e.moved.to_string()}</td>
                                    <td class="num">{format!("{:.1} U", e.short_before)}</td>
                                    <td class="num">{format!("{:.1} U", e.short_after)}</td>
                                    <td class="num">{format!("{:.1} U", e.long_after)}</td>
                                    <td class="num">{format!("{:.2}", e.ratio)}</td>
                                    <td class="num">{format!("{} + {}", e.days_before, e.days_after)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </Panel>
    }
    .into_any()
}
