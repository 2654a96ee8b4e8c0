//! The guided rollback as pages and API clients see it: the plan (dry run) with its
//! preconditions, a run with its steps, the deploy journal and incident records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::Identity;

/// One step of the plan with the concrete commands, API calls and values it would use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub index: u32,
    pub name: String,
    pub title: String,
    pub actions: Vec<String>,
    /// False for the restore step when the operator did not choose it.
    pub chosen: bool,
}

/// `POST /api/v1/rollback/plan`: the whole plan, executed nowhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPlan {
    pub environment: String,
    pub from_revision: Option<String>,
    pub target_revision: Option<String>,
    /// Rows whose insulin_short or insulin_long the downgrade drops; the start must name it.
    pub data_loss_rows: Option<i64>,
    /// What must hold, shown with pass or fail before the start button enables.
    pub preconditions: Vec<super::check::Check>,
    pub steps: Vec<PlannedStep>,
    /// Every precondition passed.
    pub ready: bool,
    pub active_run: Option<i64>,
    pub require_approval: bool,
}

/// The operator's choices for a run: which of the optional steps it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    /// Restore the diary from the backup (`pg_restore`), typed RESTORE.
    #[serde(default)]
    pub restore_data: bool,
    /// Fill an empty `dose` from `insulin_short` before the downgrade, typed FILL.
    #[serde(default)]
    pub fill_dose: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    #[serde(default)]
    pub restore_data: bool,
    #[serde(default)]
    pub fill_dose: bool,
}

impl PlanRequest {
    pub fn choices(&self) -> Choices {
        Choices { restore_data: self.restore_data, fill_dose: self.fill_dose }
    }
}

/// `POST /api/v1/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRollback {
    pub reason: String,
    /// Must equal the environment's name.
    pub confirm_environment: String,
    /// Must equal the plan's `data_loss_rows`: the operator saw what will be dropped.
    pub acknowledge_data_loss_rows: i64,
    #[serde(default)]
    pub restore_data: bool,
    /// With `restore_data`: the word RESTORE, typed.
    #[serde(default)]
    pub restore_confirmation: Option<String>,
    /// Fill an empty `dose` from `insulin_short` before the downgrade (see the plan's step).
    #[serde(default)]
    pub fill_dose: bool,
    /// With `fill_dose`: the word FILL, typed.
    #[serde(default)]
    pub fill_confirmation: Option<String>,
    /// When a second operator's approval is required: start anyway, for this reason.
    #[serde(default)]
    pub emergency_bypass_reason: Option<String>,
}

/// `POST /api/v1/rollback/{id}/roll_forward/apply`: re-apply the run's archived split values
/// once the split revision is back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollForward {
    pub reason: String,
    /// Must equal the environment's name.
    pub confirm_environment: String,
    /// Must equal the dry run's `restorable`: the operator saw what will be written.
    pub acknowledge_rows: i64,
}

/// How many archived rows got one verdict, by the category they were archived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictCount {
    pub verdict: String,
    pub category: String,
    pub rows: i64,
}

