//! A dashboard panel: a titled box that shows its values, or, when its source failed,
//! which source failed and why, in place of the values.

use leptos::prelude::*;

#[component]
pub fn Panel(
    /// Heading of the panel.
    title: &'static str,
    /// Stable id for tests and links.
    id: &'static str,
    /// The source's error sentence, if it failed.
    error: Option<String>,
    children: Children,
) -> impl IntoView {
    let failed = error.is_some();
    view! {
        <section class="panel" class:panel-failed=failed id=id data-testid=id>
            <h2>{title}</h2>
            {error.map(|e| view! { <p class="source-error" role="alert" data-testid=format!("{id}-error")>{e}</p> })}
            <div class="panel-body">{children()}</div>
        </section>
    }
}

/// One labelled value; `None` shows as a dash.
#[component]
pub fn Value(label: &'static str, testid: &'static str, value: Option<String>) -> impl IntoView {
    view! {
        <div class="value">
            <span class="value-label">{label}</span>
            <span class="value-number" data-testid=testid>{value.unwrap_or_else(|| "—".to_string())}</span>
        </div>
    }
}
