//! The rehearsal's panel (issue 33, item 5), drawn by the server inside the run's region, so it
//! follows a rehearsal every second. Its button is heard by the controls' island
//! (`data-rehearse`; the fill checkbox `data-testid="rehearse-fill"`).

use leptos::prelude::*;

use crate::api::rehearsal::{RehearsalState, RehearsalView, Rehearsals};
use crate::components::panel::Panel;

#[component]
pub fn RehearsalPanel(r: Result<Rehearsals, String>, operator: bool) -> impl IntoView {
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            return view! {
                <Panel title="Rehearsal" id="rollback-rehearsal" error=None>
                    <p class="source-error" role="alert">{format!("The rehearsals cannot be read: {e}")}</p>
                </Panel>
            }
            .into_any()
        }
    };
    let running = r.latest.as_ref().is_some_and(|l| l.state == RehearsalState::Running);
    let class = match r.latest.as_ref().map(|l| l.state) {
        Some(RehearsalState::Passed) => "rehearsal-passed",
        Some(RehearsalState::Failed) => "source-error",
        _ => "detail",
    };
    let why_not = r.unavailable.clone().or_else(|| running.then(|| "a rehearsal is running".to_string()));
    let disabled = !operator || why_not.is_some();
    view! {
        <Panel title="Rehearsal" id="rollback-rehearsal" error=None>
            <p class=class data-testid="rehearsal-summary" data-state=r.latest.as_ref().map(|l| l.state.as_str())>
                <strong>{r.summary.clone()}</strong>
            </p>
            <p class="detail">
                "The newest backup restored into a scratch database of its own; there the archive, the downgrade, \
                 its verification, the split revision back and the re-apply, each timed; passed when every record \
                 comes back. The live diary is never touched."
            </p>
            {r.required_by_autopilot.clone().map(|t| view! { <p class="detail" data-testid="rehearsal-required">{t}</p> })}
            {r.unavailable.clone().map(|u| view! { <p class="disabled-reason" data-testid="rehearsal-unavailable">{u}</p> })}
            <div>
                <label><input type="checkbox" id="rehearse-fill" data-testid="rehearse-fill" disabled=disabled/>
                    " With the fill of dose from insulin_short (and its undo)"</label>
            </div>
            <button type="button" data-rehearse="true" data-testid="rehearse" disabled=disabled>"Rehearse now"</button>
            {r.latest.map(|l| view! { <Latest l/> })}
        </Panel>
    }
    .into_any()
}

#[component]
fn Latest(l: RehearsalView) -> impl IntoView {
    let failure = l.failure.clone();
    view! {
        <div data-testid="rehearsal-latest" data-rehearsal-id=l.id>
            <p class="detail">{format!(
                "#{} asked by {}{}",
                l.id,
                l.requested_by,
                if l.fill_dose { ", with the fill" } else { "" }
            )}</p>
            {failure.map(|f| view! { <p class="source-error" data-testid="rehearsal-failure">{f}</p> })}
            <table class="data" data-testid="rehearsal-parts">
                <thead><tr><th>"Part"</th><th class="num">"Seconds"</th><th>""</th><th>"What it did"</th></tr></thead>
                <tbody>
                    {l.parts.into_iter().map(|p| { let name = p.name.clone(); view! {
                        <tr data-part=name>
                            <td>{p.name}</td>
                            <td class="num">{format!("{:.1}", p.seconds)}</td>
                            <td>{if p.passed { "passed" } else { "failed" }}</td>
                            <td><pre class="step-output">{p.detail}</pre></td>
                        </tr>
                    }}).collect_view()}
                </tbody>
            </table>
            {(!l.categories.is_empty()).then(|| view! {
                <table class="data" data-testid="rehearsal-categories">
                    <thead><tr>
                        <th>"Category (before)"</th><th class="num">"Rows"</th><th class="num">"Back as they were"</th>
                        <th class="num">"Kept legacy"</th><th class="num">"Changed"</th><th class="num">"Gone"</th>
                        <th class="num">"The guide's plan loses"</th><th>"Checksum before / after"</th>
                    </tr></thead>
                    <tbody>
                        {l.categories.into_iter().map(|c| { let category = c.category.clone(); view! {
                            <tr data-category=category>
                                <td>{c.category.replace('_', " ")}</td>
                                <td class="num">{c.rows}</td>
                                <td class="num">{c.identical}</td>
                                <td class="num">{c.kept_legacy}</td>
                                <td class="num">{c.changed}</td>
                                <td class="num">{c.gone}</td>
                                <td class="num">{c.guide_plan_loses}</td>
                                <td><code>{c.checksum_before}</code>" / "<code>{c.checksum_after}</code></td>
                            </tr>
                        }}).collect_view()}
                    </tbody>
                </table>
            })}
        </div>
    }
}
