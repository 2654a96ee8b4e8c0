//! The SVG's hover layer: strips centred on each point in time and on each marker, whose
//! `<title>` lists every value there, so browsers show them on hover without script.

use std::fmt::Write as _;

use super::{number, Chart, Line, TimeZoneOffset};

fn hover_time(t: f64, tz: TimeZoneOffset) -> String {
    tz.local(t).map(|d| format!("{} {}", d.format("%Y-%m-%d %H:%M"), tz.label())).unwrap_or_default()
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(super) fn value_at(line: &Line, t: f64, tolerance: f64) -> Option<f64> {
    if line.step {
        return line.points.iter().take_while(|p| p.0 <= t).last().map(|p| p.1);
    }
    line.points.iter().find(|p| (p.0 - t).abs() <= tolerance).map(|p| p.1)
}

fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "%" => format!("{v:.1} %"),
        "" => number(v, 1.0),
        u => format!("{v:.3} {u}"),
    }
}

/// The hover layer: strips centred on each point in time, and one per marker, each with its
/// values as a tooltip. `x_of` maps a time to its pixel column inside `plot` (x and y pixel ranges).
pub(super) fn hover_layer(
    chart: &Chart,
    (px, py): (std::ops::Range<i32>, std::ops::Range<i32>),
    x_of: impl Fn(f64) -> i32,
    overlay: &mut String,
) {
    let (x0, x1) = chart.x_range;
    let mut times: Vec<f64> = chart.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let _ = write!(overlay, r#"<g class="hover" fill="transparent">"#);
    for (i, &t) in times.iter().enumerate() {
        let left = if i == 0 { px.start } else { (x_of(times[i - 1]) + x_of(t)) / 2 };
        let right = if i + 1 == times.len() { px.end } else { (x_of(t) + x_of(times[i + 1])) / 2 };
        let mut text = hover_time(t, chart.tz);
        for l in chart.lines.iter().chain(&chart.secondary) {
            if let Some(v) = value_at(l, t, chart.step / 2.0) {
                let _ = write!(text, "\n{}: {}", l.name, format_value(v, l.unit));
            }
        }
        let _ = write!(
            overlay,
            r#"<rect x="{left}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
            py.start,
            (right - left).max(1),
            py.end - py.start,
            escape(&text)
        );
    }
    for m in chart.markers.iter().filter(|m| m.at >= x0 && m.at <= x1) {
        let x = x_of(m.at);
        let _ = write!(
            overlay,
            r#"<rect class="{}" x="{}" y="{}" width="6" height="{}"><title>{}</title></rect>"#,
            m.kind.class(),
            x - 3,
            py.start,
            py.end - py.start,
            escape(&format!("{}\n{}", hover_time(m.at, chart.tz), m.text))
        );
    }
    overlay.push_str("</g>");
}
