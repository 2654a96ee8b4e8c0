//! The autopilot: the plan's steps with where it stands and when the next step is due, every
//! check with its verdict, value, threshold, sample and query, and what operators may do.

//! The autopilot: the plan's steps with where it stands and when the next step is due, every
//! check with its verdict, value, threshold, sample and query, and what operators may do.
//!
//! Everything shown is rendered on the server, in one region the controls' island
//! (`controls.rs`) has the server draw again every 2 seconds and after each action; the actions
//! go through the REST API, the same door as `curl`. First in the region: a kill that has not
//! landed, then a plan watching at 100 %.

use leptos::prelude::*;

use crate::api::auth::Role;
use crate::api::autopilot::{AutopilotView, Evaluation, PlanAction, PlanState, PlanStep, PlanView, Verdict};
use crate::components::panel::Panel;
use crate::components::time::{self, Shown};

mod controls;

use controls::AutopilotControls;

/// The region drawn again by the island, with whether a plan is active as an attribute (the
/// start form is offered only when none is).
pub const REGION: &str = "autopilot-region";

/// The page, rendered on the server with the plan; the controls are the island around it.
#[component]
pub fn AutopilotPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_autopilot());
    view! {
        <h1 class="page-title">"Autopilot"</h1>
        <Transition fallback=|| view! { <p class="loading">"Reading the plan…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => view! { <Autopilot v/> }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn is_active(v: &AutopilotView) -> bool {
    v.plan.as_ref().is_some_and(|p| matches!(p.state, PlanState::Running | PlanState::Paused))
}

#[component]
fn Autopilot(v: AutopilotView) -> impl IntoView {
    let operator = v.me.as_ref().is_some_and(|m| m.role == Role::Operator);
    let active = is_active(&v);
    let defaults = v.defaults.iter().map(typed_step).collect::<Vec<_>>().join(", ");
    view! {
        <AutopilotControls operator active defaults>
            <Region v/>
        </AutopilotControls>
        <p class="detail">"The autopilot never runs the schema downgrade: dropping the split columns loses data. "
            <a href="/rollback">"The guided rollback"</a>" is for a person to start."</p>
    }
}

/// What the autopilot does and sees now: drawn on the server, for the first load and each redraw.
#[component]
fn Region(v: AutopilotView) -> impl IntoView {
    let operator = v.me.as_ref().is_some_and(|m| m.role == Role::Operator);
    let watching = v.plan.as_ref().is_some_and(|p| p.watching);
    view! {
        <div id=REGION data-active=is_active(&v).to_string()>
            {v.pending_kills.iter().map(|k| view! { <p class="source-error kill-failing" role="alert" data-testid="kill-failing">{k.sentence()}</p> }).collect_view()}
            {watching.then(|| view! { <p class="warning" data-testid="plan-watching">"Watching at 100 %: the guide's legacy-share target is judged over the watch window before the plan is done."</p> })}
            {(!operator).then(|| view! { <p class="disabled-reason" data-testid="autopilot-disabled">"Sign in as an operator to steer the autopilot."</p> })}
            {v.plan.clone().map(|p| {
                // The medical checks cannot be dismissed: they are not offered.
                let checks: Vec<String> = v
                    .latest
                    .iter()
                    .map(|e| e.check.clone())
                    .filter(|c| !crate::api::autopilot::KILL_CLASS.contains(&c.as_str()))
                    .collect();
                view! { <PlanPanel p operator checks/> }
            })}
            <Checks latest=v.latest.clone() interval=v.interval_secs/>
            <History history=v.history.clone()/>
            <CheckCharts charts=v.charts.clone()/>
        </div>
    }
}

/// A bake time in its largest whole unit, with the unit names given (seconds, minutes, hours,
/// days): `bake(5400, ["s", "m", "h", "d"])` is `90m`.
fn bake(secs: u64, units: [&str; 4]) -> String {
    let (n, unit) = [(86400, units[3]), (3600, units[2]), (60, units[1])]
        .into_iter()
        .find(|(size, _)| secs.is_multiple_of(*size))
        .map(|(size, unit)| (secs / size, unit))
        .unwrap_or((secs, units[0]));
    format!("{n}{unit}")
}

/// A step as the start form's text: `5 24h` (what `plan::parse_steps` reads).
fn typed_step(s: &PlanStep) -> String {
    format!("{} {}", s.percentage, bake(s.bake_secs, ["s", "m", "h", "d"]))
}

fn percent_and_bake(s: &PlanStep) -> String {
    format!("{} % for {}", s.percentage, bake(s.bake_secs, [" s", " min", " h", " d"]))
}

/// The plan and, for an operator, its buttons: their clicks are heard by the island, which reads
/// the reason and the chosen check from the fields by id (`autopilot-reason`, `autopilot-check`).
#[component]
fn PlanPanel(p: PlanView, operator: bool, checks: Vec<String>) -> impl IntoView {
    let state = p.state;
    let button = |action: PlanAction, label: &'static str, class: &'static str| {
        view! {
            <button type="button" class=class data-plan-action=action.as_str() data-testid=format!("autopilot-{}", action.as_str())>{label}</button>
        }
    };
    view! {
        <Panel title="Plan" id="autopilot-plan" error=None>
            <p data-testid="plan-state" class=format!("run-state run-{state}")>{format!("Plan #{}: {state}", p.id)}</p>
            <p class="detail">{format!("Started by {}: {}", p.actor, p.reason)}</p>
            {p.guard_override.clone().map(|g| view! { <p class="detail">{format!("Failed guards overridden for this plan: {g}")}</p> })}
            {p.pause_reason.clone().map(|r| view! { <p class="disabled-reason" data-testid="plan-why">{r}</p> })}
            {p.next_due.map(|t| view! { <p data-testid="plan-next-due">"Next step due (if every check keeps passing): "{time::utc(t, Shown::DateMinutes)}" UTC"</p> })}
            <ol class="steps">
                {p.steps.iter().enumerate().map(|(i, s)| {
                    let i = i as i32;
                    let status = match (i.cmp(&p.current_step), p.state) {
                        (std::cmp::Ordering::Less, _) => "done",
                        (std::cmp::Ordering::Equal, PlanState::Running) => "running",
                        (std::cmp::Ordering::Equal, s) => s.as_str(),
                        (std::cmp::Ordering::Greater, _) => "pending",
                    };
                    let when = p.schedule.get(i as usize).copied().flatten();
                    view! {
                        <li class=format!("step step-{status}") data-testid=format!("plan-step-{}", i + 1) data-state=status>
                            <span class="step-title">{format!("{}. {}", i + 1, percent_and_bake(s))}</span>
                            <span class="step-state">{status}</span>
                            {when.filter(|_| i >= p.current_step).map(|t| view! { <span class="detail">{format!(" · from {} UTC", time::utc(t, Shown::DateMinutes))}</span> })}
                        </li>
                    }
                }).collect_view()}
            </ol>
            {(operator && matches!(state, PlanState::Running | PlanState::Paused)).then(|| view! {
                <div class="run-actions">
                    <label class="field">"Reason (required to promote or dismiss; recorded)"
                        <input type="text" id="autopilot-reason" data-testid="autopilot-reason"/>
                    </label>
                    {(state == PlanState::Running).then(|| button(PlanAction::Pause, "Pause", ""))}
                    {(state == PlanState::Paused).then(|| button(PlanAction::Resume, "Resume", "primary"))}
                    {(state == PlanState::Running).then(|| button(PlanAction::Promote, "Promote now", ""))}
                    <label class="field">"Dismiss a failing check for this step"
                        <select id="autopilot-check" data-testid="autopilot-check">
                            <option value="">"(choose a check)"</option>
                            {checks.clone().into_iter().map(|c| view! { <option value=c.clone()>{c.clone()}</option> }).collect_view()}
                        </select>
                    </label>
                    {button(PlanAction::Dismiss, "Dismiss and continue", "")}
                    {button(PlanAction::Abort, "Abort the plan", "danger")}
                </div>
            })}
        </Panel>
    }
}

#[component]
fn Checks(latest: Vec<Evaluation>, interval: u64) -> impl IntoView {
    view! {
        <Panel title="Checks" id="autopilot-checks" error=None>
            <p class="detail">{format!("Evaluated every {interval} s. Inconclusive is never a pass: the step holds.")}</p>
            {latest.is_empty().then(|| view! { <p class="detail" data-testid="checks-none">"No evaluation yet."</p> })}
            <div class="table-scroll">
                <table class="audit" data-testid="checks-table">
                    <thead><tr><th>"Check"</th><th>"Verdict"</th><th>"Value"</th><th>"Threshold"</th><th>"Sample"</th><th>"On failure"</th><th>"Detail and query"</th></tr></thead>
                    <tbody>
                        {latest.into_iter().map(|e| {
                            let bad = e.verdict == Verdict::Fail;
                            view! {
                                <tr class:outcome-failed=bad data-testid=format!("check-{}", e.check) data-verdict=e.verdict.as_str()>
                                    <td>{e.check.clone()}</td>
                                    <td><strong>{e.verdict.as_str()}</strong>{e.acted.then_some(" (acted)")}</td>
                                    <td>{e.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())}</td>
                                    <td>{e.threshold.clone()}</td>
                                    <td>{e.sample.map(|s| s.to_string()).unwrap_or_else(|| "—".into())}</td>
                                    <td>{e.action.as_str()}</td>
                                    <td>{e.detail.clone()}<br/><code class="query">{e.query.clone()}</code></td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </Panel>
    }
}

/// Each check's recent verdicts, oldest to newest, one mark per round.
#[component]
fn History(history: Vec<Evaluation>) -> impl IntoView {
    let mut names: Vec<String> = history.iter().map(|e| e.check.clone()).collect();
    names.sort();
    names.dedup();
    view! {
        <Panel title="Recent evaluations" id="autopilot-history" error=None>
            <ul class="verdicts">
                {names.into_iter().map(|name| {
                    let marks: String = history.iter().rev().filter(|e| e.check == name).map(|e| match e.verdict {
                        Verdict::Pass => '●',
                        Verdict::Fail => '✗',
                        Verdict::Inconclusive => '○',
                    }).collect();
                    view! { <li><strong>{name.clone()}</strong>" "<span class="marks" title="● pass, ✗ fail, ○ inconclusive">{marks}</span></li> }
                }).collect_view()}
            </ul>
        </Panel>
    }
}

/// Each check's measured values over its recent rounds, failures marked (drawn on the server).
#[component]
fn CheckCharts(charts: Vec<crate::api::autopilot::CheckChart>) -> impl IntoView {
    (!charts.is_empty()).then(|| {
        view! {
            <Panel title="Checks over time" id="autopilot-charts" error=None>
                <div class="check-charts">
                    {charts.into_iter().map(|c| view! {
                        <figure class="chart" data-testid=format!("check-chart-{}", c.check) data-points=c.points.to_string() inner_html=c.svg></figure>
                    }).collect_view()}
                </div>
            </Panel>
        }
    })
}

// ---------------------------------------------------------------- server functions

#[cfg(feature = "ssr")]
use crate::server::fns::{caller, refused};

#[server(endpoint = "autopilot", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_autopilot() -> Result<AutopilotView, ServerFnError> {
    let (state, caller) = caller().await?;
    crate::server::autopilot::Service::new(&state).view(&caller).await.map_err(refused)
}
