//! The two counters the guide watches, exported in Prometheus text format on `/metrics`.
//! They start from the number of matching rows already in the diary database, so the live series
//! continues the backfilled history instead of dropping to zero.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::writer::{VERSIONS, VERSION_SQL};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::World;

pub const SPLIT_METRIC: &str = "split_dose_saved";
pub const LEGACY_METRIC: &str = "legacy_dose_used";
pub const SERVICE_LABEL: &str = "diary-api";

/// SQL predicates defining which rows count towards each counter. Shared by the writer, the
/// exporter's starting values and the backfill, so the three agree.
pub const SPLIT_ROW: &str = "(insulin_short IS NOT NULL OR insulin_long IS NOT NULL)";
pub const LEGACY_ROW: &str = "(dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL)";

/// Each counter by the app version that wrote (`writer::VERSIONS`' order).
#[derive(Default)]
pub struct DoseCounters {
    split: [AtomicU64; VERSIONS.len()],
    legacy: [AtomicU64; VERSIONS.len()],
}

fn slot(version: &str) -> usize {
    VERSIONS.iter().position(|v| *v == version).unwrap_or(VERSIONS.len() - 1)
}

impl DoseCounters {
    /// Counters continuing from the rows already written: (version, split, legacy).
    pub fn starting_at(rows: &[(String, u64, u64)]) -> Self {
        let c = DoseCounters::default();
        for (version, split, legacy) in rows {
            c.split[slot(version)].fetch_add(*split, Ordering::Relaxed);
            c.legacy[slot(version)].fetch_add(*legacy, Ordering::Relaxed);
        }
        c
    }

    pub fn record_split(&self, version: &str) {
        self.split[slot(version)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_legacy(&self, version: &str) {
        self.legacy[slot(version)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, counts) in [(SPLIT_METRIC, &self.split), (LEGACY_METRIC, &self.legacy)] {
            let _ = writeln!(out, "# TYPE {name}_total counter");
            for (version, value) in VERSIONS.iter().zip(counts.iter()) {
                let value = value.load(Ordering::Relaxed);
                let _ =
                    writeln!(out, "{name}_total{{service=\"{SERVICE_LABEL}\",client_version=\"{version}\"}} {value}");
            }
        }
        out
    }
}

/// Rows in the diary database that count as split and as legacy, by the version of the user's
/// app, for the counters' starting values. Before the split columns exist every dosed row is legacy.
pub async fn count_rows(pool: &sqlx::PgPool) -> Result<Vec<(String, u64, u64)>, sqlx::Error> {
    let has_split = crate::writer::split_columns_exist(pool).await?;
    let (split, legacy) = if has_split { (SPLIT_ROW, LEGACY_ROW) } else { ("false", "dose IS NOT NULL") };
    let sql = format!(
        "SELECT {VERSION_SQL} AS version, count(*) FILTER (WHERE {split}), count(*) FILTER (WHERE {legacy})
           FROM history_records GROUP BY 1"
    );
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(v, s, l)| (v, s.max(0) as u64, l.max(0) as u64)).collect())
}

pub fn router() -> Router<World> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(world): State<World>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], world.counters.render())
}
