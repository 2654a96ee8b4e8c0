//! Charts drawn on the server with plotters: SVG for pages, PNG for downloads, from one drawing
//! function; and the CSV of exactly the numbers a chart draws. Each SVG also carries an invisible
//! hover layer: one strip per point in time whose `<title>` lists every series' value there, so
//! browsers show the values on hover without script.

pub mod autopilot;
mod csv;
mod hover;
pub mod patients;
pub mod reports;
pub mod rollout;
mod ticks;
mod time_zone;
pub mod versions;

pub use ticks::{number, time_ticks};
pub use time_zone::TimeZoneOffset;

pub use csv::{cell as csv_cell, to_csv};

use std::sync::Once;

use hover::{escape, hover_layer};

use plotters::prelude::*;

/// Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
pub mod palette {
    use plotters::style::RGBColor;
    pub const BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
    pub const ORANGE: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
    pub const VERMILLION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
    pub const GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);
    pub const SKY: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
    pub const PURPLE: RGBColor = RGBColor(0xCC, 0x79, 0xA7);
    pub const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);
}

static FONT: Once = Once::new();

/// plotters measures text with a registered font; ours is embedded so charts never depend on
/// what the host has installed.
fn ensure_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
            tracing::error!("the embedded chart font could not be loaded");
        }
    });
}

/// One line on a chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    /// (unix seconds, value); gaps wider than 1.5 steps break the line.
    pub points: Vec<(f64, f64)>,
    /// Drawn as a step line (a value holds until the next point), e.g. the rollout percentage.
    pub step: bool,
    /// Unit shown in the hover text, e.g. "/s" or "%".
    pub unit: &'static str,
    pub thick: bool,
}

/// A vertical marker, e.g. a flag change; its text shows on hover.
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: f64,
    pub text: String,
    pub kind: MarkerKind,
}

/// What a marker stands for, which decides its colour and its class in the hover layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// The flag changed (by a person, the autopilot, or outside the dashboard).
    FlagChange,
    /// The autopilot started, paused, resumed, had a check dismissed, killed or ended a plan.
    Autopilot,
    /// A check failed.
    Failure,
}

impl MarkerKind {
    fn color(self) -> RGBColor {
        match self {
            MarkerKind::FlagChange => palette::GREY,
            MarkerKind::Autopilot => palette::PURPLE,
            MarkerKind::Failure => palette::VERMILLION,
        }
    }

    fn class(self) -> &'static str {
        match self {
            MarkerKind::FlagChange => "marker flag-change",
            MarkerKind::Autopilot => "marker autopilot-event",
            MarkerKind::Failure => "marker failure",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    /// Expected spacing of points, for gap detection.
    pub step: f64,
    pub lines: Vec<Line>,
    /// Lines on a secondary 0–100 % axis.
    pub secondary: Vec<Line>,
    pub secondary_label: Option<String>,
    /// Horizontal reference lines: (value, label).
    pub thresholds: Vec<(f64, String)>,
    pub markers: Vec<Marker>,
    /// The time zone the time axis, hover texts and CSV are labelled in.
    pub tz: TimeZoneOffset,
}

/// A drawn chart and how many points it holds, for captions and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    pub svg: String,
    pub points: usize,
}

/// Splits points where consecutive timestamps are further apart than `max_gap`.
fn segments(points: &[(f64, f64)], max_gap: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(seg) if seg.last().is_some_and(|l| p.0 - l.0 <= max_gap) => seg.push(p),
            _ => out.push(vec![p]),
        }
    }
    out
}

/// Step-line vertices: each value holds until the next point, the last until `end`.
fn step_points(points: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push((t, points[i - 1].1));
        }
        out.push((t, v));
    }
    if let Some(&(t, v)) = points.last() {
        if end > t {
            out.push((end, v));
        }
    }
    out
}

pub fn draw_svg(chart: &Chart, size: (u32, u32)) -> Drawn {
    ensure_font();
    let mut svg = String::new();
    let mut overlay = String::new();
    let points: usize = chart.lines.iter().chain(&chart.secondary).map(|l| l.points.len()).sum();
    let result = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(chart, root, &mut overlay)
    };
    if let Err(e) = result {
        tracing::warn!(chart = %chart.title, "chart drawing failed: {e}");
        svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}"><text x="10" y="20">{} could not be drawn</text></svg>"#,
            size.0,
            size.1,
            escape(&chart.title)
        );
    } else if let Some(pos) = svg.rfind("</svg>") {
        svg.insert_str(pos, &overlay);
    }
    Drawn { svg, points }
}

