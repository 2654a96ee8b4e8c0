//! A plan's steps: what makes them valid, each step's legacy-share ceiling, and the schedule.

use chrono::{DateTime, Duration, Utc};

use crate::api::autopilot::PlanStep;

/// Steps go up, end at 100 % or below, bake for at least 5 s (a compressed demo schedule; at
/// most 30 days), and there
/// are from 1 to 20 of them.
pub fn check_steps(steps: &[PlanStep]) -> Result<(), String> {
    if steps.is_empty() || steps.len() > 20 {
        return Err("a plan has from 1 to 20 steps".into());
    }
    let mut last = 0u8;
    for (i, s) in steps.iter().enumerate() {
        let n = i + 1;
        if s.percentage == 0 || s.percentage > 100 {
            return Err(format!("step {n}: the percentage must be from 1 to 100, not {}", s.percentage));
        }
        if s.percentage <= last {
            return Err(format!("step {n}: {} % does not go up from {last} %", s.percentage));
        }
        if !(5..=30 * 24 * 3600).contains(&s.bake_secs) {
            return Err(format!("step {n}: the bake time must be from 5 s to 30 days, not {} s", s.bake_secs));
        }
        if s.legacy_ceiling.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            return Err(format!("step {n}: legacy_ceiling must be a fraction from 0 to 1"));
        }
        last = s.percentage;
    }
    Ok(())
}

/// The legacy share above which a step fails: its own ceiling, or what its percentage implies
/// (the share of users still on the legacy path) plus the margin.
pub fn legacy_ceiling(step: &PlanStep, margin: f64) -> f64 {
    step.legacy_ceiling.unwrap_or_else(|| (1.0 - f64::from(step.percentage) / 100.0 + margin).min(1.0))
}

/// The earliest time each step can start: the current one when it started, each later one a
/// bake time after the one before (counted from now at the earliest). Past steps: None.
pub fn schedule(
    steps: &[PlanStep],
    current: i32,
    step_started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Option<DateTime<Utc>>> {
    let bake = |s: &PlanStep| Duration::seconds(s.bake_secs as i64);
    let mut next = now;
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let i = i as i32;
        if i < current {
            out.push(None);
        } else if i == current {
            let start = step_started_at.unwrap_or(now);
            out.push(Some(start));
            next = (start + bake(s)).max(now);
        } else {
            out.push(Some(next));
            next += bake(s);
        }
    }
    out
}

/// Parses steps as people type them: `5 24h, 10 24h, 25 1h30m, 100 24h`.
pub fn parse_steps(text: &str) -> Result<Vec<PlanStep>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (p, bake) = s.split_once(char::is_whitespace).ok_or_else(|| format!("{s:?}: write `percent bake`"))?;
            let percentage = p
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("{p:?} is not a percentage"))?;
            Ok(PlanStep { percentage, bake_secs: duration_secs(bake.trim())?, legacy_ceiling: None })
        })
        .collect()
}

fn duration_secs(text: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 24h or 90m"))?;
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("{text:?} is not a duration such as 24h or 90m")),
        };
    }
    if !number.is_empty() {
        return Err(format!("{text:?}: give the unit (s, m, h or d)"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(percentage: u8, bake_secs: u64) -> PlanStep {
        PlanStep { percentage, bake_secs, legacy_ceiling: None }
    }

    #[test]
    fn steps_go_up_and_bake() {
        assert!(check_steps(&[step(5, 3600), step(100, 60)]).is_ok());
        assert!(check_steps(&[]).is_err());
        assert!(check_steps(&[step(10, 3600), step(5, 3600)]).unwrap_err().contains("does not go up"));
        assert!(check_steps(&[step(101, 3600)]).is_err());
        assert!(check_steps(&[step(5, 4)]).unwrap_err().contains("bake time"));
    }

    #[test]
    fn typed_steps_parse() {
        assert_eq!(
            parse_steps("5 24h, 10 1h30m,100 2d").unwrap(),
            vec![step(5, 86400), step(10, 5400), step(100, 172_800)]
        );
        assert!(parse_steps("5").is_err());
        assert!(parse_steps("5 24").is_err());
        assert!(parse_steps("x 1h").is_err());
    }

    #[test]
    fn the_ceiling_follows_the_percentage_unless_set() {
        assert!((legacy_ceiling(&step(25, 60), 0.10) - 0.85).abs() < 1e-9);
        assert!((legacy_ceiling(&step(5, 60), 0.10) - 1.0).abs() < 1e-9);
        assert_eq!(legacy_ceiling(&PlanStep { legacy_ceiling: Some(0.2), ..step(25, 60) }, 0.1), 0.2);
    }

    #[test]
    fn the_schedule_counts_bake_times_from_now() {
        let now = Utc::now();
        let steps = [step(5, 3600), step(10, 7200), step(100, 60)];
        let before = schedule(&steps, -1, None, now);
        assert_eq!(before, vec![Some(now), Some(now + Duration::seconds(3600)), Some(now + Duration::seconds(10_800))]);
        let started = now - Duration::seconds(1800);
        let during = schedule(&steps, 1, Some(started), now);
        assert_eq!(during, vec![None, Some(started), Some(now + Duration::seconds(5400))]);
    }
}
