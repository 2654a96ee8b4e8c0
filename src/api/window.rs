//! Time windows and ranges as users type them: `<n>m`, `<n>h`, `<n>d`, from 1 minute to 90 days.
//! Parsed once at the edge; everything behind it holds a `Window` that cannot be out of bounds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A duration between 1 minute and 90 days, kept in whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    minutes: u32,
}

pub const MAX_MINUTES: u32 = 90 * 24 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid window: use a whole number followed by m, h or d (for example 15m, 24h, 7d), between 1m and 90d")]
pub struct BadWindow {
    pub input: String,
}

impl Window {
    pub fn minutes(n: u32) -> Option<Window> {
        (1..=MAX_MINUTES).contains(&n).then_some(Window { minutes: n })
    }
    pub fn hours(n: u32) -> Option<Window> {
        n.checked_mul(60).and_then(Window::minutes)
    }
    pub fn days(n: u32) -> Option<Window> {
        n.checked_mul(24 * 60).and_then(Window::minutes)
    }
    pub fn as_minutes(self) -> u32 {
        self.minutes
    }
    pub fn as_secs(self) -> i64 {
        i64::from(self.minutes) * 60
    }

    /// The smallest of the `SNAPS` that covers this window (90 days at most). Every window a
    /// client sends is snapped at the edge, so that arbitrary values (`?range=4321m`) cannot
    /// multiply the cached answers and the queries behind them: at most `SNAPS.len()` keys.
    pub fn snapped(self) -> Window {
        SNAPS
            .iter()
            .map(|m| Window { minutes: *m })
            .find(|w| w.minutes >= self.minutes)
            .unwrap_or(Window { minutes: MAX_MINUTES })
    }
}

/// The windows answered, in minutes: 1m, 5m, 15m, 30m, 1h, 2h, 6h, 12h, 24h, 2d, 7d, 14d, 30d,
/// 60d, 90d (the pages offer a few of them).
pub const SNAPS: [u32; 15] =
    [1, 5, 15, 30, 60, 120, 360, 720, 1440, 2 * 1440, 7 * 1440, 14 * 1440, 30 * 1440, 60 * 1440, 90 * 1440];

impl FromStr for Window {
    type Err = BadWindow;

    fn from_str(s: &str) -> Result<Window, BadWindow> {
        let bad = || BadWindow { input: s.chars().take(40).collect() };
        // ASCII only: a multi-byte last character must be refused, not split inside.
        if s.len() < 2 || s.len() > 8 || !s.is_ascii() {
            return Err(bad());
        }
        let (num, unit) = s.split_at(s.len() - 1);
        if !num.chars().all(|c| c.is_ascii_digit()) || num.starts_with('0') {
            return Err(bad());
        }
        let n: u32 = num.parse().map_err(|_| bad())?;
        match unit {
            "m" => Window::minutes(n),
            "h" => Window::hours(n),
            "d" => Window::days(n),
            _ => None,
        }
        .ok_or_else(bad)
    }
}

#[cfg(test)]
mod snapping {
    use super::*;

    #[test]
    fn every_window_snaps_up_to_one_of_fifteen() {
        let w = |s: &str| s.parse::<Window>().unwrap().snapped().to_string();
        assert_eq!(
            [w("1m"), w("3m"), w("24h"), w("25h"), w("4321m"), w("90d"), w("89d")],
            ["1m", "5m", "1d", "2d", "7d", "90d", "90d"]
        );
        let keys: std::collections::HashSet<Window> =
            (1..=MAX_MINUTES).map(|m| Window { minutes: m }.snapped()).collect();
        assert_eq!(keys.len(), SNAPS.len());
        assert!((1..=MAX_MINUTES).all(|m| Window { minutes: m }.snapped().minutes >= m));
    }
}

#[cfg(test)]
mod multibyte {
    #[test]
    fn a_multibyte_unit_is_refused_not_split_inside() {
        for s in ["1¥", "¥", "2£", "10日"] {
            assert!(s.parse::<super::Window>().is_err(), "{s}");
        }
    }
}

impl TryFrom<String> for Window {
    type Error = BadWindow;
    fn try_from(s: String) -> Result<Window, BadWindow> {
        s.parse()
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        w.to_string()
    }
}

impl fmt::Display for Window {
    /// The largest whole unit: 1440 minutes prints as `1d`, 90 as `90m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.minutes;
        if m.is_multiple_of(24 * 60) {
            write!(f, "{}d", m / (24 * 60))
        } else if m.is_multiple_of(60) {
            write!(f, "{}h", m / 60)
        } else {
            write!(f, "{m}m")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!("1m".parse::<Window>().unwrap().as_minutes(), 1);
        assert_eq!("24h".parse::<Window>().unwrap().as_minutes(), 1440);
        assert_eq!("90d".parse::<Window>().unwrap().as_minutes(), MAX_MINUTES);
        assert_eq!("7d".parse::<Window>().unwrap().to_string(), "7d");
        assert_eq!("120m".parse::<Window>().unwrap().to_string(), "2h");
    }

    #[test]
    fn rejects_everything_else() {
        for s in [
            "",
            "0m",
            "91d",
            "2161h",
            "1w",
            "24",
            "h",
            "-1h",
            "1.5h",
            "01h",
            "1H",
            " 1h",
            "1h ",
            "99999999999d",
            "1d1h",
            "∞h",
        ] {
            assert!(s.parse::<Window>().is_err(), "{s:?} should be rejected");
        }
    }
}