/// The same chart as a PNG image of `size` pixels (no hover layer: an image has no hover).
pub fn draw_png(chart: &Chart, size: (u32, u32)) -> Result<Vec<u8>, String> {
    ensure_font();
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        let mut ignored = String::new();
        draw(chart, root, &mut ignored).map_err(|e| format!("{} could not be drawn: {e}", chart.title))?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size.0, size.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(&rgb).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// The y axis: round ticks up to the highest value or threshold with room above it, and their
/// spacing (for the labels' decimals).
fn y_axis(chart: &Chart) -> (f64, Vec<f64>) {
    let ymax = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(chart.thresholds.iter().map(|t| t.0))
        .fold(0.0f64, f64::max);
    // A chart of counts (no unit) ticks on whole numbers.
    let counts = !chart.lines.is_empty() && chart.lines.iter().all(|l| l.unit.is_empty());
    ticks::value_ticks(ymax * 1.15, 7, if counts { 1.0 } else { 0.0 })
}

fn draw<DB: DrawingBackend>(
    chart: &Chart,
    root: DrawingArea<DB, plotters::coord::Shift>,
    overlay: &mut String,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = chart.x_range;
    let (y_step, y_ticks) = y_axis(chart);
    let ymax = y_ticks.last().copied().unwrap_or(1.0);
    // About one time label per 110 pixels, on round times of the chart's time zone.
    let max_labels = (root.dim_in_pixel().0 as usize / 110).clamp(3, 12);
    let x_ticks = time_ticks(x0, x1, chart.tz, max_labels);
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(12).caption(&chart.title, ("sans-serif", 17)).x_label_area_size(32).y_label_area_size(64);
    if chart.secondary_label.is_some() {
        builder.right_y_label_area_size(52);
    }
    let x_axis = ticks::Ticked::new(x0..x1, x_ticks.at.clone());
    let y_axis = ticks::Ticked::new(0f64..ymax, y_ticks);
    let mut ctx = builder.build_cartesian_2d(x_axis, y_axis)?.set_secondary_coord(x0..x1, 0f64..105f64);
    ctx.configure_mesh()
        .x_label_formatter(&|t| ticks::time_label(*t, x_ticks.step, chart.tz))
        .y_label_formatter(&|v| number(*v, y_step))
        .x_desc(format!("time ({})", chart.tz.label()))
        .y_desc(chart.y_label.as_str())
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    if let Some(label) = &chart.secondary_label {
        ctx.configure_secondary_axes()
            .y_desc(label.as_str())
            .y_labels(6)
            .y_label_formatter(&|v| number(*v, 1.0))
            .draw()?;
    }
    draw_lines(&mut ctx, chart)?;
    for (value, label) in &chart.thresholds {
        let style = ShapeStyle::from(&palette::VERMILLION).stroke_width(1);
        ctx.draw_series(DashedLineSeries::new(vec![(x0, *value), (x1, *value)], 6, 4, style))?
            .label(label.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], palette::VERMILLION));
    }
    for m in &chart.markers {
        if m.at >= x0 && m.at <= x1 {
            let style = ShapeStyle::from(&m.kind.color()).stroke_width(1);
            ctx.draw_series(DashedLineSeries::new(vec![(m.at, 0.0), (m.at, ymax)], 3, 3, style))?;
        }
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_font(("sans-serif", 13))
        .draw()?;

    let (px, py) = ctx.plotting_area().get_pixel_range();
    hover_layer(chart, (px, py), |t| ctx.backend_coord(&(t, 0.0)).0, overlay);
    root.present()?;
    Ok(())
}

/// The axes a chart draws on: round time ticks, round value ticks, and 0–105 % on the right.
type Axes<'a, DB> = plotters::chart::DualCoordChartContext<
    'a,
    DB,
    Cartesian2d<ticks::Ticked, ticks::Ticked>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The chart's lines (gaps wider than 1.5 steps break them) and its lines on the right axis.
