//! Which app versions write what (`[client_versions]`): the counters' label that names the app
//! version, and which versions must never write the legacy dose.

use serde::Deserialize;

/// The legacy and split counters read per app version. The counter names and the label are
/// those the diary service exports (`split_dose_saved_total{client_version="4.1.0"}`);
/// `selector` narrows both (e.g. `service="diary-api"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientVersionSettings {
    /// The label naming the app version on both counters.
    pub label: String,
    pub split_counter: String,
    pub legacy_counter: String,
    /// Label matchers added to both counters, without braces (empty: none).
    pub selector: String,
    /// Versions that must write only the split parts, as a requirement (`>= 4.0.0`); a version
    /// it matches writing a legacy dose fails the autopilot's `split_only_versions` check.
    pub split_only: Option<String>,
}

impl Default for ClientVersionSettings {
    fn default() -> Self {
        ClientVersionSettings {
            label: "client_version".into(),
            split_counter: "split_dose_saved_total".into(),
            legacy_counter: "legacy_dose_used_total".into(),
            selector: String::new(),
            split_only: None,
        }
    }
}

impl ClientVersionSettings {
    /// Writes per version over `window` (a PromQL duration) ending at the query's time.
    pub fn writes_query(&self, counter: &str, window: &str) -> String {
        format!("sum by ({}) (increase({counter}{{{}}}[{window}]))", self.label, self.selector)
    }

    /// The split-only requirement, parsed (checked at start: `validate.rs`).
    pub fn split_only_rule(&self) -> Option<SplitOnly> {
        self.split_only.as_deref().and_then(|r| SplitOnly::parse(r).ok())
    }

    /// Writes per second per version, for a chart.
    pub fn rate_query(&self, counter: &str, window: &str) -> String {
        format!("sum by ({}) (rate({counter}{{{}}}[{window}]))", self.label, self.selector)
    }
}

/// Versions that must write only the split parts: a requirement such as `>= 4.0.0`.
#[derive(Debug, Clone)]
pub struct SplitOnly(semver::VersionReq);

impl SplitOnly {
    pub fn parse(requirement: &str) -> Result<SplitOnly, String> {
        semver::VersionReq::parse(requirement.trim()).map(SplitOnly).map_err(|e| e.to_string())
    }

    /// Whether `version` is one of them. A label that is not a version (`unknown`) never is;
    /// `4.1` reads as `4.1.0`.
    pub fn matches(&self, version: &str) -> bool {
        lenient(version).is_some_and(|v| self.0.matches(&v))
    }
}

fn lenient(version: &str) -> Option<semver::Version> {
    let v = version.trim().trim_start_matches('v');
    let dots = v.split(['-', '+']).next().unwrap_or("").matches('.').count();
    let padded = match dots {
        0 => format!("{v}.0.0"),
        1 => {
            let (core, rest) = v.split_at(v.find(['-', '+']).unwrap_or(v.len()));
            format!("{core}.0{rest}")
        }
        _ => v.to_string(),
    };
    semver::Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_only_reads_versions_leniently() {
        let rule = SplitOnly::parse(">= 4.0.0").unwrap();
        assert!(rule.matches("4.0.0") && rule.matches("4.1") && rule.matches("v5") && rule.matches("10.2.3"));
        assert!(!rule.matches("3.1.4") && !rule.matches("unknown") && !rule.matches(""));
        assert!(SplitOnly::parse("banana").is_err());
        let range = SplitOnly::parse(">=4.0.0, <4.2.0").unwrap();
        assert!(range.matches("4.1.9") && !range.matches("4.2.0"));
        assert_eq!(
            ClientVersionSettings::default().writes_query("x_total", "300s"),
            "sum by (client_version) (increase(x_total{}[300s]))"
        );
    }
}
