//! Legacy and split writes by app version, from the counters' version label
//! (`[client_versions]`): the overview's table and chart, the BI report, the legacy-share
//! check's "which versions" and the `split_only_versions` check. Decisions are pure functions
//! (`table`, `blame`, `SplitOnly`); the queries are the two thin drivers below.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::api::adoption::Points;
use crate::api::versions::{ClientVersion, ClientVersions};
use crate::api::window::Window;

use super::adoption::{rate_window, step_for};
use super::config::ClientVersionSettings;
pub use super::config::SplitOnly;
use super::error::SourceError;
use super::prometheus::{Prometheus, RangeSeries, Sample};
use super::state::AppState;

/// What a series without the version label is shown as.
pub const UNLABELLED: &str = "(no version label)";

/// One version's writes: legacy and split, over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionWrites {
    pub version: String,
    pub legacy: f64,
    pub split: f64,
}

/// Which versions most legacy writes come from: the fewest (at most three) that together wrote
/// at least 80 % of them, as "82 % of legacy writes come from 3.1.4 and 3.1.5". None without
/// legacy writes.
pub fn blame(writes: &[VersionWrites]) -> Option<String> {
    let total: f64 = writes.iter().map(|w| w.legacy).sum();
    if total < 0.5 {
        return None;
    }
    let mut sorted: Vec<&VersionWrites> = writes.iter().filter(|w| w.legacy >= 0.5).collect();
    sorted.sort_by(|a, b| b.legacy.total_cmp(&a.legacy).then_with(|| a.version.cmp(&b.version)));
    let mut named = Vec::new();
    let mut covered = 0.0;
    for w in sorted.iter().take(3) {
        named.push(w.version.as_str());
        covered += w.legacy;
        if covered >= 0.8 * total {
            break;
        }
    }
    let list = match named.as_slice() {
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => return None,
    };
    // Rounded down: "100 %" only when no other version wrote a legacy dose.
    Some(format!("{:.0} % of legacy writes come from {list}", (100.0 * covered / total).floor()))
}

/// Split-only versions that wrote at least one legacy dose, with how many.
pub fn violations(writes: &[VersionWrites], split_only: Option<&SplitOnly>) -> Vec<(String, i64)> {
    let Some(rule) = split_only else { return Vec::new() };
    writes
        .iter()
        .filter(|w| w.legacy >= 0.5 && rule.matches(&w.version))
        .map(|w| (w.version.clone(), w.legacy.round() as i64))
        .collect()
}