fn draw_lines<DB: DrawingBackend>(ctx: &mut Axes<'_, DB>, chart: &Chart) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let x1 = chart.x_range.1;
    let max_gap = chart.step * 1.5;
    for line in &chart.lines {
        let style = ShapeStyle::from(&line.color).stroke_width(if line.thick { 3 } else { 2 });
        let segs = if line.step { vec![step_points(&line.points, x1)] } else { segments(&line.points, max_gap) };
        for (i, seg) in segs.into_iter().enumerate() {
            if seg.len() == 1 {
                ctx.draw_series(std::iter::once(Circle::new(seg[0], 2, style.filled())))?;
            }
            let drawn = ctx.draw_series(LineSeries::new(seg, style))?;
            if i == 0 {
                let color = line.color;
                drawn.label(line.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], ShapeStyle::from(&color).stroke_width(3))
                });
            }
        }
    }
    for line in &chart.secondary {
        let style = ShapeStyle::from(&line.color).stroke_width(2);
        let pts = if line.step { step_points(&line.points, x1) } else { line.points.clone() };
        let color = line.color;
        ctx.draw_secondary_series(LineSeries::new(pts, style))?.label(line.name.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], ShapeStyle::from(&color).stroke_width(2))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Chart {
        Chart {
            title: "Usage".into(),
            y_label: "doses per second".into(),
            x_range: (1_700_000_000.0, 1_700_003_600.0),
            step: 60.0,
            lines: vec![Line {
                name: "split".into(),
                color: palette::BLUE,
                points: (0..=60).map(|i| (1_700_000_000.0 + 60.0 * i as f64, 1.0 + i as f64 / 60.0)).collect(),
                step: false,
                unit: "/s",
                thick: false,
            }],
            secondary: vec![Line {
                name: "rollout".into(),
                color: palette::GREY,
                points: vec![(1_700_000_000.0, 5.0), (1_700_001_800.0, 25.0)],
                step: true,
                unit: "%",
                thick: false,
            }],
            secondary_label: Some("rollout %".into()),
            thresholds: vec![(1.5, "target".into())],
            markers: vec![Marker { at: 1_700_001_800.0, text: "flag 5 → 25 %".into(), kind: MarkerKind::FlagChange }],
            tz: TimeZoneOffset::UTC,
        }
    }

    #[test]
    fn draws_lines_labels_and_hover_values() {
        let d = draw_svg(&sample(), (800, 300));
        assert_eq!(d.points, 63);
        assert!(d.svg.starts_with("<svg"), "{}", &d.svg[..100]);
        assert!(d.svg.contains("doses per second"));
        assert!(d.svg.contains("split"));
        assert!(d.svg.contains("<title>2023-11-14 22:13 UTC\nsplit: 1.000 /s\nrollout: 5.0 %</title>"), "hover text");
        assert!(d.svg.contains("flag 5 → 25 %"));
        assert_eq!(d.svg.matches("<title>").count(), 61 + 1);
    }

    /// The texts of an SVG's `<text>` elements, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("</text>").filter_map(|s| s.rsplit_once('>')).map(|(_, text)| text.trim().to_string()).collect()
    }

    #[test]
    fn axes_read_round_times_and_counts() {
        let shown = texts(&draw_svg(&sample(), (800, 300)).svg);
        // An hour from 22:13:20 at 800 px: ticks every 10 minutes, on the ten; rates to the half.
        let times: Vec<&str> = shown.iter().map(String::as_str).filter(|t| t.len() == 5 && t.contains(':')).collect();
        assert_eq!(times, ["22:20", "22:30", "22:40", "22:50", "23:00", "23:10"], "{shown:?}");
        for label in ["0.0", "0.5", "2.5", "0", "20", "100"] {
            assert!(shown.iter().any(|t| t == label), "{label}: {shown:?}");
        }
        let mut counts = sample();
        counts.lines[0].points = vec![(1_700_000_000.0, 8_000.0), (1_700_003_600.0, 50_000.0)];
        counts.lines[0].unit = "";
        counts.thresholds.clear();
        let d = draw_svg(&counts, (800, 300));
        let shown = texts(&d.svg);
        assert!(shown.iter().any(|t| t == "50,000") && shown.iter().any(|t| t == "10,000"), "{shown:?}");
        assert!(
            !shown.iter().any(|t| t.ends_with(".0") || t.contains("0000")),
            "no trailing .0, no bare thousands: {shown:?}"
        );
        assert!(d.svg.contains("split: 50,000\n"), "the hover reads the same way");
    }

    #[test]
    fn gaps_break_lines_and_steps_hold_values() {
        let segs = segments(&[(0.0, 1.0), (60.0, 1.0), (600.0, 2.0)], 90.0);
        assert_eq!(segs.len(), 2);
        assert_eq!(
            step_points(&[(0.0, 5.0), (10.0, 25.0)], 20.0),
            vec![(0.0, 5.0), (10.0, 5.0), (10.0, 25.0), (20.0, 25.0)]
        );
    }

    #[test]
    fn an_empty_chart_still_draws() {
        let mut c = sample();
        c.lines[0].points.clear();
        c.secondary.clear();
        let d = draw_svg(&c, (400, 200));
        assert_eq!(d.points, 0);
        assert!(d.svg.contains("</svg>"));
    }
}
