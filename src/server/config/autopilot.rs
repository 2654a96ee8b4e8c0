//! The autopilot's section (`[autopilot]`): its default plan, its pace, and what each check
//! needs and does.

use serde::Deserialize;

/// The autopilot: its default plan, how often it evaluates, and what each check does on failure.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AutopilotSettings {
    /// The steps a new plan starts with (editable before the start).
    pub steps: Vec<crate::api::autopilot::PlanStep>,
    /// Seconds between evaluation rounds (default: the refresh interval).
    pub interval_secs: Option<u64>,
    /// The sample-ratio test counts users: fewer distinct users than this in the window is
    /// inconclusive.
    pub min_users: u64,
    /// The sample-ratio test's error rate per step, under as many looks as there are rounds
    /// (an anytime-valid sequential test: it fails when the evidence reaches 1/alpha).
    pub sample_ratio_alpha: f64,
    /// The mixture's concentration (the Dirichlet prior's total weight, Lindon & Malek).
    pub sample_ratio_concentration: f64,
    /// A gap between the split share of users and the flag's percentage smaller than this many
    /// points never fails, however sure the test is.
    pub sample_ratio_floor_points: f64,
    /// A mismatch fails only once the window holds this many seconds of users: early in a step
    /// the users seen are those who write most often, and the split path may change how often
    /// people write (long doses now logged), which alone shifts the share seen for a few hours.
    pub sample_ratio_min_window_secs: u64,
    /// Writers need a moment to read a new flag value: the sample-ratio window starts this long
    /// after the step did.
    pub sample_ratio_grace_secs: u64,
    /// A step's default legacy-share ceiling: what its percentage implies (1 - p) plus this.
    pub legacy_margin: f64,
    /// After a step's write is read back, writers need this long to see the new value (a
    /// ConfigMap reaches pods within a kubelet sync period): the legacy share is measured from
    /// then, never over the previous step's writes.
    pub legacy_grace_secs: u64,
    /// Fewer writes than this in the legacy-share window is inconclusive.
    pub legacy_min_writes: u64,
    /// At 100 %, the guide's 24-hour target is judged over this long a window once the flag has
    /// held 100 % that long (the plan watches until then).
    pub watch_secs: u64,
    /// A check inconclusive for longer than this (and than the step's bake) pauses the plan.
    pub inconclusive_secs: u64,
    /// Rounds in a row the doubled-dose check may be blind before the plan pauses, critically.
    pub blind_rounds: u32,
    /// What a check does when it fails, `kill`, `pause` or `dry_run`, by check name; checks not
    /// named keep their default (kill for doubled_doses and schema, pause for the others).
    pub actions: std::collections::BTreeMap<String, crate::api::autopilot::CheckAction>,
    /// Custom PromQL checks (`[[autopilot.custom]]`, see `server::autopilot::custom`).
    pub custom: Vec<crate::server::autopilot::custom::CustomCheck>,
    /// Past a percentage, step only with a recent passing rollback rehearsal.
    pub require_rehearsal: Option<super::RequireRehearsal>,
}

impl Default for AutopilotSettings {
    fn default() -> Self {
        use crate::api::autopilot::PlanStep;
        let day = 24 * 3600;
        let step = |percentage, bake_secs| PlanStep { percentage, bake_secs, legacy_ceiling: None };
        AutopilotSettings {
            steps: vec![step(5, day), step(10, day), step(25, day), step(50, day), step(100, day)],
            interval_secs: None,
            min_users: 100,
            sample_ratio_alpha: 0.001,
            sample_ratio_concentration: 100.0,
            sample_ratio_floor_points: 2.0,
            sample_ratio_min_window_secs: 12 * 3600,
            sample_ratio_grace_secs: 60,
            legacy_margin: 0.10,
            legacy_grace_secs: 60,
            legacy_min_writes: 50,
            watch_secs: day,
            inconclusive_secs: 3600,
            blind_rounds: 4,
            actions: Default::default(),
            custom: Vec::new(),
            require_rehearsal: None,
        }
    }
}

impl AutopilotSettings {
    /// What `check` does on failure: the settings' word, or its default. A doubled dose and a
    /// missing split column always kill (`autopilot::decide::action_of`); everything else
    /// pauses for a person unless the settings say otherwise.
    pub fn action(&self, check: &str) -> crate::api::autopilot::CheckAction {
        use crate::api::autopilot::CheckAction;
        let default = if crate::api::autopilot::DRY_RUN_BY_DEFAULT.contains(&check) {
            CheckAction::DryRun
        } else {
            CheckAction::Pause
        };
        let configured = self.actions.get(check).copied().unwrap_or(default);
        crate::server::autopilot::decide::action_of(check, configured, &[])
    }
}