/// What the roll-forward would do (`/roll_forward/plan`) or did (`/roll_forward/apply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollForwardView {
    pub run_id: i64,
    pub dry_run: bool,
    pub archived_rows: i64,
    pub archived_at: DateTime<Utc>,
    /// Whether the run filled `dose` from `insulin_short` (the roll-forward empties it again).
    pub filled: bool,
    pub counts: Vec<VerdictCount>,
    /// Rows written (`restore` and `restore_undo_fill`).
    pub restorable: i64,
    pub undo_fill: i64,
    /// After a real roll-forward: the rows holding the archived values, as both sides tally.
    pub verified: Option<String>,
    /// When the archive was last re-applied.
    pub reapplied_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/rollback/{id}/retry|skip|abort|approve`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunActionBody {
    /// Required to skip a step; optional otherwise.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunAction {
    Retry,
    Skip,
    Abort,
    Approve,
    /// After an abort that left the writers stopped: scale them back to the remembered count.
    ScaleBack,
}

impl RunAction {
    /// The audit action it is recorded as.
    pub fn audited_as(self) -> crate::api::audit::Action {
        use crate::api::audit::Action;
        match self {
            RunAction::Retry => Action::RollbackRetry,
            RunAction::Skip => Action::RollbackSkip,
            RunAction::Abort => Action::RollbackAbort,
            RunAction::Approve => Action::RollbackApprove,
            RunAction::ScaleBack => Action::RollbackScaleBack,
        }
    }
    pub fn parse(s: &str) -> Option<RunAction> {
        match s {
            "retry" => Some(RunAction::Retry),
            "skip" => Some(RunAction::Skip),
            "abort" => Some(RunAction::Abort),
            "approve" => Some(RunAction::Approve),
            "scale_back" => Some(RunAction::ScaleBack),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunAction::Retry => "retry",
            RunAction::Skip => "skip",
            RunAction::Abort => "abort",
            RunAction::Approve => "approve",
            RunAction::ScaleBack => "scale_back",
        }
    }
}

state_names! {
    /// Where a run stands. The transitions between them are `server::rollback::machine`'s.
    RunState {
        /// Waiting for a second operator (`require_approval`).
        AwaitingApproval = "awaiting_approval",
        Running = "running",
        /// A step failed: retry it, skip it with a reason, or abort.
        Stopped = "stopped",
        /// The dashboard stopped while the run was running; nothing goes on by itself.
        Interrupted = "interrupted",
        Done = "done",
        Aborted = "aborted",
    }
}

impl RunState {
    /// Not finished: at most one such run exists (the state database's partial unique index).
    pub fn active(self) -> bool {
        !self.finished()
    }
    pub fn finished(self) -> bool {
        matches!(self, RunState::Done | RunState::Aborted)
    }
    /// A person can make it go on (retry or skip the step it is at).
    pub fn resumable(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Interrupted)
    }
}

state_names! {
    /// Where one step of a run stands.
    StepState {
        Pending = "pending",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Skipped = "skipped",
        /// The dashboard stopped while the step ran; it may or may not have acted.
        Interrupted = "interrupted",
        /// The operator did not choose this step (the data restore).
        NotChosen = "not_chosen",
    }
}

impl StepState {
    /// The run has moved past a step in this state.
    pub fn passed(self) -> bool {
        matches!(self, StepState::Done | StepState::Skipped | StepState::NotChosen)
    }
    /// An attempt ends in this state (its finish time is set).
    pub fn ends_attempt(self) -> bool {
        matches!(self, StepState::Done | StepState::Failed | StepState::Skipped | StepState::Interrupted)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub index: u32,
    pub name: String,
    pub title: String,
    pub state: StepState,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub elapsed_ms: Option<i64>,
    pub output: String,
    pub error: Option<String>,
    pub skip_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    pub state: RunState,
    pub actor: String,
    pub reason: String,
    pub environment: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub restore_data: bool,
    /// Whether the run fills an empty `dose` from `insulin_short`.
    #[serde(default)]
    pub fill_dose: bool,
    pub approved_by: Option<String>,
    pub bypass_reason: Option<String>,
    /// What the run remembers (replica count, old flag value, revisions, baseline), as JSON.
    pub memory: serde_json::Value,
    pub steps: Vec<StepView>,
    pub incident_id: Option<i64>,
    /// True when a start request found this run already active (a double click, a second operator).
    pub joined: bool,
}

impl RunView {
    pub fn active(&self) -> bool {
        self.state.active()
    }
    /// The step the run is at (the first one not passed).
    pub fn current_step(&self) -> Option<&StepView> {
        self.steps.iter().find(|s| !s.state.passed())
    }

    /// An aborted run that stopped the writers and never scaled them back: the count to restore.
    pub fn writers_left_stopped(&self) -> Option<i64> {
        let step = |name: &str| self.steps.iter().find(|s| s.name == name).map(|s| s.state);
        let stopped = step("stop_writers") == Some(StepState::Done);
        let back = step("scale_writers_back") == Some(StepState::Done);
        (self.state == RunState::Aborted && stopped && !back)
            .then(|| self.memory.get("writer_replicas").and_then(serde_json::Value::as_i64))
            .flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub revision: String,
    pub previous_revision: Option<String>,
    /// observed (the dashboard saw the revision change) or operator (entered by hand)
    pub source: String,
    pub actor: String,
    pub note: Option<String>,
}

/// `POST /api/v1/deploys`: an operator records a deploy the dashboard did not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDeploy {
    pub revision: String,
    pub previous_revision: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// The rollback page's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackView {
    pub me: Option<Identity>,
    pub plan: Result<RollbackPlan, String>,
    /// The active run, or the latest finished one.
    pub run: Option<RunView>,
    pub deploys: Vec<DeployEntry>,
}

/// The run the page shows live: the active run, or the latest finished one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunProgress {
    pub me: Option<Identity>,
    pub run: Option<RunView>,
    /// The rehearsals (or why they cannot be read), drawn in the run's region.
    pub rehearsals: Result<super::rehearsal::Rehearsals, String>,
}
