//! The overview: the rollout at a glance, from every source, refreshed without a reload.
//! Range (charts) and window (record counts) live in the URL, so views can be linked.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::adoption::CheckOutcome;
use crate::api::overview::{ChartView, Overview, RANGES, WINDOWS};
use crate::components::live::LiveRefresh;
use crate::components::panel::{since_text, Panel, Stale, Value};
use crate::components::time::{self, Shown};

mod crossover;
mod dose_totals;
mod versions;

/// The guide's rule, quoted where a breach is shown.
pub const DOUBLING_RULE: &str = "dose is read-only and means the short dose. It is forbidden to copy dose into both \
insulin_short and insulin_long: that doubles the insulin and breaks the audit trail.";

/// The part of the page that refreshes itself: everything below the selectors.
const LIVE_REGION: &str = "overview-live";

fn fmt_rate(v: Option<f64>) -> Option<String> {
    v.map(|v| if v.is_finite() { format!("{v:.2} /s") } else { v.to_string() })
}
fn fmt_count(v: Option<i64>) -> Option<String> {
    v.map(crate::api::numbers::count)
}
fn fmt_bool(v: Option<bool>) -> Option<String> {
    v.map(|b| if b { "present" } else { "missing" }.to_string())
}
fn fmt_share(v: Option<f64>) -> Option<String> {
    v.map(|v| format!("{:.1} %", v * 100.0))
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let query = use_query_map();
    let range = Memo::new(move |_| query.read().get("range").unwrap_or_else(|| "24h".into()));
    let window = Memo::new(move |_| query.read().get("window").unwrap_or_else(|| "24h".into()));
    // Rendered on the server only (no hydration data); LiveRefresh below keeps it current.
    let data = Resource::new(move || (range.get(), window.get()), |(r, w)| get_overview(r, w));

    view! {
        <nav class="selectors">
            <span class="selector-label">"Chart range"</span>
            {RANGES.into_iter().map(|r| view! {
                <a href=move || format!("?range={r}&window={}", window.get())
                   class:selected=move || range.get() == r data-testid=format!("range-{r}")>{r}</a>
            }).collect_view()}
            <span class="selector-label">"Record window"</span>
            {WINDOWS.into_iter().map(|w| view! {
                <a href=move || format!("?range={}&window={w}", range.get())
                   class:selected=move || window.get() == w data-testid=format!("window-{w}")>{w}</a>
            }).collect_view()}
        </nav>
        <LiveRefresh region=LIVE_REGION.to_string()/>
        <Transition fallback=|| view! { <p class="loading">"Loading the rollout status…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(o) => {
                        let every = o.status.refresh_interval_secs;
                        view! { <div id=LIVE_REGION data-refresh-secs=every><OverviewBody o/></div> }.into_any()
                    }
                    Err(e) => view! {
                        <div id=LIVE_REGION>
                            <p class="source-error" role="alert" data-testid="overview-error">{e.to_string()}</p>
                        </div>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn OverviewBody(o: Overview) -> impl IntoView {
    let now = o.status.generated_at;
    let failing = o.status.failing_since.clone();
    let since = move |key: &str| failing.get(key).map(|t| since_text(*t, now));
    let s = o.status.clone();
    let updated = format!("{} UTC", time::utc(now, Shown::DateSeconds));
    view! {
        {o.pending_kills.first().map(|k| view! { <p class="source-error kill-failing" role="alert" data-testid="kill-failing">{k.sentence()}</p> })}
        <p class="updated">"Updated " <time data-testid="generated-at" datetime=time::machine(now)>{updated}</time>
            {format!(" · refreshes every {} s · environment {}", s.refresh_interval_secs, s.environment)}</p>
        <Headline o=o.clone()/>
        <div class="charts">
            {o.charts.iter().cloned().map(|c| { let since = since(&c.source); view! { <ChartFigure c since/> } }).collect_view()}
        </div>
        <div class="panels">
            <RecordsPanel o=o.clone() since=since("diary_database")/>
            <SafetyPanel o=o.clone() since=since("diary_database")/>
            <Panel title="Feature flag" id="flag" error=s.flag.error.clone() since=since(&s.flag.source) updated=now>
                <Value label="Rollout" testid="flag-percentage" value=s.flag.percentage.map(|p| format!("{p} %"))/>
                <Value label="Stored value" testid="flag-raw" value=s.flag.raw.clone()/>
                <p class="detail">{format!("{} via {}", s.flag.key, s.flag.source)}
                    {s.flag.version.clone().map(|v| format!(", {} {v}", s.flag.version_field))}</p>
            </Panel>
            <Panel title="Usage now (Prometheus)" id="metrics" error=s.metrics.error.clone() since=since("prometheus") updated=now>
                <Value label="Split doses" testid="split-rate" value=fmt_rate(s.metrics.split_per_s)/>
                <Value label="Legacy doses" testid="legacy-rate" value=fmt_rate(s.metrics.legacy_per_s)/>
            </Panel>
            <SchemaWriterPanel o=o.clone() kube_since=since("kubernetes") db_since=since("diary_database")/>
            <AlertsPanel o=o.clone() since=since("prometheus")/>
            <versions::VersionsPanel versions=o.versions.clone() range=o.range.clone() since=since("prometheus")/>
            <crossover::CrossoverPanel crossover=o.crossover.clone() since=since("diary_database")/>
            <dose_totals::DoseTotalsPanel totals=o.dose_totals.clone() since=since("diary_database")/>
        </div>
    }
}

#[component]
fn Headline(o: Overview) -> impl IntoView {
    let (share, target, check) = match &o.adoption {
        Ok(a) => (fmt_share(a.current_share), Some(a.target), Some(a.check.clone())),
        Err(_) => (None, None, None),
    };
    let doubled = o.summary.as_ref().ok().and_then(|s| s.counts.doubled);
    let (check_class, check_text) = match check.as_ref().map(|c| c.outcome) {
        Some(CheckOutcome::Pass) => ("badge ok", "pass"),
        Some(CheckOutcome::Fail) => ("badge bad", "fail"),
        Some(CheckOutcome::TooEarly) => ("badge wait", "too early to say"),
        Some(CheckOutcome::Unknown) => ("badge wait", "unknown"),
        None => ("badge wait", "no data"),
    };
    view! {
        <div class="headline">
            <div class="tile"><span class="tile-label">"Rollout"</span>
                <span class="tile-value" data-testid="headline-flag">{o.status.flag.percentage.map(|p| format!("{p} %")).unwrap_or_else(|| "—".into())}</span></div>
            <div class="tile"><span class="tile-label">"Legacy share, last 5 min"</span>
                <span class="tile-value" data-testid="headline-share">{share.unwrap_or_else(|| "—".into())}</span>
                <span class="tile-note">{target.map(|t| format!("target below {:.1} %", t * 100.0))}</span></div>
            <div class="tile"><span class="tile-label">"24-hour check"</span>
                <span class=check_class data-testid="headline-check">{check_text}</span>
                <span class="tile-note" data-testid="headline-check-message">{check.map(|c| c.message)}</span></div>
            <div class="tile" class:tile-bad=doubled.is_some_and(|d| d > 0)><span class="tile-label">{format!("Doubled records, last {}", o.window)}</span>
                <span class="tile-value" data-testid="headline-doubled">{doubled.map(crate::api::numbers::count).unwrap_or_else(|| "—".into())}</span></div>
        </div>
    }
}

#[component]
fn ChartFigure(c: ChartView, since: Option<String>) -> impl IntoView {
    let id = format!("chart-{}", c.id);
    view! {
        <figure class="chart" class:panel-failed=c.error.is_some() data-testid=id.clone() data-points=c.points>
            {c.error.is_some().then(|| view! { <h2 class="chart-title">{c.title.clone()}</h2> })}
            {c.error.clone().map(|e| view! { <Stale testid=format!("{id}-error") error=e since=since /> })}
            {c.svg.clone().map(|svg| view! { <div class="chart-svg" inner_html=svg></div> })}
            <figcaption>{c.caption.clone()}</figcaption>
        </figure>
    }
}

#[component]
fn RecordsPanel(o: Overview, since: Option<String>) -> impl IntoView {
    let title = "Records (history_records)";
    match o.summary {
        Ok(s) => {
            let c = s.counts;
            let window = format!(
                "created_at from {} to {} (UTC), last {}",
                time::utc(s.window_start, Shown::MonthDaySeconds),
                time::utc(s.window_end, Shown::MonthDaySeconds),
                o.window
            );
            view! {
                <Panel title id="records" error=None updated=s.window_end>
                    <Value label="Total" testid="records-total" value=fmt_count(Some(c.total))/>
                    <Value label="With short dose" testid="records-with-short" value=fmt_count(c.with_short)/>
                    <Value label="With long dose" testid="records-with-long" value=fmt_count(c.with_long)/>
                    <Value label="With both parts (doubled included)" testid="records-with-both" value=fmt_count(c.with_both)/>
                    <Value label="Legacy dose only" testid="records-legacy-only" value=fmt_count(Some(c.legacy_only))/>
                    <Value label="Doubled (forbidden)" testid="records-doubled" value=fmt_count(c.doubled)/>
                    <Value label="No dose" testid="records-empty" value=fmt_count(Some(c.empty))/>
                    <p class="detail">{window}</p>
                </Panel>
            }
            .into_any()
        }
        Err(e) => view! {
            <Panel title id="records" error=Some(e) since=since><p>"No counts."</p></Panel>
        }
        .into_any(),
    }
}

#[component]
fn SafetyPanel(o: Overview, since: Option<String>) -> impl IntoView {
    let doubled = o.summary.as_ref().ok().and_then(|s| s.counts.doubled);
    let newest = o.doubled.clone();
    let error = o.doubled.clone().err().or_else(|| o.summary.clone().err());
    let class = match doubled {
        Some(0) => "safety-ok",
        Some(_) => "safety-bad",
        None => "",
    };
    view! {
        <Panel title="Safety: doubled doses" id="safety" error=error since=since class=class>
            {match doubled {
                Some(0) => view! { <p class="ok-text" data-testid="safety-status">{format!("No doubled record in the last {}.", o.window)}</p> }.into_any(),
                Some(n) => view! { <p class="bad-text" data-testid="safety-status">{format!("{n} record(s) in the last {} copy dose into both insulin_short and insulin_long.", o.window)}</p> }.into_any(),
                None => view! { <p data-testid="safety-status">"Not applicable: the split columns do not exist."</p> }.into_any(),
            }}
            <blockquote class="rule">{DOUBLING_RULE}</blockquote>
            {newest.ok().filter(|v| !v.is_empty()).map(|v| view! {
                <p class="detail">"Newest offending records (id, created_at), any time:"</p>
                <ul class="doubled-list" data-testid="doubled-list">
                    {v.into_iter().map(|d| view! { <li>{format!("#{} · {} UTC", d.id, time::utc(d.created_at, Shown::DateSeconds))}</li> }).collect_view()}
                </ul>
            })}
        </Panel>
    }
}

#[component]
fn SchemaWriterPanel(o: Overview, kube_since: Option<String>, db_since: Option<String>) -> impl IntoView {
    let (schema, writer) = (o.status.schema.clone(), o.status.writer.clone());
    let revision_note = match (&schema.alembic_revision, &schema.expected_head) {
        (Some(rev), Some(head)) if rev != head => Some(format!("not the expected head {head}")),
        (Some(_), Some(_)) => Some("the expected head".to_string()),
        _ => None,
    };
    let error = match (&schema.error, &writer.error) {
        (Some(a), Some(b)) => Some(format!("{a} — {b}")),
        (a, b) => a.clone().or(b.clone()),
    };
    let since = if schema.error.is_some() { db_since } else { kube_since };
    view! {
        <Panel title="Schema and writers" id="schema" error=error since=since updated=o.status.generated_at>
            <Value label="insulin_short" testid="schema-short" value=fmt_bool(schema.insulin_short)/>
            <Value label="insulin_long" testid="schema-long" value=fmt_bool(schema.insulin_long)/>
            <Value label="Alembic revision" testid="schema-revision" value=schema.alembic_revision.clone()/>
            {revision_note.map(|n| view! { <p class="detail" data-testid="schema-revision-note">{n}</p> })}
            <Value label="Writers desired" testid="writer-replicas" value=writer.replicas.map(|r| r.to_string())/>
            <Value label="Writers ready" testid="writer-ready" value=writer.ready_replicas.map(|r| r.to_string())/>
            <p class="detail">{format!("deployment {}", writer.deployment)}</p>
        </Panel>
    }
}

#[component]
fn AlertsPanel(o: Overview, since: Option<String>) -> impl IntoView {
    let fmt_at = |t: Option<DateTime<Utc>>| {
        t.map(|t| format!("{} UTC", time::utc(t, Shown::MonthDayMinutes))).unwrap_or_default()
    };
    match o.alerts {
        Ok(alerts) if alerts.is_empty() => view! {
            <Panel title="Rollout alerts" id="alerts" error=None><p class="ok-text" data-testid="alerts-none">"No firing or pending rollout alert."</p></Panel>
        }.into_any(),
        Ok(alerts) => view! {
            <Panel title="Rollout alerts" id="alerts" error=None>
                <ul class="alerts" data-testid="alerts-list">
                    {alerts.into_iter().map(|a| { let class = format!("alert alert-{}", a.state); view! {
                        <li class=class>
                            <strong>{a.name}</strong>" "<span class="badge">{a.state}</span>
                            {a.severity.map(|s| format!(" · {s}"))}{format!(" · since {}", fmt_at(a.active_at))}
                            {a.summary.map(|s| view! { <div class="detail">{s}</div> })}
                        </li>
                    }}).collect_view()}
                </ul>
            </Panel>
        }.into_any(),
        Err(e) => view! { <Panel title="Rollout alerts" id="alerts" error=Some(e) since=since><p>"Alerts unknown."</p></Panel> }.into_any(),
    }
}

// ---------------------------------------------------------------- server functions

#[server(endpoint = "overview", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_overview(range: String, window: String) -> Result<Overview, ServerFnError> {
    let (state, caller) = crate::server::fns::caller().await?;
    let signed_in = caller.who().is_some();
    crate::server::overview::overview(&state, &range, &window, signed_in).await.map_err(ServerFnError::new)
}
