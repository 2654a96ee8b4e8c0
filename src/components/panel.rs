//! A dashboard panel: a titled box that shows its values, or, when its source failed, which
//! source failed, why, and since when, above the values (which are then missing or stale).

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::components::time::{self, Shown};

/// "2026-12-02 13:40:02 UTC (4 min ago)".
pub fn since_text(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let mins = (now - since).num_minutes().max(0);
    let ago = if mins < 1 { "less than a minute ago".to_string() } else { format!("{mins} min ago") };
    format!("{} UTC ({ago})", time::utc(since, Shown::DateSeconds))
}

#[component]
pub fn Panel(
    /// Heading of the panel.
    title: &'static str,
    /// Stable id for tests and links.
    id: &'static str,
    /// The source's error sentence, if it failed.
    error: Option<String>,
    /// Since when the source has been failing, as text (none for a source never read, such as
    /// one not configured: the sentence then says nothing of a time).
    #[prop(optional_no_strip)]
    since: Option<String>,
    #[prop(optional, into)] class: String,
    /// When the values shown were read from their source.
    #[prop(optional)]
    updated: Option<chrono::DateTime<Utc>>,
    children: Children,
) -> impl IntoView {
    let failed = error.is_some();
    view! {
        <section class=format!("panel {class}") class:panel-failed=failed id=id data-testid=id>
            <h2>{title}</h2>
            {error.map(|e| view! { <Stale testid=format!("{id}-error") error=e since=since /> })}
            <div class="panel-body">{children()}</div>
            {updated.map(|t| view! {
                <p class="panel-updated" data-testid=format!("{id}-updated")>"as of " {time::utc(t, Shown::TimeOfDay)}" UTC"</p>
            })}
        </section>
    }
}

/// Which source failed, why, and since when: the one sentence every panel and chart shows above
/// values that are then missing or stale.
#[component]
pub fn Stale(testid: String, error: String, since: Option<String>) -> impl IntoView {
    view! {
        <div class="source-error" role="alert" data-testid=testid>
            <strong>"Stale. "</strong>{error}
            {since.map(|s| view! { <span class="since">" Failing since " {s} "."</span> })}
        </div>
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
