//! Dose totals per patient: each patient's mean daily short total over the whole days before
//! they moved to the split path (legacy `dose`, which the guide says is the short dose) against
//! the whole days after it (`insulin_short`), the long part shown beside (legacy records never
//! held it). A client that halves, doubles or drops a part changes a patient's total; a rollout
//! that does not leaves it where it was.
//!
//! Pure functions of the patient days (`patient_days.rs`): no statement of their own.
//!
//! - **The move**: a patient's first day with a split record, doubled ones aside (that day itself
//!   is mixed and compared on neither side; a doubled record is the doubled-dose check's).
//! - **Before**: up to `days_each_side` whole days before the move, newest first, each with a
//!   legacy record and no split one (doubled included). A patient with none in the days kept
//!   moved before them (or is new): not one of their moves. **After**: up to `days_each_side`
//!   whole days after it with a short dose logged and no legacy or doubled record (a doubled
//!   one adds to no sum). The current day is on neither side. A day without any record, or
//!   with basal entries only, is not a day of zero short insulin: it is not counted.
//! - **Compared**: patients with at least `min_days` on each side; **changed**: the after/before
//!   ratio of their mean daily short total is at most 1/`factor` or at least `factor`.
//! - **Consistency**: a split day whose every short dose lies within the patient's own legacy
//!   range before the move, widened by `scale` both ways.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::api::patients::{Consistency, DoseTotals, MoveDay, RatioBucket, TotalsExample};

use super::config::DoseTotalsSettings;
use super::patient_days::{PatientDay, PatientDays};

#[cfg(test)]
mod tests;

/// Examples kept at most.
const EXAMPLES: usize = 10;

/// The ratio buckets: below 1 a bucket holds (lower, upper], from 1 up [lower, upper), so that
/// an exactly halved total is in "¼ to ½" and an exactly doubled one in "2 to 4".
const BUCKETS: [(&str, f64, f64); 7] = [
    ("¼ or less", 0.0, 0.25),
    ("¼ to ½", 0.25, 0.5),
    ("½ to 0.8", 0.5, 0.8),
    ("0.8 to 1.25", 0.8, 1.25),
    ("1.25 to 2", 1.25, 2.0),
    ("2 to 4", 2.0, 4.0),
    ("4 or more", 4.0, f64::INFINITY),
];

pub fn bucket_of(ratio: f64) -> usize {
    BUCKETS
        .iter()
        .position(|(_, lo, hi)| if ratio < 1.0 { ratio > *lo && ratio <= *hi } else { ratio >= *lo && ratio < *hi })
        .unwrap_or(0)
}

/// Whether a ratio is a change by `factor` or more, up or down.
pub fn changed(ratio: f64, factor: f64) -> bool {
    ratio <= 1.0 / factor || ratio >= factor
}

/// One patient's days, in day order: (day, whether it is whole, what they wrote).
type History<'a> = Vec<(NaiveDate, bool, &'a PatientDay)>;

/// What one patient's move did, when they have days on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub example: TotalsExample,
    pub no_long_after: bool,
}

/// Where in a patient's days the move is: their first day with a split record, doubled ones
/// aside.
fn move_at(history: &History) -> Option<usize> {
    history.iter().position(|(_, _, p)| p.split_rows > 0)
}

/// The patient's move and, with enough whole days on both sides, the comparison.
pub fn compare(user_id: i64, history: &History, s: &DoseTotalsSettings) -> Option<(NaiveDate, Option<Compared>)> {
    let m = move_at(history)?;
    let moved = history[m].0;
    let n = s.days_each_side as usize;
    // Whole legacy days: no split record of any kind (a doubled one that day is the defect the
    // doubled-dose check has, and leaves the day's sum partial).
    let before: Vec<&PatientDay> = history[..m]
        .iter()
        .rev()
        .filter(|(_, whole, p)| *whole && p.legacy_rows > 0 && p.first_split.is_none())
        .take(n)
        .map(|d| d.2)
        .collect();
    // Seen on the legacy path in the days kept: otherwise the move was before them (or the
    // patient is new) and is not one of these days' moves.
    if before.is_empty() {
        return None;
    }
    // Whole split days with a short dose logged (a day of only basal entries is not a day of
    // no short insulin), no legacy record (went back) and no doubled one.
    let after: Vec<&PatientDay> = history[m + 1..]
        .iter()
        .filter(|(_, whole, p)| *whole && p.short_min.is_some() && p.legacy_rows == 0 && p.doubled_rows == 0)
        .take(n)
        .map(|d| d.2)
        .collect();
    let min = s.min_days as usize;
    if before.len() < min || after.len() < min {
        return Some((moved, None));
    }
    let mean =
        |days: &[&PatientDay], f: fn(&PatientDay) -> f64| days.iter().map(|p| f(p)).sum::<f64>() / days.len() as f64;
    let short_before = mean(&before, |p| p.legacy_units);
    let short_after = mean(&after, |p| p.short_units);
    // A dose of 0 (or NaN, which numeric allows) before leaves no ratio to judge.
    if !(short_before.is_finite() && short_after.is_finite()) || short_before <= 0.0 {
        return Some((moved, None));
    }
    let example = TotalsExample {
        user_id,
        moved,
        short_before,
        short_after,
        long_after: mean(&after, |p| p.long_units),
        ratio: short_after / short_before,
        days_before: before.len() as u32,
        days_after: after.len() as u32,
    };
    Some((moved, Some(Compared { no_long_after: after.iter().all(|p| p.long_units == 0.0), example })))
}

