//! The rollback page's island: the deploy form, the start form with its typed confirmations, and
//! the run's buttons (rendered by the server in the run's region; their clicks are heard here).
//! Every change goes through the REST API; what it changed is drawn again by the server.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::{PLAN_REGION, RUN_REGION};
use crate::api::rehearsal::StartRehearsal;
use crate::api::rollback::{Choices, NewDeploy, RollbackPlan, RunActionBody, StartRollback};
use crate::components::client;
use crate::components::panel::Panel;

/// What the start form needs of the plan: from the server's rendering, and read off the plan's
/// region (its attributes) each time it is drawn again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanFacts {
    /// The plan could be made (when not, the region says why and there is nothing to start).
    pub planned: bool,
    pub ready: bool,
    pub environment: String,
    pub loss_rows: Option<i64>,
    pub require_approval: bool,
    pub active: bool,
}

impl PlanFacts {
    pub fn of_plan(plan: Option<&RollbackPlan>) -> PlanFacts {
        plan.map(|p| PlanFacts {
            planned: true,
            ready: p.ready,
            environment: p.environment.clone(),
            loss_rows: p.data_loss_rows,
            require_approval: p.require_approval,
            active: p.active_run.is_some(),
        })
        .unwrap_or_default()
    }

    /// As the plan's region states them now.
    fn shown() -> Option<PlanFacts> {
        #[cfg(feature = "hydrate")]
        {
            let region = document().get_element_by_id(PLAN_REGION)?;
            let flag = |name: &str| region.get_attribute(name).as_deref() == Some("true");
            Some(PlanFacts {
                planned: flag("data-planned"),
                ready: flag("data-ready"),
                environment: region.get_attribute("data-environment").unwrap_or_default(),
                loss_rows: region.get_attribute("data-loss-rows").and_then(|l| l.parse().ok()),
                require_approval: flag("data-require-approval"),
                active: flag("data-active"),
            })
        }
        #[cfg(not(feature = "hydrate"))]
        None
    }
}

/// The plan's region drawn again (for the fill and the restore chosen or not), and the facts
/// read off it.
async fn redraw_plan(c: Choices, facts: RwSignal<PlanFacts>) {
    let url = format!("/rollback?restore={}&fill={}", c.restore_data, c.fill_dose);
    if client::swap(&url, &[PLAN_REGION]).await.is_ok() {
        if let Some(now) = PlanFacts::shown() {
            facts.set(now);
        }
    }
}

/// The run's region drawn again; the plan's too when the run changed (another run, or a state
/// the preconditions depend on).
async fn redraw_run(choices: Choices, facts: RwSignal<PlanFacts>) -> Result<(), String> {
    let before = run_key();
    client::swap("/rollback?part=run", &[RUN_REGION]).await?;
    if run_key() != before {
        redraw_plan(choices, facts).await;
    }
    Ok(())
}

fn run_key() -> Option<String> {
    #[cfg(feature = "hydrate")]
    return document().get_element_by_id(RUN_REGION).and_then(|r| r.get_attribute("data-run-key"));
    #[cfg(not(feature = "hydrate"))]
    None
}

/// An island, lazy: its code is a wasm chunk of its own, loaded only where this page is shown.
/// `children` are the server-rendered regions.
#[island(lazy)]
pub fn RollbackControls(operator: bool, facts: PlanFacts, revision: String, children: Children) -> impl IntoView {
    let facts = RwSignal::new(facts);
    let choices = RwSignal::new(Choices::default());
    let act_error = RwSignal::new(None::<String>);
    // The run, every second; since when, and why, it could not be read (its region then shows
    // the last values).
    let failing = client::redraw_every(1, move || redraw_run(choices.get_untracked(), facts));
    // The plan again when the fill or the restore is chosen or dropped.
    Effect::new(move |ran: Option<()>| {
        let c = choices.get();
        if ran.is_some() {
            leptos::task::spawn_local(redraw_plan(c, facts));
        }
    });
    let act = move |action: String, id: String, reason: Option<String>| {
        leptos::task::spawn_local(async move {
            let url = format!("/api/v1/rollback/{id}/{action}");
            let done = client::post::<_, serde::de::IgnoredAny>(&url, &RunActionBody { reason }).await;
            act_error.set(done.err());
            let _ = redraw_run(choices.get_untracked(), facts).await;
        });
    };
    let rehearse = move |fill_dose: bool| {
        leptos::task::spawn_local(async move {
            let body = StartRehearsal { fill_dose };
            let done = client::post::<_, serde::de::IgnoredAny>("/api/v1/rollback/rehearsals", &body).await;
            act_error.set(done.err());
            let _ = redraw_run(choices.get_untracked(), facts).await;
        });
    };
    let planned = Memo::new(move |_| facts.read().planned);
    let failing_line = move || {
        failing.get().map(|(since, why)| {
            view! {
                <p class="live-error" role="alert" data-testid="live-error">
                    {format!("{why}; the run below is as last read. Failing since {since}.")}
                </p>
            }
        })
    };
    view! {
        {failing_line}
        <div on:click=move |ev| match browser::rehearse_button(&ev) {
                Some(fill) => rehearse(fill),
                None => browser::run_button(&ev).map(|(a, id, r)| act(a, id, r)).unwrap_or_default(),
            }
            on:input=move |ev| browser::skip_typed(&ev)>
            {children()}
        </div>
        {move || act_error.get().map(|e| view! { <p class="source-error" role="alert" data-testid="act-error">{e}</p> })}
        // The forms are drawn again only when a plan appears or goes, not at every change of
        // its facts: a redraw would drop what was typed and the deploy form's answer.
        {move || planned.get().then(|| view! {
            <div class="panels">
                <DeployForm operator revision=revision.clone() facts choices/>
                <StartForm operator facts choices/>
            </div>
        })}
    }
}

