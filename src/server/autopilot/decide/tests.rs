//! The invariants of `decide`, over generated histories.
//!
//! A model of the world the driver acts in: a flag store with versions (that can fail writes),
//! one plan whose bookkeeping follows the state database's conditional statements (`store.rs`),
//! pending kills, and a round whose decision is executed later than it was made, so that a
//! person's kill, kubectl, pause, resume, dismiss or abort lands in between, as it does while a
//! round waits on a slow Prometheus. Rounds and Promote run under the plan's lock (never two at
//! once); a restart drops the round in flight. Every history is checked after every event.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::api::autopilot::PlanStep;

/// The paths the issue saw broken, by hand.
mod cases;

const CHECKS: [&str; 5] = ["doubled_doses", "sample_ratio", "legacy_share", "alerts", "schema"];

fn step(percentage: u8, bake_secs: u64) -> PlanStep {
    PlanStep { percentage, bake_secs, legacy_ceiling: None }
}

#[derive(Debug, Clone)]
enum Event {
    Tick(i64),
    /// A round reads the flag and the checks and decides; its execution waits.
    Decide {
        verdicts: [Verdict; 5],
        flag_readable: bool,
    },
    /// The round in flight executes (the flag store's health decides whether writes land).
    Execute,
    /// A Promote, decided and executed at once under the plan's lock.
    Promote {
        verdicts: [Verdict; 5],
    },
    PersonKill,
    Kubectl(u8),
    Pause,
    Resume,
    Dismiss(usize),
    Abort,
    /// The process dies: the round in flight is lost (a pending step stays written).
    Restart,
    /// The driver's retry of pending kills.
    RetryKills,
    StoreHealthy(bool),
    /// A rollback rehearsal passes now.
    Rehearsed,
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![6 => Just(Verdict::Pass), 1 => Just(Verdict::Fail), 2 => Just(Verdict::Inconclusive)]
}

fn event() -> impl Strategy<Value = Event> {
    let verdicts = || proptest::array::uniform5(verdict());
    prop_oneof![
        4 => (1i64..200).prop_map(Event::Tick),
        6 => (verdicts(), proptest::bool::weighted(0.9))
            .prop_map(|(verdicts, flag_readable)| Event::Decide { verdicts, flag_readable }),
        6 => Just(Event::Execute),
        1 => verdicts().prop_map(|verdicts| Event::Promote { verdicts }),
        1 => Just(Event::PersonKill),
        1 => prop_oneof![Just(0u8), Just(5), Just(30), Just(100)].prop_map(Event::Kubectl),
        1 => Just(Event::Pause),
        1 => Just(Event::Resume),
        1 => (0usize..5).prop_map(Event::Dismiss),
        1 => Just(Event::Abort),
        1 => Just(Event::Restart),
        2 => Just(Event::RetryKills),
        1 => proptest::bool::weighted(0.7).prop_map(Event::StoreHealthy),
        1 => Just(Event::Rehearsed),
    ]
}

struct World {
    now: DateTime<Utc>,
    flag: u8,
    version: u64,
    store_ok: bool,
    plan: PlanFacts,
    dismissed: Vec<String>,
    kill_pending: bool,
    in_flight: Option<(Round, Observation)>,
    /// The flag reached 0 % by a kill or by hand after the plan started: nothing automatic may
    /// raise it any more.
    killed: bool,
    /// The budgets the driver passes (with or without the rehearsal demand).
    budgets: Budgets,
    rehearsed_at: Option<DateTime<Utc>>,
}

impl World {
    fn new(start: u8, steps: Vec<PlanStep>, lower_confirmed: bool) -> World {
        World {
            now: Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap(),
            flag: start,
            version: 1,
            store_ok: true,
            plan: PlanFacts {
                id: 1,
                state: PlanState::Running,
                steps,
                current_step: -1,
                pending_step: None,
                step_started_at: None,
                clean_since: None,
                start_percentage: Some(start),
                lower_confirmed,
                flag_version: Some("1".into()),
            },
            dismissed: Vec::new(),
            kill_pending: false,
            in_flight: None,
            killed: false,
            budgets: Budgets::default(),
            rehearsed_at: None,
        }
    }

    fn active(&self) -> bool {
        matches!(self.plan.state, PlanState::Running | PlanState::Paused)
    }

    fn observe(&self, verdicts: [Verdict; 5], flag_readable: bool, promote: bool) -> Observation {
        Observation {
            now: self.now,
            flag: if flag_readable {
                FlagSeen::Read { percentage: Some(self.flag), version: self.version.to_string() }
            } else {
                FlagSeen::Unreadable("the flag store timed out".into())
            },
            checks: CHECKS
                .iter()
                .zip(verdicts)
                .map(|(name, verdict)| CheckSeen {
                    check: name.to_string(),
                    verdict,
                    configured: if is_kill_class(name) { CheckAction::Kill } else { CheckAction::Pause },
                    detail: String::new(),
                    inconclusive_since: (verdict == Verdict::Inconclusive).then_some(self.now),
                    inconclusive_rounds: u32::from(verdict == Verdict::Inconclusive),
                })
                .collect(),
            rollback: None,
            kill_pending: self.kill_pending,
            dismissed: self.dismissed.clone(),
            promote: promote.then(|| "promoted by ana: the bake is long enough".into()),
            rehearsed_at: self.rehearsed_at,
        }
    }

