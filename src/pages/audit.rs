//! The audit trail: every change and every refused or failed attempt, newest first, with CSV
//! export; below it, who was told about what (the notification receivers and their deliveries).

use crate::api::audit::Action;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::audit::AuditEntry;
use crate::api::notify::{DeadLetter, DeliveryAttempt, NotificationsView, ReceiverState};
use crate::components::time::{self, Shown};

/// The filters: everything, or one of the flag's changes.
fn filters() -> [(&'static str, &'static str); 4] {
    let f = |a: Action| (a.as_str(), a.label());
    [("", "all"), f(Action::FlagSet), f(Action::FlagKill), f(Action::FlagExternalChange)]
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let action = Memo::new(move |_| query.read().get("action").unwrap_or_default());
    let entries = Resource::new(move || action.get(), |a| get_audit(Some(a)));
    view! {
        <h1 class="page-title">"Audit trail"</h1>
        <nav class="selectors">
            <span class="selector-label">"Action"</span>
            {filters().into_iter().map(|(a, label)| view! {
                <a href=format!("/audit?action={a}") class:selected=move || action.get() == a data-testid=format!("audit-filter-{label}")>{label}</a>
            }).collect_view()}
            <a class="csv" href=move || format!("/api/v1/audit.csv{}", if action.get().is_empty() { String::new() } else { format!("?action={}", action.get()) })
               data-testid="audit-csv" download="rollout-audit.csv">"Download CSV"</a>
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Reading the audit trail…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Ok(list) if list.is_empty() => view! { <p data-testid="audit-empty">"No entries."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="audit" data-testid="audit-table">
                            <thead><tr><th>"Time (UTC)"</th><th>"Who"</th><th>"Action"</th><th>"Before"</th><th>"After"</th><th>"Reason"</th><th>"Outcome"</th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|e| view! {
                                    <tr class=format!("outcome-{}", e.outcome.as_str())>
                                        <td>{time::utc(e.at, Shown::DateSeconds)}</td>
                                        <td>{format!("{} ({})", e.actor, e.role)}</td>
                                        <td>{e.action}</td>
                                        <td>{e.value_before.unwrap_or_default()}</td>
                                        <td>{e.value_after.unwrap_or_default()}</td>
                                        <td>{e.reason.unwrap_or_default()}</td>
                                        <td>{e.outcome.as_str()}{e.outcome_detail.map(|d| view! { <div class="detail">{d}</div> })}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
        <Notifications/>
    }
}

/// Each receiver's state and the newest delivery attempts.
#[component]
fn Notifications() -> impl IntoView {
    let view = Resource::new(|| (), |_| get_notifications());
    view! {
        <section class="notifications" data-testid="notifications">
            <h2>"Notifications"</h2>
            <Transition fallback=|| view! { <p class="loading">"Reading the deliveries…"</p> }>
                {move || Suspend::new(async move {
                    match view.await {
                        Ok(NotificationsView { receivers, .. }) if receivers.is_empty() => view! {
                            <p data-testid="notify-none">"No receivers are configured (settings: [[notify.receivers]])."</p>
                        }.into_any(),
                        Ok(NotificationsView { receivers, attempts, dead_letters }) => view! {
                            <table class="audit" data-testid="notify-receivers">
                                <thead><tr><th>"Receiver"</th><th>"Takes"</th><th>"Waiting"</th><th>"Delivered"</th><th>"Refused by it"</th><th>"State"</th></tr></thead>
                                <tbody>{receivers.into_iter().map(receiver_row).collect_view()}</tbody>
                            </table>
                            {(!dead_letters.is_empty()).then(|| view! {
                                <h3>"Dead letters"</h3>
                                <p class="detail">"Events a receiver failed to take too many times in a row, set aside so that the ones behind them go on. An operator sends one again with POST /api/v1/notifications/{receiver}/resend {\"audit_id\": N}."</p>
                                <table class="audit" data-testid="notify-dead-letters">
                                    <thead><tr><th>"Set aside (UTC)"</th><th>"Receiver"</th><th>"Event"</th><th>"Attempts"</th><th>"Last answer"</th></tr></thead>
                                    <tbody>{dead_letters.into_iter().map(dead_letter_row).collect_view()}</tbody>
                                </table>
                            })}
                            <h3>"Recent deliveries"</h3>
                            <table class="audit" data-testid="notify-attempts">
                                <thead><tr><th>"Time (UTC)"</th><th>"Receiver"</th><th>"Event"</th><th>"Attempt"</th><th>"Result"</th></tr></thead>
                                <tbody>{attempts.into_iter().map(attempt_row).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn receiver_row(r: ReceiverState) -> impl IntoView {
    let alerts = r.kind == "alertmanager";
    let takes = match (alerts, r.events.is_empty()) {
        (true, _) => "alerts while a condition holds".to_string(),
        (false, true) => "every event".to_string(),
        (false, false) => r.events.join(", "),
    };
    let waiting = match (alerts, r.firing.is_empty()) {
        (true, true) => "no alert firing".to_string(),
        (true, false) => format!("firing: {}", r.firing.join(", ")),
        (false, _) => r.due.to_string(),
    };
    let state = match (&r.unusable, r.failing_since, &r.last_error) {
        (Some(why), ..) => format!("cannot send: {why}"),
        (None, Some(since), last) => {
            format!("failing since {}: {}", time::utc(since, Shown::DateSeconds), last.clone().unwrap_or_default())
        }
        _ => "sending".to_string(),
    };
    let failing = r.unusable.is_some() || r.failing_since.is_some();
    view! {
        <tr class:outcome-failed=failing data-testid=format!("notify-receiver-{}", r.name)>
            <td>{format!("{} ({})", r.name, r.kind)}</td>
            <td>{format!("{takes}; {} and above", r.min_severity)}</td>
            <td>{waiting}</td>
            <td>{r.delivered}</td>
            <td>{r.rejected}{(r.dead > 0).then(|| format!(" · {} dead letter(s)", r.dead))}</td>
            <td>{state}</td>
        </tr>
    }
}

fn dead_letter_row(d: DeadLetter) -> impl IntoView {
    view! {
        <tr class="outcome-failed">
            <td>{time::utc(d.at, Shown::DateSeconds)}</td>
            <td>{d.receiver}</td>
            <td>{format!("{}, entry #{}", d.event, d.audit_id)}</td>
            <td>{d.attempts}</td>
            <td>{d.last_error.unwrap_or_default()}</td>
        </tr>
    }
}

fn attempt_row(a: DeliveryAttempt) -> impl IntoView {
    let result = match (a.ok, a.status) {
        (true, Some(s)) => format!("HTTP {s} in {} ms", a.millis),
        (_, _) => a.detail.clone().unwrap_or_else(|| "failed".into()),
    };
    view! {
        <tr class=if a.ok { "outcome-done" } else { "outcome-failed" }>
            <td>{time::utc(a.at, Shown::DateSeconds)}</td>
            <td>{a.receiver}</td>
            <td>{format!("{} ({})", a.event, a.severity)}{a.audit_id.map(|id| format!(", entry #{id}"))}</td>
            <td>{a.attempt}</td>
            <td>{result}</td>
        </tr>
    }
}

// ---------------------------------------------------------------- server functions

/// The newest audit entries, optionally of one action; the same service call as `GET /api/v1/audit`.
#[server(endpoint = "audit", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_audit(action: Option<String>) -> Result<Vec<AuditEntry>, ServerFnError> {
    let state = crate::server::fns::server_state()?;
    let action = action.filter(|a| !a.is_empty());
    crate::server::audit::list(&state.state_db, 500, action.as_deref())
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

/// Every receiver's state and the newest delivery attempts; the same service call as
/// `GET /api/v1/notifications`.
#[server(endpoint = "notifications", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_notifications() -> Result<NotificationsView, ServerFnError> {
    let state = crate::server::fns::server_state()?;
    crate::server::notify::view(&state).await.map_err(|e| ServerFnError::new(e.to_string()))
}