/// The deploy journal's form: an operator records which revision came after which.
#[component]
fn DeployForm(
    operator: bool,
    revision: String,
    facts: RwSignal<PlanFacts>,
    choices: RwSignal<Choices>,
) -> impl IntoView {
    #[derive(Clone, Deserialize)]
    struct Recorded {
        revision: String,
        previous_revision: Option<String>,
    }
    let rev = RwSignal::new(revision);
    let prev = RwSignal::new(String::new());
    let result = RwSignal::new(None::<Result<Recorded, String>>);
    let record = move |_| {
        let body = NewDeploy { revision: rev.get_untracked(), previous_revision: prev.get_untracked(), note: None };
        leptos::task::spawn_local(async move {
            let done = client::post::<_, Recorded>("/api/v1/deploys", &body).await;
            if done.is_ok() {
                redraw_plan(choices.get_untracked(), facts).await;
            }
            result.set(Some(done));
        });
    };
    let shown = move || {
        result.get().map(|r| match r {
            Ok(d) => view! { <p class="ok-text" data-testid="deploy-result">{format!("Recorded: {} came after {}", d.revision, d.previous_revision.unwrap_or_default())}</p> }.into_any(),
            Err(e) => view! { <p class="source-error" data-testid="deploy-result">{e}</p> }.into_any(),
        })
    };
    view! {
        <Panel title="Record a deploy" id="rollback-deploy-form" error=None>
            <div class="deploy-form">
                <label class="field">"Revision"<input type="text" disabled=!operator data-testid="deploy-revision"
                    prop:value=move || rev.get() on:input=move |ev| rev.set(event_target_value(&ev))/></label>
                <label class="field">"came after (previous revision)"<input type="text" disabled=!operator data-testid="deploy-previous"
                    prop:value=move || prev.get() on:input=move |ev| prev.set(event_target_value(&ev))/></label>
                <button type="button" disabled=!operator data-testid="deploy-record" on:click=record>"Record"</button>
                {shown}
            </div>
        </Panel>
    }
}

