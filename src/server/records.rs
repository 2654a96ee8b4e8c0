//! The diary database: `history_records` aggregates and the state of its schema.
//! Read-only: monitoring needs nothing more than SELECT.

use sqlx::PgPool;

use super::error::{from_sqlx, Source, SourceError};

const SOURCE: Source = Source::DiaryDatabase;

#[derive(Clone)]
pub struct DiaryRecords {
    pool: PgPool,
    table: String,
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

/// Counts over a window of `history_records` (created_at >= start AND created_at < end).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordCounts {
    pub total: i64,
    /// None when the column does not exist (schema rolled back).
    pub with_short: Option<i64>,
    pub with_long: Option<i64>,
}

impl DiaryRecords {
    /// `table` is validated by the configuration as a plain identifier.
    pub fn new(pool: PgPool, table: &str) -> Self {
        DiaryRecords {
            pool,
            table: table.to_string(),
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
        let has_alembic: bool =
            sqlx::query_scalar("SELECT to_regclass('alembic_version') IS NOT NULL")
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

    /// Counts rows created in the last `hours`, using only the split columns that exist.
    pub async fn counts_last_hours(
        &self,
        hours: i64,
        schema: &SchemaState,
    ) -> Result<RecordCounts, SourceError> {
        let short = if schema.insulin_short {
            "count(*) FILTER (WHERE insulin_short IS NOT NULL)"
        } else {
            "NULL::bigint"
        };
        let long = if schema.insulin_long {
            "count(*) FILTER (WHERE insulin_long IS NOT NULL)"
        } else {
            "NULL::bigint"
        };
        let sql = format!(
            "SELECT count(*), {short}, {long} FROM {table}
              WHERE created_at >= now() - make_interval(hours => $1::int) AND created_at < now()",
            table = self.table
        );
        let (total, with_short, with_long): (i64, Option<i64>, Option<i64>) = sqlx::query_as(&sql)
            .bind(hours as i32)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| from_sqlx(SOURCE, &e))?;
        Ok(RecordCounts {
            total,
            with_short,
            with_long,
        })
    }
}
