//! The diary database: `history_records` aggregates and the state of its schema.
//! Read-only: monitoring needs nothing more than SELECT.
//!
//! `history_records` grows without bound, so windows and series are assembled from buckets
//! counted once and kept in memory: whole hours, and whole minutes for the partial hours at a
//! window's edges. Each refresh counts directly only the partial minutes at the edges and the
//! minutes that have not settled yet, so its cost does not grow with the table. Cached buckets
//! from the last `RECONCILE_SPAN` are dropped every `RECONCILE_EVERY` so that late writes are
//! picked up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;
use tokio::sync::Mutex;

use super::categories::Category;
use crate::api::records::{DoubledRecord, RecordBucket, RecordCounts, RecordSeries, RecordSummary};
use crate::api::window::Window;

use super::error::{from_sqlx, Source, SourceError};

const SOURCE: Source = Source::DiaryDatabase;
const HOUR: i64 = 3600;
const MINUTE: i64 = 60;
/// Minute buckets not used for this long are forgotten (window edges move on).
const MINUTE_IDLE: Duration = Duration::from_secs(600);
/// A bucket is cached only once it ended this long ago (writes in flight).
const SETTLE_SECS: i64 = 120;
const RECONCILE_EVERY: Duration = Duration::from_secs(600);
const RECONCILE_SPAN: i64 = 48 * HOUR;
/// Most buckets one series may have.
pub const MAX_BUCKETS: i64 = 2_000;

#[derive(Clone)]
pub struct DiaryRecords {
    pool: PgPool,
    table: String,
    hours: Arc<Mutex<BucketCache>>,
    minutes: Arc<Mutex<BucketCache>>,
}

/// Counts of completed buckets of one size.
struct BucketCache {
    size: i64,
    /// Forget buckets unused for this long (None: keep).
    idle: Option<Duration>,
    /// Whether the cached counts were taken with the split columns present.
    split_columns: Option<bool>,
    /// Bucket start (unix seconds) → counts of that completed bucket, and when it was last used.
    counts: BTreeMap<i64, (Counts, Instant)>,
    last_reconcile: Option<Instant>,
}

impl BucketCache {
    fn new(size: i64, idle: Option<Duration>) -> Arc<Mutex<BucketCache>> {
        Arc::new(Mutex::new(BucketCache {
            size,
            idle,
            split_columns: None,
            counts: BTreeMap::new(),
            last_reconcile: None,
        }))
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
}

/// Raw counters; which of them mean anything depends on the schema (see `publish`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
struct Counts {
    total: i64,
    with_short: i64,
    with_long: i64,
    with_both: i64,
    legacy_only: i64,
    doubled: i64,
    empty: i64,
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

fn floor_to(secs: i64, step: i64) -> i64 {
    secs - secs.rem_euclid(step)
}

/// The first and the end of the whole `size`-second buckets inside [from, to).
fn whole_buckets(from: DateTime<Utc>, to: DateTime<Utc>, size: i64) -> (i64, i64) {
    let mut first = floor_to(from.timestamp(), size);
    if ts(first) < from {
        first += size;
    }
    (first, floor_to(to.timestamp(), size))
}

impl DiaryRecords {
    /// `table` is validated by the configuration as a plain identifier.
    /// The diary database itself (the rollback's verify and data-loss count read it directly).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn new(pool: PgPool, table: &str) -> Self {
        DiaryRecords {
            pool,
            table: table.to_string(),
            hours: BucketCache::new(HOUR, None),
            minutes: BucketCache::new(MINUTE, Some(MINUTE_IDLE)),
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

    /// The SELECT list computing every counter; without the split columns only `dose` counts.
    fn counters_sql(split_columns: bool) -> String {
        let category = |c: Category| c.predicate(split_columns);
        let has = |text: &'static str| if split_columns { text } else { "FALSE" };
        format!(
            "count(*) AS total,
             count(*) FILTER (WHERE {}) AS with_short,
             count(*) FILTER (WHERE {}) AS with_long,
             count(*) FILTER (WHERE {}) AS with_both,
             count(*) FILTER (WHERE {}) AS legacy_only,
             count(*) FILTER (WHERE {}) AS doubled,
             count(*) FILTER (WHERE {}) AS empty",
            has("insulin_short IS NOT NULL"),
            has("insulin_long IS NOT NULL"),
            has("insulin_short IS NOT NULL AND insulin_long IS NOT NULL"),
            category(Category::LegacyOnly),
            category(Category::Doubled),
            category(Category::Empty),
        )
    }

    /// Counters over [from, to) in one scan.
    async fn count_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, split: bool) -> Result<Counts, SourceError> {
        if to <= from {
            return Ok(Counts::default());
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE created_at >= $1 AND created_at < $2",
            Self::counters_sql(split),
            self.table
        );
        sqlx::query_as::<_, Counts>(&sql)
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))
    }

