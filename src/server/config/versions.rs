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

/// Versions that must write only the split parts: a requirement such as `>= 4.0.0`, each
/// comparator with its operator (a bare `4.2.0` would mean `^4.2.0` and leave 5.x out, so it is
/// refused).
#[derive(Debug, Clone)]
pub struct SplitOnly(semver::VersionReq);

impl SplitOnly {
    pub fn parse(requirement: &str) -> Result<SplitOnly, String> {
        let bare = requirement.split(',').map(str::trim).find(|c| c.starts_with(|ch: char| ch.is_ascii_digit()));
        if let Some(c) = bare {
            return Err(format!("{c:?} has no operator: write \">= {c}\" (or \"^{c}\" for one major version)"));
        }
        semver::VersionReq::parse(requirement.trim()).map(SplitOnly).map_err(|e| e.to_string())
    }

    /// Whether `version` is one of them, by its release (`4.2.0-beta` is a build of 4.2.0).
    /// A label that is not a version (`unknown`) never is.
    pub fn matches(&self, version: &str) -> bool {
        release(version).is_some_and(|v| self.0.matches(&v))
    }
}

/// The release a version label names: up to three numbers after an optional `v` (`4.1` is
/// 4.1.0, `4.01` is 4.1.0, `4.2.0.1` is 4.2.0), its pre-release or build part set aside.
pub fn release(version: &str) -> Option<semver::Version> {
    let v = version.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let core = v.split(['-', '+']).next()?;
    let mut numbers = core.split('.').map(|n| n.parse::<u64>().ok());
    let major = numbers.next()??;
    let minor = numbers.next().unwrap_or(Some(0))?;
    let patch = numbers.next().unwrap_or(Some(0))?;
    Some(semver::Version::new(major, minor, patch))
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
        // A build of a split-only release is one; labels written loosely still read.
        for label in ["4.2.0-beta", "4.3.0-rc.1", "4.01", "4.2.0.1", "V4.2.0", "4-beta"] {
            assert!(rule.matches(label), "{label}");
        }
        assert!(!rule.matches("3.9.9-rc.1") && !rule.matches("4.x") && !rule.matches("-4"));
        let bare = SplitOnly::parse("4.2.0").unwrap_err();
        assert!(bare.contains(">= 4.2.0"), "{bare}");
        let range = SplitOnly::parse(">=4.0.0, <4.2.0").unwrap();
        assert!(range.matches("4.1.9") && !range.matches("4.2.0"));
        assert_eq!(
            ClientVersionSettings::default().writes_query("x_total", "300s"),
            "sum by (client_version) (increase(x_total{}[300s]))"
        );
    }

    #[test]
    fn a_selector_is_label_matchers_and_nothing_else() {
        use super::super::validate::selector;
        for ok in ["", "service=\"diary-api\"", "service = \"diary-api\", env=~\"prod.*\"", r#"v=~"4\\.[0-9]{2}""#] {
            assert!(selector(ok).is_ok(), "{ok}: {:?}", selector(ok));
        }
        for bad in [
            "service",
            "service=diary",
            "service=\"a\"} or vector(1) #",
            "a=\"b",
            "a=\"b\" c=\"d\"",
            "a=\"x\ny\"",
            "1a=\"b\"",
        ] {
            assert!(selector(bad).is_err(), "{bad} is refused");
        }
    }
}
