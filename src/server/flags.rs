//! The rollout flag: its value formats and where it is stored.
//!
//! Reading is tolerant (`off`, `on`, `25`, `25%`, `{"enabled": true, "percentage": 25}`);
//! a value in any other format is kept as it is and reported, never guessed at.

use serde::Serialize;

use super::cluster::{Cluster, ConditionalWriteError};
use super::error::{Source, SourceError};
use super::launchdarkly::{LaunchDarkly, PatchError};

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
    /// LaunchDarkly: the default rule's percentage rollout (weights rewritten in place).
    LaunchDarklyRollout,
    /// LaunchDarkly: the default rule serves one variation (only 0 and 100 can be written).
    LaunchDarklyVariation,
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

/// Why a percentage cannot be written in the format the flag is stored in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the flag is stored as {stored:?}, which can only say 0 % or 100 %; {wanted} % cannot be written in that format"
)]
pub struct Unwritable {
    pub stored: String,
    pub wanted: u8,
}

impl FlagValue {
    /// The text that stores `p` in the same format as `original` (which parsed as `self`).
    pub fn render(&self, original: &str, p: Percentage) -> Result<String, Unwritable> {
        let unwritable = || Unwritable { stored: original.trim().to_string(), wanted: p.get() };
        let t = original.trim();
        match self.format {
            FlagFormat::Number => Ok(p.get().to_string()),
            FlagFormat::PercentSign => Ok(format!("{}%", p.get())),
            FlagFormat::Word => {
                let lower = t.to_ascii_lowercase();
                let word = match (p.get(), lower.as_str()) {
                    (0, "on" | "off") => "off",
                    (100, "on" | "off") => "on",
                    (0, _) => "false",
                    (100, _) => "true",
                    _ => return Err(unwritable()),
                };
                Ok(if t.chars().all(|c| c.is_ascii_uppercase()) { word.to_ascii_uppercase() } else { word.to_string() })
            }
            // Written as JSON Patch operations by the LaunchDarkly store, never as text.
            FlagFormat::LaunchDarklyRollout | FlagFormat::LaunchDarklyVariation => Err(unwritable()),
            FlagFormat::Json => {
                let mut obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(t).map_err(|_| unwritable())?;
                if obj.contains_key("percentage") {
                    obj.insert("percentage".into(), p.get().into());
                    if obj.contains_key("enabled") {
                        obj.insert("enabled".into(), (p.get() > 0).into());
                    }
                } else if p.get() == 0 || p.get() == 100 {
                    obj.insert("enabled".into(), (p.get() == 100).into());
                } else {
                    return Err(unwritable());
                }
                Ok(serde_json::Value::Object(obj).to_string())
            }
        }
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
    /// The ConfigMap's resourceVersion, or the LaunchDarkly flag's `_version`.
    pub version: Option<String>,
}

/// Where the flag lives.
#[derive(Clone)]
pub enum FlagStore {
    Kubernetes {
        cluster: Cluster,
        configmap: String,
        key: String,
    },
    LaunchDarkly(LaunchDarkly),
    /// The configured backend cannot be reached at all (its error says why).
    NotConfigured(SourceError),
}

/// A flag change that happened and was read back.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagChange {
    pub before: String,
    pub after: String,
    pub version: Option<String>,
}

