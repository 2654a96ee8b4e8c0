//! The diary database: `history_records` aggregates and the state of its schema.
//! Read-only: monitoring needs nothing more than SELECT.
//!
//! `history_records` grows without bound, so windows and series are assembled from the rollup
//! (`rollup.rs`): counters per settled minute, counted an hour at a time and kept, and the rows
//! of the settled minutes a window cuts through. A refresh reads from the table only the
//! minutes that have not settled (`SETTLE_SECS`: writes in flight and rows written a little
//! late are counted exactly), in the same statement that reads the database's clock. Counting
//! the history happens once, an hour per statement, in the background from the start
//! (`upkeep`); the last `RECONCILE_SPAN` is counted again every `RECONCILE_EVERY` so that late
//! writes are picked up.

mod queries;
use queries::Grouping;
mod rollup;
mod upkeep;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;

use crate::api::records::{DoubledRecord, RecordBucket, RecordCounts, RecordSeries, RecordSummary};
use crate::api::window::Window;
pub use rollup::RollupSize;
use rollup::{floor_to, Counts, EdgeRow, Rollup, HOUR, MINUTE};

use super::error::{from_sqlx, Source, SourceError};

const SOURCE: Source = Source::DiaryDatabase;
/// A minute is counted into the rollup once it ended this long ago (writes in flight, rows
/// written a little late); until then every refresh counts it from the table.
const SETTLE_SECS: i64 = 120;
const RECONCILE_EVERY: Duration = Duration::from_secs(600);
const RECONCILE_SPAN: i64 = 48 * HOUR;
/// What the background counts first after a start: the overview's longest usual range.
const WARM_SPAN: i64 = 7 * 24 * HOUR;
/// How often the background looks at the rollup.
const UPKEEP_TICK: Duration = Duration::from_secs(30);
/// How long one answer may spend counting history the rollup does not hold yet; the rest is
/// left to the next refresh and the background (an hour per statement, kept as counted).
const FILL_BUDGET: Duration = Duration::from_secs(3);
/// Most buckets one series may have.
pub const MAX_BUCKETS: i64 = 2_000;

#[derive(Clone)]
pub struct DiaryRecords {
    pool: PgPool,
    table: String,
    rollup: Arc<Mutex<Rollup>>,
    /// Held while counting a gap, so that two answers (or an answer and the background) do not
    /// count the same hour twice.
    filling: Arc<tokio::sync::Mutex<()>>,
}

/// The database's clock and the minutes not yet settled, as one refresh reads them.
struct Open {
    now: DateTime<Utc>,
    /// Start of the first minute not settled (unix seconds, minute aligned).
    settled_until: i64,
    /// Minute start → counters of the rows from `settled_until` to `now`.
    minutes: BTreeMap<i64, Counts>,
}

impl Open {
    fn sum(&self, from: i64, to: i64) -> Counts {
        rollup::sum_minutes(&self.minutes, from, to)
    }
}

/// Which split columns exist and which Alembic revision the database is at.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaState {
    pub insulin_short: bool,
    pub insulin_long: bool,
    /// None when there is no `alembic_version` table or it is empty.
    pub alembic_revision: Option<String>,
}

impl SchemaState {
    pub fn has_split_columns(&self) -> bool {
        self.insulin_short && self.insulin_long
    }

    /// Whether the split columns exist, as the rollout's guard and the autopilot's `schema`
    /// check both say it.
    pub fn split_columns(&self) -> Result<&'static str, &'static str> {
        if self.has_split_columns() {
            Ok("insulin_short and insulin_long exist")
        } else {
            Err("a split column is missing")
        }
    }
}

impl Counts {
    fn publish(self, split_columns: bool) -> RecordCounts {
        let split = |v: i64| split_columns.then_some(v);
        RecordCounts {
            total: self.total,
            with_short: split(self.with_short),
            with_long: split(self.with_long),
            with_both: split(self.with_both),
            legacy_only: self.legacy_only,
            doubled: split(self.doubled),
            empty: self.empty,
        }
    }
}

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// The first whole minute at or after `t`.
fn ceil_minute(t: DateTime<Utc>) -> i64 {
    let m = floor_to(t.timestamp(), MINUTE);
    if ts(m) < t {
        m + MINUTE
    } else {
        m
    }
}

/// The rollup's sum of counted minutes; None only when the schema changed meanwhile.
fn sum_of(rollup: &Rollup, a: i64, b: i64) -> Result<Counts, SourceError> {
    rollup.sum(a, b).ok_or_else(|| SourceError::Counting {
        system: SOURCE,
        detail: "the schema changed while counting; the next refresh counts again".into(),
    })
}

