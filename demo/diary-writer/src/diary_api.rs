//! The diary service's API as the guide's smoke checks use it:
//! `POST /v1/diary` creates an entry (legacy `dose`, or split `insulin_short` / `insulin_long`),
//! `GET /v1/diary/{id}` reads it back. Copying one dose into both parts is refused, unless the
//! simulator's doubled-dose fault is on (then a share of split saves arrive doubled).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::writer::{insert, split_columns_exist, Entry};
use crate::World;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub user_id: Option<i64>,
    pub dose: Option<f64>,
    pub insulin_short: Option<f64>,
    pub insulin_long: Option<f64>,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct DiaryEntry {
    pub id: i64,
    pub user_id: i64,
    pub created_at: DateTime<Utc>,
    pub dose: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(default)]
    pub insulin_short: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(default)]
    pub insulin_long: Option<f64>,
    pub note: Option<String>,
}

static FAULT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn router() -> Router<World> {
    Router::new().route("/v1/diary", post(create)).route("/v1/diary/{id}", get(read))
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"error": message}))).into_response()
}

async fn create(
    State(world): State<World>,
    body: Result<Json<NewEntry>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let Some(pool) = &world.diary else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no diary database configured");
    };
    for v in [body.dose, body.insulin_short, body.insulin_long].into_iter().flatten() {
        if !(0.0..=300.0).contains(&v) || !v.is_finite() {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "doses must be between 0 and 300 units");
        }
    }
    if body.dose.is_some() && (body.insulin_short.is_some() || body.insulin_long.is_some()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "send either the legacy dose or the split parts, not both: dose must never be copied into insulin_short and insulin_long",
        );
    }
    if body.dose.is_none() && body.insulin_short.is_none() && body.insulin_long.is_none() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "an entry needs a dose");
    }
    let split = body.insulin_short.is_some() || body.insulin_long.is_some();
    if split {
        match split_columns_exist(pool).await {
            Ok(true) => {}
            Ok(false) => return error(StatusCode::UNPROCESSABLE_ENTITY, "this schema has no split dose columns"),
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("database: {e}")),
        }
    }
    let user_id = body.user_id.unwrap_or(1);
    let mut entry = Entry {
        user_id,
        version: crate::writer::version_of(user_id),
        dose: body.dose,
        insulin_short: body.insulin_short,
        insulin_long: body.insulin_long,
    };
    // The doubled-dose fault (`POST /__emulator/doubled`): that share of split saves arrive as a
    // faulty client sends them, the dose copied into both parts.
    let faulty = world.cluster.doubled_percent();
    if split && faulty > 0 && (FAULT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100) < u64::from(faulty) {
        let d = body.insulin_short.or(body.insulin_long);
        entry = Entry { dose: d, insulin_short: d, insulin_long: d, ..entry };
    }
    match insert(&world, pool, entry, body.note.as_deref()).await {
        Ok(id) => match fetch(pool, id).await {
            Ok(Some(e)) => (StatusCode::CREATED, Json(e)).into_response(),
            Ok(None) => error(StatusCode::INTERNAL_SERVER_ERROR, "entry vanished after insert"),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("database: {e}")),
        },
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("database: {e}")),
    }
}

async fn fetch(pool: &sqlx::PgPool, id: i64) -> Result<Option<DiaryEntry>, sqlx::Error> {
    let split = split_columns_exist(pool).await?;
    let sql = if split {
        "SELECT id, user_id, created_at, dose::float8 AS dose, insulin_short::float8 AS insulin_short,
                insulin_long::float8 AS insulin_long, note FROM history_records WHERE id = $1"
    } else {
        "SELECT id, user_id, created_at, dose::float8 AS dose, note FROM history_records WHERE id = $1"
    };
    sqlx::query_as::<_, DiaryEntry>(sql).bind(id).fetch_optional(pool).await
}

async fn read(State(world): State<World>, Path(id): Path<i64>) -> Response {
    let Some(pool) = &world.diary else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no diary database configured");
    };
    match fetch(pool, id).await {
        Ok(Some(e)) => Json(e).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such entry"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("database: {e}")),
    }
}
