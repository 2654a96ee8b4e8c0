//! The autopilot page's island: the plan's buttons (rendered by the server in the region; their
//! clicks are heard here), the start form, and the region drawn again every 2 seconds and after
//! each action. Every change goes through the REST API; what it changed is drawn by the server.

use leptos::prelude::*;

use super::REGION;
use crate::api::autopilot::{PlanActionBody, StartPlan};
use crate::components::client;
use crate::components::panel::Panel;

/// The region drawn again (what was typed into it kept), and whether a plan is active now.
async fn redraw(active: RwSignal<bool>) -> Result<(), String> {
    client::swap(&client::here(), &[REGION]).await?;
    if let Some(now) = browser::active() {
        active.set(now);
    }
    Ok(())
}

/// An island, lazy: its code is a wasm chunk of its own, loaded only where this page is shown.
/// `children` is the server-rendered region.
#[island(lazy)]
pub fn AutopilotControls(operator: bool, active: bool, defaults: String, children: Children) -> impl IntoView {
    let active = RwSignal::new(active);
    let act_error = RwSignal::new(None::<String>);
    // Since when, and why, the region could not be read (it then shows the last values).
    let failing = client::redraw_every(2, move || redraw(active));
    let act = move |action: String, body: PlanActionBody| {
        leptos::task::spawn_local(async move {
            let url = format!("/api/v1/autopilot/{action}");
            let done = client::post::<_, serde::de::IgnoredAny>(&url, &body).await;
            act_error.set(done.err());
            let _ = redraw(active).await;
        });
    };
    let failing_line = move || {
        failing.get().map(|(since, why)| {
            view! {
                <p class="live-error" role="alert" data-testid="live-error">
                    {format!("{why}; the plan below is as last read. Failing since {since}.")}
                </p>
            }
        })
    };
    view! {
        {failing_line}
        <div on:click=move |ev| browser::plan_button(&ev).map(|(a, body)| act(a, body)).unwrap_or_default()>
            {children()}
        </div>
        {move || act_error.get().map(|e| view! { <p class="source-error" role="alert" data-testid="autopilot-error">{e}</p> })}
        {move || (operator && !active.get()).then(|| view! { <StartForm defaults=defaults.clone() active/> })}
    }
}

#[component]
fn StartForm(defaults: String, active: RwSignal<bool>) -> impl IntoView {
    let steps = RwSignal::new(defaults);
    let reason = RwSignal::new(String::new());
    let override_reason = RwSignal::new(String::new());
    let confirm_lower = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let start = move |_| {
        let typed = |s: RwSignal<String>| Some(s.get_untracked()).filter(|t| !t.trim().is_empty());
        let body = StartPlan {
            reason: reason.get_untracked(),
            steps: None,
            steps_text: Some(steps.get_untracked()),
            override_guards_reason: typed(override_reason),
            confirm_lower: typed(confirm_lower),
        };
        leptos::task::spawn_local(async move {
            let done = client::post::<_, serde::de::IgnoredAny>("/api/v1/autopilot", &body).await;
            error.set(done.err());
            let _ = redraw(active).await;
        });
    };
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
            <button type="button" class="primary" data-testid="plan-start" disabled=move || reason.get().trim().is_empty() on:click=start>
                "Start the plan"
            </button>
            {move || error.get().map(|e| view! { <p class="source-error" role="alert" data-testid="autopilot-error">{e}</p> })}
        </Panel>
    }
}

/// The plan's buttons live in the server-rendered region: their clicks reach the island's
/// wrapper, and these read them and the fields beside them.
mod browser {
    use crate::api::autopilot::PlanActionBody;
    #[cfg(feature = "hydrate")]
    use wasm_bindgen::JsCast;

    /// A click on a plan button: its action, with the reason and the check chosen.
    pub fn plan_button(ev: &leptos::ev::MouseEvent) -> Option<(String, PlanActionBody)> {
        #[cfg(feature = "hydrate")]
        {
            use leptos::prelude::document;
            let target: web_sys::Element = ev.target()?.dyn_into().ok()?;
            let button = target.closest("[data-plan-action]").ok()??;
            let reason = document()
                .get_element_by_id("autopilot-reason")
                .and_then(|i| i.dyn_into::<web_sys::HtmlInputElement>().ok())
                .map(|i| i.value())
                .filter(|r| !r.trim().is_empty());
            let check = document()
                .get_element_by_id("autopilot-check")
                .and_then(|s| s.dyn_into::<web_sys::HtmlSelectElement>().ok())
                .map(|s| s.value())
                .filter(|c| !c.is_empty());
            Some((button.get_attribute("data-plan-action")?, PlanActionBody { reason, check }))
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = ev;
            None
        }
    }

    /// Whether the region drawn now shows an active plan.
    pub fn active() -> Option<bool> {
        #[cfg(feature = "hydrate")]
        return leptos::prelude::document()
            .get_element_by_id(super::REGION)
            .and_then(|r| r.get_attribute("data-active"))
            .map(|a| a == "true");
        #[cfg(not(feature = "hydrate"))]
        None
    }
}
