//! The axes a BI reviewer accepts: time ticks on round times of the chart's time zone (on the
//! minute, on 5, 15 or 30 minutes, on the hour, on days, on Mondays) as the range asks, and
//! numbers on round values written as people read them ("50,000", never "50000.0").

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;

use super::TimeZoneOffset;

/// A chart axis over `range` whose ticks (and grid lines) are exactly `ticks`: plotters draws
/// them, the chart's formatter labels them.
#[derive(Clone)]
pub struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    pub fn new(range: Range<f64>, ticks: Vec<f64>) -> Ticked {
        Ticked { inner: range.into(), ticks }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

/// The tick spacings offered, smallest first. Every spacing under a day divides a day, so a tick
/// falls on local midnight; weeks start on Mondays.
pub const TIME_STEPS: [i64; 19] = [
    10,
    15,
    30,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    WEEK,
    2 * WEEK,
    4 * WEEK,
];

/// Ticks of a time axis: the spacing chosen and the ticks (unix seconds) inside `[x0, x1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeTicks {
    pub step: i64,
    pub at: Vec<f64>,
}

/// The smallest spacing that puts at most `max` ticks in `[x0, x1]`, on round local times.
pub fn time_ticks(x0: f64, x1: f64, tz: TimeZoneOffset, max: usize) -> TimeTicks {
    let max = max.max(2);
    if !(x0.is_finite() && x1.is_finite() && x0 <= x1) {
        return TimeTicks { step: TIME_STEPS[0], at: Vec::new() };
    }
    let offset = i64::from(tz.seconds);
    let step = TIME_STEPS.into_iter().find(|s| count(x0, x1, offset, *s) <= max);
    let step = step.unwrap_or(TIME_STEPS[TIME_STEPS.len() - 1]);
    TimeTicks { step, at: aligned(x0, x1, offset, step) }
}

/// 1970-01-05 was a Monday: weeks count from there.
fn origin(step: i64) -> i64 {
    if step >= WEEK {
        4 * DAY
    } else {
        0
    }
}

/// The first multiple of `step` in local time at or after `x0` (unix seconds).
fn first_tick(x0: f64, offset: i64, step: i64) -> i64 {
    let local0 = x0.ceil() as i64 + offset - origin(step);
    let first = local0.div_euclid(step) * step + if local0.rem_euclid(step) == 0 { 0 } else { step };
    first + origin(step) - offset
}

/// How many ticks `aligned` would give, without building them.
fn count(x0: f64, x1: f64, offset: i64, step: i64) -> usize {
    let first = first_tick(x0, offset, step);
    if first as f64 > x1 {
        0
    } else {
        ((x1 - first as f64) / step as f64).floor() as usize + 1
    }
}

/// Every multiple of `step` in local time within `[x0, x1]` (weeks from a Monday).
fn aligned(x0: f64, x1: f64, offset: i64, step: i64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = first_tick(x0, offset, step);
    while (t as f64) <= x1 {
        out.push(t as f64);
        t += step;
    }
    out
}

/// A tick's label: the time of day for spacings under a day ("14:15", "14:15:30" under a minute),
/// the date at local midnight ("Dec 6") and for spacings of days.
pub fn time_label(t: f64, step: i64, tz: TimeZoneOffset) -> String {
    let Some(local) = tz.local(t) else { return String::new() };
    let midnight = (t as i64 + i64::from(tz.seconds)).rem_euclid(DAY) == 0;
    if step >= DAY || midnight {
        local.format("%b %-d").to_string()
    } else if step < MINUTE {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%H:%M").to_string()
    }
}

/// Ticks of a value axis from 0 to at least `top`: spaced 1, 2 or 5 × a power of ten, at most
/// `max` of them. Returns the spacing and the ticks.
/// They are spaced at least `min_step` apart (1 for counts: no tick at 0.2 records).
pub fn value_ticks(top: f64, max: usize, min_step: f64) -> (f64, Vec<f64>) {
    let top = if top.is_finite() && top > 0.0 { top } else { 1.0 };
    let max = max.max(2);
    let rough = top / (max - 1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|s| ((top / s).ceil() as usize) < max);
    let step = step.unwrap_or(10.0 * power).max(min_step);
    let n = (top / step).ceil() as usize;
    (step, (0..=n).map(|i| i as f64 * step).collect())
}

