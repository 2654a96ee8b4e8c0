//! The rollup of `history_records`, in memory: counters per settled minute (counted an hour at a
//! time, so that an hour's sum is kept beside its minutes), and the rows of the few settled
//! minutes that windows cut through. Pure bookkeeping: `super` runs the queries and decides
//! what is settled. Bounded: `RETAIN` of minutes (90 days of windows and their edges), at most
//! `MAX_EDGES` edge minutes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 3600;
/// The longest window (90 days) plus a day for its edges.
pub const RETAIN: i64 = 91 * 24 * HOUR;
/// Edge minutes not used for this long are forgotten (windows move on).
const EDGE_IDLE: Duration = Duration::from_secs(600);
/// Most edge minutes kept (each window has one; the autopilot's "since" times add a few).
const MAX_EDGES: usize = 64;

/// Raw counters; which of them mean anything depends on the schema (see `records::publish`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Counts {
    pub total: i64,
    pub with_short: i64,
    pub with_long: i64,
    pub with_both: i64,
    pub legacy_only: i64,
    pub doubled: i64,
    pub empty: i64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.total += o.total;
        self.with_short += o.with_short;
        self.with_long += o.with_long;
        self.with_both += o.with_both;
        self.legacy_only += o.legacy_only;
        self.doubled += o.doubled;
        self.empty += o.empty;
    }
}

/// Which counters one row adds to (`EdgeRow::bits`), the same predicates as the counters' SQL.
pub const SHORT: i16 = 1;
pub const LONG: i16 = 2;
pub const LEGACY_ONLY: i16 = 4;
pub const DOUBLED: i16 = 8;
pub const EMPTY: i16 = 16;

/// One row of a minute that a window cuts through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct EdgeRow {
    pub created_at: DateTime<Utc>,
    pub bits: i16,
}

impl Counts {
    fn of_rows<'a>(rows: impl Iterator<Item = &'a EdgeRow>) -> Counts {
        let mut c = Counts::default();
        for r in rows {
            let has = |bit: i16| i64::from(r.bits & bit != 0);
            c.total += 1;
            c.with_short += has(SHORT);
            c.with_long += has(LONG);
            c.with_both += i64::from(r.bits & (SHORT | LONG) == SHORT | LONG);
            c.legacy_only += has(LEGACY_ONLY);
            c.doubled += has(DOUBLED);
            c.empty += has(EMPTY);
        }
        c
    }
}

/// A span of one hour to count, `[from, to)`, minute aligned.
pub type Gap = (i64, i64);

/// What the rollup holds, for /metrics and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupSize {
    pub minutes: usize,
    pub hours: usize,
    pub edge_rows: usize,
    /// An estimate of the memory held: entries times their size plus the B-tree's overhead.
    pub bytes: usize,
}

#[derive(Default)]
pub struct Rollup {
    /// Whether the counts were taken with the split columns present (a change clears all).
    split_columns: Option<bool>,
    /// Hour start → the end of the part of that hour counted so far (`hour + HOUR`: all of it).
    filled: BTreeMap<i64, i64>,
    /// Minute start → counters, for counted minutes that have rows.
    minutes: BTreeMap<i64, Counts>,
    /// Hour start → the sum of its minutes, for hours counted whole.
    hours: BTreeMap<i64, Counts>,
    /// Minute start → its rows (sorted by time), and when they were last used.
    edges: BTreeMap<i64, (Vec<EdgeRow>, Instant)>,
}

pub fn floor_to(secs: i64, step: i64) -> i64 {
    secs - secs.rem_euclid(step)
}

/// The sum of the minutes of `minutes` in `[from, to)` (none when `to <= from`).
pub fn sum_minutes(minutes: &BTreeMap<i64, Counts>, from: i64, to: i64) -> Counts {
    let mut sum = Counts::default();
    if to > from {
        for c in minutes.range(from..to).map(|(_, c)| c) {
            sum += *c;
        }
    }
    sum
}

impl Rollup {
    /// Forgets everything when the schema's split columns came or went.
    /// Forgets every count (old rows were rewritten: a rollback's re-insert or roll-forward).
    pub fn forget(&mut self) {
        *self = Rollup::default();
    }

    pub fn schema_is(&mut self, split_columns: bool) {
        if self.split_columns != Some(split_columns) {
            *self = Rollup { split_columns: Some(split_columns), ..Rollup::default() };
        }
    }

