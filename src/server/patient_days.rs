//! Patient days: per patient and UTC day, what they wrote through each path. The one source of
//! what the rollout does to patients' records: patients who cross over (`crossover.rs`), dose
//! totals before and after the move and short-versus-legacy consistency (`dose_totals.rs`) are
//! pure functions of it.
//!
//! A rollup of days: a day that has ended (and settled for `SETTLE`) is counted once, by one
//! statement over its own rows (the `created_at` index), and kept in memory. The current day is
//! kept the same way by the hour: its settled hours are counted once each and added to what it
//! holds, so that a refresh (at most one per refresh interval, the service's cache) reads only
//! the rows of the hour or two not settled yet. No statement reads more than one day of rows.
//! Kept per replica (a second database holding patients' doses would be a copy to protect),
//! bounded by `MAX_KEPT` patient days: past it the oldest days are not counted, and the answers'
//! first day says from when they count. User ids never leave through this
//! module's answers but as the examples the callers give only to signed-in users.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::categories::{Category, DOUBLED, SPLIT_WRITE};
use super::error::{from_sqlx, Source, SourceError};
use super::records::DiaryRecords;

/// A day is counted for good this long after it ended (writes in flight, rows written late).
pub const SETTLE: i64 = 600;
/// Patient days kept at most (about 120 bytes each: 4 M is under 500 MB; the demo keeps 80 k).
pub const MAX_KEPT: usize = 4_000_000;

/// One patient's day. Units are the reports' (the guide: `dose` is the short dose); doubled
/// rows (the dose copied into both parts) add to no sum and are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Default, sqlx::FromRow)]
pub struct PatientDay {
    pub user_id: i64,
    /// Records written through the legacy path (`dose` only).
    pub legacy_rows: i32,
    /// Records written through the split path, doubled ones left out.
    pub split_rows: i32,
    pub doubled_rows: i32,
    /// Sum of `dose` over the legacy records.
    pub legacy_units: f64,
    /// Sums of `insulin_short` and `insulin_long` over the split records (doubled left out).
    pub short_units: f64,
    pub long_units: f64,
    /// The smallest and largest legacy `dose` and split `insulin_short` of the day.
    pub legacy_min: Option<f64>,
    pub legacy_max: Option<f64>,
    pub short_min: Option<f64>,
    pub short_max: Option<f64>,
    /// The first split record (doubled included: it went through the split path) and the last
    /// legacy one.
    pub first_split: Option<DateTime<Utc>>,
    pub last_legacy: Option<DateTime<Utc>>,
}

/// One day's (or part of a day's) patients, ordered by user id.
pub type Patients = Arc<Vec<PatientDay>>;

/// One UTC day of patients.
#[derive(Debug, Clone)]
pub struct Day {
    pub day: NaiveDate,
    /// The day has ended and settled: counted for good.
    pub complete: bool,
    pub patients: Patients,
}

/// The days counted, oldest first, the current day last (fewer than asked for past
/// `MAX_KEPT`: the first one says from when they count).
#[derive(Debug, Clone)]
pub struct PatientDays {
    pub days: Vec<Day>,
    /// The statement counting one day, as run.
    pub query: String,
}

/// The ended days, by (day, whether the split columns existed), each counted once; and the
/// current day's settled hours.
#[derive(Default)]
pub struct DayCache {
    days: Mutex<BTreeMap<(NaiveDate, bool), Patients>>,
    today: Mutex<Option<Settled>>,
}

/// A day's rows before `upto`, counted.
#[derive(Clone)]
struct Settled {
    day: NaiveDate,
    split: bool,
    upto: DateTime<Utc>,
    patients: Patients,
}

/// One patient's two parts of a day, as one: counts and sums add, the smallest and largest
/// doses and the first split and last legacy record are the two's.
pub fn combine(a: &PatientDay, b: &PatientDay) -> PatientDay {
    fn pick<T: PartialOrd + Copy>(x: Option<T>, y: Option<T>, larger: bool) -> Option<T> {
        match (x, y) {
            (Some(x), Some(y)) => Some(if (y > x) == larger { y } else { x }),
            (x, y) => x.or(y),
        }
    }
    PatientDay {
        user_id: a.user_id,
        legacy_rows: a.legacy_rows + b.legacy_rows,
        split_rows: a.split_rows + b.split_rows,
        doubled_rows: a.doubled_rows + b.doubled_rows,
        legacy_units: a.legacy_units + b.legacy_units,
        short_units: a.short_units + b.short_units,
        long_units: a.long_units + b.long_units,
        legacy_min: pick(a.legacy_min, b.legacy_min, false),
        legacy_max: pick(a.legacy_max, b.legacy_max, true),
        short_min: pick(a.short_min, b.short_min, false),
        short_max: pick(a.short_max, b.short_max, true),
        first_split: pick(a.first_split, b.first_split, false),
        last_legacy: pick(a.last_legacy, b.last_legacy, true),
    }
}