/// A number as people read it on an axis or in a hover: thousands separated by commas, as many
/// decimals as the spacing `step` needs (none for counts: "50,000", "8,000").
pub fn number(v: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step < 1.0 { (-step.log10().floor()) as usize } else { 0 };
    let decimals = decimals.min(6);
    let text = format!("{:.*}", decimals, v.abs());
    let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let grouped = crate::api::numbers::grouped(whole);
    let sign = if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06 03:06:40 UTC (a Sunday): not a round time.
    const T0: f64 = 1_796_526_400.0;

    fn labels(span: f64, tz: TimeZoneOffset, max: usize) -> (i64, Vec<String>) {
        let t = time_ticks(T0, T0 + span, tz, max);
        (t.step, t.at.iter().map(|x| time_label(*x, t.step, tz)).collect())
    }

    #[test]
    fn the_start_is_midnight() {
        assert_eq!(time_label(1_796_515_200.0, HOUR, TimeZoneOffset::UTC), "Dec 6");
    }

    #[test]
    fn each_range_gets_ticks_on_round_times() {
        let utc = TimeZoneOffset::UTC;
        // The overview's ranges and the autopilot's short check charts, 8 ticks at most.
        let cases: [(f64, i64, &str); 10] = [
            (120.0, 15, "03:06:45"),
            (600.0, 2 * MINUTE, "03:08"),
            (3600.0, 10 * MINUTE, "03:10"),
            (6.0 * 3600.0, HOUR, "04:00"),
            (24.0 * 3600.0, 3 * HOUR, "06:00"),
            (2.0 * 86400.0, 6 * HOUR, "06:00"),
            (7.0 * 86400.0, DAY, "Dec 7"),
            (14.0 * 86400.0, 2 * DAY, "Dec 7"),
            (30.0 * 86400.0, WEEK, "Dec 7"),
            (90.0 * 86400.0, 2 * WEEK, "Dec 7"),
        ];
        for (span, step, first) in cases {
            let (got, shown) = labels(span, utc, 8);
            assert_eq!(got, step, "span {span}: {shown:?}");
            assert_eq!(shown[0], first, "span {span}: {shown:?}");
            assert!(shown.len() <= 8 && shown.len() >= 3, "span {span}: {shown:?}");
            let mut unique = shown.clone();
            unique.dedup();
            assert_eq!(unique, shown, "no label repeats");
        }
    }

    #[test]
    fn a_day_range_shows_the_date_at_midnight_and_every_tick_is_on_its_step() {
        let (step, shown) = labels(24.0 * 3600.0, TimeZoneOffset::UTC, 8);
        assert_eq!(step, 3 * HOUR);
        assert_eq!(shown, ["06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "Dec 7", "03:00"]);
        for t in time_ticks(T0, T0 + 86400.0 * 2.0, TimeZoneOffset::UTC, 8).at {
            assert_eq!(t as i64 % (6 * HOUR), 0);
        }
    }

    #[test]
    fn ticks_are_round_in_the_chosen_time_zone() {
        let plus_0530 = TimeZoneOffset::parse("+05:30").unwrap();
        let t = time_ticks(T0, T0 + 86400.0, plus_0530, 8);
        assert_eq!(t.step, 3 * HOUR);
        for x in &t.at {
            assert_eq!((*x as i64 + 19_800) % (3 * HOUR), 0, "on the hour at +05:30");
        }
        assert_eq!(time_label(t.at[0], t.step, plus_0530), "09:00");
        // Weeks start on Mondays in local time: 2026-12-07 is a Monday.
        let w = time_ticks(T0, T0 + 60.0 * 86400.0, plus_0530, 8);
        assert_eq!(w.step, 2 * WEEK);
        assert_eq!(time_label(w.at[0], w.step, plus_0530), "Dec 7");
    }

    #[test]
    fn degenerate_ranges_give_no_ticks_and_never_hang() {
        let utc = TimeZoneOffset::UTC;
        assert!(time_ticks(T0, f64::INFINITY, utc, 8).at.is_empty());
        assert!(time_ticks(f64::NAN, T0, utc, 8).at.is_empty());
        assert!(time_ticks(T0 + 10.0, T0, utc, 8).at.is_empty());
        assert!(time_ticks(T0, T0, utc, 8).at.len() <= 1);
        // A year fits in 4-week ticks; the spacing is never below what the range needs.
        let year = time_ticks(T0, T0 + 365.0 * 86400.0, utc, 8);
        assert_eq!(year.step, 4 * WEEK);
        assert!(year.at.len() <= 14);
    }

    #[test]
    fn counts_read_as_counts() {
        assert_eq!(number(50_000.0, 10_000.0), "50,000");
        assert_eq!(number(8_000.0, 2_000.0), "8,000");
        assert_eq!(number(1_234_567.0, 1.0), "1,234,567");
        assert_eq!(number(0.0, 5.0), "0");
        assert_eq!(number(999.0, 1.0), "999");
        assert_eq!(number(0.35, 0.05), "0.35");
        assert_eq!(number(2.5, 0.5), "2.5");
        assert_eq!(number(-1500.0, 500.0), "-1,500");
    }

    #[test]
    fn value_ticks_are_round_and_cover_the_top() {
        assert_eq!(
            value_ticks(57_500.0, 7, 0.0),
            (10_000.0, vec![0.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0, 60_000.0])
        );
        let (step, at) = value_ticks(0.42, 7, 0.0);
        assert!((step - 0.1).abs() < 1e-12, "{step}");
        assert!(at.last().copied().unwrap() >= 0.42 && at.len() <= 7);
        let (step, at) = value_ticks(9_200.0, 7, 0.0);
        assert_eq!(step, 2_000.0);
        assert_eq!(at.len(), 6);
        // Counts tick on whole numbers however small the top.
        assert_eq!(value_ticks(1.0, 7, 1.0), (1.0, vec![0.0, 1.0]));
        assert_eq!(value_ticks(3.45, 7, 1.0), (1.0, vec![0.0, 1.0, 2.0, 3.0, 4.0]));
        let top = value_ticks(0.0, 7, 0.0).1.last().copied().unwrap();
        assert!((top - 1.0).abs() < 1e-12, "{top}");
    }
}
