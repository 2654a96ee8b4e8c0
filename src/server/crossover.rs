//! Patients who cross over: per day (UTC), the patients with both a legacy and a split record,
//! and those who went **back** (a legacy record after a split one the same day). Crossing
//! forward once, on the day the flag reaches a patient's bucket, is what a rollout is; going back
//! is what a flapping flag, a bucket that is not stable per user, or a second phone on an old app
//! does to a patient's record.
//!
//! Counted from the patient days (`patient_days.rs`: an ended day counted once by one statement
//! over its own rows, the current day's hours once each as they settle). User ids leave this module only as
//! examples for signed-in callers: never in a check's detail, a notification or a log line.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::api::patients::{Crossover, CrossoverDay, CrossoverExample};

use super::categories::Category;
use super::error::{from_sqlx, Source, SourceError};
use super::patient_days::{day_bounds, ended, paths, Day, PatientDays};
use super::records::DiaryRecords;

/// Examples shown at most.
const EXAMPLES: i64 = 10;

/// One day's counts from its patient days.
pub fn count(d: &Day) -> CrossoverDay {
    let mut c = CrossoverDay {
        day: d.day,
        active: d.patients.len() as i64,
        exposed: 0,
        crossing: 0,
        back: 0,
        complete: d.complete,
    };
    for p in d.patients.iter() {
        if let Some(first_split) = p.first_split {
            c.exposed += 1;
            if let Some(last_legacy) = p.last_legacy {
                c.crossing += 1;
                c.back += i64::from(last_legacy > first_split);
            }
        }
    }
    c
}

/// The examples of those who went back on an ended day, by (day, whether the split columns
/// existed), once someone signed in asked for them.
#[derive(Default)]
pub struct ExampleCache {
    examples: Mutex<BTreeMap<(NaiveDate, bool), Vec<CrossoverExample>>>,
}

/// The newest patients of a day who went back, with their records' count in each category.
fn examples_sql(table: &str, split_columns: bool) -> String {
    let (legacy, split) = paths(split_columns);
    let counts: Vec<String> =
        Category::ALL.iter().map(|c| format!("count(*) FILTER (WHERE {})", c.predicate(split_columns))).collect();
    format!(
        "SELECT user_id, first_split, last_legacy, counts FROM (
           SELECT user_id, min(created_at) FILTER (WHERE {split}) AS first_split,
                  max(created_at) FILTER (WHERE {legacy}) AS last_legacy,
                  ARRAY[{}]::bigint[] AS counts
             FROM {table} WHERE created_at >= $1 AND created_at < $2 GROUP BY user_id) p
          WHERE last_legacy > first_split ORDER BY last_legacy DESC LIMIT {EXAMPLES}",
        counts.join(", ")
    )
}

