//! The autopilot's checks. Each answers pass, fail or inconclusive with what it measured, the
//! threshold, the sample and the query or SQL exactly as run. Missing data, an outside system
//! that does not answer, or too small a sample is inconclusive: never a pass.

use chrono::{DateTime, Utc};

use crate::api::autopilot::{Evaluation, Verdict};

use std::future::Future;
use std::pin::Pin;

use super::super::error::{Source, SourceError};
use super::super::service::ask;
use super::super::state::AppState;
use super::decide::action_of;
use super::store::Plan;

/// Declares each check's file and lists the check in [`BUILT_IN`], from one line per check.
macro_rules! built_in {
    ($($file:ident => $check:ident),+ $(,)?) => {
        $(mod $file;)+
        /// Every built-in check, in the order they are evaluated and shown.
        pub const BUILT_IN: &[&dyn Check] = &[$(&$file::$check),+];
    };
}

// A new check is a file of this directory implementing [`Check`], and one line here.
built_in! {
    doubled_doses => DoubledDoses,
    sample_ratio => SampleRatio,
    legacy_share => LegacyShare,
    alerts => FiringAlerts,
    schema => Schema,
    split_only => SplitOnlyVersions,
    crossover => Crossover,
    dose_totals => DoseTotals,
}

/// One built-in check of the autopilot.
pub trait Check: Sync {
    /// The name settings, the API and the audit trail use.
    fn name(&self) -> &'static str;
    /// What it finds this round.
    fn look<'a>(&'a self, round: &'a Round<'a>) -> Look<'a>;
}

/// What a check looks at: the plan, what the flag holds now, and the round's time.
pub struct Round<'a> {
    pub state: &'a AppState,
    pub plan: &'a Plan,
    pub percentage: Option<u8>,
    pub now: DateTime<Utc>,
}

/// A check's look, boxed so the checks can sit in one list (as rollback steps do).
pub type Look<'a> = Pin<Box<dyn Future<Output = Found> + Send + 'a>>;

/// The built-in checks' names.
pub fn names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|c| c.name()).collect()
}

/// The built-in checks' names and the settings' custom ones.
pub fn all_names(settings: &crate::server::config::AutopilotSettings) -> Vec<String> {
    names().into_iter().map(String::from).chain(settings.custom.iter().map(|c| c.name.clone())).collect()
}

/// What a check found, before the driver stamps it with the round's time, step and action.
pub struct Found {
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub threshold: String,
    pub sample: Option<i64>,
    pub query: String,
    pub detail: String,
}

impl Found {
    /// A check that has nothing to compare yet (before the first step's flag write).
    pub fn not_yet(threshold: impl Into<String>) -> Found {
        Found {
            verdict: Verdict::Pass,
            value: None,
            threshold: threshold.into(),
            sample: None,
            query: String::new(),
            detail: "nothing to compare before the first step".into(),
        }
    }

    pub fn inconclusive(threshold: impl Into<String>, query: impl Into<String>, why: impl std::fmt::Display) -> Found {
        Found {
            verdict: Verdict::Inconclusive,
            value: None,
            threshold: threshold.into(),
            sample: None,
            query: query.into(),
            detail: why.to_string(),
        }
    }
}

/// Evaluates every check for `plan` at `now`. `percentage`: what the flag holds now.
pub async fn evaluate(state: &AppState, plan: &Plan, percentage: Option<u8>, now: DateTime<Utc>) -> Vec<Evaluation> {
    let round = Round { state, plan, percentage, now };
    let found = futures::future::join_all(BUILT_IN.iter().map(|c| c.look(&round))).await;
    let settings = &state.settings.autopilot;
    let mut customs = Vec::with_capacity(settings.custom.len());
    for c in &settings.custom {
        customs.push((c.name.as_str(), custom_check(state, plan, c).await, Some(c.action)));
    }
    let builtin = BUILT_IN.iter().zip(found).map(|(c, f)| (c.name(), f, None));
    builtin
        .chain(customs)
        .map(|(name, f, action)| Evaluation {
            check: name.to_string(),
            at: now,
            step: plan.current_step,
            verdict: f.verdict,
            value: f.value,
            threshold: f.threshold,
            sample: f.sample,
            query: f.query,
            detail: f.detail,
            action: action_of(name, action.unwrap_or_else(|| settings.action(name)), &plan.dismissed),
            acted: false,
        })
        .collect()
}

/// A custom PromQL check: this round's measurement, judged with the step's earlier ones.
async fn custom_check(state: &AppState, plan: &Plan, c: &super::custom::CustomCheck) -> Found {
    use super::custom::{verdict, Condition, Measured};
    let measured = match state.prometheus.as_ref() {
        Err(e) => Measured::Error(e.to_string()),
        Ok(prom) => match ask(state, Source::Prometheus, prom.scalar(&c.query)).await {
            Ok(v) => Measured::Value(v),
            Err(SourceError::Missing { .. }) => Measured::NoData,
            Err(e) => Measured::Error(e.to_string()),
        },
    };
    let earlier =
        super::store::check_history(&state.state_db, plan.id, plan.current_step, &c.name).await.unwrap_or_default();
    let cond = Condition::parse(&c.condition).ok();
    let failed_before =
        earlier.iter().filter(|(v, _)| matches!((v, cond), (Some(v), Some(k)) if !k.holds(*v))).count() as u32;
    let errors_before =
        earlier.iter().take_while(|(v, detail)| v.is_none() && detail.contains("query error")).count() as u32;
    let value = match &measured {
        Measured::Value(v) => Some(*v),
        _ => None,
    };
    let (verdict, detail) = verdict(c, measured, failed_before, errors_before);
    Found { verdict, value, threshold: c.condition.clone(), sample: None, query: c.query.clone(), detail }
}
