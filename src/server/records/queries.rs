//! The statements the rollup is counted with. Every counter comes from the category predicates
//! of `categories.rs`, so the rollup, the edges and a direct count agree row for row.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::rollup::{self, Counts, EdgeRow, Gap};
use super::{floor_to, ts, DiaryRecords, Open, MINUTE, SETTLE_SECS, SOURCE};
use crate::server::categories::Category;
use crate::server::error::{from_sqlx, SourceError};

/// `has(text)`: the split column's test, or FALSE when the split columns do not exist.
fn has(split_columns: bool, text: &'static str) -> &'static str {
    if split_columns {
        text
    } else {
        "FALSE"
    }
}

/// The SELECT list computing every counter; without the split columns only `dose` counts.
fn counters_sql(split_columns: bool) -> String {
    let category = |c: Category| c.predicate(split_columns);
    format!(
        "count(*) AS total,
         count(*) FILTER (WHERE {}) AS with_short,
         count(*) FILTER (WHERE {}) AS with_long,
         count(*) FILTER (WHERE {}) AS with_both,
         count(*) FILTER (WHERE {}) AS legacy_only,
         count(*) FILTER (WHERE {}) AS doubled,
         count(*) FILTER (WHERE {}) AS empty",
        has(split_columns, "insulin_short IS NOT NULL"),
        has(split_columns, "insulin_long IS NOT NULL"),
        has(split_columns, "insulin_short IS NOT NULL AND insulin_long IS NOT NULL"),
        category(Category::LegacyOnly),
        category(Category::Doubled),
        category(Category::Empty),
    )
}

/// Each row's counters as bits (`rollup::SHORT` …), from the same predicates.
fn bits_sql(split_columns: bool) -> String {
    let bit = |test: &str, bit: i16| format!("(CASE WHEN {test} THEN {bit} ELSE 0 END)");
    [
        bit(has(split_columns, "insulin_short IS NOT NULL"), rollup::SHORT),
        bit(has(split_columns, "insulin_long IS NOT NULL"), rollup::LONG),
        bit(Category::LegacyOnly.predicate(split_columns), rollup::LEGACY_ONLY),
        bit(Category::Doubled.predicate(split_columns), rollup::DOUBLED),
        bit(Category::Empty.predicate(split_columns), rollup::EMPTY),
    ]
    .join(" + ")
}

/// A minute's start as the statements give it (`date_trunc` in UTC), in unix seconds.
fn minute_of(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp()
}

/// How `open` sums the unsettled minutes: the fewer groups, the cheaper the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grouping {
    /// One sum, keyed by the first unsettled minute (a window ending now).
    Sum,
    /// Per minute (a series with steps shorter than the unsettled span).
    PerMinute,
    /// Two sums, cut at the last multiple of this many seconds if it falls inside, each keyed by
    /// its first minute (a series whose step is at least the unsettled span: one cut at most).
    SplitAt(i64),
}

impl Grouping {
    /// The grouping a series with buckets of `step` seconds needs.
    pub(super) fn for_step(step: i64) -> Grouping {
        if step >= SETTLE_SECS + MINUTE {
            Grouping::SplitAt(step)
        } else {
            Grouping::PerMinute
        }
    }
}

#[derive(sqlx::FromRow)]
struct MinuteRow {
    minute: Option<NaiveDateTime>,
    now: DateTime<Utc>,
    #[sqlx(flatten)]
    counts: Counts,
}

impl DiaryRecords {
    /// The one statement a refresh runs once the rollup holds its window (the benchmark times
    /// it apart from the rest): how many rows it counted.
    pub async fn read_unsettled(&self) -> Result<i64, SourceError> {
        Ok(self.open(true, Grouping::Sum).await?.minutes.values().map(|c| c.total).sum())
    }

