//! The overview's panel of patients who cross over between the legacy and the split path within
//! a day; which patients only for a signed-in viewer.

use leptos::prelude::*;

use crate::api::numbers::count;
use crate::api::patients::Crossover;
use crate::components::panel::Panel;
use crate::components::time::{self, Shown};

#[component]
pub fn CrossoverPanel(crossover: Result<Crossover, String>, since: Option<String>) -> impl IntoView {
    let title = "Patients who cross over (history_records)";
    let c = match crossover {
        Ok(c) => c,
        Err(e) => {
            return view! { <Panel title id="crossover" error=Some(e) since=since><p>"Not counted."</p></Panel> }
                .into_any()
        }
    };
    let limit = c.max_back_share;
    view! {
        <Panel title id="crossover" error=None class="panel-wide">
            <p class="detail">"Per day (UTC): patients with both a legacy and a split record; those who went "
                <strong>"back"</strong>" wrote a legacy record after a split one the same day (a flapping flag, an unstable bucket, a second phone on an old app). "
                {format!("The share is of the day's patients on the split path; the autopilot's crossover check fails above {:.2} %.", limit * 100.0)}</p>
            <table class="data crossover" data-testid="crossover-table">
                <thead><tr><th>"Day"</th><th class="num">"Active patients"</th><th class="num">"On the split path"</th>
                    <th class="num">"Crossed"</th><th class="num">"Went back"</th><th class="num">"Share back"</th></tr></thead>
                <tbody>
                    {c.days.iter().rev().filter(|d| d.active > 0).map(|d| {
                        let share = if d.exposed > 0 { d.back as f64 / d.exposed as f64 } else { 0.0 };
                        view! {
                            <tr data-day=d.day.to_string() class:bad-row={share > limit}>
                                <td>{d.day.to_string()}{(!d.complete).then_some(" (so far)")}</td>
                                <td class="num">{count(d.active)}</td>
                                <td class="num">{count(d.exposed)}</td>
                                <td class="num">{count(d.crossing)}</td>
                                <td class="num">{count(d.back)}</td>
                                <td class="num">{format!("{:.2} %", share * 100.0)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {match c.examples {
                None => view! { <p class="detail" data-testid="crossover-sign-in">"Sign in to see which patients went back."</p> }.into_any(),
                Some(v) if v.is_empty() => view! { <p class="detail" data-testid="crossover-examples-none">"Nobody went back today or yesterday."</p> }.into_any(),
                Some(v) => view! {
                    <p class="detail">"The newest who went back (today and yesterday):"</p>
                    <table class="data" data-testid="crossover-examples">
                        <thead><tr><th>"user_id"</th><th>"First split (UTC)"</th><th>"Last legacy (UTC)"</th><th>"Their records that day"</th></tr></thead>
                        <tbody>
                            {v.into_iter().map(|e| view! {
                                <tr>
                                    <td>{e.user_id}</td>
                                    <td>{time::utc(e.first_split, Shown::MonthDayMinutes)}</td>
                                    <td>{time::utc(e.last_legacy, Shown::MonthDayMinutes)}</td>
                                    <td>{e.categories}</td>
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
