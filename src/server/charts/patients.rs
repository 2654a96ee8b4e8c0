//! What the rollout does to patients' records, per UTC day, for the reports page: patients who
//! cross over, and the patients whose daily short total changed by the day they moved.

use crate::api::patients::{Crossover, DoseTotals};

use super::{palette, Chart, Line, TimeZoneOffset};

const DAY: f64 = 86_400.0;

fn at(day: chrono::NaiveDate) -> f64 {
    day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp() as f64).unwrap_or(0.0)
}

fn line(name: &str, color: plotters::style::RGBColor, points: Vec<(f64, f64)>, thick: bool) -> Line {
    Line { name: name.into(), color, points, step: false, unit: "", thick }
}

fn daily(title: &str, y_label: &str, x_range: (f64, f64), lines: Vec<Line>, tz: TimeZoneOffset) -> Chart {
    Chart {
        title: title.into(),
        y_label: y_label.into(),
        x_range,
        step: DAY,
        lines,
        secondary: vec![],
        secondary_label: None,
        thresholds: vec![],
        markers: vec![],
        tz,
    }
}

/// Patients per whole UTC day in `x_range`: on the split path, crossed, went back.
pub fn crossover(c: &Crossover, x_range: (f64, f64), tz: TimeZoneOffset) -> Chart {
    let days: Vec<_> = c.days.iter().filter(|d| d.complete && (x_range.0..x_range.1).contains(&at(d.day))).collect();
    let points =
        |v: fn(&crate::api::patients::CrossoverDay) -> i64| days.iter().map(|d| (at(d.day), v(d) as f64)).collect();
    daily(
        "Patients who cross over, per UTC day",
        "patients per day",
        x_range,
        vec![
            line("on the split path", palette::BLUE, points(|d| d.exposed), false),
            line("crossed (legacy and split records)", palette::ORANGE, points(|d| d.crossing), false),
            line("WENT BACK (legacy after split)", palette::VERMILLION, points(|d| d.back), true),
        ],
        tz,
    )
}

/// Per UTC day patients moved to the split path: how many changed their daily short total by
/// the factor or more. Only that line: beside hundreds moved and compared, one patient who
/// changed would be a flat line at zero (the moved and compared counts are in the caption and
/// in /api/v1/patients/dose-totals, `by_move_day`).
pub fn dose_totals(t: &DoseTotals, x_range: (f64, f64), tz: TimeZoneOffset) -> Chart {
    let days: Vec<_> = t.by_move_day.iter().filter(|d| (x_range.0..x_range.1).contains(&at(d.day))).collect();
    let points = days.iter().map(|d| (at(d.day), d.changed as f64)).collect();
    daily(
        &format!("Patients whose daily short total changed by ×{} or more, by the day they moved", t.factor),
        "patients per move day",
        x_range,
        vec![line(&format!("CHANGED by ×{} or more", t.factor), palette::VERMILLION, points, true)],
        tz,
    )
}
