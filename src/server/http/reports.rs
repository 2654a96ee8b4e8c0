//! BI reports: each chart as SVG, PNG or CSV.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::extract::{size_param, window_param, Params};
use crate::server::charts;
use crate::server::error::ApiError;
use crate::server::reports::{build, ReportKind, REPORT_SIZE};
use crate::server::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/reports/{file}", get(report_file))
}

/// `GET /api/v1/reports/{chart}.svg|.png|.csv?range=30d` (and `width`, `height` for images).
async fn report_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
    p: Params,
) -> Result<axum::response::Response, ApiError> {
    let (name, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| ApiError::NotFound(format!("{file:?}: ask for <chart>.svg, .png or .csv")))?;
    let kind = ReportKind::parse(name).ok_or_else(|| {
        let all: Vec<&str> = ReportKind::ALL.iter().map(|k| k.slug()).collect();
        ApiError::NotFound(format!("there is no report chart {name:?} (one of {})", all.join(", ")))
    })?;
    if !matches!(ext, "svg" | "png" | "csv") {
        return Err(ApiError::NotFound(format!("{ext:?} is not a report format (svg, png, csv)")));
    }
    let range = window_param("range", p.range.as_deref(), "7d")?;
    let size = (
        size_param("width", p.width.as_deref(), REPORT_SIZE.0)?,
        size_param("height", p.height.as_deref(), REPORT_SIZE.1)?,
    );
    let report = build(&state, kind, range).await?;
    let disposition = format!("attachment; filename=\"{}-{range}.{ext}\"", kind.slug());
    // Drawn off the async workers, within a budget of pixels (`Services::render`): a burst of
    // large PNGs waits its turn instead of taking the process's memory and the probes' workers.
    let kilopixels = (size.0 * size.1).div_ceil(1000).min(crate::server::service::RENDER_KILOPIXELS);
    let _turn = state
        .services
        .render
        .acquire_many(kilopixels)
        .await
        .map_err(|_| ApiError::Failed("the renderer is closed".into()))?;
    let (format, chart) = (ext.to_string(), report.chart);
    let drawn = tokio::task::spawn_blocking(move || -> Result<(&'static str, Vec<u8>), ApiError> {
        Ok(match format.as_str() {
            "svg" => ("image/svg+xml", charts::draw_svg(&chart, size).svg.into_bytes()),
            "png" => ("image/png", charts::draw_png(&chart, size).map_err(ApiError::Failed)?),
            _ => ("text/csv; charset=utf-8", charts::to_csv(&chart).into_bytes()),
        })
    });
    let (content_type, body) =
        drawn.await.map_err(|e| ApiError::Failed(format!("drawing the report stopped: {e}")))??;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