    /// The spans not yet counted among the minutes `[a, b)` (both minute aligned), one per
    /// hour, oldest first. Hours are counted from their start, so a gap may begin before `a`.
    pub fn gaps(&self, a: i64, b: i64) -> Vec<Gap> {
        let mut gaps = Vec::new();
        let mut h = floor_to(a, HOUR);
        while h < b {
            let want = (h + HOUR).min(b);
            let have = self.filled.get(&h).copied().unwrap_or(h);
            if have < want {
                gaps.push((have, want));
            }
            h += HOUR;
        }
        gaps
    }

    /// The counted minutes of `gap` (absent minutes had no rows). Where the hour was counted
    /// further meanwhile, only the part beyond is taken.
    pub fn add(&mut self, (from, to): Gap, counted: BTreeMap<i64, Counts>) {
        let h = floor_to(from, HOUR);
        let have = self.filled.get(&h).copied().unwrap_or(h);
        if to <= have || from > have {
            return; // counted meanwhile, or (after a prune) not joined to what is counted
        }
        self.minutes.retain_range(have.max(from), to);
        for (m, c) in counted.range(have.max(from)..to) {
            self.minutes.insert(*m, *c);
        }
        self.mark(h, to);
    }

    /// A recount of `[hour, to)` (late writes): its minutes replaced, whatever was there.
    pub fn replace(&mut self, hour: i64, to: i64, counted: BTreeMap<i64, Counts>) {
        self.minutes.retain_range(hour, hour + HOUR);
        for (m, c) in counted.range(hour..to) {
            self.minutes.insert(*m, *c);
        }
        self.hours.remove(&hour);
        self.mark(hour, to);
    }

    fn mark(&mut self, hour: i64, to: i64) {
        self.filled.insert(hour, to);
        if to >= hour + HOUR {
            self.hours.insert(hour, sum_minutes(&self.minutes, hour, hour + HOUR));
        }
    }

    /// The counters of the minutes `[a, b)` (minute aligned), or None when some are not counted.
    pub fn sum(&self, a: i64, b: i64) -> Option<Counts> {
        if !self.gaps(a, b).is_empty() {
            return None;
        }
        let mut total = Counts::default();
        let mut h = floor_to(a, HOUR);
        while h < b {
            match self.hours.get(&h) {
                Some(c) if a <= h && h + HOUR <= b => total += *c,
                _ => total += sum_minutes(&self.minutes, a.max(h), b.min(h + HOUR)),
            }
            h += HOUR;
        }
        Some(total)
    }