    /// A flag write by hand or by a kill (not the autopilot's step). A kill that finds the flag
    /// at 0 % already changes nothing a plan could see, except through the dashboard's kill
    /// switch, which ends the plan itself.
    fn write_by_hand(&mut self, p: u8) -> bool {
        if !self.store_ok {
            return false;
        }
        if p == 0 && self.flag > 0 {
            self.killed = true;
        }
        self.flag = p;
        self.version += 1;
        true
    }

    /// `rollout::kill`: the active plan ends in the same transition that asks for the kill;
    /// a write that fails leaves the kill pending.
    fn kill(&mut self) {
        if self.active() {
            self.plan.state = PlanState::Killed;
        }
        self.kill_pending = true;
        if self.write_by_hand(0) {
            self.kill_pending = false;
        }
    }

    fn transition(&mut self, from: PlanState, to: PlanState) {
        if self.plan.state == from {
            self.plan.state = to;
            if to != PlanState::Running {
                self.plan.clean_since = None;
            }
        }
    }

    /// The driver's execution of a decision, statement by statement as `store.rs` conditions them.
    fn execute(&mut self, r: Round, obs: &Observation) -> Result<(), String> {
        if r.drop_pending {
            self.plan.pending_step = None;
        }
        match r.decision {
            Decision::Idle | Decision::Refuse { .. } => {}
            Decision::Kill { .. } => self.kill(),
            Decision::EndKilled { .. } => {
                if self.active() {
                    self.plan.state = PlanState::Killed;
                }
            }
            Decision::FinishStep { next, version } => self.finish_step(next, Some(version)),
            Decision::Pause { .. } => self.transition(PlanState::Running, PlanState::Paused),
            Decision::Done { .. } => {
                if self.active() {
                    self.plan.state = PlanState::Done;
                }
            }
            Decision::Hold { clean, .. } => {
                if let (Some(c), PlanState::Running) = (clean, self.plan.state) {
                    self.plan.clean_since = if c { self.plan.clean_since.or(Some(obs.now)) } else { None };
                }
            }
            Decision::Step { next, percentage, expected_version, .. } => {
                // begin_step: only from the step decided on, of a running plan.
                if self.plan.state != PlanState::Running || self.plan.current_step != next - 1 {
                    return Ok(());
                }
                self.plan.pending_step = Some(next);
                // The write, under the plan row's lock, conditional on the version decided on.
                if !(self.store_ok && self.version.to_string() == expected_version) {
                    self.plan.pending_step = None;
                    self.transition(PlanState::Running, PlanState::Paused);
                    return Ok(());
                }
                if self.killed && percentage > 0 {
                    return Err(format!("a step wrote {percentage} % after a kill"));
                }
                if self.kill_pending {
                    return Err(format!("a step wrote {percentage} % while a kill was pending"));
                }
                let lowered = percentage < self.flag;
                if lowered && !(next == 0 && self.plan.lower_confirmed) {
                    return Err(format!("a step lowered the flag from {} to {percentage} % unasked", self.flag));
                }
                if self.plan.steps[next as usize].percentage != percentage {
                    return Err(format!("a step wrote {percentage} %, not step {next}'s percentage"));
                }
                self.flag = percentage;
                self.version += 1;
                self.finish_step(next, Some(self.version.to_string()));
            }
        }
        Ok(())
    }

    fn finish_step(&mut self, next: i32, version: Option<String>) {
        if self.active() && self.plan.pending_step == Some(next) {
            self.plan.flag_version = version;
            self.plan.current_step = next;
            self.plan.pending_step = None;
            self.plan.step_started_at = Some(self.now);
            self.plan.clean_since = None;
            self.dismissed.clear();
        }
    }

