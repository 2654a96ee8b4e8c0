//! Custom checks from settings, in the style of Argo Rollouts' analysis: a PromQL query, a
//! condition on its result, how many failed measurements a step tolerates, how many query errors
//! in a row before the check counts as failed, and what no data means.

use serde::Deserialize;

use crate::api::autopilot::{CheckAction, Verdict};

/// `[[autopilot.custom]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomCheck {
    /// Lower-case letters, digits and `_`; not the name of a built-in check.
    pub name: String,
    /// PromQL giving one number.
    pub query: String,
    /// `result < 0.02`: `result`, an operator (`<`, `<=`, `>`, `>=`, `==`, `!=`) and a number.
    pub condition: String,
    /// Failed measurements tolerated in a step before the check fails (Argo's failureLimit).
    #[serde(default)]
    pub failure_limit: u32,
    /// Query errors in a row tolerated (inconclusive) before the check fails.
    #[serde(default = "default_error_limit")]
    pub consecutive_error_limit: u32,
    /// What a query with no result means: `inconclusive` (default), `pass` or `fail`.
    #[serde(default = "default_no_data")]
    pub no_data: Verdict,
    /// What a failure does (default `pause`).
    #[serde(default = "default_action")]
    pub action: CheckAction,
}

fn default_error_limit() -> u32 {
    4
}
fn default_no_data() -> Verdict {
    Verdict::Inconclusive
}
fn default_action() -> CheckAction {
    CheckAction::Pause
}

/// A parsed condition: `result <op> <number>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    op: &'static str,
    bound: f64,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let rest = text.trim().strip_prefix("result").ok_or_else(|| format!("{text:?} must start with `result`"))?;
        let rest = rest.trim_start();
        let op = ["<=", ">=", "==", "!=", "<", ">"]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("{text:?}: the operator must be one of < <= > >= == !="))?;
        let bound: f64 =
            rest[op.len()..].trim().parse().map_err(|_| format!("{text:?}: the right-hand side must be a number"))?;
        if !bound.is_finite() {
            return Err(format!("{text:?}: the right-hand side must be a finite number"));
        }
        Ok(Condition { op, bound })
    }

    pub fn holds(&self, result: f64) -> bool {
        match self.op {
            "<" => result < self.bound,
            "<=" => result <= self.bound,
            ">" => result > self.bound,
            ">=" => result >= self.bound,
            "==" => result == self.bound,
            _ => result != self.bound,
        }
    }
}

/// What the settings' custom checks must satisfy (names unique and not built in, conditions
/// that parse, queries not empty).
pub fn check_settings(custom: &[CustomCheck], builtin: &[&str]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in custom {
        let valid = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
        if !valid {
            return Err(format!("custom check name {:?}: lower-case letters, digits and _", c.name));
        }
        if builtin.contains(&c.name.as_str()) || !seen.insert(c.name.as_str()) {
            return Err(format!("custom check name {:?} is taken", c.name));
        }
        if c.query.trim().is_empty() {
            return Err(format!("custom check {}: the query is empty", c.name));
        }
        Condition::parse(&c.condition).map_err(|e| format!("custom check {}: {e}", c.name))?;
    }
    Ok(())
}

/// The verdict of a custom check this round, given this round's measurement (a number, no data,
/// or an error) and the step's earlier measurements: how many failed, how many errors in a row
/// came just before.
pub fn verdict(
    c: &CustomCheck,
    measured: Measured,
    failed_before: u32,
    errors_in_a_row_before: u32,
) -> (Verdict, String) {
    let cond = Condition::parse(&c.condition).expect("checked at start");
    match measured {
        Measured::Value(v) if cond.holds(v) => (Verdict::Pass, format!("{v} meets `{}`", c.condition)),
        Measured::Value(v) => {
            let failed = failed_before + 1;
            if failed > c.failure_limit {
                (
                    Verdict::Fail,
                    format!(
                        "{v} does not meet `{}` ({failed} failed in this step, {} tolerated)",
                        c.condition, c.failure_limit
                    ),
                )
            } else {
                (
                    Verdict::Inconclusive,
                    format!("{v} does not meet `{}` ({failed} of {} tolerated failures)", c.condition, c.failure_limit),
                )
            }
        }
        Measured::NoData => (c.no_data, "the query returned no data".into()),
        Measured::Error(e) => {
            let errors = errors_in_a_row_before + 1;
            if errors > c.consecutive_error_limit {
                (Verdict::Fail, format!("{errors} query errors in a row (limit {}): {e}", c.consecutive_error_limit))
            } else {
                (Verdict::Inconclusive, format!("query error {errors} in a row: {e}"))
            }
        }
    }
}

/// One measurement of a custom check.
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    Value(f64),
    NoData,
    Error(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(condition: &str, failure_limit: u32) -> CustomCheck {
        CustomCheck {
            name: "error_rate".into(),
            query: "q".into(),
            condition: condition.into(),
            failure_limit,
            consecutive_error_limit: 2,
            no_data: Verdict::Inconclusive,
            action: CheckAction::Pause,
        }
    }

    #[test]
    fn conditions_parse_and_hold() {
        assert!(Condition::parse("result < 0.02").unwrap().holds(0.01));
        assert!(!Condition::parse("result<0.02").unwrap().holds(0.02));
        assert!(Condition::parse("result >= 5").unwrap().holds(5.0));
        assert!(Condition::parse("result != 0").unwrap().holds(1.0));
        for bad in ["x < 1", "result ~ 1", "result < abc", "result < inf", ""] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_count_against_the_limit_and_errors_escalate() {
        let c = check("result < 0.02", 1);
        assert_eq!(verdict(&c, Measured::Value(0.01), 0, 0).0, Verdict::Pass);
        assert_eq!(verdict(&c, Measured::Value(0.05), 0, 0).0, Verdict::Inconclusive, "one failure tolerated");
        assert_eq!(verdict(&c, Measured::Value(0.05), 1, 0).0, Verdict::Fail);
        assert_eq!(verdict(&c, Measured::NoData, 0, 0).0, Verdict::Inconclusive);
        assert_eq!(verdict(&c, Measured::Error("down".into()), 0, 1).0, Verdict::Inconclusive);
        assert_eq!(verdict(&c, Measured::Error("down".into()), 0, 2).0, Verdict::Fail);
    }

    #[test]
    fn settings_refuse_taken_names_and_bad_conditions() {
        assert!(check_settings(&[check("result < 1", 0)], &["schema"]).is_ok());
        assert!(
            check_settings(&[CustomCheck { name: "schema".into(), ..check("result < 1", 0) }], &["schema"]).is_err()
        );
        assert!(check_settings(&[check("result < 1", 0), check("result < 2", 0)], &[]).is_err());
        assert!(check_settings(&[check("result ~ 1", 0)], &[]).is_err());
    }
}
