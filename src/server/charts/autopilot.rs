//! Each autopilot check's recent evaluations as a small chart: its measured value over time,
//! with a marker at every round it failed.

use crate::api::autopilot::{Evaluation, Verdict};

use super::{palette, Chart, Line, Marker, MarkerKind, TimeZoneOffset};

/// The chart of `check` from `history` (any order), or None when it measured no value.
pub fn check_chart(check: &str, history: &[Evaluation], interval_secs: u64) -> Option<Chart> {
    let mut mine: Vec<&Evaluation> = history.iter().filter(|e| e.check == check).collect();
    mine.sort_by_key(|e| e.at);
    let points: Vec<(f64, f64)> =
        mine.iter().filter_map(|e| e.value.map(|v| (e.at.timestamp_millis() as f64 / 1000.0, v))).collect();
    if points.is_empty() {
        return None;
    }
    let (first, last) = (mine[0].at.timestamp() as f64, mine[mine.len() - 1].at.timestamp() as f64);
    let markers = mine
        .iter()
        .filter(|e| e.verdict == Verdict::Fail)
        .map(|e| Marker {
            at: e.at.timestamp_millis() as f64 / 1000.0,
            text: format!("fail: {}", e.detail),
            kind: MarkerKind::Failure,
        })
        .collect();
    Some(Chart {
        title: check.to_string(),
        y_label: "value".into(),
        x_range: (first, last.max(first + 1.0)),
        step: interval_secs.max(1) as f64,
        lines: vec![Line {
            name: format!("{check} ({})", mine[mine.len() - 1].threshold),
            color: palette::BLUE,
            points,
            step: false,
            unit: "",
            thick: false,
        }],
        secondary: Vec::new(),
        secondary_label: None,
        thresholds: Vec::new(),
        markers,
        tz: TimeZoneOffset::UTC,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::autopilot::CheckAction;

    fn eval(secs: i64, value: Option<f64>, verdict: Verdict) -> Evaluation {
        Evaluation {
            check: "doubled_doses".into(),
            at: chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
            step: 0,
            verdict,
            value,
            threshold: "= 0 records".into(),
            sample: None,
            query: String::new(),
            detail: "d".into(),
            action: CheckAction::Kill,
            acted: false,
        }
    }

    #[test]
    fn values_become_a_line_and_failures_markers() {
        let history = [
            eval(10, Some(1.0), Verdict::Fail),
            eval(0, Some(0.0), Verdict::Pass),
            eval(5, None, Verdict::Inconclusive),
        ];
        let chart = check_chart("doubled_doses", &history, 1).unwrap();
        assert_eq!(chart.lines[0].points, vec![(1_700_000_000.0, 0.0), (1_700_000_010.0, 1.0)]);
        assert_eq!(chart.markers.len(), 1);
        let drawn = super::super::draw_svg(&chart, (480, 160));
        assert!(drawn.svg.starts_with("<svg") && drawn.points == 2, "{}", &drawn.svg[..80]);
        assert!(check_chart("schema", &history, 1).is_none());
    }
}