/// Two parts of a day (each ordered by user id), as one, ordered by user id.
pub fn merge(a: &[PatientDay], b: &[PatientDay]) -> Vec<PatientDay> {
    let mut out: BTreeMap<i64, PatientDay> = a.iter().map(|p| (p.user_id, *p)).collect();
    for p in b {
        out.entry(p.user_id).and_modify(|q| *q = combine(q, p)).or_insert(*p);
    }
    out.into_values().collect()
}

/// The start of the hour holding `t`.
fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(3600), 0).unwrap_or(t)
}

/// The two paths a record is written through, as SQL: (legacy, split), the predicates of
/// `categories.rs`; without the split columns nobody writes split.
pub fn paths(split_columns: bool) -> (&'static str, &'static str) {
    (Category::LegacyOnly.predicate(split_columns), if split_columns { SPLIT_WRITE } else { "FALSE" })
}

/// One day's patients (`$1`, `$2`: the day's start and end).
pub fn day_sql(table: &str, split_columns: bool) -> String {
    let (legacy, split) = paths(split_columns);
    // A NULL part makes the doubled predicate NULL, not false: coalesced, so that it filters.
    let doubled = if split_columns { format!("COALESCE(({DOUBLED}), FALSE)") } else { "FALSE".into() };
    let clean = format!("{split} AND NOT {doubled}");
    let part = |agg: &str, col: &str| {
        if split_columns {
            format!("{agg}({col}) FILTER (WHERE {clean})::float8")
        } else {
            "NULL::float8".into()
        }
    };
    format!(
        "SELECT user_id,
                (count(*) FILTER (WHERE {legacy}))::int4 AS legacy_rows,
                (count(*) FILTER (WHERE {clean}))::int4 AS split_rows,
                (count(*) FILTER (WHERE {doubled}))::int4 AS doubled_rows,
                COALESCE(sum(dose) FILTER (WHERE {legacy}), 0)::float8 AS legacy_units,
                COALESCE({}, 0) AS short_units,
                COALESCE({}, 0) AS long_units,
                min(dose) FILTER (WHERE {legacy})::float8 AS legacy_min,
                max(dose) FILTER (WHERE {legacy})::float8 AS legacy_max,
                {} AS short_min,
                {} AS short_max,
                min(created_at) FILTER (WHERE {split}) AS first_split,
                max(created_at) FILTER (WHERE {legacy}) AS last_legacy
           FROM {table} WHERE created_at >= $1 AND created_at < $2 AND ({split} OR {legacy})
          GROUP BY user_id ORDER BY user_id",
        part("sum", "insulin_short"),
        part("sum", "insulin_long"),
        part("min", "insulin_short"),
        part("max", "insulin_short"),
    )
}

pub fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    (start, start + Duration::days(1))
}

/// Whether `day` has ended and settled at `now`: then it is counted once and kept.
pub fn ended(day: NaiveDate, now: DateTime<Utc>) -> bool {
    (now - day_bounds(day).1).num_seconds() >= SETTLE
}