/// "short_only 3, legacy_only 1": the categories a patient's records of the day fell in.
fn categories_text(counts: &[i64]) -> String {
    Category::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// user_id, first split, last legacy, records per category (`Category::ALL`'s order).
type ExampleRow = (i64, DateTime<Utc>, DateTime<Utc>, Vec<i64>);

/// The last `settings.days` of the patient days, counted. No examples: see [`examples`].
pub fn crossover(pd: &PatientDays, settings: &super::config::CrossoverSettings) -> Crossover {
    let skip = pd.days.len().saturating_sub(settings.days as usize);
    let days = pd.days[skip..].iter().map(count).collect();
    Crossover { days, examples: None, max_back_share: settings.max_back_share, query: pd.query.clone() }
}

/// The newest patients who went back, today and (kept once it ended) yesterday, each day judged
/// on its own, a patient named once. For signed-in callers only: the caller decides.
pub async fn examples(
    diary: &DiaryRecords,
    cache: &ExampleCache,
    split: bool,
    now: DateTime<Utc>,
) -> Result<Vec<CrossoverExample>, SourceError> {
    let today = now.date_naive();
    let mut out: Vec<CrossoverExample> = Vec::new();
    for day in [today, today - Duration::days(1)] {
        let kept = cache.examples.lock().expect("day cache").get(&(day, split)).cloned();
        let found = match kept {
            Some(v) if ended(day, now) => v,
            _ => {
                let v = examples_of(diary, split, day, now).await?;
                if ended(day, now) {
                    let mut kept = cache.examples.lock().expect("day cache");
                    kept.retain(|(d, _), _| *d >= today - Duration::days(1));
                    kept.insert((day, split), v.clone());
                }
                v
            }
        };
        out.extend(found.into_iter().filter(|e| !out.iter().any(|o| o.user_id == e.user_id)).collect::<Vec<_>>());
    }
    out.truncate(EXAMPLES as usize);
    Ok(out)
}

async fn examples_of(
    diary: &DiaryRecords,
    split: bool,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<CrossoverExample>, SourceError> {
    let (start, end) = day_bounds(day);
    let rows: Vec<ExampleRow> = sqlx::query_as(&examples_sql(diary.table(), split))
        .bind(start)
        .bind(end.min(now + Duration::seconds(1)))
        .fetch_all(diary.pool())
        .await
        .map_err(|e| from_sqlx(Source::DiaryDatabase, &e))?;
    Ok(rows
        .into_iter()
        .map(|(user_id, first_split, last_legacy, counts)| CrossoverExample {
            user_id,
            first_split,
            last_legacy,
            categories: categories_text(&counts),
        })
        .collect())
}

/// What the `crossover` check finds: the day it judges (the current day once it has
/// `min_patients` active patients, before that the day before, so the check does not go blind
/// every midnight), and whether the share who went back is within the limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Too few patients (or no day): the sentence says which.
    Inconclusive(String),
    Judged {
        day: CrossoverDay,
        share: f64,
        passed: bool,
    },
}

pub fn judge(days: &[CrossoverDay], s: &super::config::CrossoverSettings) -> Judgement {
    let Some(today) = days.last() else { return Judgement::Inconclusive("no day counted".into()) };
    let yesterday = days.len().checked_sub(2).map(|i| &days[i]);
    // Today once it has enough patients on the split path; before that yesterday, unless today
    // already has patients who went back (a bad morning is never passed on yesterday's data).
    let day = match yesterday {
        Some(y) if today.exposed < s.min_patients && today.back == 0 => y,
        _ => today,
    };
    if day.exposed < s.min_patients {
        return Judgement::Inconclusive(format!(
            "{} patients on the split path on {}, fewer than {}",
            day.exposed, day.day, s.min_patients
        ));
    }
    let share = day.back as f64 / day.exposed as f64;
    Judgement::Judged { day: *day, share, passed: share <= s.max_back_share }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::patient_days::PatientDay;

    fn day(d: u32, exposed: i64, back: i64) -> CrossoverDay {
        let day = NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        CrossoverDay { day, active: 10 * exposed, exposed, crossing: back, back, complete: d < 7 }
    }

    #[test]
    fn the_check_judges_today_once_it_has_enough_patients_else_yesterday() {
        let s =
            |min_patients| crate::server::config::CrossoverSettings { days: 14, max_back_share: 0.005, min_patients };
        let days = [day(5, 900, 0), day(6, 1000, 6), day(7, 40, 0)];
        match judge(&days, &s(100)) {
            Judgement::Judged { day, share, passed } => {
                assert_eq!((day.day.to_string(), passed), ("2026-12-06".to_string(), false));
                assert!((share - 0.006).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(judge(&days, &s(30)), Judgement::Judged { passed: true, .. }));
        assert_eq!(
            judge(&days[2..], &s(100)),
            Judgement::Inconclusive("40 patients on the split path on 2026-12-07, fewer than 100".into())
        );
        // A bad morning is not passed on yesterday's data: inconclusive until it has enough.
        let bad_morning = [day(6, 1000, 0), day(7, 80, 30)];
        assert!(matches!(judge(&bad_morning, &s(100)), Judgement::Inconclusive(_)));
        // The share is of patients on the split path, not of everyone active: 49 of 100 back
        // fails however many legacy-only patients wrote that day.
        assert!(matches!(judge(&[day(7, 100, 49)], &s(100)), Judgement::Judged { passed: false, .. }));
        assert_eq!(judge(&[], &s(100)), Judgement::Inconclusive("no day counted".into()));
        // Exactly at the limit passes: 5 of 1,000.
        assert!(matches!(judge(&[day(6, 1000, 5)], &s(100)), Judgement::Judged { passed: true, .. }));
    }

    #[test]
    fn a_day_counts_who_crossed_and_who_went_back() {
        let t = |h: u32| Some(NaiveDate::from_ymd_opt(2026, 12, 6).unwrap().and_hms_opt(h, 0, 0).unwrap().and_utc());
        let p = |first_split, last_legacy| PatientDay { first_split, last_legacy, ..Default::default() };
        // Legacy only; split only; forward (legacy at 7, split at 9); back (split 8, legacy 14).
        let patients = vec![p(None, t(9)), p(t(8), None), p(t(9), t(7)), p(t(8), t(14))];
        let d = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let day = |patients, complete| Day { day: d, complete, patients: std::sync::Arc::new(patients) };
        let zero = CrossoverDay { day: d, active: 0, exposed: 0, crossing: 0, back: 0, complete: true };
        assert_eq!(
            count(&day(patients, false)),
            CrossoverDay { active: 4, exposed: 3, crossing: 2, back: 1, complete: false, ..zero }
        );
        assert_eq!(count(&day(vec![], true)), zero);
    }

    #[test]
    fn the_examples_read_one_day_of_rows_by_created_at() {
        let ex = examples_sql("history_records", true);
        assert!(ex.contains("LIMIT 10") && ex.contains("created_at >= $1 AND created_at < $2"), "{ex}");
        assert_eq!(categories_text(&[0, 0, 3, 0, 1, 0]), "short_only 3, legacy_only 1");
    }
}
