//! The daily `history_records` charts of the reports page.

use super::super::records::DayRow;
use super::{palette, Chart, Line, TimeZoneOffset};

const DAY: f64 = 86_400.0;

/// Each local day as the unix time of its start.
fn day_start(d: &DayRow, tz: TimeZoneOffset) -> f64 {
    d.day
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp() as f64 - f64::from(tz.seconds))
        .unwrap_or(0.0)
}

fn line(
    name: &str,
    color: plotters::style::RGBColor,
    days: &[DayRow],
    tz: TimeZoneOffset,
    unit: &'static str,
    thick: bool,
    v: impl Fn(&DayRow) -> f64,
) -> Line {
    Line {
        name: name.into(),
        color,
        points: days.iter().map(|d| (day_start(d, tz), v(d))).collect(),
        step: false,
        unit,
        thick,
    }
}

/// Rows per day in each category (every row in exactly one).
pub fn record_categories(days: &[DayRow], tz: TimeZoneOffset, x_range: (f64, f64)) -> Chart {
    let c = |_: &DayRow, n: i64| n as f64;
    Chart {
        title: "history_records per day, by category".into(),
        y_label: "records per day".into(),
        x_range,
        step: DAY,
        lines: vec![
            line("legacy only (dose)", palette::ORANGE, days, tz, "", false, |d| c(d, d.legacy_only)),
            line("short only", palette::SKY, days, tz, "", false, |d| c(d, d.short_only)),
            line("long only", palette::GREEN, days, tz, "", false, |d| c(d, d.long_only)),
            line("both parts", palette::BLUE, days, tz, "", false, |d| c(d, d.both)),
            line("DOUBLED (defect)", palette::VERMILLION, days, tz, "", true, |d| c(d, d.doubled)),
            line("empty (no dose)", palette::GREY, days, tz, "", false, |d| c(d, d.empty)),
        ],
        secondary: vec![],
        secondary_label: None,
        thresholds: vec![],
        markers: vec![],
        tz,
    }
}

/// Insulin units per day: short (insulin_short + the dose of legacy-only rows), long
/// (insulin_long), and the doubled rows' dose on its own, never in the totals.
pub fn insulin_units(days: &[DayRow], tz: TimeZoneOffset, x_range: (f64, f64)) -> Chart {
    Chart {
        title: "Insulin units per day, by kind".into(),
        y_label: "insulin units (IU) per day".into(),
        x_range,
        step: DAY,
        lines: vec![
            line("short (insulin_short + legacy dose)", palette::BLUE, days, tz, "IU", false, |d| d.short_units),
            line("long (insulin_long)", palette::GREEN, days, tz, "IU", false, |d| d.long_units),
            line("DOUBLED rows' dose (not in the totals)", palette::VERMILLION, days, tz, "IU", true, |d| {
                d.doubled_units
            }),
        ],
        secondary: vec![],
        secondary_label: None,
        thresholds: vec![],
        markers: vec![],
        tz,
    }
}
