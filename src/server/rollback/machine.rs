//! A run's state machine: each transition a person or the executor makes, as a function of the
//! state it starts from. The service and the executor ask here; the store persists the answer
//! conditionally on the old state, so two replicas never both make the same move.

use crate::api::rollback::{RunState, StepState};

/// The state a new run starts in.
pub fn started(require_approval: bool, bypassed: bool) -> RunState {
    if require_approval && !bypassed {
        RunState::AwaitingApproval
    } else {
        RunState::Running
    }
}

/// A second operator approves: the run starts.
pub fn approve(id: i64, from: RunState) -> Result<RunState, String> {
    match from {
        RunState::AwaitingApproval => Ok(RunState::Running),
        other => Err(format!("run #{id} is {other}, not waiting for approval")),
    }
}

/// Retry or skip the step a stopped or interrupted run is at: the run goes on.
pub fn resume(id: i64, from: RunState) -> Result<RunState, String> {
    if from.resumable() {
        Ok(RunState::Running)
    } else {
        Err(format!("run #{id} is {from}; only a stopped or interrupted run can go on"))
    }
}

pub fn abort(id: i64, from: RunState) -> Result<RunState, String> {
    if from.active() {
        Ok(RunState::Aborted)
    } else {
        Err(format!("run #{id} is {from}; there is nothing to abort"))
    }
}

/// The executor's moves, from a running run.
pub mod executor {
    use super::RunState;

    /// Every step passed.
    pub const FINISHED: (RunState, RunState) = (RunState::Running, RunState::Done);
    /// A step failed: a person decides.
    pub const STEP_FAILED: (RunState, RunState) = (RunState::Running, RunState::Stopped);
    /// The process that drove it died (found at the next start).
    pub const LOST: (RunState, RunState) = (RunState::Running, RunState::Interrupted);
}

/// What a person does to the step a resumed run is at.
pub fn retry_step() -> StepState {
    StepState::Pending
}

pub fn skip_step() -> StepState {
    StepState::Skipped
}

/// The state a step is created in.
pub fn planned_step(chosen: bool) -> StepState {
    if chosen {
        StepState::Pending
    } else {
        StepState::NotChosen
    }
}

/// How an attempt of a step ends.
pub fn attempt_ended(succeeded: bool) -> StepState {
    if succeeded {
        StepState::Done
    } else {
        StepState::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_moves_are_allowed() {
        for &from in RunState::ALL {
            assert_eq!(approve(1, from).is_ok(), from == RunState::AwaitingApproval, "approve from {from}");
            assert_eq!(
                resume(1, from).is_ok(),
                matches!(from, RunState::Stopped | RunState::Interrupted),
                "resume from {from}"
            );
            assert_eq!(
                abort(1, from).is_ok(),
                !matches!(from, RunState::Done | RunState::Aborted),
                "abort from {from}"
            );
        }
        assert_eq!(started(true, false), RunState::AwaitingApproval);
        assert_eq!(started(true, true), RunState::Running);
        assert_eq!(started(false, false), RunState::Running);
        assert_eq!(approve(7, RunState::Done).unwrap_err(), "run #7 is done, not waiting for approval");
    }

    #[test]
    fn state_names_round_trip_and_match_the_json() {
        for &s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        for &s in StepState::ALL {
            assert_eq!(StepState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert_eq!(RunState::parse("Running"), None);
    }
}
