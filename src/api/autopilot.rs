//! The autopilot as pages and API clients see it: a rollout plan that steps itself forward while
//! every check passes for a step's whole bake time, and stops itself when one fails.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::Identity;

state_names! {
    /// Where a plan stands. `running` and `paused` are active; at most one plan is.
    PlanState {
        Running = "running",
        /// Held by a check, a person, or a flag change made elsewhere; resume continues.
        Paused = "paused",
        /// Every step reached, the last one baked.
        Done = "done",
        /// The flag went to 0 % (a check's kill, or anyone's kill switch).
        Killed = "killed",
        Aborted = "aborted",
    }
}

state_names! {
    /// A check's answer. Missing data or too small a sample is inconclusive, never a pass.
    Verdict {
        Pass = "pass",
        Fail = "fail",
        Inconclusive = "inconclusive",
    }
}

state_names! {
    /// What a failing check does.
    CheckAction {
        /// The flag to 0 % through the kill-switch path; the plan ends.
        Kill = "kill",
        /// The plan holds its step until a person acts.
        Pause = "pause",
        /// Evaluated and shown, never acted on.
        DryRun = "dry_run",
    }
}

/// Checks that kill whatever the settings or a dismissal say: a doubled dose and a missing split
/// column harm patients' records, so the autopilot never stops looking for them.
pub const KILL_CLASS: [&str; 2] = ["doubled_doses", "schema"];

/// Checks that judge and show without acting until the team says so (`autopilot.actions`): a
/// day's patients are too few to act on early in a small world, dose totals need days on both
/// sides of a move before they can judge (every check must pass for a step, so they would hold
/// a plan for days), and the thresholds are the team's.
pub const DRY_RUN_BY_DEFAULT: [&str; 2] = ["crossover", "dose_totals"];

/// One step of a plan: the flag's percentage and how long every check must pass before the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    pub percentage: u8,
    pub bake_secs: u64,
    /// The legacy share above which this step fails (default: what the percentage implies, plus
    /// `autopilot.legacy_margin`).
    #[serde(default)]
    pub legacy_ceiling: Option<f64>,
}

/// `POST /api/v1/autopilot`: start a plan (the settings' default steps when `steps` is absent).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartPlan {
    pub reason: String,
    #[serde(default)]
    pub steps: Option<Vec<PlanStep>>,
    /// The steps as people type them (`5 24h, 10 24h, 100 24h`), instead of `steps`: read by
    /// the server, so a mistyped step is refused and audited like any other bad start.
    #[serde(default)]
    pub steps_text: Option<String>,
    /// Lets the autopilot's flag writes pass rollout guards that fail (a doubled record in the
    /// last 24 h, a firing alert), with this reason in every audit entry. Without it a failed
    /// guard pauses the plan. A rollback in progress always pauses it.
    #[serde(default)]
    pub override_guards_reason: Option<String>,
    /// A first step below the flag's percentage lowers it: refused unless this says exactly
    /// `lower from <now> % to <first> %` (a typed confirmation, audited with the start).
    #[serde(default)]
    pub confirm_lower: Option<String>,
}

/// `POST /api/v1/autopilot/{action}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanActionBody {
    #[serde(default)]
    pub reason: Option<String>,
    /// `dismiss`: the check whose failure no longer acts for the rest of this step.
    #[serde(default)]
    pub check: Option<String>,
}

/// What people may do to a running plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    Pause,
    Resume,
    /// Skip the rest of the bake time (reason required).
    Promote,
    /// A failing check no longer acts for this step (reason required).
    Dismiss,
    Abort,
}

impl PlanAction {
    pub const ALL: [PlanAction; 5] =
        [PlanAction::Pause, PlanAction::Resume, PlanAction::Promote, PlanAction::Dismiss, PlanAction::Abort];
    /// The audit action it is recorded as.
    pub fn audited_as(self) -> crate::api::audit::Action {
        use crate::api::audit::Action;
        match self {
            PlanAction::Pause => Action::AutopilotPause,
            PlanAction::Resume => Action::AutopilotResume,
            PlanAction::Promote => Action::AutopilotPromote,
            PlanAction::Dismiss => Action::AutopilotDismiss,
            PlanAction::Abort => Action::AutopilotAbort,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Pause => "pause",
            PlanAction::Resume => "resume",
            PlanAction::Promote => "promote",
            PlanAction::Dismiss => "dismiss",
            PlanAction::Abort => "abort",
        }
    }
    pub fn parse(s: &str) -> Option<PlanAction> {
        PlanAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One check's verdict at one evaluation round, with what it measured and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub check: String,
    pub at: DateTime<Utc>,
    pub step: i32,
    pub verdict: Verdict,
    pub value: Option<f64>,
    /// The condition that passes, in words (`= 0`, `p ≥ 0.001`, `≤ 0.97`).
    pub threshold: String,
    pub sample: Option<i64>,
    /// The PromQL or SQL exactly as run.
    pub query: String,
    pub detail: String,
    pub action: CheckAction,
    /// Whether this verdict made the autopilot act (kill or pause).
    pub acted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    pub id: i64,
    pub state: PlanState,
    pub actor: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub steps: Vec<PlanStep>,
    /// -1 before the first step.
    pub current_step: i32,
    pub step_started_at: Option<DateTime<Utc>>,
    /// Since when every check has passed without a break.
    pub clean_since: Option<DateTime<Utc>>,
    /// When the next step is due if every check keeps passing (None: last step, or not running).
    pub next_due: Option<DateTime<Utc>>,
    /// The earliest time each step can start, from now (None: a step already passed).
    pub schedule: Vec<Option<DateTime<Utc>>>,
    pub pause_reason: Option<String>,
    pub dismissed: Vec<String>,
    pub guard_override: Option<String>,
    /// At a last step of 100 %, held for less than the watch: the guide's target is still being
    /// judged, so the plan is not done.
    #[serde(default)]
    pub watching: bool,
}

/// A check's recent evaluations drawn on the server (an SVG with hover titles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckChart {
    pub check: String,
    pub svg: String,
    pub points: usize,
}

/// `GET /api/v1/autopilot`: the active (or latest) plan, its checks' latest verdicts and their
/// recent history, and the default steps a new plan starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutopilotView {
    pub plan: Option<PlanView>,
    pub latest: Vec<Evaluation>,
    pub history: Vec<Evaluation>,
    pub defaults: Vec<PlanStep>,
    pub interval_secs: u64,
    pub me: Option<Identity>,
    /// Each check with measured values, drawn from `history`.
    #[serde(default)]
    pub charts: Vec<CheckChart>,
    /// Kills whose write has not landed (the first thing the page shows).
    #[serde(default)]
    pub pending_kills: Vec<super::rollout::PendingKill>,
}