/// The patient's split days (the move's day on) checked against their legacy range before it:
/// (days compared, days in range). Nothing without a legacy range.
pub fn consistency(history: &History, scale: f64) -> (i64, i64) {
    let Some(m) = move_at(history) else { return (0, 0) };
    let before = &history[..m];
    let lo = before.iter().filter_map(|d| d.2.legacy_min).fold(f64::INFINITY, f64::min);
    let hi = before.iter().filter_map(|d| d.2.legacy_max).fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return (0, 0);
    }
    let (mut days, mut in_range) = (0, 0);
    for (_, _, p) in &history[m..] {
        if let (Some(smin), Some(smax)) = (p.short_min, p.short_max) {
            days += 1;
            in_range += i64::from(smin >= lo / scale && smax <= hi * scale);
        }
    }
    (days, in_range)
}

/// Each patient's days, in day order.
fn histories(pd: &PatientDays) -> BTreeMap<i64, History<'_>> {
    let mut by_patient: BTreeMap<i64, History> = BTreeMap::new();
    for d in &pd.days {
        for p in d.patients.iter() {
            by_patient.entry(p.user_id).or_default().push((d.day, d.complete, p));
        }
    }
    by_patient
}

/// The totals over the patient days. Examples are kept; the caller drops them for a caller who
/// is not signed in.
pub fn totals(pd: &PatientDays, s: &DoseTotalsSettings) -> DoseTotals {
    let mut out = DoseTotals {
        from: pd.days.first().map(|d| d.day),
        to: pd.days.iter().rev().find(|d| d.complete).map(|d| d.day),
        moved: 0,
        both_sides: 0,
        changed: 0,
        no_long_after: 0,
        buckets: BUCKETS.iter().map(|(label, _, _)| RatioBucket { label: (*label).into(), patients: 0 }).collect(),
        by_move_day: pd.days.iter().map(|d| MoveDay { day: d.day, moved: 0, compared: 0, changed: 0 }).collect(),
        median_ratio: None,
        factor: s.factor,
        max_changed_share: s.max_changed_share,
        min_patients: s.min_patients,
        min_days: s.min_days,
        days_each_side: s.days_each_side,
        examples: None,
        consistency: Consistency { patient_days: 0, in_range: 0, scale: s.scale },
        query: pd.query.clone(),
    };
    let (mut ratios, mut examples) = (Vec::new(), Vec::new());
    for (user_id, history) in histories(pd) {
        let (days, in_range) = consistency(&history, s.scale);
        out.consistency.patient_days += days;
        out.consistency.in_range += in_range;
        let Some((moved, compared)) = compare(user_id, &history, s) else { continue };
        out.moved += 1;
        let is_changed = compared.as_ref().map(|c| changed(c.example.ratio, s.factor));
        if let Some(d) = out.by_move_day.iter_mut().find(|d| d.day == moved) {
            d.moved += 1;
            d.compared += i64::from(is_changed.is_some());
            d.changed += i64::from(is_changed == Some(true));
        }
        let Some(c) = compared else { continue };
        out.both_sides += 1;
        out.no_long_after += i64::from(c.no_long_after);
        out.buckets[bucket_of(c.example.ratio)].patients += 1;
        ratios.push(c.example.ratio);
        if is_changed == Some(true) {
            out.changed += 1;
            examples.push(c.example);
        }
    }
    ratios.sort_by(f64::total_cmp);
    out.median_ratio = ratios.get(ratios.len() / 2).copied();
    // Most changed first: the furthest from 1 on a log scale.
    examples.sort_by(|a, b| b.ratio.ln().abs().total_cmp(&a.ratio.ln().abs()));
    examples.truncate(EXAMPLES);
    out.examples = Some(examples);
    out
}

/// The distribution as CSV, and the examples when the answer holds them (the caller decides):
/// one row per ratio bucket, then one per changed patient.
pub fn csv(t: &DoseTotals) -> String {
    let mut out = String::from("after/before short total,patients\r\n");
    for b in &t.buckets {
        out.push_str(&format!("{},{}\r\n", super::charts::csv_cell(&b.label), b.patients));
    }
    if let Some(examples) = &t.examples {
        out.push_str("\r\nuser_id,moved (UTC),short before per day,short after per day,long after per day,after/before,days before,days after\r\n");
        for e in examples {
            out.push_str(&format!(
                "{},{},{:.2},{:.2},{:.2},{:.4},{},{}\r\n",
                e.user_id, e.moved, e.short_before, e.short_after, e.long_after, e.ratio, e.days_before, e.days_after
            ));
        }
    }
    out
}

/// What the `dose_totals` check finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Inconclusive(String),
    Judged { share: f64, passed: bool },
}

pub fn judge(t: &DoseTotals) -> Judgement {
    if t.both_sides < t.min_patients {
        return Judgement::Inconclusive(format!(
            "{} patients with {} whole days on each side of their move, fewer than {}",
            t.both_sides, t.min_days, t.min_patients
        ));
    }
    let share = t.changed as f64 / t.both_sides as f64;
    Judgement::Judged { share, passed: share <= t.max_changed_share }
}
