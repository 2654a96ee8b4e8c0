//! The incident journal: a run's timeline, who, why, each step's output, and a postmortem
//! template to fill in, as Markdown.

use std::fmt::Write as _;

use crate::api::rollback::RunView;

use super::super::error::SourceError;
use super::super::state::AppState;
use super::store;

pub fn markdown(run: &RunView, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut md = String::new();
    let t = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let _ = writeln!(md, "# Incident: rollback of insulin_dose_split in {} (run #{})\n", run.environment, run.id);
    let _ = writeln!(md, "- Started: {} by {}", t(run.created_at), run.actor);
    let _ = writeln!(md, "- Why: {}", run.reason);
    if let Some(a) = &run.approved_by {
        let _ = writeln!(md, "- Approved by: {a}");
    }
    if let Some(b) = &run.bypass_reason {
        let _ = writeln!(md, "- Approval bypassed in an emergency: {b}");
    }
    let _ = writeln!(md, "- State when recorded: {} ({})", run.state, t(now));
    let _ = writeln!(md, "- Data restored from backup: {}", if run.restore_data { "yes" } else { "no" });
    let _ = writeln!(
        md,
        "- Fill of dose from insulin_short chosen: {}",
        if run.fill_dose { "yes (step 4 says whether it ran; the roll-forward undoes it)" } else { "no" }
    );
    let m = &run.memory;
    let _ = match m["archived_rows"].as_i64() {
        Some(n) => writeln!(
            md,
            "- Split values archived and verified in the state database: {n} rows (checksum {}); roll forward with POST /api/v1/rollback/{}/roll_forward/plan",
            m["archive_checksum"].as_str().unwrap_or("?"),
            run.id
        ),
        None => writeln!(md, "- Split values archived: not (yet) by this run"),
    };
    let _ = writeln!(
        md,
        "- Remembered: writer replicas {}, flag before {}, revision {} → {}, rows with split values {}\n",
        m["writer_replicas"], m["flag_before"], m["from_revision"], m["target_revision"], m["data_loss_rows"]
    );
    let _ = writeln!(md, "## Timeline\n");
    let _ = writeln!(md, "| # | Step | State | Started | Finished | Elapsed |");
    let _ = writeln!(md, "|---|------|-------|---------|----------|---------|");
    for s in &run.steps {
        let _ = writeln!(
            md,
            "| {} | {} | {}{} | {} | {} | {} |",
            s.index,
            s.title,
            s.state,
            s.skip_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
            s.started_at.map(t).unwrap_or_default(),
            s.finished_at.map(t).unwrap_or_default(),
            s.elapsed_ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_default()
        );
    }
    let _ = writeln!(md, "\n## Outputs\n");
    for s in &run.steps {
        if s.output.is_empty() && s.error.is_none() {
            continue;
        }
        let _ = writeln!(md, "### {}. {}\n", s.index, s.title);
        if let Some(e) = &s.error {
            let _ = writeln!(md, "Error: {e}\n");
        }
        if !s.output.is_empty() {
            let _ = writeln!(md, "```\n{}\n```\n", s.output.trim_end().replace("```", "'''"));
        }
    }
    let _ = writeln!(
        md,
        "## Postmortem (to fill in)\n\n### Summary\n\n_What happened, in two sentences._\n\n### Impact\n\n_Which patients' records, \
         which doses, how long; were any doses shown wrongly?_\n\n### Detection\n\n_How it was noticed (alert, chart, report)._\n\n\
         ### Root cause\n\n_Why it happened._\n\n### What went well / what went badly\n\n-\n\n### Action items\n\n| Action | Owner | Due |\n|---|---|---|\n| | | |"
    );
    md
}

/// Saves the run's incident record (idempotent: a run has one incident).
pub async fn record(state: &AppState, run: &RunView) -> Result<i64, SourceError> {
    let md = super::steps::redact(&markdown(run, chrono::Utc::now()), state);
    let title = format!("Rollback run #{} in {}", run.id, run.environment);
    store::save_incident(&state.state_db, run.id, &title, &md).await
}