/// The table: every version that wrote in the range, legacy writes first; first and last seen
/// from the per-step rates (`split`, `legacy`: each version's points).
pub fn table(
    writes: &[VersionWrites],
    split: &BTreeMap<String, Points>,
    legacy: &BTreeMap<String, Points>,
    split_only: Option<&SplitOnly>,
) -> Vec<ClientVersion> {
    let legacy_total: f64 = writes.iter().map(|w| w.legacy).sum();
    let at = |t: f64| Utc.timestamp_opt(t as i64, 0).single();
    let mut rows: Vec<ClientVersion> = writes
        .iter()
        .filter(|w| w.legacy >= 0.5 || w.split >= 0.5)
        .map(|w| {
            let seen: Vec<f64> = [split.get(&w.version), legacy.get(&w.version)]
                .into_iter()
                .flatten()
                .flat_map(|p| p.iter().filter(|(_, v)| *v > 0.0).map(|(t, _)| *t))
                .collect();
            let (legacy_writes, split_writes) = (w.legacy.round() as i64, w.split.round() as i64);
            let all = legacy_writes + split_writes;
            ClientVersion {
                version: w.version.clone(),
                legacy_writes,
                split_writes,
                legacy_share: (all > 0).then(|| legacy_writes as f64 / all as f64),
                share_of_legacy: (legacy_total >= 0.5).then(|| w.legacy / legacy_total),
                first_seen: seen.iter().copied().reduce(f64::min).and_then(at),
                last_seen: seen.iter().copied().reduce(f64::max).and_then(at),
                split_only: split_only.is_some_and(|r| r.matches(&w.version)),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.legacy_writes.cmp(&a.legacy_writes).then(b.split_writes.cmp(&a.split_writes)).then(a.version.cmp(&b.version))
    });
    rows
}

/// The version a series' labels name, or `UNLABELLED`.
fn version_in(labels: &BTreeMap<String, String>, label: &str) -> String {
    labels.get(label).cloned().unwrap_or_else(|| UNLABELLED.into())
}

fn by_version(samples: Vec<Sample>, label: &str) -> BTreeMap<String, f64> {
    samples.into_iter().map(|s| (version_in(&s.labels, label), s.value)).collect()
}

fn merge(split: BTreeMap<String, f64>, legacy: BTreeMap<String, f64>) -> Vec<VersionWrites> {
    let mut all: BTreeMap<String, VersionWrites> = BTreeMap::new();
    for (version, v) in split {
        all.entry(version.clone()).or_insert(VersionWrites { version, legacy: 0.0, split: 0.0 }).split = v;
    }
    for (version, v) in legacy {
        all.entry(version.clone()).or_insert(VersionWrites { version, legacy: 0.0, split: 0.0 }).legacy = v;
    }
    all.into_values().collect()
}

/// Writes per version over the `window_secs` ending at `at` (the counters' increase), and the
/// queries as run.
pub async fn writes_at(
    prom: &Prometheus,
    s: &ClientVersionSettings,
    window_secs: i64,
    at: DateTime<Utc>,
) -> Result<(Vec<VersionWrites>, [String; 2]), SourceError> {
    let w = format!("{window_secs}s");
    let queries = [s.writes_query(&s.split_counter, &w), s.writes_query(&s.legacy_counter, &w)];
    let (split, legacy) = tokio::join!(prom.instant_at(&queries[0], at), prom.instant_at(&queries[1], at));
    Ok((merge(by_version(split?, &s.label), by_version(legacy?, &s.label)), queries))
}

fn series_by_version(series: Vec<RangeSeries>, label: &str) -> BTreeMap<String, Points> {
    series.into_iter().map(|s| (version_in(&s.labels, label), s.points)).collect()
}

/// The table, the blame, the violations and the chart's lines over `range` ending now.
pub async fn client_versions(state: &AppState, range: Window) -> Result<ClientVersions, SourceError> {
    let prom = state.prometheus.as_ref().map_err(Clone::clone)?;
    let s = &state.settings.client_versions;
    let split_only = s.split_only_rule();
    let end = Utc::now();
    let start = end - chrono::Duration::seconds(range.as_secs());
    let step = step_for(range);
    let window = rate_window(step);
    let rate_queries = [s.rate_query(&s.split_counter, &window), s.rate_query(&s.legacy_counter, &window)];
    let (t0, t1) = (start.timestamp() as f64, end.timestamp() as f64);
    let (totals, split, legacy) = tokio::join!(
        writes_at(prom, s, range.as_secs(), end),
        prom.range(&rate_queries[0], t0, t1, step),
        prom.range(&rate_queries[1], t0, t1, step),
    );
    let (writes, total_queries) = totals?;
    let (split, legacy) = (series_by_version(split?, &s.label), series_by_version(legacy?, &s.label));
    let versions = table(&writes, &split, &legacy, split_only.as_ref());
    let mut legacy_per_s: Vec<(String, Points)> =
        versions.iter().filter_map(|v| legacy.get(&v.version).map(|p| (v.version.clone(), p.clone()))).collect();
    legacy_per_s.retain(|(_, p)| p.iter().any(|(_, v)| *v > 0.0));
    Ok(ClientVersions {
        range_start: start,
        range_end: end,
        label: s.label.clone(),
        split_only: s.split_only.clone(),
        legacy_writes: versions.iter().map(|v| v.legacy_writes).sum(),
        split_writes: versions.iter().map(|v| v.split_writes).sum(),
        blame: blame(&writes),
        violations: violations(&writes, split_only.as_ref()).into_iter().map(|(v, _)| v).collect(),
        queries: total_queries.into_iter().chain(rate_queries).collect(),
        step_secs: step,
        legacy_per_s,
        versions,
    })
}

/// The table as CSV: one row per version, the times in UTC, shares as fractions.
pub fn table_csv(v: &ClientVersions) -> String {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
    let share = |s: Option<f64>| s.map(|s| format!("{s:.6}")).unwrap_or_default();
    let mut out = format!(
        "{},legacy writes,split writes,legacy share of its writes,share of all legacy writes,first seen (UTC),last seen (UTC),split-only\r\n",
        super::charts::csv_cell(&v.label)
    );
    for r in &v.versions {
        let version = super::charts::csv_cell(&r.version);
        out.push_str(&format!(
            "{version},{},{},{},{},{},{},{}\r\n",
            r.legacy_writes,
            r.split_writes,
            share(r.legacy_share),
            share(r.share_of_legacy),
            time(r.first_seen),
            time(r.last_seen),
            if r.split_only { "yes" } else { "no" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(version: &str, legacy: f64, split: f64) -> VersionWrites {
        VersionWrites { version: version.into(), legacy, split }
    }

    #[test]
    fn blame_names_the_fewest_versions_covering_most_legacy_writes() {
        assert_eq!(
            blame(&[w("3.1.4", 50.0, 0.0), w("3.1.5", 32.0, 0.0), w("4.0.0", 18.0, 900.0)]).as_deref(),
            Some("82 % of legacy writes come from 3.1.4 and 3.1.5")
        );
        assert_eq!(
            blame(&[w("3.1.4", 95.0, 0.0), w("4.0.0", 5.0, 10.0)]).as_deref(),
            Some("95 % of legacy writes come from 3.1.4")
        );
        // At most three, even when they cover less.
        let spread: Vec<VersionWrites> = (0..10).map(|i| w(&format!("1.{i}.0"), 10.0, 0.0)).collect();
        assert_eq!(blame(&spread).as_deref(), Some("30 % of legacy writes come from 1.0.0, 1.1.0 and 1.2.0"));
        assert_eq!(blame(&[w("4.0.0", 0.0, 100.0)]), None);
    }

    #[test]
    fn the_table_sorts_by_legacy_writes_and_says_each_versions_share() {
        let writes = [w("4.1.0", 0.2, 4320.0), w("3.1.4", 180.0, 0.0), w("4.0.0", 72.0, 2520.0), w("2.0.0", 0.0, 0.0)];
        let rule = SplitOnly::parse(">= 4.0.0").unwrap();
        let mut legacy = BTreeMap::new();
        legacy.insert("3.1.4".to_string(), vec![(100.0, 0.0), (160.0, 0.05), (220.0, 0.05)]);
        let rows = table(&writes, &BTreeMap::new(), &legacy, Some(&rule));
        let shown: Vec<(&str, i64, i64)> =
            rows.iter().map(|r| (r.version.as_str(), r.legacy_writes, r.split_writes)).collect();
        assert_eq!(shown, [("3.1.4", 180, 0), ("4.0.0", 72, 2520), ("4.1.0", 0, 4320)], "2.0.0 wrote nothing");
        assert_eq!(rows[0].legacy_share, Some(1.0));
        assert!((rows[1].legacy_share.unwrap() - 72.0 / 2592.0).abs() < 1e-12);
        assert!((rows[0].share_of_legacy.unwrap() - 180.0 / 252.2).abs() < 1e-12);
        assert_eq!(rows[0].first_seen.map(|t| t.timestamp()), Some(160));
        assert_eq!(rows[0].last_seen.map(|t| t.timestamp()), Some(220));
        assert_eq!(rows.iter().map(|r| r.split_only).collect::<Vec<_>>(), [false, true, true]);
        assert_eq!(violations(&writes, Some(&rule)), [("4.0.0".to_string(), 72)]);
        assert!(violations(&writes, None).is_empty());
    }
}
