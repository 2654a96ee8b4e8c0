//! Smoke checks: a legacy entry through the diary API, written and read back; then the legacy
//! rate back to `smoke_fraction` of the all-writes rate snapshotted at the start.

use std::time::Duration;

use super::{PlanContext, RollbackStep, StepContext, StepFuture};

pub struct SmokeChecks;

impl RollbackStep for SmokeChecks {
    fn name(&self) -> &'static str {
        "smoke_checks"
    }

    fn title(&self) -> &'static str {
        "Smoke checks"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let rb = &cx.state.settings.rollback;
        let api = rb.diary_api_url.as_deref().unwrap_or("<rollback.diary_api_url not configured>");
        vec![
            format!("POST {api}/v1/diary {{\"user_id\": 0, \"dose\": 1.0, \"note\": \"rollback run #N smoke check\"}} → 201, then GET it back: dose 1.0, no split fields"),
            format!(
                "PromQL `{}` ≥ {:.0} % of the baseline `{}` snapshotted at the start{}",
                rb.smoke_legacy_query,
                rb.smoke_fraction * 100.0,
                rb.smoke_baseline_query,
                cx.memory.baseline_rate.map(|b| format!(" (now {b:.3}/s)")).unwrap_or_default()
            ),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let run = cx.run;
            let rb = &state.settings.rollback;
            let Some(api) = &rb.diary_api_url else { return Err("rollback.diary_api_url is not configured".into()) };
            let http = reqwest::Client::builder()
                .timeout(state.settings.source_timeout())
                .build()
                .map_err(crate::server::redact::outside_error)?;
            let base = api.trim_end_matches('/');
            if cx.memory.smoke_entry_id.is_none() {
                let body = serde_json::json!({"user_id": 0, "dose": 1.0, "note": format!("rollback run #{} smoke check", run.id)});
                let resp = http
                    .post(format!("{base}/v1/diary"))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("POST {base}/v1/diary: {}", crate::server::redact::outside_error(e)))?;
                let status = resp.status();
                let created: serde_json::Value = resp.json().await.unwrap_or_default();
                if status.as_u16() != 201 {
                    return Err(format!("POST {base}/v1/diary answered {status}: {created}"));
                }
                let id = created["id"].as_i64().ok_or_else(|| format!("POST {base}/v1/diary gave no id: {created}"))?;
                cx.memory.smoke_entry_id = Some(id);
                cx.remember().await?;
                cx.log.line(format!("POST {base}/v1/diary {body} → 201, entry #{id}"));
            }
            let id = cx.memory.smoke_entry_id.unwrap_or_default();
            let resp = http
                .get(format!("{base}/v1/diary/{id}"))
                .send()
                .await
                .map_err(|e| format!("GET {base}/v1/diary/{id}: {}", crate::server::redact::outside_error(e)))?;
            let status = resp.status();
            let entry: serde_json::Value = resp.json().await.unwrap_or_default();
            if !status.is_success() || entry["dose"].as_f64() != Some(1.0) {
                return Err(format!("GET {base}/v1/diary/{id} answered {status}: {entry} (expected dose 1.0)"));
            }
            if entry.get("insulin_short").is_some() || entry.get("insulin_long").is_some() {
                return Err(format!("the legacy entry came back with split fields: {entry}"));
            }
            cx.log.line(format!("GET {base}/v1/diary/{id} → {status}: dose 1.0, no split fields"));
            let prom = state.prometheus.as_ref().map_err(|e| e.to_string())?;
            let Some(baseline) = cx.memory.baseline_rate.filter(|b| *b > 0.0) else {
                cx.log.line("no baseline rate was recorded at the start: the legacy rate is not compared");
                return Ok(());
            };
            let want = baseline * rb.smoke_fraction;
            loop {
                match prom.scalar(&rb.smoke_legacy_query).await {
                    Ok(rate) if rate >= want => {
                        cx.log.line(format!(
                            "legacy rate {rate:.3}/s ≥ {want:.3}/s ({:.0} % of the baseline {baseline:.3}/s)",
                            rb.smoke_fraction * 100.0
                        ));
                        return Ok(());
                    }
                    Ok(rate) => {
                        cx.log.line(format!("legacy rate {rate:.3}/s, waiting for {want:.3}/s"));
                    }
                    Err(e) => cx.log.line(format!("legacy rate unavailable: {e}")),
                }
                tokio::time::sleep(rb.poll_interval().max(Duration::from_secs(1))).await;
            }
        })
    }
}
