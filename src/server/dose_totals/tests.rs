use std::sync::Arc;

use chrono::{Duration, NaiveDate};

use super::*;
use crate::server::patient_days::Day;

fn day(d: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap() + Duration::days(d)
}

fn legacy(user_id: i64, units: &[f64]) -> PatientDay {
    PatientDay {
        user_id,
        legacy_rows: units.len() as i32,
        legacy_units: units.iter().sum(),
        legacy_min: units.iter().copied().reduce(f64::min),
        legacy_max: units.iter().copied().reduce(f64::max),
        last_legacy: Some(day(0).and_hms_opt(12, 0, 0).unwrap().and_utc()),
        ..Default::default()
    }
}

fn split(user_id: i64, short: &[f64], long: f64) -> PatientDay {
    PatientDay {
        user_id,
        split_rows: short.len() as i32 + i32::from(long > 0.0),
        short_units: short.iter().sum(),
        long_units: long,
        short_min: short.iter().copied().reduce(f64::min),
        short_max: short.iter().copied().reduce(f64::max),
        first_split: Some(day(0).and_hms_opt(8, 0, 0).unwrap().and_utc()),
        ..Default::default()
    }
}

/// Days 0.. of the given patient days, the last one the current (unfinished) day.
fn world(days: Vec<Vec<PatientDay>>) -> PatientDays {
    let last = days.len() - 1;
    let days = days
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            p.sort_by_key(|p| p.user_id);
            Day { day: day(i as i64), complete: i < last, patients: Arc::new(p) }
        })
        .collect();
    PatientDays { days, query: String::new() }
}

fn settings() -> DoseTotalsSettings {
    DoseTotalsSettings { min_patients: 2, ..Default::default() }
}

#[test]
fn a_halved_short_total_and_a_dropped_long_dose_are_found_and_an_unchanged_patient_is_not() {
    // Patient 1 moves on day 4 and halves; patient 2 moves on day 4 and keeps their total
    // (fewer, larger doses); patient 3 never moves; patient 4 moves on day 1 (too few days before).
    let mut days = Vec::new();
    for d in 0..9 {
        let mut p = vec![];
        if d < 4 {
            p.extend([legacy(1, &[6.0, 6.0, 6.0]), legacy(2, &[4.0, 4.0, 4.0])]);
        } else if d == 4 {
            p.extend([
                PatientDay { legacy_rows: 1, legacy_units: 6.0, ..split(1, &[3.0], 0.0) },
                split(2, &[6.0], 0.0),
            ]);
        } else {
            p.extend([split(1, &[3.0, 3.0, 3.0], 0.0), split(2, &[6.0, 6.0], 14.0)]);
        }
        p.push(legacy(3, &[5.0]));
        p.push(if d == 0 { legacy(4, &[2.0]) } else { split(4, &[2.0], 10.0) });
        days.push(p);
    }
    let t = totals(&world(days), &settings());
    assert_eq!((t.moved, t.both_sides, t.changed, t.no_long_after), (3, 2, 1, 1));
    let ex = t.examples.as_ref().unwrap();
    assert_eq!(ex.len(), 1);
    let e = &ex[0];
    assert_eq!((e.user_id, e.moved, e.days_before, e.days_after), (1, day(4), 4, 3));
    assert_eq!((e.short_before, e.short_after, e.long_after, e.ratio), (18.0, 9.0, 0.0, 0.5));
    // Days 5–7 are whole; day 8 is the current one and on no side.
    let labels: Vec<(&str, i64)> =
        t.buckets.iter().map(|b| (b.label.as_str(), b.patients)).filter(|b| b.1 > 0).collect();
    assert_eq!(labels, [("¼ to ½", 1), ("0.8 to 1.25", 1)]);
    assert_eq!(t.median_ratio, Some(1.0));
    assert_eq!((t.from, t.to), (Some(day(0)), Some(day(7))));
    let moves: Vec<(NaiveDate, i64, i64, i64)> =
        t.by_move_day.iter().filter(|d| d.moved > 0).map(|d| (d.day, d.moved, d.compared, d.changed)).collect();
    assert_eq!(moves, [(day(1), 1, 0, 0), (day(4), 2, 2, 1)]);
    assert_eq!(judge(&t), Judgement::Judged { share: 0.5, passed: false });
    let strict = DoseTotals { min_patients: 3, ..t };
    assert!(matches!(judge(&strict), Judgement::Inconclusive(s) if s.starts_with("2 patients with 3 whole days")));
}