impl DiaryRecords {
    /// The diary database itself (the rollback's verify and data-loss count read it directly).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// `table` is validated by the configuration as a plain identifier.
    pub fn new(pool: PgPool, table: &str) -> Self {
        DiaryRecords {
            pool,
            table: table.to_string(),
            rollup: Arc::new(Mutex::new(Rollup::default())),
            filling: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub async fn schema(&self) -> Result<SchemaState, SourceError> {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = $1
                AND column_name IN ('insulin_short', 'insulin_long')",
        )
        .bind(&self.table)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| from_sqlx(SOURCE, &e))?;
        let has_alembic: bool = sqlx::query_scalar("SELECT to_regclass('alembic_version') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))?;
        let alembic_revision = if has_alembic {
            sqlx::query_scalar::<_, String>("SELECT version_num::text FROM alembic_version LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| from_sqlx(SOURCE, &e))?
        } else {
            None
        };
        Ok(SchemaState {
            insulin_short: columns.iter().any(|c| c == "insulin_short"),
            insulin_long: columns.iter().any(|c| c == "insulin_long"),
            alembic_revision,
        })
    }

    /// What the rollup holds now.
    pub fn rollup_size(&self) -> RollupSize {
        self.rollup().size()
    }

    /// Forgets the counted history: old rows were rewritten (the rollback's re-insert, its
    /// roll-forward), so every hour is counted again from the table.
    pub fn forget_counts(&self) {
        self.rollup().forget();
    }

    fn rollup(&self) -> std::sync::MutexGuard<'_, Rollup> {
        self.rollup.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the gaps of the settled minutes `[a, b)` into the rollup, an hour per statement,
    /// newest first, until none is left or `budget` is spent.
    async fn fill(&self, a: i64, b: i64, split: bool, budget: Option<Duration>) -> Result<(), SourceError> {
        let started = Instant::now();
        let gaps = || {
            let mut r = self.rollup();
            r.schema_is(split);
            r.gaps(a, b)
        };
        loop {
            // Nothing to count: no waiting for the background's turn (it may be recounting).
            if gaps().is_empty() {
                return Ok(());
            }
            let _turn = self.filling.lock().await;
            let missing = gaps();
            let Some(&gap) = missing.last() else { return Ok(()) };
            if let Some(budget) = budget.filter(|b| started.elapsed() >= *b) {
                return Err(SourceError::Counting {
                    system: SOURCE,
                    detail: format!(
                        "{} hour(s) of history still to count after {} s (the first count after a start); \
                         the background goes on, and the next refresh shows the values",
                        missing.len(),
                        budget.as_secs()
                    ),
                });
            }
            let counted = self.count_minutes(gap, split).await?;
            self.rollup().add(gap, counted);
        }
    }

    /// Counters of the settled span `[a, b)` (`b` at most the first unsettled minute).
    async fn settled(&self, a: DateTime<Utc>, b: DateTime<Utc>, split: bool) -> Result<Counts, SourceError> {
        let mut total = Counts::default();
        if b <= a {
            return Ok(total);
        }
        let (ma, mb) = (ceil_minute(a), floor_to(b.timestamp(), MINUTE));
        if ma > mb {
            return self.edge(mb, a, b, split).await; // both ends inside one minute
        }
        if a < ts(ma) {
            total += self.edge(ma - MINUTE, a, ts(ma), split).await?;
        }
        if ma < mb {
            self.fill(ma, mb, split, Some(FILL_BUDGET)).await?;
            total += sum_of(&self.rollup(), ma, mb)?;
        }
        if ts(mb) < b {
            total += self.edge(mb, ts(mb), b, split).await?;
        }
        Ok(total)
    }

    /// Counters of `[from, to)` inside the settled minute `minute`, from its rows (kept).
    async fn edge(
        &self,
        minute: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        split: bool,
    ) -> Result<Counts, SourceError> {
        {
            let mut r = self.rollup();
            r.schema_is(split);
            if let Some(c) = r.edge(minute, from, to) {
                return Ok(c);
            }
        }
        let rows: Vec<EdgeRow> = self.rows_of_minute(minute, split).await?;
        let mut r = self.rollup();
        r.keep_edge(minute, rows);
        Ok(r.edge(minute, from, to).unwrap_or_default())
    }

    /// Counters over `[from, to)`: the settled part from the rollup, the rest from `open`
    /// (when it covers it) or the table.
    async fn count_span(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        open: &Open,
        split: bool,
    ) -> Result<Counts, SourceError> {
        if to <= from {
            return Ok(Counts::default());
        }
        let settled_until = ts(open.settled_until);
        let mut total = Box::pin(self.settled(from, to.min(settled_until), split)).await?;
        if to > settled_until {
            let rest_from = from.max(settled_until);
            if rest_from == settled_until && to == open.now {
                total += open.sum(open.settled_until, i64::MAX);
            } else {
                total += self.count_between(rest_from, to, split).await?;
            }
        }
        Ok(total)
    }

    /// The counters over the span `span` makes of the database's clock.
    async fn summary_over(
        &self,
        schema: &SchemaState,
        span: impl FnOnce(DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<RecordSummary, SourceError> {
        let split = schema.has_split_columns();
        let open = self.open(split, Grouping::Sum).await?;
        let (start, end) = span(open.now);
        let counts = self.count_span(start, end, &open, split).await?;
        Ok(RecordSummary { window_start: start, window_end: end, counts: counts.publish(split) })
    }

    /// The counters for the window ending now (created_at >= now() - window AND created_at < now()).
    pub async fn summary(&self, window: Window, schema: &SchemaState) -> Result<RecordSummary, SourceError> {
        self.summary_over(schema, |now| (now - chrono::Duration::seconds(window.as_secs()), now)).await
    }

    /// The counters from `start` until now (the database's clock).
    pub async fn summary_since(
        &self,
        start: DateTime<Utc>,
        schema: &SchemaState,
    ) -> Result<RecordSummary, SourceError> {
        self.summary_over(schema, |now| (start, now.max(start))).await
    }

    /// The counters for created_at >= start AND created_at < end.
    pub async fn summary_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        schema: &SchemaState,
    ) -> Result<RecordSummary, SourceError> {
        self.summary_over(schema, |_| (start, end)).await
    }

    /// Buckets of `step` over the last `range`, aligned to `step`; the last one is still open.
    pub async fn series(&self, range: Window, step: Window, schema: &SchemaState) -> Result<RecordSeries, SourceError> {
        let split = schema.has_split_columns();
        let open = self.open(split, Grouping::for_step(step.as_secs())).await?;
        let (now, step_s, until) = (open.now.timestamp(), step.as_secs(), open.settled_until);
        let first = floor_to(now - range.as_secs(), step_s);
        // Steps are whole minutes, so every bucket is whole minutes of the rollup and of `open`.
        if first < until {
            self.fill(first, until, split, Some(FILL_BUDGET)).await?;
        }
        let rollup = self.rollup();
        let mut buckets = Vec::new();
        let mut t = first;
        while t <= now {
            let end = t + step_s;
            let mut c = if t < until { sum_of(&rollup, t, end.min(until))? } else { Counts::default() };
            c += open.sum(t.max(until), end);
            buckets.push(RecordBucket { start: ts(t), end: ts(end), counts: c.publish(split) });
            t = end;
        }
        Ok(RecordSeries { range_start: ts(first), range_end: open.now, step: step.to_string(), buckets })
    }

    /// The newest records that copy `dose` into both parts: ids and times only.
    pub async fn doubled(&self, limit: i64, schema: &SchemaState) -> Result<Vec<DoubledRecord>, SourceError> {
        if !schema.has_split_columns() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, created_at FROM {} WHERE {} ORDER BY created_at DESC, id DESC LIMIT $1",
            self.table,
            super::categories::DOUBLED
        );
        let rows: Vec<(i64, DateTime<Utc>)> =
            sqlx::query_as(&sql).bind(limit).fetch_all(&self.pool).await.map_err(|e| from_sqlx(SOURCE, &e))?;
        Ok(rows.into_iter().map(|(id, created_at)| DoubledRecord { id, created_at }).collect())
    }

    /// The ids of every record in the table that copies `dose` into both parts (at most `limit`;
    /// None when there are more). Read through the partial index the README recommends.
    pub async fn doubled_ids(&self, limit: i64) -> Result<Option<Vec<i64>>, SourceError> {
        let sql = format!("SELECT id FROM {} WHERE {} ORDER BY id LIMIT $1", self.table, super::categories::DOUBLED);
        let ids: Vec<i64> =
            sqlx::query_scalar(&sql).bind(limit + 1).fetch_all(&self.pool).await.map_err(|e| from_sqlx(SOURCE, &e))?;
        Ok((ids.len() as i64 <= limit).then_some(ids))
    }

    /// Records in the whole table that copy `dose` into both parts and are not among `known`,
    /// however they got there (inserted, committed late, with an old `created_at`, or made by an
    /// UPDATE): their count and the newest few ids.
    pub async fn doubled_beyond(&self, known: &[i64]) -> Result<(i64, Vec<i64>), SourceError> {
        let sql = format!(
            "SELECT count(*) OVER (), id FROM {} WHERE {} AND NOT (id = ANY($1)) ORDER BY id DESC LIMIT 5",
            self.table,
            super::categories::DOUBLED
        );
        let rows: Vec<(i64, i64)> =
            sqlx::query_as(&sql).bind(known).fetch_all(&self.pool).await.map_err(|e| from_sqlx(SOURCE, &e))?;
        Ok((rows.first().map_or(0, |r| r.0), rows.into_iter().map(|r| r.1).collect()))
    }

    /// Distinct users who wrote between `from` and `to` (the database's clock), as (split, legacy
    /// only): a user with any split record in the window is a split user.
    pub async fn users_by_path(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(i64, i64), SourceError> {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE split), count(*) FILTER (WHERE NOT split)
               FROM (SELECT user_id, bool_or({}) AS split FROM {}
                      WHERE created_at >= $1 AND created_at < $2 GROUP BY user_id) users",
            super::categories::SPLIT_WRITE,
            self.table
        );
        sqlx::query_as(&sql).bind(from).bind(to).fetch_one(&self.pool).await.map_err(|e| from_sqlx(SOURCE, &e))
    }
}

/// One local day of `history_records`, as the reports count it (`reports::daily`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayRow {
    pub day: Option<chrono::NaiveDate>,
    pub legacy_only: i64,
    pub short_only: i64,
    pub long_only: i64,
    pub both: i64,
    pub doubled: i64,
    pub empty: i64,
    pub short_units: f64,
    pub long_units: f64,
    pub doubled_units: f64,
}
