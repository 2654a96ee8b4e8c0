//! The paths the issue saw broken, by hand, in the model of `tests.rs`.

use super::*;

#[test]
fn a_paused_plan_still_kills_on_a_doubled_dose() {
    let mut w = World::new(30, vec![step(30, 60), step(60, 60)], false);
    w.plan.current_step = 0;
    w.plan.state = PlanState::Paused;
    let mut verdicts = [Verdict::Pass; 5];
    verdicts[0] = Verdict::Fail;
    let r = decide(&w.plan, &w.observe(verdicts, true, false), Budgets::default());
    assert!(matches!(r.decision, Decision::Kill { .. }), "{r:?}");
    assert_eq!(r.acted, vec!["doubled_doses".to_string()]);
    // With the flag changed elsewhere too.
    w.flag = 45;
    let r = decide(&w.plan, &w.observe(verdicts, true, false), Budgets::default());
    assert!(matches!(r.decision, Decision::Kill { .. }), "{r:?}");
    // A dismissal or a dry-run setting does not quiet it.
    let obs = Observation {
        dismissed: vec!["doubled_doses".into()],
        checks: w
            .observe(verdicts, true, false)
            .checks
            .into_iter()
            .map(|c| CheckSeen { configured: CheckAction::DryRun, ..c })
            .collect(),
        ..w.observe(verdicts, true, false)
    };
    assert!(matches!(decide(&w.plan, &obs, Budgets::default()).decision, Decision::Kill { .. }));
}

#[test]
fn a_kill_during_a_round_is_not_overwritten_by_its_step() {
    let mut w = World::new(30, vec![step(30, 60), step(60, 60)], false);
    w.plan.current_step = 0;
    w.plan.step_started_at = Some(w.now - Duration::seconds(120));
    w.plan.clean_since = Some(w.now - Duration::seconds(120));
    w.apply(&Event::Decide { verdicts: [Verdict::Pass; 5], flag_readable: true }).unwrap();
    assert!(matches!(w.in_flight.as_ref().unwrap().0.decision, Decision::Step { percentage: 60, .. }));
    w.apply(&Event::PersonKill).unwrap();
    w.apply(&Event::Execute).unwrap();
    assert_eq!((w.flag, w.plan.state), (0, PlanState::Killed));
}

#[test]
fn the_first_step_never_lowers_the_flag_unasked() {
    let w = World::new(25, vec![step(10, 60), step(50, 60)], false);
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), Budgets::default());
    match r.decision {
        Decision::Pause { why, .. } => assert!(why.contains("would lower the flag from 25 %"), "{why}"),
        other => panic!("{other:?}"),
    }
    let w = World::new(25, vec![step(10, 60), step(50, 60)], true);
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), Budgets::default());
    assert!(matches!(r.decision, Decision::Step { percentage: 10, .. }), "{r:?}");
}

#[test]
fn a_check_inconclusive_past_its_budget_pauses_and_a_blind_medical_check_is_critical() {
    let mut w = World::new(0, vec![step(10, 600), step(50, 600)], false);
    w.plan.current_step = 0;
    w.flag = 10;
    w.plan.step_started_at = Some(w.now - Duration::seconds(4000));
    let mut obs = w.observe([Verdict::Pass; 5], true, false);
    obs.checks[1].verdict = Verdict::Inconclusive;
    obs.checks[1].inconclusive_since = Some(w.now - Duration::seconds(3700));
    obs.checks[1].inconclusive_rounds = 240;
    let r = decide(&w.plan, &obs, Budgets::default());
    assert!(
        matches!(&r.decision, Decision::Pause { why, kind: PauseKind::Check } if why.contains("sample_ratio")),
        "{r:?}"
    );
    let mut obs = w.observe([Verdict::Pass; 5], true, false);
    obs.checks[0].verdict = Verdict::Inconclusive;
    obs.checks[0].inconclusive_rounds = 5;
    let r = decide(&w.plan, &obs, Budgets::default());
    assert!(matches!(&r.decision, Decision::Pause { kind: PauseKind::Blind, .. }), "{r:?}");
}

