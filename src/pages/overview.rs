//! The overview: the rollout at a glance, from every source, refreshed without a reload.

use leptos::prelude::*;

use crate::api::{get_status, StatusReport};
use crate::components::panel::{Panel, Value};

fn fmt_rate(v: Option<f64>) -> Option<String> {
    v.map(|v| if v.is_finite() { format!("{v:.2} /s") } else { v.to_string() })
}

fn fmt_count(v: Option<i64>) -> Option<String> {
    v.map(|v| v.to_string())
}

fn fmt_bool(v: Option<bool>) -> Option<String> {
    v.map(|b| if b { "present" } else { "missing" }.to_string())
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let status = Resource::new(|| (), |_| get_status());

    // Refresh in the browser at the interval the server reports, without reloading the page.
    #[cfg(feature = "hydrate")]
    {
        let started = StoredValue::new(false);
        Effect::new(move |_| {
            if let Some(Ok(report)) = status.get() {
                if !started.get_value() {
                    started.set_value(true);
                    let every = std::time::Duration::from_secs(report.refresh_interval_secs.max(1));
                    let _ = set_interval_with_handle(move || status.refetch(), every);
                }
            }
        });
    }

    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the rollout status…"</p> }>
            {move || Suspend::new(async move {
                match status.await {
                    Ok(report) => view! { <StatusPanels report/> }.into_any(),
                    Err(e) => view! {
                        <p class="source-error" role="alert">"The dashboard server could not be reached: " {e.to_string()}</p>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn StatusPanels(report: StatusReport) -> impl IntoView {
    let StatusReport { flag, schema, writer, metrics, records_24h, generated_at, .. } = report;
    let updated = generated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let revision_note = match (&schema.alembic_revision, &schema.expected_head) {
        (Some(rev), Some(head)) if rev != head => Some(format!("expected head {head}")),
        _ => None,
    };
    view! {
        <p class="updated">"Updated " <time data-testid="generated-at" datetime=generated_at.to_rfc3339()>{updated}</time></p>
        <div class="panels">
            <Panel title="Feature flag" id="flag" error=flag.error.clone()>
                <Value label="Rollout" testid="flag-percentage" value=flag.percentage.map(|p| format!("{p} %"))/>
                <Value label="Stored value" testid="flag-raw" value=flag.raw.clone()/>
                <p class="detail">{format!("{} via {}", flag.key, flag.source)}
                    {flag.version.map(|v| format!(", resourceVersion {v}"))}</p>
            </Panel>
            <Panel title="Usage (Prometheus)" id="metrics" error=metrics.error.clone()>
                <Value label="Split doses" testid="split-rate" value=fmt_rate(metrics.split_per_s)/>
                <Value label="Legacy doses" testid="legacy-rate" value=fmt_rate(metrics.legacy_per_s)/>
            </Panel>
            <Panel title="Records, last 24 h" id="records" error=records_24h.error.clone()>
                <Value label="Total" testid="records-total" value=fmt_count(records_24h.total)/>
                <Value label="With short dose" testid="records-with-short" value=fmt_count(records_24h.with_short)/>
                <Value label="With long dose" testid="records-with-long" value=fmt_count(records_24h.with_long)/>
            </Panel>
            <Panel title="Schema" id="schema" error=schema.error.clone()>
                <Value label="insulin_short" testid="schema-short" value=fmt_bool(schema.insulin_short)/>
                <Value label="insulin_long" testid="schema-long" value=fmt_bool(schema.insulin_long)/>
                <Value label="Alembic revision" testid="schema-revision" value=schema.alembic_revision.clone()/>
                {revision_note.map(|n| view! { <p class="warning">{n}</p> })}
            </Panel>
            <Panel title="Writers" id="writer" error=writer.error.clone()>
                <Value label="Desired replicas" testid="writer-replicas" value=writer.replicas.map(|r| r.to_string())/>
                <Value label="Ready replicas" testid="writer-ready" value=writer.ready_replicas.map(|r| r.to_string())/>
                <p class="detail">{format!("deployment {}", writer.deployment)}</p>
            </Panel>
        </div>
    }
}
