//! Rollout control: the flag, its guards, setting the percentage and the kill switch. Viewers see
//! the same page with the controls disabled and the reason why; the server checks again anyway.

use leptos::prelude::*;

use crate::api::auth::Role;
use crate::api::rollout::{ChangeDone, KillSwitch, RolloutView, SetPercentage};
use crate::components::client;
use crate::components::panel::{Panel, Value};

const PRESETS: [i64; 5] = [5, 10, 25, 50, 100];

/// A change waiting for its confirmation.
#[derive(Clone, Debug, PartialEq)]
enum Pending {
    Set { from: Option<u8>, to: i64 },
    Kill { from: Option<u8> },
}

/// The page, rendered on the server with the flag's values; the controls are the island below.
#[component]
pub fn RolloutPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| get_rollout());
    view! {
        <h1 class="page-title">"Rollout control"</h1>
        <Transition fallback=|| view! { <p class="loading">"Reading the flag…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => view! { <Rollout v/> }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// What the operator has entered so far, shared by the forms and the confirmation dialog.
#[derive(Clone, Copy)]
struct Form {
    chosen: RwSignal<Option<i64>>,
    custom: RwSignal<String>,
    reason: RwSignal<String>,
    override_on: RwSignal<bool>,
    override_reason: RwSignal<String>,
    kill_reason: RwSignal<String>,
    pending: RwSignal<Option<Pending>>,
}

impl Form {
    fn new() -> Self {
        Form {
            chosen: RwSignal::new(None),
            custom: RwSignal::new(String::new()),
            reason: RwSignal::new(String::new()),
            override_on: RwSignal::new(false),
            override_reason: RwSignal::new(String::new()),
            kill_reason: RwSignal::new(String::new()),
            pending: RwSignal::new(None),
        }
    }
}

/// Why this viewer cannot change the rollout now, if they cannot.
fn why_not(me: Option<&crate::api::auth::Identity>, state: &crate::api::rollout::RolloutState) -> Option<String> {
    match me {
        None => Some("Sign in as an operator to change the rollout.".to_string()),
        Some(m) if m.role != Role::Operator => {
            Some(format!("Signed in as {} ({}): only operators may change the rollout.", m.user, m.role.as_str()))
        }
        _ => (!state.writable).then(|| {
            format!(
                "The flag holds {:?}, a format the dashboard will not rewrite.",
                state.raw.clone().unwrap_or_default()
            )
        }),
    }
}

/// The region a change redraws: the flag and its guards, with what the controls need to know
/// of them as attributes (read again by the island after each change).
const VALUES: &str = "rollout-values";

/// The flag now, its guards and the controls (server-rendered; the controls' island hydrates).
#[component]
fn Rollout(v: RolloutView) -> impl IntoView {
    let RolloutView { state, me, target } = v;
    let state = match state {
        Ok(s) => s,
        Err(e) => return view! { <p class="source-error" role="alert" data-testid="rollout-error">{e}</p> }.into_any(),
    };
    let why_not = why_not(me.as_ref(), &state);
    let facts = Facts {
        current: state.percentage,
        failing: state.guards.iter().any(|g| !g.passed),
        version: state.version.clone().unwrap_or_default(),
    };
    let target_via = format!("{} via {}", target, state.source);
    view! {
        <div class="panels" id=VALUES data-version=facts.version.clone()
            data-percentage=facts.current.map(|p| p.to_string()).unwrap_or_default() data-failing=facts.failing.to_string()>
            <Panel title="Flag now" id="rollout-now" error=None>
                <Value label="Rollout" testid="rollout-percentage" value=state.percentage.map(|p| format!("{p} %"))/>
                <Value label="Stored value" testid="rollout-raw" value=state.raw.clone()/>
                <Value label="Version" testid="rollout-version" value=state.version.clone()/>
                <p class="detail">{target_via}</p>
            </Panel>
            <Panel title="Guards for an increase" id="rollout-guards" error=None>
                <ul class="guards">
                    {state.guards.iter().map(|g| view! {
                        <li class:guard-ok=g.passed class:guard-bad=!g.passed data-testid=format!("guard-{}", g.name)>
                            {if g.passed { "✓ " } else { "✗ " }}<strong>{g.name.replace('_', " ")}</strong>": "{g.detail.clone()}
                        </li>
                    }).collect_view()}
                </ul>
            </Panel>
        </div>
        {why_not.clone().map(|w| view! { <p class="disabled-reason" data-testid="controls-disabled">{w}</p> })}
        <RolloutControls can_change=why_not.is_none() facts target/>
    }
    .into_any()
}

/// What the controls know of the flag: the percentage, whether a guard fails, and the version a
/// change must name. From the server's rendering, and from the redrawn region after a change.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Facts {
    current: Option<u8>,
    failing: bool,
    version: String,
}

impl Facts {
    /// Read off the redrawn region's attributes.
    #[cfg(feature = "hydrate")]
    fn shown() -> Option<Facts> {
        let region = document().get_element_by_id(VALUES)?;
        Some(Facts {
            current: region.get_attribute("data-percentage").and_then(|p| p.parse().ok()),
            failing: region.get_attribute("data-failing").as_deref() == Some("true"),
            version: region.get_attribute("data-version").unwrap_or_default(),
        })
    }
    #[cfg(not(feature = "hydrate"))]
    fn shown() -> Option<Facts> {
        None
    }
}

/// An island, lazy: its code is a wasm chunk of its own, loaded only where this page is shown.
/// A change goes through the REST API; after it, the flag's region is redrawn by the server.
#[island(lazy)]
fn RolloutControls(can_change: bool, facts: Facts, target: String) -> impl IntoView {
    let form = Form::new();
    let facts = RwSignal::new(facts);
    let outcome = RwSignal::new(None::<Result<ChangeDone, String>>);
    let send = move |pending: Pending| {
        form.pending.set(None);
        let version = facts.get_untracked().version;
        leptos::task::spawn_local(async move {
            let done = match pending {
                Pending::Set { to, .. } => {
                    let body = SetPercentage {
                        percentage: to,
                        reason: form.reason.get_untracked(),
                        expected_version: version,
                        override_guards: form.override_on.get_untracked(),
                        override_reason: Some(form.override_reason.get_untracked()).filter(|r| !r.trim().is_empty()),
                    };
                    client::post("/api/v1/rollout", &body).await
                }
                Pending::Kill { .. } => {
                    let reason = Some(form.kill_reason.get_untracked()).filter(|r| !r.trim().is_empty());
                    client::post("/api/v1/rollout/kill", &KillSwitch { reason }).await
                }
            };
            if done.is_ok() {
                // The flag and its guards as the server sees them now; the outcome says the rest.
                if client::swap(&client::here(), &[VALUES]).await.is_ok() {
                    if let Some(now) = Facts::shown() {
                        facts.set(now);
                    }
                }
            }
            outcome.set(Some(done));
        });
    };
    let shown_outcome = move || {
        outcome.get().map(|r| match r {
            Ok(ChangeDone { unconfirmed: Some(why), before, after, audit_id, .. }) => view! {
                <p class="source-error" role="alert" data-testid="rollout-result">
                    {format!("{before} → {after} (audit entry #{audit_id}): {why}. Reload to see the flag.")}
                </p>
            }
            .into_any(),
            Ok(d) => view! {
                <p class="ok-text" role="status" data-testid="rollout-result">
                    {format!("Done: {} → {} (audit entry #{}).", d.before, d.after, d.audit_id)}
                </p>
            }
            .into_any(),
            Err(e) => view! { <p class="source-error" role="alert" data-testid="rollout-result">{e}</p> }.into_any(),
        })
    };
    view! {
        {shown_outcome}
        <div class="panels">
            <ChangePanel form can_change facts/>
            <Panel title="Kill switch" id="rollout-kill" error=None class="kill">
                <p>"Sets the flag to 0 % for every user at once. Always allowed for operators."</p>
                <label class="field">"Reason (optional, recorded)"
                    <input type="text" disabled=!can_change data-testid="kill-reason" on:input=move |ev| form.kill_reason.set(event_target_value(&ev))/>
                </label>
                <button type="button" class="danger" disabled=!can_change data-testid="kill"
                    on:click=move |_| form.pending.set(Some(Pending::Kill { from: facts.get_untracked().current }))>"Kill switch: 0 % now"</button>
            </Panel>
        </div>
        <ConfirmDialog pending=form.pending target confirm=move || if let Some(p) = form.pending.get_untracked() { send(p) }/>
    }
}

/// The percentage form: presets, a custom value, the reason, and the override when a guard fails.
#[component]
fn ChangePanel(form: Form, can_change: bool, facts: RwSignal<Facts>) -> impl IntoView {
    let Form { chosen, custom, reason, override_on, override_reason, pending, .. } = form;
    let current = move || facts.read().current;
    let is_increase = move || chosen.get().is_some_and(|c| current().is_none_or(|cur| c > i64::from(cur)));
    let ready = move || {
        can_change
            && chosen.get().is_some_and(|c| (0..=100).contains(&c))
            && !reason.get().trim().is_empty()
            && (!facts.read().failing
                || !is_increase()
                || (override_on.get() && !override_reason.get().trim().is_empty()))
    };
    view! {
        <Panel title="Change the percentage" id="rollout-change" error=None>
            <div class="presets">
                {PRESETS.into_iter().map(|p| view! {
                    <button type="button" disabled=!can_change class:selected=move || chosen.get() == Some(p)
                        data-testid=format!("preset-{p}") on:click=move |_| { chosen.set(Some(p)); custom.set(String::new()); }>
                        {format!("{p} %")}
                    </button>
                }).collect_view()}
            </div>
            <label class="field">"Or a whole number from 0 to 100"
                <input type="number" min="0" max="100" step="1" disabled=!can_change data-testid="custom-percentage"
                    prop:value=move || custom.get()
                    on:input=move |ev| {
                        let v = event_target_value(&ev);
                        chosen.set(v.parse::<i64>().ok().filter(|n| (0..=100).contains(n)));
                        custom.set(v);
                    }/>
            </label>
            <label class="field">"Reason (required, kept in the audit trail)"
                <textarea disabled=!can_change data-testid="reason" prop:value=move || reason.get()
                    on:input=move |ev| reason.set(event_target_value(&ev))></textarea>
            </label>
            {move || facts.read().failing.then(|| view! {
                <div class="override">
                    <label><input type="checkbox" disabled=!can_change data-testid="override"
                        on:change=move |ev| override_on.set(event_target_checked(&ev))/>
                        " Override the failed guards (increase anyway)"</label>
                    <label class="field">"Why overriding is safe (recorded)"
                        <input type="text" disabled=!can_change data-testid="override-reason"
                            on:input=move |ev| override_reason.set(event_target_value(&ev))/>
                    </label>
                </div>
            })}
            <button type="button" class="primary" data-testid="review-change" disabled=move || !ready()
                on:click=move |_| pending.set(chosen.get().map(|to| Pending::Set { from: current(), to }))>
                "Review the change…"
            </button>
        </Panel>
    }
}

/// The confirmation of a pending change, naming what it writes.
#[component]
fn ConfirmDialog(
    pending: RwSignal<Option<Pending>>,
    target: String,
    confirm: impl Fn() + Clone + Send + Sync + 'static,
) -> impl IntoView {
    move || {
        pending.get().map(|p| {
            let unknown = || "an unknown value".to_string();
            let (title, text) = match p {
                Pending::Set { from, to } => (
                    "Confirm the rollout change",
                    format!(
                        "Change insulin_dose_split from {} to {to} %. This decides which share of users' diary apps save split doses \
                         (insulin_short / insulin_long) instead of the legacy dose. It writes {target}.",
                        from.map(|f| format!("{f} %")).unwrap_or_else(unknown)
                    ),
                ),
                Pending::Kill { from } => (
                    "Confirm the kill switch",
                    format!(
                        "Set insulin_dose_split from {} to 0 % for every user now. It writes {target}.",
                        from.map(|f| format!("{f} %")).unwrap_or_else(unknown)
                    ),
                ),
            };
            let confirm = confirm.clone();
            view! {
                <div class="dialog-backdrop">
                    <div class="dialog" role="dialog" aria-modal="true" data-testid="confirm-dialog">
                        <h2>{title}</h2>
                        <p data-testid="confirm-text">{text}</p>
                        <div class="dialog-buttons">
                            <button type="button" class="primary" data-testid="confirm" on:click=move |_| confirm()>"Confirm"</button>
                            <button type="button" data-testid="cancel" on:click=move |_| pending.set(None)>"Cancel"</button>
                        </div>
                    </div>
                </div>
            }
        })
    }
}

// ---------------------------------------------------------------- server functions

#[cfg(feature = "ssr")]
use crate::server::fns::caller;

#[server(endpoint = "rollout", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_rollout() -> Result<RolloutView, ServerFnError> {
    let (state, caller) = caller().await?;
    Ok(RolloutView {
        state: crate::server::rollout::current(&state).await.map_err(|e| e.to_string()),
        me: caller.who().cloned(),
        target: state.flags.describe_target(),
    })
}
