//! A chart's numbers as CSV: exactly what is drawn, one row per point in time.

use std::fmt::Write as _;

use super::hover::value_at;
use super::{Chart, Line};

/// Exactly the numbers the chart draws: one row per point in time, one column per line, the
/// time in the chart's time zone. Step lines give the value holding at each time.
pub fn to_csv(chart: &Chart) -> String {
    let mut times: Vec<f64> =
        chart.lines.iter().chain(&chart.secondary).flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let all: Vec<&Line> = chart.lines.iter().chain(&chart.secondary).collect();
    let mut out = format!("time ({})", chart.tz.label());
    for l in &all {
        let unit = match l.unit {
            "" => String::new(),
            u => format!(" ({})", u.trim()),
        };
        let _ = write!(out, ",{}", cell(&format!("{}{unit}", l.name)));
    }
    out.push_str("\r\n");
    for t in times {
        let _ =
            write!(out, "{}", chart.tz.local(t).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default());
        for l in &all {
            match value_at(l, t, chart.step / 2.0) {
                Some(v) => {
                    let _ = write!(out, ",{}", trim_number(v));
                }
                None => out.push(','),
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// Shortest exact-enough text of a value: whole numbers without decimals, others to 6 places.
fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One RFC 4180 cell: quoted when it holds a comma, quote or line break; a cell a spreadsheet
/// would take for a formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with an apostrophe.
/// Every CSV the dashboard writes (charts, the versions table, the audit trail) uses it.
pub fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