#[test]
fn mixed_days_doubled_days_and_days_without_records_are_on_no_side() {
    let mut days = Vec::new();
    for d in 0..12 {
        days.push(match d {
            0..=2 => vec![legacy(1, &[5.0, 5.0])],
            3 => vec![], // nothing logged: not a day of zero insulin
            4 => vec![split(1, &[5.0, 5.0], 0.0)],
            // Went back (a legacy record too), and a doubled row: neither is compared.
            5 => vec![PatientDay { legacy_rows: 1, legacy_units: 5.0, ..split(1, &[5.0], 0.0) }],
            6 => vec![PatientDay { doubled_rows: 1, ..split(1, &[5.0], 0.0) }],
            _ => vec![split(1, &[5.0, 5.0], 20.0)],
        });
    }
    let t = totals(&world(days), &settings());
    assert_eq!((t.moved, t.both_sides, t.changed, t.no_long_after), (1, 1, 0, 0));
    let ratio_one = t.buckets.iter().find(|b| b.label == "0.8 to 1.25").unwrap().patients;
    assert_eq!(ratio_one, 1);
    // Only two whole legacy days before: not compared with min_days 3.
    let mut short = Vec::new();
    for d in 0..10 {
        short.push(if d < 2 { vec![legacy(1, &[5.0])] } else { vec![split(1, &[5.0], 0.0)] });
    }
    let t = totals(&world(short), &settings());
    assert_eq!((t.moved, t.both_sides), (1, 0));
}

#[test]
fn ratios_fall_in_buckets_at_their_edges_and_a_change_is_by_the_factor_either_way() {
    let label = |r: f64| BUCKETS[bucket_of(r)].0;
    assert_eq!(
        [label(0.1), label(0.25), label(0.5), label(0.51), label(1.0)],
        ["¼ or less", "¼ or less", "¼ to ½", "½ to 0.8", "0.8 to 1.25"]
    );
    assert_eq!(
        [label(1.25), label(2.0), label(3.99), label(4.0), label(1e9)],
        ["1.25 to 2", "2 to 4", "2 to 4", "4 or more", "4 or more"]
    );
    assert!(changed(0.5, 2.0) && changed(2.0, 2.0) && !changed(0.51, 2.0) && !changed(1.99, 2.0));
    assert!(changed(0.625, 1.6) && !changed(0.63, 1.6));
}

#[test]
fn a_short_dose_written_in_the_wrong_unit_is_out_of_the_patients_range() {
    let h = |p: &[PatientDay]| -> Vec<(NaiveDate, bool, PatientDay)> {
        p.iter().enumerate().map(|(i, p)| (day(i as i64), true, *p)).collect()
    };
    let days = h(&[
        legacy(1, &[4.0, 8.0]),
        legacy(1, &[5.0]),
        split(1, &[4.0, 6.0], 10.0),  // in range
        split(1, &[2.0, 16.0], 10.0), // the range widened by 2: still in
        split(1, &[6.0, 60.0], 10.0), // one dose in tenths of a unit: out
        split(1, &[0.06], 10.0),      // in hundreds of a unit: out
        split(1, &[], 10.0),          // no short dose: nothing to compare
    ]);
    let history: History = days.iter().map(|(d, w, p)| (*d, *w, p)).collect();
    assert_eq!(consistency(&history, 2.0), (4, 2));
    // A patient who never wrote legacy has no range to compare with.
    let only_split = h(&[split(2, &[6.0], 0.0)]);
    let history: History = only_split.iter().map(|(d, w, p)| (*d, *w, p)).collect();
    assert_eq!(consistency(&history, 2.0), (0, 0));
}

/// A small deterministic generator (splitmix64) for the simulation below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One simulated patient's history: 7 days on each side of a move on day 7, a day logged with
/// probability 0.85; each logged day 3 to 5 meal doses of their own size (2 to 12 units) times
/// a meal's variation (log-normal, σ 0.3), each dose logged with probability 0.9, and a
/// correction dose of half a meal dose on 30 % of days. After the move the client multiplies
/// the short dose by `effect` (1: unchanged; 0.5: a client that halves it).
fn patient(rng: &mut Rng, user_id: i64, effect: f64) -> Vec<Vec<PatientDay>> {
    let size = 2.0 + 10.0 * rng.next();
    let meals = 3 + (rng.next() * 3.0) as usize;
    (0..16)
        .map(|d| {
            if d != 7 && rng.next() > 0.85 {
                return vec![];
            }
            let mut doses = Vec::new();
            for _ in 0..meals {
                let variation = (0.3 * rng.normal()).exp();
                if rng.next() < 0.9 {
                    doses.push(size * variation);
                }
            }
            if rng.next() < 0.3 {
                doses.push(size / 2.0);
            }
            if doses.is_empty() {
                return vec![];
            }
            if d < 7 {
                vec![legacy(user_id, &doses)]
            } else {
                let after: Vec<f64> = doses.iter().map(|x| x * effect).collect();
                vec![split(user_id, &after, 0.0)]
            }
        })
        .collect()
}

