//! LaunchDarkly's REST API v2, as far as the flag store needs it: the percentage that the default
//! rule (fallthrough) of a boolean flag rolls `true` out to, in one environment.
//!
//! - Read: `GET /api/v2/flags/{project}/{flag}?env={environment}`. Rollout weights are in
//!   thousandths of a percent (0 to 100 000); only whole percentages are read as a percentage.
//! - Write: `PATCH /api/v2/flags/{project}/{flag}` with a JSON Patch wrapped with a comment
//!   (the operator's reason shows in LaunchDarkly's own audit log). Its first operation tests
//!   the environment's `version` against the version the operator saw, so a concurrent change makes the whole
//!   patch fail and nothing is written. Only the weights (or the fixed variation) of the default
//!   rule are replaced: bucketing, context kind, targeting state and every other field stay.
//! - A flag the dashboard cannot describe as one percentage (not boolean, targeting rules or
//!   individual targets, a fractional weight) is shown as it is and no change is offered.

use serde::Deserialize;
use serde_json::{json, Value};

use super::super::error::{Source, SourceError};
use super::{Percentage, UnknownFlagFormat, Unwritable};

pub(super) const SOURCE: Source = Source::LaunchDarkly;

/// The parts of the flag representation the dashboard reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Flag {
    #[serde(rename = "_version")]
    pub version: i64,
    #[serde(default)]
    pub variations: Vec<Variation>,
    #[serde(default)]
    pub environments: std::collections::BTreeMap<String, Environment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Variation {
    pub value: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub on: bool,
    /// The environment's own version: the write's lock (it moves only with this environment;
    /// the flag's `_version` moves with every environment).
    #[serde(default)]
    pub version: i64,
    /// Flags that must be on first: the dashboard shows them and does not write such a flag.
    #[serde(default)]
    pub prerequisites: Vec<Value>,
    pub off_variation: Option<usize>,
    #[serde(default)]
    pub fallthrough: Fallthrough,
    #[serde(default)]
    pub rules: Vec<Value>,
    #[serde(default)]
    pub targets: Vec<Value>,
    #[serde(default)]
    pub context_targets: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fallthrough {
    pub variation: Option<usize>,
    pub rollout: Option<Rollout>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rollout {
    pub variations: Vec<Weighted>,
    /// An experiment runs on the default rule: its split is the experiment's, not a rollout's.
    #[serde(default, rename = "experimentAllocation")]
    pub experiment_allocation: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Weighted {
    pub variation: usize,
    pub weight: u32,
    /// Part of an experiment's traffic left out of it.
    #[serde(default, rename = "_untracked")]
    pub untracked: bool,
}

const FULL: u32 = 100_000;

/// What one environment of the flag says, and how it could be changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// A readable account of the state, shown as the flag's raw value.
    pub describe: String,
    pub parsed: Result<Percentage, UnknownFlagFormat>,
    pub version: String,
}

impl Flag {
    fn variation_value(&self, i: usize) -> Option<bool> {
        self.variations.get(i).and_then(|v| v.value.as_bool())
    }

    fn boolean_indices(&self) -> Option<(usize, usize)> {
        let t = self.variations.iter().position(|v| v.value == Value::Bool(true))?;
        let f = self.variations.iter().position(|v| v.value == Value::Bool(false))?;
        (self.variations.len() == 2).then_some((t, f))
    }

    /// Reads `environment` as a percentage, or says why it cannot be read as one.
    pub fn reading(&self, environment: &str) -> Result<Reading, SourceError> {
        let env = self.environments.get(environment).ok_or_else(|| SourceError::Missing {
            system: SOURCE,
            detail: format!("the flag has no environment {environment:?} in LaunchDarkly"),
        })?;
        let describe = self.describe(env);
        let unknown = || UnknownFlagFormat { raw: describe.clone() };
        let parsed = self.percentage(env).ok_or_else(unknown);
        Ok(Reading { describe, parsed, version: env.version.to_string() })
    }

    fn percentage(&self, env: &Environment) -> Option<Percentage> {
        let (t, _) = self.boolean_indices()?;
        if !env.rules.is_empty() || !env.targets.is_empty() || !env.context_targets.is_empty() {
            return None;
        }
        if !env.prerequisites.is_empty() || env.fallthrough.rollout.as_ref().is_some_and(Rollout::is_experiment) {
            return None;
        }
        if !env.on {
            return Some(if env.off_variation? == t { Percentage::ALL } else { Percentage::OFF });
        }
        match (&env.fallthrough.variation, &env.fallthrough.rollout) {
            (Some(v), None) => Some(if *v == t { Percentage::ALL } else { Percentage::OFF }),
            (None, Some(r)) => {
                if r.variations.iter().map(|w| w.weight).sum::<u32>() != FULL {
                    return None;
                }
                let on: u32 = r.variations.iter().filter(|w| w.variation == t).map(|w| w.weight).sum();
                on.is_multiple_of(1000).then(|| Percentage::new((on / 1000).into())).flatten()
            }
            _ => None,
        }
    }

    fn describe(&self, env: &Environment) -> String {
        let name = |i: usize| match self.variation_value(i) {
            Some(b) => b.to_string(),
            None => self.variations.get(i).map(|v| v.value.to_string()).unwrap_or_else(|| format!("#{i}")),
        };
        let mut out = if !env.on {
            format!("targeting off, serving {}", env.off_variation.map(name).unwrap_or_else(|| "nothing".into()))
        } else {
            match (&env.fallthrough.variation, &env.fallthrough.rollout) {
                (Some(v), _) => format!("targeting on, default rule serves {}", name(*v)),
                (None, Some(r)) => {
                    let parts: Vec<String> = r
                        .variations
                        .iter()
                        .map(|w| format!("{} {}", name(w.variation), thousandths(w.weight)))
                        .collect();
                    format!("targeting on, default rule rollout {}", parts.join(" / "))
                }
                (None, None) => "targeting on, default rule empty".into(),
            }
        };
        let rules = env.rules.len();
        let targets = env.targets.len() + env.context_targets.len();
        if rules > 0 {
            out.push_str(&format!(", {rules} targeting rule(s)"));
        }
        if !env.prerequisites.is_empty() {
            out.push_str(&format!(", {} prerequisite flag(s)", env.prerequisites.len()));
        }
        if env.fallthrough.rollout.as_ref().is_some_and(Rollout::is_experiment) {
            out.push_str(", an experiment on the default rule");
        }
        if targets > 0 {
            out.push_str(&format!(", {targets} individual target list(s)"));
        }
        if self.boolean_indices().is_none() {
            out.push_str(", not a boolean flag");
        }
        out
    }

    /// The JSON Patch operations that make `environment` roll `true` out to `p`, keeping the
    /// shape of its default rule. Empty when the flag already says `p`.
    pub fn patch_for(&self, environment: &str, p: Percentage) -> Result<Vec<Value>, Unwritable> {
        let env = self.environments.get(environment);
        let unwritable = |stored: String| Unwritable { stored, wanted: p.get() };
        let Some(env) = env else { return Err(unwritable(format!("no environment {environment:?}"))) };
        let describe = self.describe(env);
        let (Some((t, f)), Some(now)) = (self.boolean_indices(), self.percentage(env)) else {
            return Err(unwritable(describe));
        };
        if now == p {
            return Ok(Vec::new());
        }
        if !env.on {
            // Turning targeting on is a decision for LaunchDarkly's own UI, not a side effect.
            return Err(unwritable(describe));
        }
        let base = format!("/environments/{environment}/fallthrough");
        match &env.fallthrough.rollout {
            None => match p.get() {
                100 => Ok(vec![json!({"op": "replace", "path": format!("{base}/variation"), "value": t})]),
                0 => Ok(vec![json!({"op": "replace", "path": format!("{base}/variation"), "value": f})]),
                _ => Err(unwritable(describe)),
            },
            Some(r) => {
                // Exactly one entry for `true` and one for `false` can be re-weighted exactly.
                let ti = r.variations.iter().position(|w| w.variation == t);
                let fi = r.variations.iter().position(|w| w.variation == f);
                let (Some(ti), Some(fi)) = (ti, fi) else { return Err(unwritable(describe)) };
                if r.variations.len() != 2 {
                    return Err(unwritable(describe));
                }
                let on = u32::from(p.get()) * 1000;
                Ok(vec![
                    json!({"op": "replace", "path": format!("{base}/rollout/variations/{ti}/weight"), "value": on}),
                    json!({"op": "replace", "path": format!("{base}/rollout/variations/{fi}/weight"), "value": FULL - on}),
                ])
            }
        }
    }
}

impl Rollout {
    /// An experiment allocation, or traffic left out of an experiment (`_untracked`).
    pub fn is_experiment(&self) -> bool {
        self.experiment_allocation.as_ref().is_some_and(|v| !v.is_null()) || self.variations.iter().any(|w| w.untracked)
    }
}

/// 25000 → "25%", 12500 → "12.5%".
fn thousandths(w: u32) -> String {
    if w.is_multiple_of(1000) {
        format!("{}%", w / 1000)
    } else {
        let s = format!("{:.3}", f64::from(w) / 1000.0);
        format!("{}%", s.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(env: Value) -> Flag {
        serde_json::from_value(json!({
            "_version": 7,
            "variations": [{"value": true, "_id": "a"}, {"value": false, "_id": "b"}],
            "environments": {"production": env}
        }))
        .unwrap()
    }

    fn rollout(on: u32) -> Value {
        json!({"on": true, "version": 3, "offVariation": 1, "rules": [], "targets": [],
               "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": on}, {"variation": 1, "weight": FULL - on}], "bucketBy": "key"}}})
    }

    fn pct(f: &Flag) -> Option<u8> {
        f.reading("production").unwrap().parsed.ok().map(|p| p.get())
    }

    #[test]
    fn reads_whole_percentages_of_the_default_rule() {
        assert_eq!(pct(&flag(rollout(25_000))), Some(25));
        assert_eq!(pct(&flag(rollout(0))), Some(0));
        assert_eq!(pct(&flag(rollout(FULL))), Some(100));
        assert_eq!(pct(&flag(json!({"on": true, "fallthrough": {"variation": 0}}))), Some(100));
        assert_eq!(pct(&flag(json!({"on": false, "offVariation": 1, "fallthrough": {"variation": 0}}))), Some(0));
        // The environment's version, not the flag's `_version` (7).
        assert_eq!(flag(rollout(25_000)).reading("production").unwrap().version, "3");
        assert_eq!(
            flag(rollout(25_000)).reading("production").unwrap().describe,
            "targeting on, default rule rollout true 25% / false 75%"
        );
    }

    #[test]
    fn refuses_to_guess() {
        // 12.5 %, weights not summing to 100 %, rules, individual targets, no environment.
        assert_eq!(pct(&flag(rollout(12_500))), None);
        assert!(flag(rollout(12_500)).reading("production").unwrap().describe.contains("true 12.5%"));
        let mut bad_sum = rollout(25_000);
        bad_sum["fallthrough"]["rollout"]["variations"][1]["weight"] = json!(1);
        assert_eq!(pct(&flag(bad_sum)), None);
        let mut ruled = rollout(25_000);
        ruled["rules"] = json!([{"_id": "r1", "clauses": [], "variation": 0}]);
        assert_eq!(pct(&flag(ruled.clone())), None);
        assert!(flag(ruled).reading("production").unwrap().describe.ends_with("1 targeting rule(s)"));
        let mut targeted = rollout(25_000);
        targeted["targets"] = json!([{"values": ["u1"], "variation": 0}]);
        assert_eq!(pct(&flag(targeted)), None);
        assert!(flag(rollout(5_000)).reading("staging").is_err());
        // Prerequisites, or an experiment on the default rule: shown, not taken for a rollout.
        let mut prereq = rollout(25_000);
        prereq["prerequisites"] = json!([{"key": "new-diary-ui", "variation": 0}]);
        assert_eq!(pct(&flag(prereq.clone())), None);
        assert!(flag(prereq.clone()).reading("production").unwrap().describe.ends_with("1 prerequisite flag(s)"));
        assert!(flag(prereq).patch_for("production", Percentage::OFF).is_err(), "not written");
        let mut experiment = rollout(25_000);
        experiment["fallthrough"]["rollout"]["experimentAllocation"] =
            json!({"defaultVariation": 1, "canReshuffle": false});
        assert_eq!(pct(&flag(experiment.clone())), None);
        assert!(flag(experiment.clone())
            .reading("production")
            .unwrap()
            .describe
            .ends_with("an experiment on the default rule"));
        assert!(flag(experiment).patch_for("production", Percentage::new(50).unwrap()).is_err());
        let mut untracked = rollout(25_000);
        untracked["fallthrough"]["rollout"]["variations"][1]["_untracked"] = json!(true);
        assert_eq!(pct(&flag(untracked)), None);
        let multi: Flag = serde_json::from_value(json!({"_version": 1,
            "variations": [{"value": "a"}, {"value": "b"}, {"value": "c"}],
            "environments": {"production": {"on": true, "fallthrough": {"variation": 0}}}}))
        .unwrap();
        assert_eq!(pct(&multi), None);
    }

    #[test]
    fn patches_only_the_weights_and_keep_the_shape() {
        let f = flag(rollout(5_000));
        let ops = f.patch_for("production", Percentage::new(25).unwrap()).unwrap();
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/environments/production/fallthrough/rollout/variations/0/weight", "value": 25_000}),
                json!({"op": "replace", "path": "/environments/production/fallthrough/rollout/variations/1/weight", "value": 75_000}),
            ]
        );
        assert!(f.patch_for("production", Percentage::new(5).unwrap()).unwrap().is_empty());
        let fixed = flag(json!({"on": true, "fallthrough": {"variation": 0}}));
        assert_eq!(
            fixed.patch_for("production", Percentage::OFF).unwrap(),
            vec![json!({"op": "replace", "path": "/environments/production/fallthrough/variation", "value": 1})]
        );
        assert!(fixed.patch_for("production", Percentage::new(25).unwrap()).is_err());
        // Targeting off: only a no-op (the kill switch when already off) is allowed.
        let off = flag(json!({"on": false, "offVariation": 1, "fallthrough": {"variation": 0}}));
        assert!(off.patch_for("production", Percentage::OFF).unwrap().is_empty());
        assert!(off.patch_for("production", Percentage::new(5).unwrap()).is_err());
        assert!(flag(rollout(12_500)).patch_for("production", Percentage::OFF).is_err());
    }
}