async fn count_span(
    diary: &DiaryRecords,
    split: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PatientDay>, SourceError> {
    if from >= to {
        return Ok(Vec::new());
    }
    sqlx::query_as(&day_sql(diary.table(), split))
        .bind(from)
        .bind(to)
        .fetch_all(diary.pool())
        .await
        .map_err(|e| from_sqlx(Source::DiaryDatabase, &e))
}

/// The current (or just ended) day: its hours settled `SETTLE` ago counted once each and kept,
/// the rest counted now.
async fn count_today(
    diary: &DiaryRecords,
    cache: &DayCache,
    split: bool,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Patients, SourceError> {
    let (start, end) = day_bounds(day);
    let settled_to = hour_floor(now - Duration::seconds(SETTLE)).clamp(start, end);
    let kept = cache.today.lock().expect("patient days").clone().filter(|t| t.day == day && t.split == split);
    let mut settled = kept.unwrap_or(Settled { day, split, upto: start, patients: Arc::new(Vec::new()) });
    if settled.upto < settled_to {
        let part = count_span(diary, split, settled.upto, settled_to).await?;
        settled.patients = Arc::new(merge(&settled.patients, &part));
        settled.upto = settled_to;
        *cache.today.lock().expect("patient days") = Some(settled.clone());
    }
    // From what is kept (ahead of `settled_to` if the clock stepped back), so no row twice.
    let open = count_span(diary, split, settled.upto, end.min(now + Duration::seconds(1))).await?;
    Ok(if open.is_empty() { settled.patients } else { Arc::new(merge(&settled.patients, &open)) })
}

/// The last `span` UTC days up to now (the database's clock): ended days from the cache (counted
/// once), the current day from its settled hours and the rows since. Newest first until
/// `MAX_KEPT` patient days.
///
/// After a start the ended days are counted over several refreshes: once `budget` has passed, at
/// least one day counted, the answer is "still being counted" (not a fault) and the next refresh
/// goes on from the days kept, so no refresh runs into the source timeout however large a day.
pub async fn patient_days(
    diary: &DiaryRecords,
    cache: &DayCache,
    split: bool,
    span: u32,
    budget: std::time::Duration,
) -> Result<PatientDays, SourceError> {
    let started = std::time::Instant::now();
    // The database's clock: rows are stamped by it, and a day ends by it.
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(diary.pool())
        .await
        .map_err(|e| from_sqlx(Source::DiaryDatabase, &e))?;
    let today = now.date_naive();
    let mut days = Vec::new();
    let (mut kept, mut counted) = (0usize, 0);
    for back in 0..i64::from(span.max(1)) {
        let day = today - Duration::days(back);
        // Past the bound the older days are not counted (the answers' first day says so).
        if kept >= MAX_KEPT {
            break;
        }
        let complete = ended(day, now);
        let cached = cache.days.lock().expect("patient days").get(&(day, split)).cloned();
        let patients = match cached {
            Some(p) if complete => p,
            _ if complete => {
                if counted > 0 && started.elapsed() > budget {
                    return Err(SourceError::Counting {
                        system: Source::DiaryDatabase,
                        detail: format!(
                            "patient days: {back} of {span} days counted, the rest over the next refreshes"
                        ),
                    });
                }
                let (start, end) = day_bounds(day);
                let p = Arc::new(count_span(diary, split, start, end).await?);
                cache.days.lock().expect("patient days").insert((day, split), p.clone());
                counted += 1;
                p
            }
            _ => count_today(diary, cache, split, day, now).await?,
        };
        kept += patients.len();
        days.push(Day { day, complete, patients });
    }
    days.reverse();
    // Forget what is no longer asked for.
    let oldest = days.first().map(|d| d.day).unwrap_or(today);
    cache.days.lock().expect("patient days").retain(|(d, s), _| *d >= oldest && *s == split);
    Ok(PatientDays { days, query: day_sql(diary.table(), split) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_reads_one_day_of_rows_and_keeps_doubled_rows_out_of_the_sums() {
        let sql = day_sql("history_records", true);
        assert!(sql.contains("created_at >= $1 AND created_at < $2"), "{sql}");
        assert!(sql.contains("COALESCE((dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose), FALSE)"));
        assert!(sql.contains("sum(insulin_short) FILTER (WHERE (insulin_short IS NOT NULL OR insulin_long IS NOT NULL) AND NOT COALESCE("), "{sql}");
        // Without the split columns the statement names none of them.
        let legacy = day_sql("history_records", false);
        assert!(!legacy.contains("insulin_short") && !legacy.contains("insulin_long"), "{legacy}");
        assert!(legacy.contains("min(created_at) FILTER (WHERE FALSE)"));
    }

    #[test]
    fn two_parts_of_a_day_combine_into_the_days_counts() {
        let t = |h: u32| Some(NaiveDate::from_ymd_opt(2026, 12, 6).unwrap().and_hms_opt(h, 0, 0).unwrap().and_utc());
        let morning = PatientDay {
            user_id: 1,
            legacy_rows: 2,
            legacy_units: 10.0,
            legacy_min: Some(4.0),
            legacy_max: Some(6.0),
            last_legacy: t(9),
            ..Default::default()
        };
        let evening = PatientDay {
            user_id: 1,
            legacy_rows: 1,
            split_rows: 2,
            legacy_units: 3.0,
            short_units: 7.0,
            long_units: 12.0,
            legacy_min: Some(3.0),
            legacy_max: Some(3.0),
            short_min: Some(3.0),
            short_max: Some(4.0),
            first_split: t(18),
            last_legacy: t(20),
            ..Default::default()
        };
        let day = combine(&morning, &evening);
        assert_eq!((day.legacy_rows, day.split_rows, day.legacy_units, day.short_units), (3, 2, 13.0, 7.0));
        assert_eq!(
            (day.legacy_min, day.legacy_max, day.short_min, day.short_max),
            (Some(3.0), Some(6.0), Some(3.0), Some(4.0))
        );
        assert_eq!((day.first_split, day.last_legacy), (t(18), t(20)));
        assert_eq!(combine(&evening, &morning), day, "the order of the parts does not matter");
        let other = PatientDay { user_id: 2, ..morning };
        let merged = merge(&[morning, other], &[evening]);
        assert_eq!(merged.iter().map(|p| (p.user_id, p.legacy_rows)).collect::<Vec<_>>(), [(1, 3), (2, 2)]);
        assert_eq!(hour_floor(t(9).unwrap() + Duration::minutes(59)), t(9).unwrap());
    }

    #[test]
    fn a_day_is_kept_once_it_has_settled() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let end = day_bounds(day).1;
        assert!(!ended(day, end + Duration::seconds(SETTLE - 1)));
        assert!(ended(day, end + Duration::seconds(SETTLE)));
    }
}