/// The share of simulated patients flagged as changed, of those compared.
fn flagged(effect: f64, factor: f64, patients: i64, seed: u64) -> (i64, i64) {
    let mut rng = Rng(seed);
    let mut days: Vec<Vec<PatientDay>> = vec![vec![]; 17];
    for u in 0..patients {
        for (d, p) in patient(&mut rng, u, effect).into_iter().enumerate() {
            days[d].extend(p);
        }
    }
    let s = DoseTotalsSettings { factor, ..Default::default() };
    let t = totals(&world(days), &s);
    (t.changed, t.both_sides)
}

/// The figures the README quotes (`cargo test … dose_totals -- --nocapture` prints them): per
/// patient, how often an unchanged one is flagged (false alarm) and how often a halved one is
/// (power), at factors 2 and 1.5; and for the check (about 110 patients compared, fail above 4 %), its
/// false-alarm rate on unchanged patients and its power when 5 % of them are halved.
#[test]
fn simulated_patients_give_the_false_alarm_rate_and_power_the_readme_quotes() {
    let rate = |(c, n): (i64, i64)| c as f64 / n as f64;
    let fa2 = rate(flagged(1.0, 2.0, 20_000, 1));
    let fa15 = rate(flagged(1.0, 1.5, 20_000, 1));
    let pw2 = rate(flagged(0.5, 2.0, 20_000, 2));
    let pw15 = rate(flagged(0.5, 1.5, 20_000, 2));
    println!(
        "per patient: false alarm {:.4} (×2) {:.4} (×1.5); halved found {:.3} (×2) {:.3} (×1.5)",
        fa2, fa15, pw2, pw15
    );
    assert!(fa15 < 0.01 && fa2 < 0.001, "false alarms {fa15} {fa2}");
    assert!(pw15 > 0.95, "a halved total is found with factor 1.5: {pw15}");
    assert!(pw2 < 0.8, "at factor 2 exactly half of a halved total's noise misses it: {pw2}");
    // The check: about 110 patients compared, looked at 2,000 times.
    let check = |halved: i64, seed: u64| {
        let mut fails = 0;
        for look in 0..2000 {
            let mut rng = Rng(seed * 1_000_003 + look);
            let mut days: Vec<Vec<PatientDay>> = vec![vec![]; 17];
            // 130 patients: about 110 have 3 whole days on each side.
            for u in 0..130 {
                let effect = if u < halved * 130 / 100 { 0.5 } else { 1.0 };
                for (d, p) in patient(&mut rng, u, effect).into_iter().enumerate() {
                    days[d].extend(p);
                }
            }
            let t = totals(&world(days), &DoseTotalsSettings::default());
            fails += i64::from(matches!(judge(&t), Judgement::Judged { passed: false, .. }));
        }
        fails as f64 / 2000.0
    };
    let (false_alarm, power, power3) = (check(0, 3), check(5, 4), check(3, 5));
    println!(
        "the check: false alarm {false_alarm:.4} per look; power {power:.3} with 5 % halved, {power3:.3} with 3 %"
    );
    assert!(false_alarm < 0.01, "{false_alarm}");
    assert!(power > 0.8, "{power}");
}

#[test]
fn basal_only_days_doubled_days_and_moves_before_the_days_kept_are_not_compared() {
    let mut days = Vec::new();
    for d in 0..12 {
        days.push(match d {
            // Patient 1: three legacy days, then a day with a doubled first split write (the
            // sum is partial: on no side), the move on day 4, then three basal-only days and
            // three whole split days.
            0..=2 => vec![legacy(1, &[6.0, 6.0, 6.0]), split(2, &[5.0], 0.0)],
            3 => vec![PatientDay {
                doubled_rows: 1,
                first_split: split(1, &[], 0.0).first_split,
                ..legacy(1, &[6.0, 6.0])
            }],
            4 => vec![split(1, &[6.0, 6.0, 6.0], 0.0)],
            5..=7 => vec![split(1, &[], 12.0)],
            _ => vec![split(1, &[6.0, 6.0, 6.0], 12.0)],
        });
    }
    let t = totals(&world(days), &settings());
    // Patient 2 is only ever seen on the split path: their move was before the days kept.
    assert_eq!((t.moved, t.both_sides, t.changed), (1, 1, 0), "{t:?}");
    assert_eq!(t.median_ratio, Some(1.0), "18 units a day on both sides");
    let moves: Vec<NaiveDate> = t.by_move_day.iter().filter(|d| d.moved > 0).map(|d| d.day).collect();
    assert_eq!(moves, [day(4)]);
}