    /// Counters over [from, to) in one scan.
    pub(super) async fn count_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        split: bool,
    ) -> Result<Counts, SourceError> {
        if to <= from {
            return Ok(Counts::default());
        }
        let sql =
            format!("SELECT {} FROM {} WHERE created_at >= $1 AND created_at < $2", counters_sql(split), self.table);
        sqlx::query_as::<_, Counts>(&sql)
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))
    }

    /// Counters per minute of `gap` (minutes without rows are absent).
    pub(super) async fn count_minutes(
        &self,
        (from, to): Gap,
        split: bool,
    ) -> Result<BTreeMap<i64, Counts>, SourceError> {
        let sql = format!(
            "SELECT date_trunc('minute', created_at AT TIME ZONE 'UTC') AS minute, now() AS now, {}
               FROM {} WHERE created_at >= $1 AND created_at < $2 GROUP BY 1",
            counters_sql(split),
            self.table
        );
        let rows: Vec<MinuteRow> = sqlx::query_as(&sql)
            .bind(ts(from))
            .bind(ts(to))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))?;
        Ok(rows.into_iter().filter_map(|r| Some((minute_of(r.minute?), r.counts))).collect())
    }

    /// The database's clock and the counters of the minutes not settled yet, in one statement:
    /// what every refresh reads from the table, summed as `grouping` says (see `Grouping`).
    pub(super) async fn open(&self, split: bool, grouping: Grouping) -> Result<Open, SourceError> {
        let settled = "to_timestamp((floor((extract(epoch FROM now()) - $1) / 60) * 60)::float8)";
        // The bounds are stable expressions of now(), not a join, so the index range is used.
        let range = format!("FROM {} WHERE created_at >= {settled} AND created_at < now()", self.table);
        let counters = counters_sql(split);
        let zeros = "0::bigint AS total, 0::bigint AS with_short, 0::bigint AS with_long, 0::bigint AS with_both,
                     0::bigint AS legacy_only, 0::bigint AS doubled, 0::bigint AS empty";
        let marker = format!("SELECT NULL::timestamp AS minute, now() AS now, {zeros} UNION ALL");
        let (sql, step) = match grouping {
            // An aggregate without GROUP BY: exactly one row, even without rows.
            Grouping::Sum => (format!("SELECT NULL::timestamp AS minute, now() AS now, {counters} {range}"), 0),
            Grouping::PerMinute => (
                format!(
                    "{marker} SELECT date_trunc('minute', created_at AT TIME ZONE 'UTC'), now(), {counters} {range} GROUP BY 1"
                ),
                0,
            ),
            Grouping::SplitAt(step) => {
                // Scalar subqueries: computed once per statement, not once per row.
                let cut = format!("(SELECT greatest(to_timestamp((floor(extract(epoch FROM now()) / $2) * $2)::float8), {settled}))");
                let key = format!("(CASE WHEN created_at >= {cut} THEN {cut} ELSE (SELECT {settled}) END) AT TIME ZONE 'UTC'");
                (format!("{marker} SELECT {key}, now(), {counters} {range} GROUP BY 1"), step)
            }
        };
        let mut query = sqlx::query_as(&sql).bind(SETTLE_SECS as f64);
        if step > 0 {
            query = query.bind(step as f64);
        }
        let rows: Vec<MinuteRow> = query.fetch_all(&self.pool).await.map_err(|e| from_sqlx(SOURCE, &e))?;
        let now = rows
            .first()
            .map(|r| r.now)
            .ok_or_else(|| SourceError::Malformed { system: SOURCE, detail: "the clock's row is missing".into() })?;
        let settled_until = floor_to(now.timestamp() - SETTLE_SECS, MINUTE);
        let minutes = match grouping {
            Grouping::Sum => rows.into_iter().map(|r| (settled_until, r.counts)).collect(),
            _ => rows.into_iter().filter_map(|r| Some((minute_of(r.minute?), r.counts))).collect(),
        };
        Ok(Open { now, settled_until, minutes })
    }

    /// The rows of one minute, each with the counters it adds to.
    pub(super) async fn rows_of_minute(&self, minute: i64, split: bool) -> Result<Vec<EdgeRow>, SourceError> {
        let sql = format!(
            "SELECT created_at, ({})::int2 AS bits FROM {} WHERE created_at >= $1 AND created_at < $2",
            bits_sql(split),
            self.table
        );
        sqlx::query_as(&sql)
            .bind(ts(minute))
            .bind(ts(minute + MINUTE))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))
    }
}
