//! The guided rollback: preconditions, the dry run, the typed confirmation, and the run's live
//! progress (every step's state, elapsed time and output) for everyone watching.
//!
//! Everything shown is rendered on the server, in two regions the controls' island
//! (`controls.rs`) has the server draw again: the run's every second and after an action, the
//! plan's when the run changes, after a recorded deploy and when the restore is chosen.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::auth::Role;
use crate::api::rollback::{DeployEntry, RollbackPlan, RollbackView, RunAction, RunProgress, RunState, RunView};
use crate::components::panel::Panel;
use crate::components::time::{self, Shown};

mod controls;
mod rehearsal;
mod roll_forward;

use controls::{PlanFacts, RollbackControls};
use roll_forward::RollForward;

/// The run's region (`?part=run` renders it alone, for the island's every-second read).
pub const RUN_REGION: &str = "rollback-run-region";
/// The plan's region: preconditions, deploy journal, dry run, with the facts the start form
/// needs as attributes.
pub const PLAN_REGION: &str = "rollback-plan-region";

#[component]
pub fn RollbackPage() -> impl IntoView {
    let query = use_query_map();
    let (restore, fill, only_run) = query.with_untracked(|q| {
        let yes = |k: &str| q.get(k).as_deref() == Some("true");
        (yes("restore"), yes("fill"), q.get("part").as_deref() == Some("run"))
    });
    let data = Resource::new(
        || (),
        move |_| async move {
            let progress = get_progress().await?;
            let plan = if only_run { None } else { Some(get_rollback(restore, fill).await?) };
            Ok::<_, ServerFnError>((progress, plan))
        },
    );
    view! {
        <h1 class="page-title">"Guarded rollback"</h1>
        <Transition fallback=|| view! { <p class="loading">"Reading the run and the plan…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((p, None)) => view! { <RunRegion p/> }.into_any(),
                    Ok((p, Some(v))) => view! { <Rollback p v/> }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Rollback(p: RunProgress, v: RollbackView) -> impl IntoView {
    let operator = v.me.as_ref().is_some_and(|m| m.role == Role::Operator);
    let facts = PlanFacts::of_plan(v.plan.as_ref().ok());
    let revision = v.plan.as_ref().ok().and_then(|p| p.from_revision.clone()).unwrap_or_default();
    // The roll-forward, once the latest run ended holding an archive: an island of its own, so
    // its code loads only where it is shown.
    let archived = v.run.as_ref().filter(|r| !r.active() && r.memory["archived_rows"].is_i64()).map(|r| r.id);
    let environment = facts.environment.clone();
    view! {
        <RollbackControls operator facts revision>
            <RunRegion p/>
            <PlanRegion v/>
        </RollbackControls>
        {archived.filter(|_| !environment.is_empty()).map(|id| view! { <RollForward operator id environment/> })}
    }
}

fn seconds(ms: Option<i64>) -> String {
    ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_default()
}

/// The run: its steps with state, time and output, and the buttons an operator may press (the
/// island hears their clicks: `data-run-action`, `data-run-id`).
#[component]
fn RunRegion(p: RunProgress) -> impl IntoView {
    let key = p.run.as_ref().map(|r| format!("{}:{}", r.id, r.state)).unwrap_or_default();
    let operator = p.me.as_ref().is_some_and(|m| m.role == Role::Operator);
    let rehearsals = p.rehearsals;
    let body = match p.run {
        None => view! { <p class="detail" data-testid="no-run">"No rollback has run yet."</p> }.into_any(),
        Some(run) => {
            let operator = p.me.as_ref().is_some_and(|m| m.role == Role::Operator);
            let me = p.me.as_ref().map(|m| m.user.clone()).unwrap_or_default();
            view! { <Run run operator me/> }.into_any()
        }
    };
    view! {
        <div id=RUN_REGION data-run-key=key>
            {body}
            <rehearsal::RehearsalPanel r=rehearsals operator/>
        </div>
    }
}

#[component]
fn Run(run: RunView, operator: bool, me: String) -> impl IntoView {
    let RunView { id, state, actor, reason, steps, incident_id, approved_by, bypass_reason, .. } = run.clone();
    let button = move |action: RunAction, label: &'static str, class: &'static str| {
        view! {
            <button type="button" class=class data-testid=format!("run-{}", action.as_str())
                data-run-action=action.as_str() data-run-id=id disabled=action == RunAction::Skip>{label}</button>
        }
    };
    view! {
        <Panel title="Run" id="rollback-run" error=None>
            <p data-testid="run-state" class=format!("run-state run-{state}")>
                {format!("Run #{id}: {state}")}
            </p>
            <p class="detail">{format!("Started by {actor}: {reason}")}
                {approved_by.map(|a| format!(" · approved by {a}"))}
                {bypass_reason.map(|b| format!(" · approval bypassed: {b}"))}
            </p>
            <ol class="steps">
                {steps.into_iter().map(|s| view! {
                    <li class=format!("step step-{}", s.state) data-testid=format!("step-{}", s.name) data-state=s.state.as_str()>
                        <span class="step-title">{format!("{}. {}", s.index, s.title)}</span>
                        <span class="step-state">{s.state.as_str()}</span>
                        <span class="step-elapsed">{seconds(s.elapsed_ms)}</span>
                        {(s.attempts > 1).then(|| view! { <span class="detail">{format!(" · attempt {}", s.attempts)}</span> })}
                        {s.skip_reason.clone().map(|r| view! { <span class="detail">{format!(" · skipped: {r}")}</span> })}
                        {s.error.clone().map(|e| view! { <p class="source-error">{e}</p> })}
                        {(!s.output.is_empty()).then(|| view! {
                            <details><summary>"Output"</summary><pre class="step-output">{s.output.clone()}</pre></details>
                        })}
                    </li>
                }).collect_view()}
            </ol>
            {incident_id.map(|i| view! {
                <p><a data-testid="incident-link" rel="external" href=format!("/api/v1/incidents/{i}.md")>{format!("Incident #{i} (Markdown)")}</a></p>
            })}
            {(operator && state == RunState::AwaitingApproval).then(|| if actor == me {
                view! { <p class="disabled-reason">"Waiting for a second operator to approve."</p> }.into_any()
            } else {
                button(RunAction::Approve, "Approve and start", "primary").into_any()
            })}
            {(operator && state.resumable()).then(|| view! {
                <div class="run-actions">
                    {button(RunAction::Retry, "Retry the step (resume)", "primary")}
                    <label class="field">"Reason to skip the step"
                        <input type="text" id="skip-reason" data-testid="skip-reason"/>
                    </label>
                    {button(RunAction::Skip, "Skip the step", "")}
                </div>
            })}
            {(operator && run.active()).then(|| button(RunAction::Abort, "Abort the run", "danger"))}
            {run.writers_left_stopped().map(|n| view! {
                <p class="source-error" data-testid="writers-left-stopped">
                    {format!("The run was aborted with the writers stopped (they were at {n} replicas).")}
                </p>
                {operator.then(|| button(RunAction::ScaleBack, "Scale the writers back", "primary"))}
            })}
        </Panel>
    }
}

/// Preconditions, the deploy journal and the dry run, or why the plan could not be made.
#[component]
fn PlanRegion(v: RollbackView) -> impl IntoView {
    let RollbackView { me, plan, deploys, .. } = v;
    let facts = PlanFacts::of_plan(plan.as_ref().ok());
    let why_not = match &me {
        None => Some("Sign in as an operator to run a rollback.".to_string()),
        Some(m) if m.role != Role::Operator => {
            Some(format!("Signed in as {} ({}): only operators may run a rollback.", m.user, m.role.as_str()))
        }
        _ => None,
    };
    let body = match plan {
        Err(e) => view! { <p class="source-error" role="alert" data-testid="plan-error">{e}</p> }.into_any(),
        Ok(plan) => view! {
            <div class="panels">
                <Preconditions checks=plan.preconditions.clone()/>
                <DeployJournal deploys/>
            </div>
            <DryRun plan/>
        }
        .into_any(),
    };
    view! {
        <div id=PLAN_REGION data-planned=facts.planned.to_string() data-ready=facts.ready.to_string() data-environment=facts.environment
            data-loss-rows=facts.loss_rows.map(|l| l.to_string()).unwrap_or_default()
            data-require-approval=facts.require_approval.to_string() data-active=facts.active.to_string()>
            {body}
            {why_not.map(|w| view! { <p class="disabled-reason" data-testid="rollback-disabled">{w}</p> })}
        </div>
    }
}

#[component]
fn Preconditions(checks: Vec<crate::api::check::Check>) -> impl IntoView {
    view! {
        <Panel title="Preconditions" id="rollback-preconditions" error=None>
            <ul class="guards">
                {checks.into_iter().map(|p| {
                    // The data-loss line is a warning to acknowledge, not a pass.
                    let warn = p.passed && p.name == "data_loss_warning";
                    view! {
                        <li class:guard-ok=p.passed && !warn class:guard-warn=warn class:guard-bad=!p.passed data-testid=format!("pre-{}", p.name)>
                            {if warn { "⚠ " } else if p.passed { "✓ " } else { "✗ " }}<strong>{p.name.replace('_', " ")}</strong>": "{p.detail}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </Panel>
    }
}

/// The deploy journal: which revision came after which (the island's form adds to it).
#[component]
fn DeployJournal(deploys: Vec<DeployEntry>) -> impl IntoView {
    view! {
        <Panel title="Deploy journal" id="rollback-deploys" error=None>
            <div class="table-scroll">
                <table class="audit">
                    <thead><tr><th>"When"</th><th>"Revision"</th><th>"Previous"</th><th>"Source"</th><th>"By"</th></tr></thead>
                    <tbody>
                        {deploys.into_iter().map(|d| view! {
                            <tr><td>{time::utc(d.at, Shown::DateMinutes)}</td><td>{d.revision}</td>
                                <td>{d.previous_revision.unwrap_or_else(|| "unknown".into())}</td><td>{d.source}</td><td>{d.actor}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </Panel>
    }
}

/// Every step with its concrete actions, executed nowhere.
#[component]
fn DryRun(plan: RollbackPlan) -> impl IntoView {
    view! {
        <Panel title="Dry run: the plan, executed nowhere" id="rollback-plan" error=None>
            <p class="detail">{format!(
                "Environment {} · revision {} → {}",
                plan.environment,
                plan.from_revision.unwrap_or_else(|| "?".into()),
                plan.target_revision.unwrap_or_else(|| "?".into())
            )}</p>
            <ol class="plan">
                {plan.steps.into_iter().map(|s| view! {
                    <li class:not-chosen=!s.chosen data-testid=format!("plan-{}", s.name)>
                        <strong>{s.title}</strong>
                        <ul>{s.actions.into_iter().map(|a| view! { <li><code>{a}</code></li> }).collect_view()}</ul>
                    </li>
                }).collect_view()}
            </ol>
        </Panel>
    }
}

// ---------------------------------------------------------------- server functions

#[cfg(feature = "ssr")]
use crate::server::fns::{caller, refused};

#[server(endpoint = "rollback", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_rollback(restore_data: bool, fill_dose: bool) -> Result<RollbackView, ServerFnError> {
    let (state, caller) = caller().await?;
    let me = caller.who().cloned();
    let svc = crate::server::rollback::Service::new(&state);
    // The survey counts the diary's rows and runs the backup-status program: not for anyone
    // who can reach the page.
    let plan = match &me {
        Some(_) => svc.plan(crate::api::rollback::Choices { restore_data, fill_dose }).await.map_err(|e| e.to_string()),
        None => Err("Sign in to see the rollback plan and its preconditions.".to_string()),
    };
    let run = svc.latest_run().await.map_err(refused)?;
    let deploys = svc.deploys(20).await.map_err(refused)?;
    Ok(RollbackView { me, plan, run, deploys })
}

#[server(endpoint = "rollback_progress", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_progress() -> Result<RunProgress, ServerFnError> {
    let (state, caller) = caller().await?;
    let svc = crate::server::rollback::Service::new(&state);
    let run = svc.latest_run().await.map_err(refused)?;
    let rehearsals = match caller.who() {
        Some(_) => svc.rehearsals().await.map_err(|e| e.to_string()),
        None => Err("sign in to see them".to_string()),
    };
    Ok(RunProgress { me: caller.who().cloned(), run, rehearsals })
}
