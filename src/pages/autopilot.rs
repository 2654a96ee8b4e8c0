//! The autopilot: the plan's steps with where it stands and when the next step is due, every
//! check with its verdict, value, threshold, sample and query, and what operators may do.

use leptos::prelude::*;

use crate::api::auth::Role;
use crate::api::autopilot::{AutopilotView, Evaluation, PlanAction, PlanState, PlanStep, PlanView, Verdict};
use crate::components::panel::Panel;
use crate::components::reread::{reread, ticks};
use crate::components::time::{self, Shown};

/// The page, rendered on the server with the plan; the controls are the island below.
#[component]
pub fn AutopilotPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_autopilot());
    view! {
        <h1 class="page-title">"Autopilot"</h1>
        <Transition fallback=|| view! { <p class="loading">"Reading the plan…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => view! { <AutopilotControls v/> }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// An island, lazy: its code is a wasm chunk of its own, loaded only where this page is shown.
/// It starts from the plan the server rendered (its props) and reads it again every 2 seconds
/// and after each action.
#[island(lazy)]
fn AutopilotControls(v: AutopilotView) -> impl IntoView {
    let start = ServerAction::<StartAutopilot>::new();
    let act = ServerAction::<ActOnAutopilot>::new();
    let tick = ticks(2);
    let shown = reread(v, move || (tick.get(), start.version().get(), act.version().get()), |_| get_autopilot());
    move || match shown.get() {
        Ok(v) => view! { <Autopilot v start act/> }.into_any(),
        Err(e) => view! { <p class="source-error" role="alert">{e}</p> }.into_any(),
    }
}

#[component]
fn Autopilot(
    v: AutopilotView,
    start: ServerAction<StartAutopilot>,
    act: ServerAction<ActOnAutopilot>,
) -> impl IntoView {
    let operator = v.me.as_ref().is_some_and(|m| m.role == Role::Operator);
    let active = v.plan.as_ref().is_some_and(|p| matches!(p.state, PlanState::Running | PlanState::Paused));
    let error = move || {
        let e = act.value().get().and_then(|r| r.err()).or_else(|| start.value().get().and_then(|r| r.err()));
        e.map(|e| view! { <p class="source-error" role="alert" data-testid="autopilot-error">{e.to_string()}</p> })
    };
    view! {
        {v.pending_kills.first().map(|k| view! { <p class="source-error kill-failing" role="alert" data-testid="kill-failing">{k.sentence()}</p> })}
        {(!operator).then(|| view! { <p class="disabled-reason" data-testid="autopilot-disabled">"Sign in as an operator to steer the autopilot."</p> })}
        {error}
        {v.plan.clone().map(|p| {
            // The medical checks cannot be dismissed: they are not offered.
            let checks: Vec<String> = v
                .latest
                .iter()
                .map(|e| e.check.clone())
                .filter(|c| !crate::api::autopilot::KILL_CLASS.contains(&c.as_str()))
                .collect();
            view! { <PlanPanel p operator act checks/> }
        })}
        <Checks latest=v.latest.clone() interval=v.interval_secs/>
        <History history=v.history.clone()/>
        <CheckCharts charts=v.charts.clone()/>
        {(operator && !active).then(|| view! { <StartForm defaults=v.defaults.clone() start/> })}
        <p class="detail">"The autopilot never runs the schema downgrade: dropping the split columns loses data. "
            <a href="/rollback">"The guided rollback"</a>" is for a person to start."</p>
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

#[component]
fn PlanPanel(p: PlanView, operator: bool, act: ServerAction<ActOnAutopilot>, checks: Vec<String>) -> impl IntoView {
    let reason = RwSignal::new(String::new());
    let check = RwSignal::new(String::new());
    let state = p.state;
    let button = move |action: PlanAction, label: &'static str, class: &'static str| {
        view! {
            <button type="button" class=class data-testid=format!("autopilot-{}", action.as_str()) on:click=move |_| {
                let r = Some(reason.get_untracked()).filter(|r| !r.trim().is_empty());
                let c = Some(check.get_untracked()).filter(|c| !c.is_empty());
                act.dispatch(ActOnAutopilot { action, reason: r, check: c });
            }>{label}</button>
        }
    };
    view! {
        <Panel title="Plan" id="autopilot-plan" error=None>
            <p data-testid="plan-state" class=format!("run-state run-{state}")>{format!("Plan #{}: {state}", p.id)}</p>
            {p.watching.then(|| view! { <p class="warning" data-testid="plan-watching">"Watching at 100 %: the guide's legacy-share target is judged over the watch window before the plan is done."</p> })}
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
                        <input type="text" data-testid="autopilot-reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                    </label>
                    {(state == PlanState::Running).then(|| button(PlanAction::Pause, "Pause", ""))}
                    {(state == PlanState::Paused).then(|| button(PlanAction::Resume, "Resume", "primary"))}
                    {(state == PlanState::Running).then(|| button(PlanAction::Promote, "Promote now", ""))}
                    <label class="field">"Dismiss a failing check for this step"
                        <select data-testid="autopilot-check" on:change=move |ev| check.set(event_target_value(&ev))>
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

#[component]
fn StartForm(defaults: Vec<PlanStep>, start: ServerAction<StartAutopilot>) -> impl IntoView {
    let typed: Vec<String> = defaults.iter().map(typed_step).collect();
    let steps = RwSignal::new(typed.join(", "));
    let reason = RwSignal::new(String::new());
    let override_reason = RwSignal::new(String::new());
    let confirm_lower = RwSignal::new(String::new());
    view! {
        <Panel title="Start a plan" id="autopilot-start" error=None>
            <label class="field">"Steps: percentage and bake time, e.g. 5 24h, 10 24h, 100 24h"
                <input type="text" data-testid="plan-steps" prop:value=move || steps.get() on:input=move |ev| steps.set(event_target_value(&ev))/>
            </label>
            <label class="field">"Reason (required, recorded)"
                <textarea data-testid="plan-reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))></textarea>
            </label>
            <label class="field">"Optional: let the autopilot's writes pass rollout guards that fail now, because… (recorded with every write; checks still act)"
                <input type="text" data-testid="plan-override" prop:value=move || override_reason.get() on:input=move |ev| override_reason.set(event_target_value(&ev))/>
            </label>
            <label class="field">"Only if the first step is below the flag's percentage now: type lower from <now> % to <first> % (recorded)"
                <input type="text" data-testid="plan-confirm-lower" prop:value=move || confirm_lower.get() on:input=move |ev| confirm_lower.set(event_target_value(&ev))/>
            </label>
            <button type="button" class="primary" data-testid="plan-start" disabled=move || reason.get().trim().is_empty()
                on:click=move |_| {
                    start.dispatch(StartAutopilot {
                        steps: steps.get_untracked(),
                        reason: reason.get_untracked(),
                        override_guards_reason: override_reason.get_untracked(),
                        confirm_lower: confirm_lower.get_untracked(),
                    });
                }>
                "Start the plan"
            </button>
        </Panel>
    }
}

// ---------------------------------------------------------------- server functions

#[cfg(feature = "ssr")]
use crate::server::fns::{caller, refused};

#[server(endpoint = "autopilot", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_autopilot() -> Result<AutopilotView, ServerFnError> {
    let (state, caller) = caller().await?;
    crate::server::autopilot::Service::new(&state).view(&caller).await.map_err(refused)
}

/// The same service call as `POST /api/v1/autopilot`, the steps as typed.
#[server(endpoint = "autopilot_start", input = leptos::server_fn::codec::PostUrl, output = crate::api::codec::JsonText)]
pub async fn start_autopilot(
    steps: String,
    reason: String,
    override_guards_reason: String,
    // Older pages and scripts send no such field: absent means no confirmation.
    #[server(default)] confirm_lower: String,
) -> Result<AutopilotView, ServerFnError> {
    let (state, caller) = caller().await?;
    let svc = crate::server::autopilot::Service::new(&state);
    let body = match crate::server::autopilot::plan::parse_steps(&steps) {
        Ok(s) => crate::api::autopilot::StartPlan {
            reason,
            steps: Some(s),
            override_guards_reason: Some(override_guards_reason).filter(|r| !r.trim().is_empty()),
            confirm_lower: Some(confirm_lower).filter(|r| !r.trim().is_empty()),
        },
        Err(e) => {
            return svc
                .refuse(&caller, "autopilot.start", crate::server::error::ApiError::BadRequest(format!("steps: {e}")))
                .await
                .map_err(refused)
        }
    };
    svc.start(&caller, body).await.map_err(refused)
}

/// The same service call as `POST /api/v1/autopilot/{action}`.
#[server(endpoint = "autopilot_act", input = leptos::server_fn::codec::Json, output = crate::api::codec::JsonText)]
pub async fn act_on_autopilot(
    action: PlanAction,
    reason: Option<String>,
    check: Option<String>,
) -> Result<AutopilotView, ServerFnError> {
    let (state, caller) = caller().await?;
    let body = crate::api::autopilot::PlanActionBody { reason, check };
    crate::server::autopilot::Service::new(&state).act(&caller, action, body).await.map_err(refused)
}
