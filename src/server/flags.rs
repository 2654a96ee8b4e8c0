//! The rollout flag: its value formats and where it is stored.
//!
//! Reading is tolerant (`off`, `on`, `25`, `25%`, `{"enabled": true, "percentage": 25}`);
//! a value in any other format is kept as it is and reported, never guessed at.

use serde::Serialize;

use super::cluster::Cluster;
use super::error::{Source, SourceError};

/// A rollout percentage, 0 to 100. Cannot hold anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Percentage(u8);

impl Percentage {
    pub const OFF: Percentage = Percentage(0);
    pub const ALL: Percentage = Percentage(100);

    pub fn new(v: i64) -> Option<Percentage> {
        (0..=100).contains(&v).then_some(Percentage(v as u8))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

/// How the stored value was written, so that a write can keep the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagFormat {
    /// `off` / `on`, `false` / `true` (only 0 and 100 can be written back this way).
    Word,
    /// `25`
    Number,
    /// `25%`
    PercentSign,
    /// `{"enabled": .., "percentage": ..}`
    Json,
}

/// A parsed flag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    pub percentage: Percentage,
    pub format: FlagFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the flag value {raw:?} is in a format the dashboard does not understand; it is shown as it is")]
pub struct UnknownFlagFormat {
    pub raw: String,
}

impl FlagValue {
    pub fn parse(raw: &str) -> Result<FlagValue, UnknownFlagFormat> {
        let unknown = || UnknownFlagFormat { raw: raw.to_string() };
        let t = raw.trim();
        match t.to_ascii_lowercase().as_str() {
            "off" | "false" => return Ok(FlagValue { percentage: Percentage::OFF, format: FlagFormat::Word }),
            "on" | "true" => return Ok(FlagValue { percentage: Percentage::ALL, format: FlagFormat::Word }),
            _ => {}
        }
        if let Some(num) = t.strip_suffix('%') {
            let n = parse_whole(num.trim_end()).ok_or_else(unknown)?;
            return Ok(FlagValue { percentage: n, format: FlagFormat::PercentSign });
        }
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            let n = parse_whole(t).ok_or_else(unknown)?;
            return Ok(FlagValue { percentage: n, format: FlagFormat::Number });
        }
        if t.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(t).map_err(|_| unknown())?;
            let obj = v.as_object().ok_or_else(unknown)?;
            if obj.keys().any(|k| k != "enabled" && k != "percentage") {
                return Err(unknown());
            }
            let enabled = match obj.get("enabled") {
                None => true,
                Some(e) => e.as_bool().ok_or_else(unknown)?,
            };
            let pct = match obj.get("percentage") {
                Some(p) => p.as_i64().and_then(Percentage::new).ok_or_else(unknown)?,
                None if obj.contains_key("enabled") => {
                    if enabled {
                        Percentage::ALL
                    } else {
                        Percentage::OFF
                    }
                }
                None => return Err(unknown()),
            };
            let percentage = if enabled { pct } else { Percentage::OFF };
            return Ok(FlagValue { percentage, format: FlagFormat::Json });
        }
        Err(unknown())
    }
}

fn parse_whole(s: &str) -> Option<Percentage> {
    if s.is_empty() || s.len() > 3 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().and_then(Percentage::new)
}

/// What the flag store holds right now.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagReading {
    /// None when the key is absent from the ConfigMap.
    pub raw: Option<String>,
    pub parsed: Option<Result<FlagValue, UnknownFlagFormat>>,
    /// The ConfigMap's resourceVersion.
    pub version: Option<String>,
}

/// Where the flag lives. LaunchDarkly joins here as a second backend.
#[derive(Clone)]
pub enum FlagStore {
    Kubernetes { cluster: Cluster, configmap: String, key: String },
    NotConfigured,
}

impl FlagStore {
    pub fn source_name(&self) -> &'static str {
        match self {
            FlagStore::Kubernetes { .. } => "kubernetes",
            FlagStore::NotConfigured => "none",
        }
    }

    pub async fn read(&self) -> Result<FlagReading, SourceError> {
        match self {
            FlagStore::Kubernetes { cluster, configmap, key } => {
                let cm = cluster.configmap(configmap).await?;
                let raw = cm.data.as_ref().and_then(|d| d.get(key)).cloned();
                Ok(FlagReading {
                    parsed: raw.as_deref().map(FlagValue::parse),
                    raw,
                    version: cm.metadata.resource_version.clone(),
                })
            }
            FlagStore::NotConfigured => Err(SourceError::NotConfigured {
                system: Source::Kubernetes,
                hint: "set KUBECONFIG or run in a cluster",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(raw: &str) -> Option<u8> {
        FlagValue::parse(raw).ok().map(|v| v.percentage.get())
    }

    #[test]
    fn reads_every_documented_format() {
        assert_eq!(pct("off"), Some(0));
        assert_eq!(pct("FALSE"), Some(0));
        assert_eq!(pct("0"), Some(0));
        assert_eq!(pct("on"), Some(100));
        assert_eq!(pct("true"), Some(100));
        assert_eq!(pct("100"), Some(100));
        assert_eq!(pct("25"), Some(25));
        assert_eq!(pct(" 25% "), Some(25));
        assert_eq!(pct(r#"{"enabled": true, "percentage": 25}"#), Some(25));
        assert_eq!(pct(r#"{"enabled": false, "percentage": 25}"#), Some(0));
        assert_eq!(pct(r#"{"enabled": true}"#), Some(100));
        assert_eq!(FlagValue::parse("25%").unwrap().format, FlagFormat::PercentSign);
        assert_eq!(FlagValue::parse("on").unwrap().format, FlagFormat::Word);
    }

    #[test]
    fn refuses_to_guess() {
        for raw in [
            "",
            "101",
            "-5",
            "25.5",
            "2 5",
            "yes",
            "25%%",
            "{\"percentage\": 300}",
            "{\"rollout\": 5}",
            "[5]",
            "0x10",
            "1000",
        ] {
            assert!(FlagValue::parse(raw).is_err(), "{raw:?} should be unknown");
        }
    }

    #[test]
    fn percentage_cannot_hold_101() {
        assert!(Percentage::new(101).is_none());
        assert!(Percentage::new(-1).is_none());
        assert_eq!(Percentage::new(100).map(Percentage::get), Some(100));
    }
}