    /// Counters per `step`-second bucket over [from, to); both aligned to `step`. Buckets without
    /// rows are absent from the answer.
    async fn count_buckets(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: i64,
        split_columns: bool,
    ) -> Result<BTreeMap<i64, Counts>, SourceError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            bucket: i64,
            #[sqlx(flatten)]
            counts: Counts,
        }
        if to <= from {
            return Ok(BTreeMap::new());
        }
        let sql = format!(
            "SELECT (floor(extract(epoch FROM created_at) / $3) * $3)::bigint AS bucket, {}
               FROM {} WHERE created_at >= $1 AND created_at < $2 GROUP BY 1",
            Self::counters_sql(split_columns),
            self.table
        );
        let rows = sqlx::query_as::<_, Row>(&sql)
            .bind(from)
            .bind(to)
            .bind(step as f64)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))?;
        Ok(rows.into_iter().map(|r| (r.bucket, r.counts)).collect())
    }

    /// The database's clock, so windows agree with `now()` in SQL written by hand.
    async fn db_now(&self) -> Result<DateTime<Utc>, SourceError> {
        sqlx::query_scalar("SELECT now()").fetch_one(&self.pool).await.map_err(|e| from_sqlx(SOURCE, &e))
    }

    /// Counts of the whole buckets [b0, b1) of `cache`'s size, from the cache where possible.
    /// Buckets that have settled are cached; the others are counted but not kept.
    async fn buckets(
        &self,
        cache: &Mutex<BucketCache>,
        b0: i64,
        b1: i64,
        now: i64,
        split_columns: bool,
    ) -> Result<BTreeMap<i64, Counts>, SourceError> {
        let mut cache = cache.lock().await;
        let size = cache.size;
        if cache.split_columns != Some(split_columns) {
            cache.counts.clear();
            cache.split_columns = Some(split_columns);
        }
        if cache.last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_EVERY) {
            let keep_before = floor_to(now, HOUR) - RECONCILE_SPAN;
            let idle = cache.idle;
            cache.counts.retain(|b, (_, used)| *b < keep_before && idle.is_none_or(|i| used.elapsed() < i));
            cache.last_reconcile = Some(Instant::now());
        }
        let starts: Vec<i64> = (0..(b1 - b0) / size).map(|i| b0 + i * size).collect();
        let missing: Vec<i64> = starts.iter().copied().filter(|b| !cache.counts.contains_key(b)).collect();
        let mut fresh = BTreeMap::new();
        if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
            fresh = self.count_buckets(ts(*first), ts(last + size), size, split_columns).await?;
            for b in &missing {
                if b + size + SETTLE_SECS <= now {
                    cache.counts.insert(*b, (fresh.get(b).copied().unwrap_or_default(), Instant::now()));
                }
            }
        }
        let used = Instant::now();
        Ok(starts
            .into_iter()
            .map(|b| {
                let c = match cache.counts.get_mut(&b) {
                    Some(entry) => {
                        entry.1 = used;
                        entry.0
                    }
                    None => fresh.get(&b).copied().unwrap_or_default(),
                };
                (b, c)
            })
            .collect())
    }

    /// Counters over [from, to): whole hours from the hour cache, the rest through `count_minutes`.
    async fn count_span(&self, from: DateTime<Utc>, to: DateTime<Utc>, split: bool) -> Result<Counts, SourceError> {
        let (h0, h1) = whole_buckets(from, to, HOUR);
        if h1 <= h0 {
            return self.count_minutes(from, to, split).await;
        }
        let mut total = Box::pin(self.count_minutes(from, ts(h0), split)).await?;
        for c in Box::pin(self.buckets(&self.hours, h0, h1, to.timestamp(), split)).await?.into_values() {
            total += c;
        }
        total += Box::pin(self.count_minutes(ts(h1), to, split)).await?;
        Ok(total)
    }

    /// Counters over [from, to): whole minutes from the minute cache, the partial minutes directly.
    async fn count_minutes(&self, from: DateTime<Utc>, to: DateTime<Utc>, split: bool) -> Result<Counts, SourceError> {
        let (m0, m1) = whole_buckets(from, to, MINUTE);
        if m1 <= m0 {
            return self.count_between(from, to, split).await;
        }
        let mut total = self.count_between(from, ts(m0), split).await?;
        for c in
            self.buckets(&self.minutes, m0, m1, to.timestamp().max(Utc::now().timestamp()), split).await?.into_values()
        {
            total += c;
        }
        total += self.count_between(ts(m1), to, split).await?;
        Ok(total)
    }

    /// The counters for the window ending now (created_at >= now() - window AND created_at < now()).
    pub async fn summary(&self, window: Window, schema: &SchemaState) -> Result<RecordSummary, SourceError> {
        let end = self.db_now().await?;
        let start = end - chrono::Duration::seconds(window.as_secs());
        self.summary_between(start, end, schema).await
    }

    /// The counters from `start` until now (the database's clock).
    pub async fn summary_since(
        &self,
        start: DateTime<Utc>,
        schema: &SchemaState,
    ) -> Result<RecordSummary, SourceError> {
        let end = self.db_now().await?;
        self.summary_between(start, end.max(start), schema).await
    }

    /// The counters for created_at >= start AND created_at < end.
    pub async fn summary_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        schema: &SchemaState,
    ) -> Result<RecordSummary, SourceError> {
        let split = schema.has_split_columns();
        let counts = self.count_span(start, end, split).await?;
        Ok(RecordSummary { window_start: start, window_end: end, counts: counts.publish(split) })
    }

    /// Buckets of `step` over the last `range`, aligned to `step`; the last one is still open.
    pub async fn series(&self, range: Window, step: Window, schema: &SchemaState) -> Result<RecordSeries, SourceError> {
        let end = self.db_now().await?;
        let (now, step_s) = (end.timestamp(), step.as_secs());
        let first = floor_to(now - range.as_secs(), step_s);
        let split = schema.has_split_columns();
        let mut buckets = Vec::new();
        if step_s % HOUR == 0 {
            let hours = self.buckets(&self.hours, first, floor_to(now, HOUR), now, split).await?;
            let open = self.count_minutes(ts(floor_to(now, HOUR)), end, split).await?;
            let mut t = first;
            while t <= now {
                let mut c = Counts::default();
                for (_, v) in hours.range(t..t + step_s) {
                    c += *v;
                }
                if (t..t + step_s).contains(&floor_to(now, HOUR)) {
                    c += open;
                }
                buckets.push(RecordBucket { start: ts(t), end: ts(t + step_s), counts: c.publish(split) });
                t += step_s;
            }
        } else {
            let found = self.count_buckets(ts(first), end, step_s, split).await?;
            let mut t = first;
            while t <= now {
                let c = found.get(&t).copied().unwrap_or_default();
                buckets.push(RecordBucket { start: ts(t), end: ts(t + step_s), counts: c.publish(split) });
                t += step_s;
            }
        }
        Ok(RecordSeries { range_start: ts(first), range_end: end, step: step.to_string(), buckets })
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
}
