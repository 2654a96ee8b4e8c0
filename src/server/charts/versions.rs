//! Legacy doses by the app version that wrote them: one line per version, the versions that
//! write most legacy first; past six, the rest are summed as "other versions".

use crate::api::versions::ClientVersions;

use super::{palette, Chart, Line, TimeZoneOffset};

const SHOWN: usize = 6;
const COLORS: [plotters::style::RGBColor; SHOWN + 1] =
    [palette::VERMILLION, palette::ORANGE, palette::BLUE, palette::GREEN, palette::PURPLE, palette::SKY, palette::GREY];

pub fn legacy_by_version(v: &ClientVersions) -> Chart {
    let mut lines: Vec<Line> = v
        .legacy_per_s
        .iter()
        .take(SHOWN)
        .zip(COLORS)
        .map(|((version, points), color)| Line {
            name: format!("{} {version}", v.label),
            color,
            points: points.clone(),
            step: false,
            unit: "/s",
            thick: false,
        })
        .collect();
    if v.legacy_per_s.len() > SHOWN {
        let mut other: std::collections::BTreeMap<i64, f64> = Default::default();
        for (_, points) in &v.legacy_per_s[SHOWN..] {
            for (t, value) in points {
                *other.entry(*t as i64).or_default() += value;
            }
        }
        lines.push(Line {
            name: format!("{} other versions", v.legacy_per_s.len() - SHOWN),
            color: COLORS[SHOWN],
            points: other.into_iter().map(|(t, v)| (t as f64, v)).collect(),
            step: false,
            unit: "/s",
            thick: false,
        });
    }
    Chart {
        title: "Legacy doses by app version".into(),
        y_label: "legacy doses per second".into(),
        x_range: (v.range_start.timestamp() as f64, v.range_end.timestamp() as f64),
        step: v.step_secs,
        lines,
        secondary: vec![],
        secondary_label: None,
        thresholds: vec![],
        markers: vec![],
        tz: TimeZoneOffset::UTC,
    }
}
