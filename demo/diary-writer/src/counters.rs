//! The two counters the guide watches, exported in Prometheus text format on `/metrics`.
//! They start from the number of matching rows already in the diary database, so the live series
//! continues the backfilled history instead of dropping to zero.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::World;

pub const SPLIT_METRIC: &str = "split_dose_saved";
pub const LEGACY_METRIC: &str = "legacy_dose_used";
pub const SERVICE_LABEL: &str = "diary-api";
/// Clients that know the split fields.
pub const SPLIT_CLIENT: &str = "2.4.0";
/// Clients that still send the single `dose`.
pub const LEGACY_CLIENT: &str = "2.3.1";

/// SQL predicates defining which rows count towards each counter. Shared by the writer, the
/// exporter's starting values and the backfill, so the three agree.
pub const SPLIT_ROW: &str = "(insulin_short IS NOT NULL OR insulin_long IS NOT NULL)";
pub const LEGACY_ROW: &str = "(dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL)";

#[derive(Default)]
pub struct DoseCounters {
    split: AtomicU64,
    legacy: AtomicU64,
}

impl DoseCounters {
    pub fn starting_at(split: u64, legacy: u64) -> Self {
        DoseCounters { split: AtomicU64::new(split), legacy: AtomicU64::new(legacy) }
    }

    pub fn record_split(&self) {
        self.split.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_legacy(&self) {
        self.legacy.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, client, value) in [
            (SPLIT_METRIC, SPLIT_CLIENT, self.split.load(Ordering::Relaxed)),
            (LEGACY_METRIC, LEGACY_CLIENT, self.legacy.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "# TYPE {name}_total counter");
            let _ = writeln!(out, "{name}_total{{service=\"{SERVICE_LABEL}\",client_version=\"{client}\"}} {value}");
        }
        out
    }
}

/// Counts of rows in the diary database that count as split and as legacy, for the counters'
/// starting values. Before the split columns exist every dosed row is legacy.
pub async fn count_rows(pool: &sqlx::PgPool) -> Result<(u64, u64), sqlx::Error> {
    let has_split = crate::writer::split_columns_exist(pool).await?;
    let sql = if has_split {
        format!("SELECT count(*) FILTER (WHERE {SPLIT_ROW}), count(*) FILTER (WHERE {LEGACY_ROW}) FROM history_records")
    } else {
        "SELECT 0::bigint, count(*) FILTER (WHERE dose IS NOT NULL) FROM history_records".to_string()
    };
    let (split, legacy): (i64, i64) = sqlx::query_as(&sql).fetch_one(pool).await?;
    Ok((split.max(0) as u64, legacy.max(0) as u64))
}

pub fn router() -> Router<World> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(world): State<World>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], world.counters.render())
}