/// Without the version check (a fresh read at write time, as before issue 30) the model finds
/// the kill overwritten: the property test can fail.
#[test]
fn the_model_catches_a_step_written_on_a_fresh_version() {
    let mut w = World::new(30, vec![step(30, 60), step(60, 60)], false);
    w.plan.current_step = 0;
    w.plan.step_started_at = Some(w.now - Duration::seconds(120));
    w.plan.clean_since = Some(w.now - Duration::seconds(120));
    let obs = w.observe([Verdict::Pass; 5], true, false);
    let mut r = decide(&w.plan, &obs, Budgets::default());
    w.write_by_hand(0); // kubectl's kill while the round evaluated
    if let Decision::Step { expected_version, .. } = &mut r.decision {
        *expected_version = w.version.to_string(); // the old code's fresh read
    }
    assert!(w.execute(r, &obs).unwrap_err().contains("after a kill"));
}

#[test]
fn at_100_percent_the_plan_watches_before_it_is_done() {
    let mut w = World::new(50, vec![step(100, 60)], false);
    w.plan.current_step = 0;
    w.flag = 100;
    w.plan.step_started_at = Some(w.now - Duration::seconds(3600));
    w.plan.clean_since = Some(w.now - Duration::seconds(3600));
    let obs = w.observe([Verdict::Pass; 5], true, false);
    let r = decide(&w.plan, &obs, Budgets::default());
    assert!(matches!(&r.decision, Decision::Hold { why, .. } if why.starts_with("watching")), "{r:?}");
    assert!(watching(&w.plan, w.now, 86_400));
    w.plan.step_started_at = Some(w.now - Duration::seconds(86_400));
    let r = decide(&w.plan, &obs, Budgets::default());
    assert!(matches!(r.decision, Decision::Done { .. }), "{r:?}");
}

#[test]
fn past_the_demanded_percentage_the_plan_steps_only_with_a_recent_passing_rehearsal() {
    let mut w = World::new(25, vec![step(25, 60), step(50, 60)], false);
    w.plan.current_step = 0;
    w.plan.step_started_at = Some(w.now - Duration::seconds(120));
    w.plan.clean_since = Some(w.now - Duration::seconds(120));
    let gate = Budgets {
        rehearsal: Some(RehearsalGate { above_percentage: 25, max_age_secs: 24 * 3600 }),
        ..Budgets::default()
    };
    let held = |r: &Round| match &r.decision {
        Decision::Hold { why, clean: Some(true) } => why.clone(),
        d => panic!("expected a hold, got {d:?}"),
    };
    // None passed: the step to 50 % waits, and says why.
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), gate);
    assert!(held(&r).contains("none has passed"), "{r:?}");
    // A Promote is refused alike.
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, true), gate);
    assert!(matches!(&r.decision, Decision::Refuse { why } if why.contains("rehearsal")), "{r:?}");
    // One passed 30 h ago: too old.
    w.rehearsed_at = Some(w.now - Duration::hours(30));
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), gate);
    assert!(held(&r).contains("the newest passed 30.0 h ago"), "{r:?}");
    // One passed 3 h ago: the step is written.
    w.rehearsed_at = Some(w.now - Duration::hours(3));
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), gate);
    assert!(matches!(r.decision, Decision::Step { percentage: 50, .. }), "{r:?}");
    // Up to the demanded percentage no rehearsal is needed; without the demand, none at all.
    w.rehearsed_at = None;
    let low = Budgets { rehearsal: Some(RehearsalGate { above_percentage: 50, max_age_secs: 3600 }), ..gate };
    assert!(matches!(
        decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), low).decision,
        Decision::Step { .. }
    ));
    let r = decide(&w.plan, &w.observe([Verdict::Pass; 5], true, false), Budgets::default());
    assert!(matches!(r.decision, Decision::Step { .. }));
    // A failing kill-class check still kills while the plan waits for a rehearsal.
    let mut verdicts = [Verdict::Pass; 5];
    verdicts[0] = Verdict::Fail;
    assert!(matches!(decide(&w.plan, &w.observe(verdicts, true, false), gate).decision, Decision::Kill { .. }));
}