/// The start: reason, the typed confirmations (data loss, environment, FILL, RESTORE) and the
/// bypass.
#[component]
fn StartForm(operator: bool, facts: RwSignal<PlanFacts>, choices: RwSignal<Choices>) -> impl IntoView {
    let restore = Signal::derive(move || choices.get().restore_data);
    let fill = Signal::derive(move || choices.get().fill_dose);
    let fill_word = RwSignal::new(String::new());
    let reason = RwSignal::new(String::new());
    let typed_env = RwSignal::new(String::new());
    let ack = RwSignal::new(String::new());
    let restore_word = RwSignal::new(String::new());
    let bypass = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let ready = move || {
        let f = facts.read();
        operator
            && f.ready
            && !reason.get().trim().is_empty()
            && typed_env.get() == f.environment
            && f.loss_rows.is_some_and(|l| ack.get().trim().parse::<i64>().ok() == Some(l))
            && (!restore.get() || restore_word.get() == "RESTORE")
            && (!fill.get() || fill_word.get() == "FILL")
    };
    let start = move |_| {
        let body = StartRollback {
            reason: reason.get_untracked(),
            confirm_environment: typed_env.get_untracked(),
            acknowledge_data_loss_rows: ack.get_untracked().trim().parse().unwrap_or(-1),
            restore_data: restore.get_untracked(),
            restore_confirmation: Some(restore_word.get_untracked()).filter(|w| !w.is_empty()),
            fill_dose: fill.get_untracked(),
            fill_confirmation: Some(fill_word.get_untracked()).filter(|w| !w.is_empty()),
            emergency_bypass_reason: Some(bypass.get_untracked()).filter(|w| !w.trim().is_empty()),
        };
        leptos::task::spawn_local(async move {
            let done = client::post::<_, serde::de::IgnoredAny>("/api/v1/rollback", &body).await;
            error.set(done.err());
            let _ = redraw_run(choices.get_untracked(), facts).await;
        });
    };
    let loss = move || facts.read().loss_rows.map(|l| l.to_string()).unwrap_or_else(|| "?".into());
    view! {
        <Panel title="Start the rollback" id="rollback-start" error=None class="kill">
            {move || facts.read().active.then(|| view! { <p class="disabled-reason">"A run is active: act on it above."</p> })}
            <div><label><input type="checkbox" disabled=!operator data-testid="fill-dose" prop:checked=move || fill.get()
                on:change=move |ev| choices.update(|c| c.fill_dose = event_target_checked(&ev))/>
                " Fill an empty dose from insulin_short before the downgrade, so legacy clients show the short dose (never from insulin_long; undone by the roll-forward)"</label></div>
            {move || fill.get().then(|| view! {
                <label class="field">"Type FILL to confirm the fill"
                    <input type="text" data-testid="fill-word" prop:value=move || fill_word.get()
                        on:input=move |ev| fill_word.set(event_target_value(&ev))/></label>
            })}
            <div><label><input type="checkbox" disabled=!operator data-testid="restore" prop:checked=move || restore.get()
                on:change=move |ev| choices.update(|c| c.restore_data = event_target_checked(&ev))/>
                " Also restore data from the backup (pg_restore --clean)"</label></div>
            {move || restore.get().then(|| view! {
                <label class="field">"Type RESTORE to confirm the restore"
                    <input type="text" data-testid="restore-word" prop:value=move || restore_word.get()
                        on:input=move |ev| restore_word.set(event_target_value(&ev))/></label>
            })}
            <label class="field">"Reason (required, recorded)"
                <textarea disabled=!operator data-testid="rollback-reason" prop:value=move || reason.get()
                    on:input=move |ev| reason.set(event_target_value(&ev))></textarea></label>
            <label class="field">
                {move || format!("{} row(s) hold insulin_short / insulin_long: step 3 archives and verifies them before the downgrade drops the columns. Type that number to acknowledge", loss())}
                <input type="text" disabled=!operator data-testid="ack-rows" prop:value=move || ack.get()
                    on:input=move |ev| ack.set(event_target_value(&ev))/></label>
            <label class="field">{move || format!("Type the environment's name ({}) to confirm", facts.read().environment)}
                <input type="text" disabled=!operator data-testid="confirm-env" prop:value=move || typed_env.get()
                    on:input=move |ev| typed_env.set(event_target_value(&ev))/></label>
            {move || facts.read().require_approval.then(|| view! {
                <label class="field">"Emergency: start without a second operator's approval, because…"
                    <input type="text" disabled=!operator data-testid="bypass-reason" prop:value=move || bypass.get()
                        on:input=move |ev| bypass.set(event_target_value(&ev))/></label>
            })}
            <button type="button" class="danger" data-testid="start-rollback" disabled=move || !ready() on:click=start>
                "Start the rollback"
            </button>
            {move || error.get().map(|e| view! { <p class="source-error" role="alert" data-testid="start-error">{e}</p> })}
        </Panel>
    }
}

/// The run's buttons and the skip reason live in the server-rendered run region: their events
/// reach the island's wrapper, and these read them.
mod browser {
    #[cfg(feature = "hydrate")]
    use wasm_bindgen::JsCast;

    /// A click on a run button: its action, the run's id, and the skip reason typed.
    pub fn run_button(ev: &leptos::ev::MouseEvent) -> Option<(String, String, Option<String>)> {
        #[cfg(feature = "hydrate")]
        {
            let target: web_sys::Element = ev.target()?.dyn_into().ok()?;
            let button = target.closest("[data-run-action]").ok()??;
            if button.has_attribute("disabled") {
                return None;
            }
            let reason = skip_input().map(|i| i.value()).filter(|r| !r.trim().is_empty());
            Some((button.get_attribute("data-run-action")?, button.get_attribute("data-run-id")?, reason))
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = ev;
            None
        }
    }

    /// A click on the rehearsal's button: whether the fill is asked for.
    pub fn rehearse_button(ev: &leptos::ev::MouseEvent) -> Option<bool> {
        #[cfg(feature = "hydrate")]
        {
            let target: web_sys::Element = ev.target()?.dyn_into().ok()?;
            let button = target.closest("[data-rehearse]").ok()??;
            if button.has_attribute("disabled") {
                return None;
            }
            let fill = leptos::prelude::document()
                .get_element_by_id("rehearse-fill")
                .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
                .is_some_and(|i| i.checked());
            Some(fill)
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = ev;
            None
        }
    }

    /// The skip button takes a reason: enabled once one is typed.
    pub fn skip_typed(ev: &leptos::ev::Event) {
        #[cfg(feature = "hydrate")]
        {
            let typed_into_skip = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .is_some_and(|t| t.id() == "skip-reason");
            let button = leptos::prelude::document().query_selector("[data-run-action=skip]").ok().flatten();
            if let (true, Some(button), Some(input)) = (typed_into_skip, button, skip_input()) {
                let _ = if input.value().trim().is_empty() {
                    button.set_attribute("disabled", "")
                } else {
                    button.remove_attribute("disabled")
                };
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    }

    #[cfg(feature = "hydrate")]
    fn skip_input() -> Option<web_sys::HtmlInputElement> {
        leptos::prelude::document().get_element_by_id("skip-reason")?.dyn_into().ok()
    }
}
