//! Reports for BI: every chart inline, with its PNG, SVG and CSV downloads and a caption stating
//! source, query, range and time zone; and the rendering rules with a worked example per category.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::reports::{ReportChartView, ReportsView, RuleExample};

const RANGES: [&str; 3] = ["7d", "30d", "90d"];

#[component]
pub fn ReportsPage() -> impl IntoView {
    let query = use_query_map();
    let range = Memo::new(move |_| query.read().get("range").unwrap_or_else(|| "30d".into()));
    // Rendered on the server only (not an island): no hydration data, each chart travels once.
    let data = Resource::new(move || range.get(), get_reports);
    view! {
        <h1 class="page-title">"Reports"</h1>
        <nav class="selectors no-print">
            <span class="selector-label">"Range"</span>
            {RANGES.into_iter().map(|r| view! {
                <a href=format!("?range={r}") class:selected=move || range.get() == r data-testid=format!("report-range-{r}")>{r}</a>
            }).collect_view()}
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Drawing the reports…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => view! { <Reports v/> }.into_any(),
                    Err(e) => view! { <p class="source-error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Reports(v: ReportsView) -> impl IntoView {
    let ReportsView { range, time_zone, charts, rules } = v;
    view! {
        <p class="detail">{format!("Last {range}; times in {time_zone}. Each chart's CSV holds exactly the numbers it draws.")}</p>
        {charts.into_iter().map(|c| view! { <ReportFigure c range=range.clone()/> }).collect_view()}
        <Rules rules/>
    }
}

#[component]
fn ReportFigure(c: ReportChartView, range: String) -> impl IntoView {
    let id = c.id.clone();
    let link = move |ext: &str| format!("/api/v1/reports/{id}.{ext}?range={range}");
    let (svg_href, png_href, csv_href) = (link("svg"), link("png"), link("csv"));
    view! {
        <figure class="chart report" data-testid=format!("report-{}", c.id)>
            <h2 class="chart-title">{c.title.clone()}</h2>
            {c.error.clone().map(|e| view! { <p class="source-error" role="alert" data-testid=format!("report-{}-error", c.id)>{e}</p> })}
            {c.svg.clone().map(|svg| view! { <div class="chart-svg" inner_html=svg></div> })}
            <p class="downloads no-print">
                "Download: "
                <a href=png_href download rel="external" data-testid=format!("download-{}-png", c.id)>"PNG"</a>" · "
                <a href=svg_href download rel="external" data-testid=format!("download-{}-svg", c.id)>"SVG"</a>" · "
                <a href=csv_href download rel="external" data-testid=format!("download-{}-csv", c.id)>"CSV (the numbers drawn)"</a>
            </p>
            <figcaption data-testid=format!("caption-{}", c.id)>
                <strong>"Source: "</strong>{c.caption.source.clone()}". "
                <strong>"Range: "</strong>{c.caption.range.clone()}". "
                <strong>"Time zone: "</strong>{c.caption.time_zone.clone()}"."
                {(!c.caption.query.is_empty()).then(|| view! {
                    <details><summary>"Query"</summary><pre class="query">{c.caption.query.clone()}</pre></details>
                })}
            </figcaption>
        </figure>
    }
}

fn units(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_else(|| "NULL".into())
}

#[component]
fn Rules(rules: Vec<RuleExample>) -> impl IntoView {
    view! {
        <section class="panel rules" data-testid="rendering-rules">
            <h2>"Rendering rules"</h2>
            <ul>
                <li>"Every row is in exactly one category: doubled, both parts, short only, long only, legacy only, empty."</li>
                <li><strong>"dose means the short dose"</strong>" (the migration guide): a legacy-only row counts once, as short."</li>
                <li>"Short units = insulin_short + the dose of legacy-only rows. Long units = insulin_long."</li>
                <li><strong class="bad-text">"A doubled row"</strong>" (dose copied into both insulin_short and insulin_long) is a defect: it is left out of short and long and drawn as its own thick vermillion series."</li>
                <li>"Colours are Okabe–Ito (safe for the common colour-vision deficiencies); the doubled series is also thicker and named in capitals, so it does not rely on colour."</li>
                <li>"Days are cut in the report's time zone; a day without rows is drawn as 0."</li>
            </ul>
            <table class="audit">
                <thead><tr><th>"dose"</th><th>"insulin_short"</th><th>"insulin_long"</th><th>"category"</th>
                    <th>"adds to short"</th><th>"adds to long"</th><th>"adds to doubled"</th><th>"why"</th></tr></thead>
                <tbody>
                    {rules.into_iter().map(|r| view! {
                        <tr data-testid=format!("rule-{}", r.category) class:doubled-row=r.category == "doubled">
                            <td>{units(r.dose)}</td><td>{units(r.insulin_short)}</td><td>{units(r.insulin_long)}</td>
                            <td>{r.category.replace('_', " ")}</td>
                            <td>{format!("{}", r.short_units)}</td><td>{format!("{}", r.long_units)}</td><td>{format!("{}", r.doubled_units)}</td>
                            <td>{r.explanation}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

// ---------------------------------------------------------------- server functions

#[cfg(feature = "ssr")]
use crate::server::fns::refused;

#[server(endpoint = "reports", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_reports(range: String) -> Result<ReportsView, ServerFnError> {
    let state = crate::server::fns::server_state()?;
    crate::server::reports::view(&state, &range).await.map_err(refused)
}
