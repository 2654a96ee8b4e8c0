//! One check with its verdict: a guard before a rollout increase, a precondition of a rollback
//! run. The same sentence is a guard's `reason` on the rollout API and a precondition's `detail`
//! on the rollback API (the public field names stay as they were).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Self {
        Check { name: name.into(), passed: true, detail: detail.into() }
    }
    pub fn fail(name: &str, detail: impl Into<String>) -> Self {
        Check { name: name.into(), passed: false, detail: detail.into() }
    }
    /// Passes when `passed`, with the sentence for each case.
    pub fn given(name: &str, passed: bool, detail: impl Into<String>) -> Self {
        Check { name: name.into(), passed, detail: detail.into() }
    }
    /// A check that could not be made fails, and says why.
    pub fn unknown(name: &str, why: impl std::fmt::Display) -> Self {
        Check::fail(name, format!("cannot check: {why}"))
    }
}

/// Checks spelled as the rollout API's guards: `{name, passed, reason}`.
pub mod as_guards {
    use super::Check;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Guard {
        name: String,
        passed: bool,
        reason: String,
    }

    pub fn serialize<S: Serializer>(checks: &[Check], s: S) -> Result<S::Ok, S::Error> {
        let wire: Vec<Guard> =
            checks.iter().map(|c| Guard { name: c.name.clone(), passed: c.passed, reason: c.detail.clone() }).collect();
        wire.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Check>, D::Error> {
        let wire = Vec::<Guard>::deserialize(d)?;
        Ok(wire.into_iter().map(|g| Check { name: g.name, passed: g.passed, detail: g.reason }).collect())
    }

    /// The JSON of `checks` as guards (a refusal's `details`).
    pub fn to_value(checks: &[Check]) -> Option<serde_json::Value> {
        serialize(checks, serde_json::value::Serializer).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_keeps_its_reason_field_on_the_wire() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Rollout {
            #[serde(with = "as_guards")]
            guards: Vec<Check>,
        }
        let r = Rollout { guards: vec![Check::fail("no_firing_alert", "firing: X")] };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["guards"][0]["reason"], "firing: X");
        assert_eq!(json["guards"][0]["passed"], false);
        assert_eq!(serde_json::from_value::<Rollout>(json).unwrap(), r);
        assert_eq!(serde_json::to_value(Check::pass("a", "b")).unwrap()["detail"], "b");
    }
}
