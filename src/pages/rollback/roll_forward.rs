//! The roll-forward form (issue 33, item 4), an island of its own (lazy: its code loads only on a
//! page that shows it): once the split
//! revision is back, the latest run's archive is re-applied. Dry run first (what each verdict
//! counts, by the category the row was archived in); then a reason, the environment's name and
//! the dry run's count typed. Everything goes through the REST API.

use leptos::prelude::*;

use crate::api::rollback::{RollForward, RollForwardView};
use crate::components::client;
use crate::components::panel::Panel;

#[island(lazy)]
pub fn RollForward(operator: bool, id: i64, environment: String) -> impl IntoView {
    let dry = RwSignal::new(None::<RollForwardView>);
    let done = RwSignal::new(None::<RollForwardView>);
    let reason = RwSignal::new(String::new());
    let typed_env = RwSignal::new(String::new());
    let ack = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let look = move |_| {
        leptos::task::spawn_local(async move {
            let url = format!("/api/v1/rollback/{id}/roll_forward/plan");
            match client::post::<_, RollForwardView>(&url, &serde_json::json!({})).await {
                Ok(v) => {
                    dry.set(Some(v));
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let env_label = format!("Type the environment's name ({environment}) to confirm");
    let ready = move || {
        operator
            && !reason.get().trim().is_empty()
            && typed_env.get() == environment
            && dry.read().as_ref().is_some_and(|d| ack.get().trim().parse::<i64>().ok() == Some(d.restorable))
    };
    let apply = move |_| {
        let body = RollForward {
            reason: reason.get_untracked(),
            confirm_environment: typed_env.get_untracked(),
            acknowledge_rows: ack.get_untracked().trim().parse().unwrap_or(-1),
        };
        leptos::task::spawn_local(async move {
            let url = format!("/api/v1/rollback/{id}/roll_forward/apply");
            match client::post::<_, RollForwardView>(&url, &body).await {
                Ok(v) => {
                    done.set(Some(v));
                    dry.set(None);
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <Panel title="Roll forward again" id="roll-forward" error=None>
            <p class="detail">{format!(
                "Run #{id} archived the split values before the downgrade. Once the split revision is deployed again, \
                 this puts each archived insulin_short / insulin_long back on the row it came from and empties a dose \
                 the fill wrote. Rows deleted, changed or given split values since are skipped and counted; a row \
                 archived as a doubled dose is never brought back."
            )}</p>
            <button type="button" data-testid="roll-forward-dry-run" on:click=look>"Dry run"</button>
            {move || dry.get().map(|v| view! { <Verdicts v testid="roll-forward-plan"/> })}
            <label class="field">"Reason (required, recorded)"
                <input type="text" disabled=!operator data-testid="roll-forward-reason" prop:value=move || reason.get()
                    on:input=move |ev| reason.set(event_target_value(&ev))/></label>
            <label class="field">{env_label}
                <input type="text" disabled=!operator data-testid="roll-forward-env" prop:value=move || typed_env.get()
                    on:input=move |ev| typed_env.set(event_target_value(&ev))/></label>
            <label class="field">{move || format!(
                "Type the number of rows the dry run will write ({}) to acknowledge",
                dry.read().as_ref().map(|d| d.restorable.to_string()).unwrap_or_else(|| "run the dry run first".into())
            )}
                <input type="text" disabled=!operator data-testid="roll-forward-ack" prop:value=move || ack.get()
                    on:input=move |ev| ack.set(event_target_value(&ev))/></label>
            <button type="button" class="danger" data-testid="roll-forward-apply" disabled=move || !ready() on:click=apply>
                "Roll forward"
            </button>
            {move || error.get().map(|e| view! { <p class="source-error" role="alert" data-testid="roll-forward-error">{e}</p> })}
            {move || done.get().map(|v| view! { <Verdicts v testid="roll-forward-done"/> })}
        </Panel>
    }
}

/// What each verdict counted, by archived category.
#[component]
fn Verdicts(v: RollForwardView, testid: &'static str) -> impl IntoView {
    let head = if v.dry_run {
        format!("Dry run: {} row(s) would be written ({} with the fill undone)", v.restorable, v.undo_fill)
    } else {
        format!(
            "Rolled forward: {} row(s) written ({} with the fill undone); verified: {}",
            v.restorable,
            v.undo_fill,
            v.verified.clone().unwrap_or_default()
        )
    };
    view! {
        <div data-testid=testid>
            <p><strong>{head}</strong></p>
            <table class="data">
                <thead><tr><th>"Verdict"</th><th>"Archived as"</th><th class="num">"Rows"</th></tr></thead>
                <tbody>
                    {v.counts.into_iter().map(|c| view! {
                        <tr><td>{c.verdict.replace('_', " ")}</td><td>{c.category.replace('_', " ")}</td><td class="num">{c.rows}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
