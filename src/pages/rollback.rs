//! The guided rollback: preconditions, the dry run, the typed confirmation, and the run's live
//! progress (every step's state, elapsed time and output) for everyone watching.

use leptos::prelude::*;

use crate::api::auth::Role;
use crate::api::rollback::{
    DeployEntry, NewDeploy, RollbackPlan, RollbackView, RunAction, RunProgress, RunState, RunView, StartRollback,
};
use crate::components::panel::Panel;
use crate::components::reread::{reread, ticks};
use crate::components::time::{self, Shown};

/// The page, rendered on the server with the run and the plan; the controls are the island below.
#[component]
pub fn RollbackPage() -> impl IntoView {
    let data =
        Resource::new(|| (), |_| async { Ok::<_, ServerFnError>((get_progress().await?, get_rollback(false).await?)) });
    view! {
        <h1 class="page-title">"Guarded rollback"</h1>
        <Transition fallback=|| view! { <p class="loading">"Reading the run…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok((p, v)) => view! { <RollbackControls p v/> }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// An island, lazy: its code is a wasm chunk of its own, loaded only where this page is shown.
/// It starts from the run and the plan the server rendered (its props), reads the run every
/// second and after each action, and the plan again when what it depends on changes.
#[island(lazy)]
fn RollbackControls(p: RunProgress, v: RollbackView) -> impl IntoView {
    let start = ServerAction::<BeginRollback>::new();
    let act = ServerAction::<ActOnRun>::new();
    let deploy = ServerAction::<RecordDeploy>::new();
    let restore = RwSignal::new(false);
    let tick = ticks(1);
    // The run's id and state as last seen: the plan (its preconditions) is read again when it changes.
    let run_key = RwSignal::new(p.run.as_ref().map(|r| (r.id, r.state)));
    let progress = reread(p, move || (tick.get(), start.version().get(), act.version().get()), |_| get_progress());
    let plan = reread(
        v,
        move || (restore.get(), start.version().get(), act.version().get(), deploy.version().get(), run_key.get()),
        |(r, ..)| get_rollback(r),
    );
    Effect::new(move |_| {
        if let Ok(p) = progress.read().as_ref() {
            let key = p.run.as_ref().map(|r| (r.id, r.state));
            if run_key.get_untracked() != key {
                run_key.set(key);
            }
        }
    });
    view! {
        {move || match progress.get() {
            Ok(p) => view! { <Progress p act/> }.into_any(),
            Err(e) => view! { <p class="source-error" role="alert">{e}</p> }.into_any(),
        }}
        {move || match plan.get() {
            Ok(v) => view! { <Plan v restore start deploy/> }.into_any(),
            Err(e) => view! { <p class="source-error" role="alert">{e}</p> }.into_any(),
        }}
    }
}

fn seconds(ms: Option<i64>) -> String {
    ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_default()
}

#[component]
fn Progress(p: RunProgress, act: ServerAction<ActOnRun>) -> impl IntoView {
    let Some(run) = p.run else {
        return view! { <p class="detail" data-testid="no-run">"No rollback has run yet."</p> }.into_any();
    };
    let operator = p.me.as_ref().is_some_and(|m| m.role == Role::Operator);
    let me = p.me.as_ref().map(|m| m.user.clone()).unwrap_or_default();
    let RunView { id, state, actor, reason, steps, incident_id, approved_by, bypass_reason, .. } = run.clone();
    let stoppable = state.resumable();
    let skip_reason = RwSignal::new(String::new());
    let result = move || {
        act.value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <p class="source-error" role="alert" data-testid="act-error">{e.to_string()}</p> })
    };
    let button = move |action: RunAction, label: &'static str, class: &'static str| {
        view! {
            <button type="button" class=class data-testid=format!("run-{}", action.as_str())
                disabled=move || action == RunAction::Skip && skip_reason.get().trim().is_empty()
                on:click=move |_| {
                    let reason = Some(skip_reason.get_untracked()).filter(|r| !r.trim().is_empty());
                    act.dispatch(ActOnRun { id, action, reason });
                }>{label}</button>
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
                {steps.into_iter().map(|s| {
                    let err = s.error.clone();
                    view! {
                        <li class=format!("step step-{}", s.state) data-testid=format!("step-{}", s.name) data-state=s.state.as_str()>
                            <span class="step-title">{format!("{}. {}", s.index, s.title)}</span>
                            <span class="step-state">{s.state.as_str()}</span>
                            <span class="step-elapsed">{seconds(s.elapsed_ms)}</span>
                            {(s.attempts > 1).then(|| view! { <span class="detail">{format!(" · attempt {}", s.attempts)}</span> })}
                            {s.skip_reason.clone().map(|r| view! { <span class="detail">{format!(" · skipped: {r}")}</span> })}
                            {err.map(|e| view! { <p class="source-error">{e}</p> })}
                            {(!s.output.is_empty()).then(|| view! {
                                <details><summary>"Output"</summary><pre class="step-output">{s.output.clone()}</pre></details>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ol>
            {incident_id.map(|i| view! {
                <p><a data-testid="incident-link" rel="external" href=format!("/api/v1/incidents/{i}.md")>{format!("Incident #{i} (Markdown)")}</a></p>
            })}
            {result}
            {(operator && state == RunState::AwaitingApproval).then(|| if actor == me {
                view! { <p class="disabled-reason">"Waiting for a second operator to approve."</p> }.into_any()
            } else {
                button(RunAction::Approve, "Approve and start", "primary").into_any()
            })}
            {(operator && stoppable).then(|| view! {
                <div class="run-actions">
                    {button(RunAction::Retry, "Retry the step (resume)", "primary")}
                    <label class="field">"Reason to skip the step"
                        <input type="text" data-testid="skip-reason" prop:value=move || skip_reason.get()
                            on:input=move |ev| skip_reason.set(event_target_value(&ev))/>
                    </label>
                    {button(RunAction::Skip, "Skip the step", "")}
                </div>
            })}
            {(operator && run.active()).then(|| button(RunAction::Abort, "Abort the run", "danger"))}
        </Panel>
    }
    .into_any()
}

#[component]
fn Plan(
    v: RollbackView,
    restore: RwSignal<bool>,
    start: ServerAction<BeginRollback>,
    deploy: ServerAction<RecordDeploy>,
) -> impl IntoView {
    let RollbackView { me, plan, run, deploys } = v;
    let why_not = match &me {
        None => Some("Sign in as an operator to run a rollback.".to_string()),
        Some(m) if m.role != Role::Operator => {
            Some(format!("Signed in as {} ({}): only operators may run a rollback.", m.user, m.role.as_str()))
        }
        _ => None,
    };
    let operator = why_not.is_none();
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return view! { <p class="source-error" role="alert" data-testid="plan-error">{e}</p> }.into_any(),
    };
    let active = run.as_ref().is_some_and(|r| r.active());
    let revision = plan.from_revision.clone().unwrap_or_default();
    view! {
        <div class="panels">
            <Preconditions checks=plan.preconditions.clone()/>
            <DeployJournal deploys operator deploy revision/>
        </div>
        <DryRun plan=plan.clone()/>
        {why_not.clone().map(|w| view! { <p class="disabled-reason" data-testid="rollback-disabled">{w}</p> })}
        <StartForm plan operator active restore start/>
    }
    .into_any()
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

/// The deploy journal (which revision came after which) and the form that adds to it.
#[component]
fn DeployJournal(
    deploys: Vec<DeployEntry>,
    operator: bool,
    deploy: ServerAction<RecordDeploy>,
    revision: String,
) -> impl IntoView {
    let rev = RwSignal::new(revision);
    let prev = RwSignal::new(String::new());
    let deploy_result = move || {
        deploy.value().get().map(|r| match r {
            Ok(d) => view! { <p class="ok-text" data-testid="deploy-result">{format!("Recorded: {} came after {}", d.revision, d.previous_revision.unwrap_or_default())}</p> }.into_any(),
            Err(e) => view! { <p class="source-error" data-testid="deploy-result">{e.to_string()}</p> }.into_any(),
        })
    };
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
            <div class="deploy-form">
                <label class="field">"Revision"<input type="text" disabled=!operator data-testid="deploy-revision"
                    prop:value=move || rev.get() on:input=move |ev| rev.set(event_target_value(&ev))/></label>
                <label class="field">"came after (previous revision)"<input type="text" disabled=!operator data-testid="deploy-previous"
                    prop:value=move || prev.get() on:input=move |ev| prev.set(event_target_value(&ev))/></label>
                <button type="button" disabled=!operator data-testid="deploy-record" on:click=move |_| {
                    deploy.dispatch(RecordDeploy { body: NewDeploy { revision: rev.get_untracked(), previous_revision: prev.get_untracked(), note: None } });
                }>"Record"</button>
                {deploy_result}
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

/// The start: reason, the typed confirmations (data loss, environment, RESTORE) and the bypass.
#[component]
fn StartForm(
    plan: RollbackPlan,
    operator: bool,
    active: bool,
    restore: RwSignal<bool>,
    start: ServerAction<BeginRollback>,
) -> impl IntoView {
    let env = plan.environment.clone();
    let loss = plan.data_loss_rows;
    let reason = RwSignal::new(String::new());
    let typed_env = RwSignal::new(String::new());
    let ack = RwSignal::new(String::new());
    let restore_word = RwSignal::new(String::new());
    let bypass = RwSignal::new(String::new());
    let env_for_ready = env.clone();
    let plan_ready = plan.ready;
    let ready = move || {
        operator
            && plan_ready
            && !reason.get().trim().is_empty()
            && typed_env.get() == env_for_ready
            && loss.is_some_and(|l| ack.get().trim().parse::<i64>().ok() == Some(l))
            && (!restore.get() || restore_word.get() == "RESTORE")
    };
    let do_start = move |_| {
        start.dispatch(BeginRollback {
            body: StartRollback {
                reason: reason.get_untracked(),
                confirm_environment: typed_env.get_untracked(),
                acknowledge_data_loss_rows: ack.get_untracked().trim().parse().unwrap_or(-1),
                restore_data: restore.get_untracked(),
                restore_confirmation: Some(restore_word.get_untracked()).filter(|w| !w.is_empty()),
                emergency_bypass_reason: Some(bypass.get_untracked()).filter(|w| !w.trim().is_empty()),
            },
        });
    };
    let start_result = move || {
        start
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <p class="source-error" role="alert" data-testid="start-error">{e.to_string()}</p> })
    };
    view! {
        <Panel title="Start the rollback" id="rollback-start" error=None class="kill">
            {active.then(|| view! { <p class="disabled-reason">"A run is active: act on it above."</p> })}
            <label><input type="checkbox" disabled=!operator data-testid="restore" prop:checked=move || restore.get()
                on:change=move |ev| restore.set(event_target_checked(&ev))/>
                " Also restore data from the backup (pg_restore --clean)"</label>
            {move || restore.get().then(|| view! {
                <label class="field">"Type RESTORE to confirm the restore"
                    <input type="text" data-testid="restore-word" prop:value=move || restore_word.get()
                        on:input=move |ev| restore_word.set(event_target_value(&ev))/></label>
            })}
            <label class="field">"Reason (required, recorded)"
                <textarea disabled=!operator data-testid="rollback-reason" prop:value=move || reason.get()
                    on:input=move |ev| reason.set(event_target_value(&ev))></textarea></label>
            <label class="field">{format!(
                "Data loss: the downgrade drops insulin_short / insulin_long of {} row(s). Type that number to acknowledge",
                loss.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
            )}
                <input type="text" disabled=!operator data-testid="ack-rows" prop:value=move || ack.get()
                    on:input=move |ev| ack.set(event_target_value(&ev))/></label>
            <label class="field">{format!("Type the environment's name ({env}) to confirm")}
                <input type="text" disabled=!operator data-testid="confirm-env" prop:value=move || typed_env.get()
                    on:input=move |ev| typed_env.set(event_target_value(&ev))/></label>
            {plan.require_approval.then(|| view! {
                <label class="field">"Emergency: start without a second operator's approval, because…"
                    <input type="text" disabled=!operator data-testid="bypass-reason" prop:value=move || bypass.get()
                        on:input=move |ev| bypass.set(event_target_value(&ev))/></label>
            })}
            <button type="button" class="danger" data-testid="start-rollback" disabled=move || !ready() on:click=do_start>
                "Start the rollback"
            </button>
            {start_result}
        </Panel>
    }
}

// ---------------------------------------------------------------- server functions

#[cfg(feature = "ssr")]
use crate::api::rollback::RunActionBody;
#[cfg(feature = "ssr")]
use crate::server::fns::{caller, refused};

#[server(endpoint = "rollback", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_rollback(restore_data: bool) -> Result<RollbackView, ServerFnError> {
    let (state, caller) = caller().await?;
    let me = caller.who().cloned();
    let svc = crate::server::rollback::Service::new(&state);
    let plan = svc.plan(restore_data).await.map_err(|e| e.to_string());
    let run = svc.latest_run().await.map_err(refused)?;
    let deploys = svc.deploys(20).await.map_err(refused)?;
    Ok(RollbackView { me, plan, run, deploys })
}

#[server(endpoint = "rollback_run", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_run(id: i64) -> Result<RunView, ServerFnError> {
    let (state, _) = caller().await?;
    crate::server::rollback::Service::new(&state).run(id).await.map_err(refused)
}

/// The same service call as `POST /api/v1/rollback`.
#[server(endpoint = "rollback_start", input = leptos::server_fn::codec::Json, output = crate::api::codec::JsonText)]
pub async fn begin_rollback(body: StartRollback) -> Result<RunView, ServerFnError> {
    let (state, caller) = caller().await?;
    crate::server::rollback::Service::new(&state).start(&caller, body).await.map_err(refused)
}

/// The same service call as `POST /api/v1/rollback/{id}/{action}`.
#[server(endpoint = "rollback_act", input = leptos::server_fn::codec::Json, output = crate::api::codec::JsonText)]
pub async fn act_on_run(id: i64, action: RunAction, reason: Option<String>) -> Result<RunView, ServerFnError> {
    let (state, caller) = caller().await?;
    crate::server::rollback::Service::new(&state)
        .act(&caller, id, action, RunActionBody { reason })
        .await
        .map_err(refused)
}

/// The same service call as `POST /api/v1/deploys`.
#[server(endpoint = "deploy_record", input = leptos::server_fn::codec::Json, output = crate::api::codec::JsonText)]
pub async fn record_deploy(body: NewDeploy) -> Result<DeployEntry, ServerFnError> {
    let (state, caller) = caller().await?;
    crate::server::rollback::Service::new(&state).record_deploy(&caller, body).await.map_err(refused)
}

#[server(endpoint = "rollback_progress", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_progress() -> Result<RunProgress, ServerFnError> {
    let (state, caller) = caller().await?;
    let run = crate::server::rollback::Service::new(&state).latest_run().await.map_err(refused)?;
    Ok(RunProgress { me: caller.who().cloned(), run })
}