/// Why a flag change did not happen. Nothing was written in any of these cases, except
/// `ReadBackMismatch`, which says the store holds something other than what was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagWriteError {
    #[error("{0}")]
    Conflict(String),
    #[error("the flag has no value under its key, so its format is unknown; set it outside the dashboard first")]
    Absent,
    #[error(transparent)]
    UnknownFormat(#[from] UnknownFlagFormat),
    #[error(transparent)]
    Unwritable(#[from] Unwritable),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the flag was written but reads back as {read:?} instead of {written:?}")]
    ReadBackMismatch { written: String, read: String },
}

impl FlagStore {
    /// Sets the rollout percentage, keeping the stored format, only if the flag is still at
    /// `expected_version`; then reads it back. `comment` goes where the store keeps one.
    pub async fn write(
        &self,
        expected_version: &str,
        p: Percentage,
        comment: &str,
    ) -> Result<FlagChange, FlagWriteError> {
        let current = self.read().await?;
        if current.version.as_deref() != Some(expected_version) {
            return Err(conflict(&current));
        }
        let before = current.raw.clone().ok_or(FlagWriteError::Absent)?;
        let parsed = current.parsed.clone().ok_or(FlagWriteError::Absent)??;
        let after = match self {
            FlagStore::Kubernetes { cluster, configmap, key } => {
                let after = parsed.render(&before, p)?;
                cluster.replace_configmap_key(configmap, key, &after, expected_version).await.map_err(|e| match e {
                    ConditionalWriteError::Conflict { .. } => FlagWriteError::Conflict(e.to_string()),
                    ConditionalWriteError::Source(s) => FlagWriteError::Source(s),
                })?;
                Some(after)
            }
            FlagStore::LaunchDarkly(ld) => {
                let flag = ld.flag().await?;
                if flag.version.to_string() != expected_version {
                    return Err(conflict(&self.read().await?));
                }
                let ops = flag.patch_for(ld.environment(), p)?;
                if !ops.is_empty() {
                    ld.patch(flag.version, ops, comment).await.map_err(|e| match e {
                        PatchError::Conflict(m) => {
                            FlagWriteError::Conflict(format!("LaunchDarkly refused the change: {m}"))
                        }
                        PatchError::Source(s) => FlagWriteError::Source(s),
                    })?;
                }
                // LaunchDarkly's text is a description; the read-back check is the percentage.
                None
            }
            FlagStore::NotConfigured(e) => return Err(FlagWriteError::Source(e.clone())),
        };
        let read = self.read().await?;
        let read_pct = read.parsed.as_ref().and_then(|r| r.as_ref().ok()).map(|v| v.percentage);
        let matches = match &after {
            Some(text) => read.raw.as_deref() == Some(text.as_str()),
            None => read_pct == Some(p),
        };
        let read_raw = read.raw.clone().unwrap_or_default();
        if !matches {
            return Err(FlagWriteError::ReadBackMismatch {
                written: after.unwrap_or_else(|| format!("{} %", p.get())),
                read: read_raw,
            });
        }
        Ok(FlagChange { before, after: read_raw, version: read.version })
    }

    /// Which outside system holds the flag.
    pub fn source(&self) -> Source {
        match self {
            FlagStore::Kubernetes { .. } => Source::Kubernetes,
            FlagStore::LaunchDarkly(_) => Source::LaunchDarkly,
            FlagStore::NotConfigured(e) => e.system(),
        }
    }

    pub fn source_name(&self) -> &'static str {
        match self {
            FlagStore::Kubernetes { .. } => "kubernetes",
            FlagStore::LaunchDarkly(_) => "launchdarkly",
            FlagStore::NotConfigured(_) => "none",
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
            FlagStore::LaunchDarkly(ld) => {
                let r = ld.read().await?;
                Ok(FlagReading { raw: Some(r.describe), parsed: Some(r.parsed), version: Some(r.version) })
            }
            FlagStore::NotConfigured(e) => Err(e.clone()),
        }
    }
}

fn conflict(current: &FlagReading) -> FlagWriteError {
    FlagWriteError::Conflict(format!(
        "the flag was changed since it was read: it is now {:?} at version {}",
        current.raw.as_deref().unwrap_or(""),
        current.version.as_deref().unwrap_or("?")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(raw: &str, p: u8) -> Result<String, Unwritable> {
        FlagValue::parse(raw).unwrap().render(raw, Percentage::new(p.into()).unwrap())
    }

    #[test]
    fn writing_keeps_the_format_it_found() {
        assert_eq!(rewrite("5", 25).unwrap(), "25");
        assert_eq!(rewrite("5%", 25).unwrap(), "25%");
        assert_eq!(rewrite("off", 100).unwrap(), "on");
        assert_eq!(rewrite("TRUE", 0).unwrap(), "FALSE");
        assert_eq!(rewrite(r#"{"enabled": true, "percentage": 5}"#, 0).unwrap(), r#"{"enabled":false,"percentage":0}"#);
        assert_eq!(rewrite(r#"{"percentage": 5}"#, 25).unwrap(), r#"{"percentage":25}"#);
        assert_eq!(rewrite(r#"{"enabled": false}"#, 100).unwrap(), r#"{"enabled":true}"#);
        assert!(rewrite("on", 25).is_err());
        assert!(rewrite(r#"{"enabled": true}"#, 25).is_err());
        // Whatever is written reads back as what was meant.
        for raw in ["5", "5%", r#"{"enabled": true, "percentage": 5}"#] {
            for p in [0u8, 1, 25, 99, 100] {
                let out = rewrite(raw, p).unwrap();
                assert_eq!(FlagValue::parse(&out).unwrap().percentage.get(), p, "{raw} -> {out}");
            }
        }
    }

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
