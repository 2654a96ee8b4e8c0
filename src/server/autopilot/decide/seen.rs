//! What a decision reads: the plan, the round's observation of the flag and the checks, and the
//! budgets it is judged against. Plain data, filled by the driver (`driver.rs`).

use chrono::{DateTime, Utc};

use crate::api::autopilot::{CheckAction, PlanState, PlanStep, Verdict};

/// The part of a plan a decision reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFacts {
    pub id: i64,
    pub state: PlanState,
    pub steps: Vec<PlanStep>,
    /// -1 before the first step's write.
    pub current_step: i32,
    pub pending_step: Option<i32>,
    pub step_started_at: Option<DateTime<Utc>>,
    pub clean_since: Option<DateTime<Utc>>,
    /// The flag's percentage when the plan started (None: it could not be read then).
    pub start_percentage: Option<u8>,
    /// The starter confirmed that the first step lowers the flag.
    pub lower_confirmed: bool,
    /// The flag's version as the plan last knew it (its start, its own writes; None: unknown).
    pub flag_version: Option<String>,
}

impl PlanFacts {
    pub fn current(&self) -> Option<&PlanStep> {
        usize::try_from(self.current_step).ok().and_then(|i| self.steps.get(i))
    }

    /// The percentage the flag should hold now: the current step's, or the one it started from.
    pub fn expected(&self) -> Option<u8> {
        self.current().map(|s| s.percentage).or(self.start_percentage)
    }
}

/// The flag as the round read it.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagSeen {
    /// The flag store did not answer (the sentence says why).
    Unreadable(String),
    /// Read: its percentage (None: a value in an unknown format) and its version.
    Read { percentage: Option<u8>, version: String },
}

/// One check's verdict this round, with its history in the step.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSeen {
    pub check: String,
    pub verdict: Verdict,
    /// The configured action (the dismissals and the kill class are applied by [`action_of`]).
    pub configured: CheckAction,
    pub detail: String,
    /// Since when the check has been inconclusive without a break in this step (None: it is
    /// conclusive this round), and for how many rounds.
    pub inconclusive_since: Option<DateTime<Utc>>,
    pub inconclusive_rounds: u32,
}

/// What a round saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub now: DateTime<Utc>,
    pub flag: FlagSeen,
    pub checks: Vec<CheckSeen>,
    /// A rollback run in progress (its description): the rollout waits for it.
    pub rollback: Option<String>,
    /// A kill was asked for and its write has not landed yet.
    pub kill_pending: bool,
    /// Checks dismissed for this step.
    pub dismissed: Vec<String>,
    /// A person's Promote (skip the rest of the bake time), with their sentence.
    pub promote: Option<String>,
    /// When the newest passing rollback rehearsal ended (None: none, or it cannot be read).
    pub rehearsed_at: Option<DateTime<Utc>>,
}

/// How long a check may stay inconclusive, and how blind the doubled-dose check may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// A check inconclusive for longer than this (and at least the step's bake time) pauses.
    pub inconclusive_secs: i64,
    /// Rounds in a row `doubled_doses` may be blind before the plan pauses, critically.
    pub blind_rounds: u32,
    /// At 100 %, the plan watches this long (the guide's target judged over it) before it is done.
    pub watch_secs: i64,
    /// Steps above `above_percentage` need a rehearsal that passed within `max_age_secs`.
    pub rehearsal: Option<RehearsalGate>,
}

/// The autopilot's demand for a recent passing rollback rehearsal (`autopilot.require_rehearsal`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RehearsalGate {
    pub above_percentage: u8,
    pub max_age_secs: i64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets { inconclusive_secs: 3600, blind_rounds: 4, watch_secs: 86_400, rehearsal: None }
    }
}
