//! The time zone charts and reports are drawn in.

use chrono::{TimeZone, Utc};

/// A fixed offset from UTC (`UTC`, `+03:00`, `-05:30`). Named zones with daylight saving are not
/// offered: a day-by-day chart across a clock change would have a 23- or 25-hour day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeZoneOffset {
    pub seconds: i32,
}

impl TimeZoneOffset {
    pub const UTC: TimeZoneOffset = TimeZoneOffset { seconds: 0 };

    pub fn parse(s: &str) -> Option<TimeZoneOffset> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Some(Self::UTC);
        }
        let t = t.strip_prefix("UTC").unwrap_or(t);
        let (sign, rest) = match t.as_bytes().first()? {
            b'+' => (1, &t[1..]),
            b'-' => (-1, &t[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 14 && m < 60 && (h * 60 + m) <= 14 * 60).then_some(TimeZoneOffset { seconds: sign * (h * 3600 + m * 60) })
    }

    /// `UTC` or `UTC+03:00`.
    pub fn label(self) -> String {
        if self.seconds == 0 {
            return "UTC".into();
        }
        let a = self.seconds.abs();
        format!("UTC{}{:02}:{:02}", if self.seconds < 0 { '-' } else { '+' }, a / 3600, a % 3600 / 60)
    }

    pub fn local(self, unix: f64) -> Option<chrono::NaiveDateTime> {
        Utc.timestamp_opt(unix as i64 + i64::from(self.seconds), 0).single().map(|d| d.naive_utc())
    }
}