    /// The counters of `[from, to)` inside the edge minute `minute`, if its rows are kept.
    pub fn edge(&mut self, minute: i64, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Counts> {
        let (rows, used) = self.edges.get_mut(&minute)?;
        *used = Instant::now();
        let lo = rows.partition_point(|r| r.created_at < from);
        let hi = rows.partition_point(|r| r.created_at < to);
        Some(Counts::of_rows(rows[lo..hi.max(lo)].iter()))
    }

    pub fn keep_edge(&mut self, minute: i64, mut rows: Vec<EdgeRow>) {
        rows.sort_by_key(|r| r.created_at);
        if self.edges.len() >= MAX_EDGES {
            if let Some(oldest) = self.edges.iter().min_by_key(|(_, (_, used))| *used).map(|(m, _)| *m) {
                self.edges.remove(&oldest);
            }
        }
        self.edges.insert(minute, (rows, Instant::now()));
    }

    /// The hours counted (wholly or in part) since `since`, with how far: what a recount covers.
    pub fn counted_since(&self, since: i64) -> Vec<(i64, i64)> {
        self.filled.range(floor_to(since, HOUR)..).map(|(h, to)| (*h, *to)).collect()
    }

    /// Drops what is older than `RETAIN` before `now`, idle edges, and edges from `recount_from`
    /// on (they are read again when next needed, late writes included).
    pub fn prune(&mut self, now: i64, recount_from: Option<i64>) {
        let keep_from = floor_to(now - RETAIN, HOUR);
        self.filled = self.filled.split_off(&keep_from);
        self.minutes = self.minutes.split_off(&keep_from);
        self.hours = self.hours.split_off(&keep_from);
        self.edges.retain(|m, (_, used)| {
            *m >= keep_from && used.elapsed() < EDGE_IDLE && recount_from.is_none_or(|r| *m < r)
        });
    }

    pub fn size(&self) -> RollupSize {
        let edge_rows: usize = self.edges.values().map(|(rows, _)| rows.len()).sum();
        // A B-tree entry costs its key and value and about a third more in node space.
        let entry = |value: usize| (8 + value) * 4 / 3;
        let bytes = self.minutes.len() * entry(size_of::<Counts>())
            + self.hours.len() * entry(size_of::<Counts>())
            + self.filled.len() * entry(8)
            + self.edges.len() * entry(size_of::<(Vec<EdgeRow>, Instant)>())
            + edge_rows * size_of::<EdgeRow>();
        RollupSize { minutes: self.minutes.len(), hours: self.hours.len(), edge_rows, bytes }
    }
}

trait RetainRange {
    /// Removes the keys in `[from, to)`.
    fn retain_range(&mut self, from: i64, to: i64);
}

impl<V> RetainRange for BTreeMap<i64, V> {
    fn retain_range(&mut self, from: i64, to: i64) {
        if to <= from {
            return;
        }
        let keys: Vec<i64> = self.range(from..to).map(|(k, _)| *k).collect();
        for k in keys {
            self.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(total: i64) -> Counts {
        Counts { total, ..Counts::default() }
    }

    fn counted(pairs: &[(i64, i64)]) -> BTreeMap<i64, Counts> {
        pairs.iter().map(|(m, n)| (*m, c(*n))).collect()
    }

    #[test]
    fn hours_are_counted_from_their_start_and_summed_once_whole() {
        let mut r = Rollup::default();
        r.schema_is(true);
        let (h0, h1) = (10 * HOUR, 11 * HOUR);
        // A window from 10:30 to 11:05 needs the hour of 10:00 from its start, and 11:00 to 11:05.
        assert_eq!(r.gaps(h0 + 30 * MINUTE, h1 + 5 * MINUTE), vec![(h0, h1), (h1, h1 + 5 * MINUTE)]);
        assert_eq!(r.sum(h0, h1), None);
        r.add((h0, h1), counted(&[(h0, 2), (h0 + 45 * MINUTE, 3)]));
        r.add((h1, h1 + 5 * MINUTE), counted(&[(h1 + 4 * MINUTE, 7)]));
        assert_eq!(r.sum(h0, h1), Some(c(5)));
        assert_eq!(r.sum(h0 + 30 * MINUTE, h1 + 5 * MINUTE), Some(c(10)));
        assert_eq!(r.sum(h1, h1 + 6 * MINUTE), None, "11:05 is not counted yet");
        // The open hour is counted on as its minutes settle.
        assert_eq!(r.gaps(h1, h1 + 10 * MINUTE), vec![(h1 + 5 * MINUTE, h1 + 10 * MINUTE)]);
        r.add((h1 + 5 * MINUTE, h1 + 10 * MINUTE), counted(&[(h1 + 9 * MINUTE, 1)]));
        assert_eq!(r.sum(h1, h1 + 10 * MINUTE), Some(c(8)));
        assert_eq!(r.size().hours, 1);
    }

    #[test]
    fn a_recount_replaces_the_minutes_and_the_sum() {
        let mut r = Rollup::default();
        r.schema_is(true);
        r.add((0, HOUR), counted(&[(0, 1), (MINUTE, 1)]));
        r.replace(0, HOUR, counted(&[(0, 1), (MINUTE, 1), (2 * MINUTE, 4)]));
        assert_eq!(r.sum(0, HOUR), Some(c(6)));
        assert_eq!(r.sum(2 * MINUTE, 3 * MINUTE), Some(c(4)));
        // A stale fill arriving after the recount does not count the hour twice.
        r.add((0, HOUR), counted(&[(0, 1)]));
        assert_eq!(r.sum(0, HOUR), Some(c(6)));
    }

    #[test]
    fn edges_count_rows_inside_the_bounds_only() {
        let mut r = Rollup::default();
        let at = |s: i64| DateTime::from_timestamp(s, 500).unwrap();
        let row = |s: i64, bits: i16| EdgeRow { created_at: at(s), bits };
        r.keep_edge(60, vec![row(90, SHORT | LONG | DOUBLED), row(61, LEGACY_ONLY), row(119, EMPTY)]);
        let got = r.edge(60, at(61), at(119)).unwrap();
        assert_eq!(
            got,
            Counts { total: 2, with_short: 1, with_long: 1, with_both: 1, legacy_only: 1, doubled: 1, empty: 0 }
        );
        assert_eq!(r.edge(60, at(120), at(120)).unwrap(), Counts::default());
        assert_eq!(r.edge(0, at(0), at(60)), None);
    }

    #[test]
    fn a_schema_change_and_age_forget_counts() {
        let mut r = Rollup::default();
        r.schema_is(true);
        r.add((0, HOUR), counted(&[(0, 1)]));
        r.prune(RETAIN + 2 * HOUR, None);
        assert_eq!(r.sum(0, HOUR), None, "older than RETAIN");
        r.add((0, HOUR), counted(&[(0, 1)]));
        r.schema_is(false);
        assert_eq!(r.sum(0, HOUR), None);
    }
}
