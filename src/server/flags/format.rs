//! The flag's value as text (a ConfigMap key, or any store that keeps text): its formats, and
//! a rollout percentage that cannot hold anything but 0 to 100. Knows nothing of any backend.
//!
//! Reading is tolerant (`off`, `on`, `25`, `25%`, `{"enabled": true, "percentage": 25}`);
//! a value in any other format is kept as it is and reported, never guessed at.

use serde::Serialize;

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
