//! OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`: counter series with
//! timestamps in seconds, strictly increasing per series, ending with `# EOF`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::counters::{LEGACY_METRIC, LEGACY_ROW, SERVICE_LABEL, SPLIT_METRIC, SPLIT_ROW};
use crate::writer::{VERSIONS, VERSION_SQL};

fn counter(family: &str, version: &str) -> CounterSeries {
    CounterSeries::new(family, &[("service", SERVICE_LABEL), ("client_version", version)])
}

/// How the synthetic rates divide among the app versions: split writes 12/19 from 4.1.0 and
/// 7/19 from 4.0.0; legacy writes 5/7 from the old 3.1.4 and 2/7 from 4.0.0 (1.9 and 0.07 a
/// second give 1.2 + 0.7 and 0.05 + 0.02).
pub const SYNTHETIC_SPLIT: [(&str, f64); 2] = [("4.1.0", 12.0 / 19.0), ("4.0.0", 7.0 / 19.0)];
pub const SYNTHETIC_LEGACY: [(&str, f64); 2] = [("3.1.4", 5.0 / 7.0), ("4.0.0", 2.0 / 7.0)];

/// One counter series: a metric family name (without `_total`), its labels and cumulative samples.
#[derive(Debug, Clone)]
pub struct CounterSeries {
    pub family: String,
    pub labels: Vec<(String, String)>,
    /// (unix seconds, cumulative value), timestamps strictly increasing.
    pub samples: Vec<(i64, f64)>,
}

impl CounterSeries {
    pub fn new(family: &str, labels: &[(&str, &str)]) -> Self {
        CounterSeries {
            family: family.to_string(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            samples: Vec::new(),
        }
    }

    /// A counter that grows at a constant `per_second` from `start` to `end` (unix seconds),
    /// one sample every `step` seconds.
    pub fn constant_rate(mut self, start: i64, end: i64, step: i64, per_second: f64) -> Self {
        let mut t = start;
        while t <= end {
            self.samples.push((t, (t - start) as f64 * per_second));
            t += step.max(1);
        }
        self
    }
}

/// Renders families in the order given; series of the same family must be adjacent.
pub fn render(series: &[CounterSeries]) -> String {
    let mut out = String::new();
    let mut last_family: Option<&str> = None;
    for s in series {
        if last_family != Some(s.family.as_str()) {
            let _ = writeln!(out, "# TYPE {} counter", s.family);
            last_family = Some(s.family.as_str());
        }
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",");
        for (t, v) in &s.samples {
            let _ = writeln!(out, "{}_total{{{labels}}} {v} {t}", s.family);
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The two counters growing at constant rates, with the same labels as the live exporter, from
/// `from_secs_ago` before now to `until_secs_ahead` after it. Used for test fixtures.
pub fn synthetic(
    split_per_s: f64,
    legacy_per_s: f64,
    from_secs_ago: i64,
    until_secs_ahead: i64,
    step: i64,
) -> Vec<CounterSeries> {
    let now = Utc::now().timestamp();
    let (start, end) = (now - now.rem_euclid(step) - from_secs_ago, now + until_secs_ahead);
    let split =
        SYNTHETIC_SPLIT.iter().map(|(v, f)| counter(SPLIT_METRIC, v).constant_rate(start, end, step, split_per_s * f));
    let legacy = SYNTHETIC_LEGACY
        .iter()
        .map(|(v, f)| counter(LEGACY_METRIC, v).constant_rate(start, end, step, legacy_per_s * f));
    split.chain(legacy).collect()
}

/// Builds the two counters, one series per app version, from the rows in `history_records`: one
/// sample every `step` seconds from the oldest row to `until`, each the cumulative number of split
/// or legacy rows of users on that version so far.
pub async fn series_from_history(
    pool: &sqlx::PgPool,
    step: i64,
    until: DateTime<Utc>,
) -> Result<Vec<CounterSeries>, sqlx::Error> {
    let sql = format!(
        "SELECT (floor(extract(epoch FROM created_at) / $1) * $1)::bigint AS bucket, {VERSION_SQL} AS version,
                count(*) FILTER (WHERE {SPLIT_ROW}) AS split,
                count(*) FILTER (WHERE {LEGACY_ROW}) AS legacy
           FROM history_records
          WHERE created_at < $2
          GROUP BY 1, 2 ORDER BY 1"
    );
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(&sql).bind(step as f64).bind(until).fetch_all(pool).await?;
    let mut split: Vec<CounterSeries> = VERSIONS.iter().map(|v| counter(SPLIT_METRIC, v)).collect();
    let mut legacy: Vec<CounterSeries> = VERSIONS.iter().map(|v| counter(LEGACY_METRIC, v)).collect();
    let Some(first) = rows.first().map(|r| r.0) else {
        return Ok(split.into_iter().chain(legacy).collect());
    };
    let slot = |v: &str| VERSIONS.iter().position(|x| *x == v).unwrap_or(VERSIONS.len() - 1);
    let last = until.timestamp() - until.timestamp().rem_euclid(step);
    let (mut s_total, mut l_total) = ([0i64; VERSIONS.len()], [0i64; VERSIONS.len()]);
    let mut rows = rows.into_iter().peekable();
    let mut t = first;
    while t <= last {
        // A bucket's rows are counted at the end of the bucket.
        while let Some(r) = rows.next_if(|r| r.0 < t) {
            s_total[slot(&r.1)] += r.2;
            l_total[slot(&r.1)] += r.3;
        }
        for i in 0..VERSIONS.len() {
            split[i].samples.push((t, s_total[i] as f64));
            legacy[i].samples.push((t, l_total[i] as f64));
        }
        t += step;
    }
    Ok(split.into_iter().chain(legacy).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_promtool_format() {
        let s = CounterSeries::new("legacy_dose_used", &[("service", "a\"b")]).constant_rate(100, 130, 15, 2.0);
        let text = render(&[s]);
        assert_eq!(
            text,
            "# TYPE legacy_dose_used counter\n\
             legacy_dose_used_total{service=\"a\\\"b\"} 0 100\n\
             legacy_dose_used_total{service=\"a\\\"b\"} 30 115\n\
             legacy_dose_used_total{service=\"a\\\"b\"} 60 130\n# EOF\n"
        );
    }
}
