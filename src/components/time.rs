//! Times as the pages show them: always UTC, written from the date's own fields. chrono's
//! strftime machinery (a format-string parser and its interpreter) then stays out of the
//! browser's wasm.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// How much of an instant a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// `2026-12-02 14:05:09`
    DateSeconds,
    /// `2026-12-02 14:05`
    DateMinutes,
    /// `12-02 14:05:09`
    MonthDaySeconds,
    /// `12-02 14:05`
    MonthDayMinutes,
    /// `14:05:09`
    TimeOfDay,
}

/// The instant in UTC, without the zone's name (callers add " UTC" where the page says it).
pub fn utc(t: DateTime<Utc>, shown: Shown) -> String {
    let (y, mo, d, h, mi, s) = (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
    match shown {
        Shown::DateSeconds => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        Shown::DateMinutes => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}"),
        Shown::MonthDaySeconds => format!("{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        Shown::MonthDayMinutes => format!("{mo:02}-{d:02} {h:02}:{mi:02}"),
        Shown::TimeOfDay => format!("{h:02}:{mi:02}:{s:02}"),
    }
}

/// RFC 3339 to the second, for a `<time datetime>` attribute: `2026-12-02T14:05:09Z`.
pub fn machine(t: DateTime<Utc>) -> String {
    let (y, mo, d, h, mi, s) = (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same text as chrono's strftime for every style, over dates that exercise padding,
    /// leap days and the ends of years.
    #[test]
    fn matches_strftime() {
        let styles = [
            (Shown::DateSeconds, "%Y-%m-%d %H:%M:%S"),
            (Shown::DateMinutes, "%Y-%m-%d %H:%M"),
            (Shown::MonthDaySeconds, "%m-%d %H:%M:%S"),
            (Shown::MonthDayMinutes, "%m-%d %H:%M"),
            (Shown::TimeOfDay, "%H:%M:%S"),
        ];
        for text in
            ["2026-12-02T14:05:09.123Z", "2024-02-29T00:00:00Z", "1999-12-31T23:59:59.999Z", "0999-01-01T07:08:09Z"]
        {
            let t: DateTime<Utc> = text.parse().unwrap();
            for (shown, pattern) in styles {
                assert_eq!(utc(t, shown), t.format(pattern).to_string(), "{text} {shown:?}");
            }
            assert_eq!(machine(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
    }
}