    fn apply(&mut self, e: &Event) -> Result<(), String> {
        match e {
            Event::Tick(s) => self.now += Duration::seconds(*s),
            Event::Decide { verdicts, flag_readable } => {
                if self.in_flight.is_none() {
                    let obs = self.observe(*verdicts, *flag_readable, false);
                    let r = decide(&self.plan, &obs, self.budgets);
                    check_decision(&self.plan, &obs, self.budgets, &r)?;
                    self.in_flight = Some((r, obs));
                }
            }
            Event::Execute => {
                if let Some((r, obs)) = self.in_flight.take() {
                    self.execute(r, &obs)?;
                }
            }
            Event::Promote { verdicts } => {
                if self.in_flight.is_none() && self.active() {
                    let obs = self.observe(*verdicts, true, true);
                    let r = decide(&self.plan, &obs, self.budgets);
                    check_decision(&self.plan, &obs, self.budgets, &r)?;
                    self.execute(r, &obs)?;
                }
            }
            Event::PersonKill => self.kill(),
            Event::Kubectl(p) => {
                self.write_by_hand(*p);
                if *p > 0 {
                    // A person raised it by hand: that is theirs to do, and a new decision.
                    self.killed = false;
                }
            }
            Event::Pause => self.transition(PlanState::Running, PlanState::Paused),
            Event::Resume => {
                // The service resumes only when the flag holds the plan's percentage.
                if Some(self.flag) == self.plan.expected() {
                    self.transition(PlanState::Paused, PlanState::Running);
                }
            }
            Event::Dismiss(i) => {
                // The service refuses to dismiss a kill-class check.
                if self.active() && !is_kill_class(CHECKS[*i]) {
                    self.dismissed.push(CHECKS[*i].to_string());
                }
            }
            Event::Abort => {
                if self.active() {
                    self.plan.state = PlanState::Aborted;
                }
            }
            Event::Restart => self.in_flight = None,
            Event::RetryKills => {
                if self.kill_pending && self.write_by_hand(0) {
                    self.kill_pending = false;
                }
            }
            Event::StoreHealthy(ok) => self.store_ok = *ok,
            Event::Rehearsed => self.rehearsed_at = Some(self.now),
        }
        if self.kill_pending && self.active() {
            return Err("a kill is pending and the plan is still active".into());
        }
        Ok(())
    }
}

/// The invariants a single decision must keep, whatever the history before it.
fn check_decision(plan: &PlanFacts, obs: &Observation, budgets: Budgets, r: &Round) -> Result<(), String> {
    let active = matches!(plan.state, PlanState::Running | PlanState::Paused);
    let kill_class_fails = obs.checks.iter().any(|c| is_kill_class(&c.check) && c.verdict == Verdict::Fail);
    if active && kill_class_fails && !matches!(r.decision, Decision::Kill { .. } | Decision::EndKilled { .. }) {
        return Err(format!("a kill-class check failed in state {} and the decision was {:?}", plan.state, r.decision));
    }
    if active && obs.kill_pending && !matches!(r.decision, Decision::Kill { .. }) {
        return Err(format!("a kill is pending and the decision was {:?}", r.decision));
    }
    if let Decision::Step { percentage, .. } = &r.decision {
        if obs.checks.iter().any(|c| is_kill_class(&c.check) && c.verdict != Verdict::Pass) {
            return Err("a step decided while a kill-class check did not pass".into());
        }
        let FlagSeen::Read { percentage: Some(now), .. } = &obs.flag else {
            return Err("a step decided without reading the flag".into());
        };
        if *now == 0 && plan.current_step >= 0 {
            return Err("a step decided on a flag at 0 %".into());
        }
        if percentage < now && !(plan.current_step < 0 && plan.lower_confirmed) {
            return Err(format!("a step from {now} % down to {percentage} % unasked"));
        }
        if let Some(gate) = budgets.rehearsal {
            let fresh = obs.rehearsed_at.is_some_and(|at| obs.now - at <= Duration::seconds(gate.max_age_secs));
            if *percentage > gate.above_percentage && !fresh {
                return Err(format!("a step to {percentage} % without a rehearsal passed within the demanded age"));
            }
        }
    }
    Ok(())
}

fn plan_shape() -> impl Strategy<Value = (u8, Vec<PlanStep>, bool)> {
    (
        prop_oneof![Just(0u8), Just(10), Just(25)],
        prop_oneof![
            Just(vec![step(5, 60), step(10, 60), step(25, 60), step(50, 60), step(100, 60)]),
            Just(vec![step(30, 30), step(60, 30)]),
            Just(vec![step(100, 30)]),
        ],
        proptest::bool::ANY,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// 10,000 histories of up to 80 events each: every invariant holds after every event.
    #[test]
    fn the_invariants_hold_over_generated_histories(
        (start, steps, lower_confirmed) in plan_shape(),
        gate in proptest::option::of(Just(RehearsalGate { above_percentage: 25, max_age_secs: 600 })),
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let mut w = World::new(start, steps, lower_confirmed);
        w.budgets.rehearsal = gate;
        for (i, e) in events.iter().enumerate() {
            if let Err(broken) = w.apply(e) {
                prop_assert!(false, "event {i} {e:?}: {broken}; history {events:?}");
            }
        }
        // A pending kill lands at the first retry once the flag store answers.
        w.store_ok = true;
        w.apply(&Event::RetryKills).map_err(TestCaseError::fail)?;
        prop_assert!(!w.kill_pending);
    }
}
