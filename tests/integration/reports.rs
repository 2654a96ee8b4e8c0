//! Reports for BI: every dose counted once, checked against independent SQL.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rollout_dashboard::server::records::DiaryRecords;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::{dashboard_state_with, diary_schema, url_of};

// ---------------------------------------------------------------- reports for BI

async fn get_raw(app: &axum::Router, path: &str) -> (StatusCode, String, Vec<u8>) {
    let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap().to_vec())
}

fn csv_rows(body: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[sqlx::test(migrations = false)]
async fn report_csvs_count_every_dose_once_and_match_independent_sql(pool: PgPool) {
    diary_schema(&pool).await;
    // Three days of rows of every kind, at fixed hours; one at 22:30 UTC, which is the next day in +03:00.
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long, note)
         SELECT 1, date_trunc('day', now()) - (d || ' days')::interval + (h || ' hours')::interval, dose, s, l, NULL
         FROM (VALUES (6.0, NULL, NULL), (NULL, 4.0, NULL), (NULL, NULL, 12.0), (NULL, 4.5, 10.0),
                      (8.0, 8.0, 8.0), (4.0, 4.0, 12.0), (NULL, NULL, NULL)) AS v(dose, s, l),
              generate_series(2, 4) d, (VALUES (2), (9)) AS hh(h);
         INSERT INTO history_records (user_id, created_at, dose)
         VALUES (2, date_trunc('day', now()) - interval '1 day 90 minutes', 7);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let state =
        dashboard_state_with(&pool, Some(url_of(&pool)), None, None, Some("[reports]\ntime_zone = \"+03:00\"\n")).await;
    let app = rollout_dashboard::site::app(state);

    let (status, ct, body) = get_raw(&app, "/api/v1/reports/insulin-units.csv?range=7d").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "text/csv; charset=utf-8"));
    let rows = csv_rows(&body);
    assert_eq!(
        rows[0],
        [
            "time (UTC+03:00)",
            "short (insulin_short + legacy dose) (IU)",
            "long (insulin_long) (IU)",
            "DOUBLED rows' dose (not in the totals) (IU)"
        ]
    );
    let total = |col: usize| rows[1..].iter().map(|r| r[col].parse::<f64>().unwrap()).sum::<f64>();
    // Independent SQL: the guide's rules written as plain WHERE clauses.
    let (short, long, doubled): (f64, f64, f64) = sqlx::query_as(
        "SELECT
           (SELECT coalesce(sum(insulin_short), 0)::float8 FROM history_records
              WHERE NOT (dose IS NOT NULL AND insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND insulin_short = dose AND insulin_long = dose))
         + (SELECT coalesce(sum(dose), 0)::float8 FROM history_records WHERE insulin_short IS NULL AND insulin_long IS NULL),
           (SELECT coalesce(sum(insulin_long), 0)::float8 FROM history_records
              WHERE NOT (dose IS NOT NULL AND insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND insulin_short = dose AND insulin_long = dose)),
           (SELECT coalesce(sum(dose), 0)::float8 FROM history_records WHERE insulin_short = dose AND insulin_long = dose)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((total(1), total(2), total(3)), (short, long, doubled));
    // By hand: per day, 2 × (6 legacy + 4 + 4.5 + 4) short, 2 × (12 + 10 + 12) long, 2 × 8 doubled.
    assert_eq!((short, long, doubled), (3.0 * 37.0 + 7.0, 3.0 * 68.0, 3.0 * 16.0));
    // The 22:30 UTC row (two days ago in UTC) belongs to yesterday's UTC date in +03:00, where it
    // is the only short dose: the other rows of that date are the seeded days' 02:00 and 09:00
    // UTC, which start two days ago. (Not simply the last row: from 21:00 UTC on, +03:00 is a
    // day ahead.)
    let utc_yesterday: String = sqlx::query_scalar(
        "SELECT to_char((now() AT TIME ZONE 'UTC') - interval '1 day', 'YYYY-MM-DD') || ' 00:00:00'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let day = rows.iter().find(|r| r[0] == utc_yesterday).unwrap_or_else(|| panic!("no row {utc_yesterday}: {rows:?}"));
    assert_eq!(day[1..], ["7", "0", "0"], "{rows:?}");
    // Whole days only: today (in +03:00) is unfinished and left out, drawn neither as a day nor
    // as a cliff; the last row is yesterday's.
    let local_yesterday: String = sqlx::query_scalar(
        "SELECT to_char((now() AT TIME ZONE 'UTC') + interval '3 hours' - interval '1 day', 'YYYY-MM-DD') || ' 00:00:00'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(rows.last().unwrap()[0], local_yesterday, "{rows:?}");

    let (_, _, body) = get_raw(&app, "/api/v1/reports/record-categories.csv?range=7d").await;
    let categories = csv_rows(&body);
    let rows = categories.clone();
    assert_eq!(
        rows[0][1..],
        ["legacy only (dose)", "short only", "long only", "both parts", "DOUBLED (defect)", "empty (no dose)"]
    );
    let sum_col = |c: usize| rows[1..].iter().map(|r| r[c].parse::<i64>().unwrap()).sum::<i64>();
    // legacy only: 6 legacy rows + the 7-unit row; short only 6; long only 6; both: 6 + the dose-beside-split 6; doubled 6; empty 6.
    assert_eq!((1..=6).map(sum_col).collect::<Vec<_>>(), [7, 6, 6, 12, 6, 6]);
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM history_records").fetch_one(&pool).await.unwrap();
    assert_eq!((1..=6).map(sum_col).sum::<i64>(), all, "every row in exactly one category");
    sqlx::query("INSERT INTO history_records (user_id, created_at, dose) VALUES (3, now(), 50)")
        .execute(&pool)
        .await
        .unwrap();
    let (_, _, again) = get_raw(&app, "/api/v1/reports/record-categories.csv?range=7d").await;
    assert_eq!(csv_rows(&again), categories, "a dose written today changes no drawn day");

    // The SVG names its series, axis units and time zone; the PNG decodes at the asked size.
    let (status, ct, svg) = get_raw(&app, "/api/v1/reports/insulin-units.svg?range=7d").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/svg+xml"));
    let svg = String::from_utf8(svg).unwrap();
    for needle in [
        "short (insulin_short + legacy dose)",
        "long (insulin_long)",
        "DOUBLED rows&apos; dose (not in the totals)",
        "insulin units (IU) per day",
        "time (UTC+03:00)",
    ] {
        assert!(svg.contains(needle) || svg.contains(&needle.replace("&apos;", "'")), "{needle} missing");
    }
    let (status, ct, png_bytes) =
        get_raw(&app, "/api/v1/reports/record-categories.png?range=7d&width=640&height=300").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (640, 300));
    let pixels = &buf[..info.buffer_size()];
    let non_white = pixels.chunks(3).filter(|p| p != &[255, 255, 255]).count();
    let vermillion = pixels.chunks(3).filter(|p| p == &[0xD5, 0x5E, 0x00]).count();
    assert!(non_white > 5_000, "not blank: {non_white} non-white pixels");
    assert!(vermillion > 50, "the doubled series is drawn: {vermillion} vermillion pixels");

    // Bad requests.
    for (path, want) in [
        ("/api/v1/reports/nope.csv", StatusCode::NOT_FOUND),
        ("/api/v1/reports/usage.pdf", StatusCode::NOT_FOUND),
        ("/api/v1/reports/usage", StatusCode::NOT_FOUND),
        ("/api/v1/reports/insulin-units.csv?range=1y", StatusCode::BAD_REQUEST),
        ("/api/v1/reports/insulin-units.png?width=10", StatusCode::BAD_REQUEST),
        ("/api/v1/reports/insulin-units.png?colour=red", StatusCode::BAD_REQUEST),
    ] {
        let (status, _, body) = get_raw(&app, path).await;
        assert_eq!(status, want, "{path}");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(err["error"].is_string(), "{path}: {err}");
    }
    // Without Prometheus, the Prometheus charts say so (503); the database ones still answer.
    assert_eq!(get_raw(&app, "/api/v1/reports/usage.csv").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrations = false)]
async fn the_rules_on_the_page_are_the_rules_the_sql_applies(pool: PgPool) {
    use rollout_dashboard::server::reports::{daily, rules};
    diary_schema(&pool).await;
    let examples = rules();
    for r in &examples {
        sqlx::query("INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long) VALUES (1, now() - interval '1 hour', $1, $2, $3)")
            .bind(r.dose)
            .bind(r.insulin_short)
            .bind(r.insulin_long)
            .execute(&pool)
            .await
            .unwrap();
    }
    let diary = DiaryRecords::new(pool.clone(), "history_records");
    let schema = diary.schema().await.unwrap();
    let now = chrono::Utc::now();
    let (days, _) = daily(&diary, &schema, now - chrono::Duration::hours(2), now, Default::default()).await.unwrap();
    let sum = |f: fn(&rollout_dashboard::server::reports::DayRow) -> f64| days.iter().map(f).sum::<f64>();
    assert_eq!(sum(|d| d.short_units), examples.iter().map(|r| r.short_units).sum::<f64>());
    assert_eq!(sum(|d| d.long_units), examples.iter().map(|r| r.long_units).sum::<f64>());
    assert_eq!(sum(|d| d.doubled_units), examples.iter().map(|r| r.doubled_units).sum::<f64>());
    let count = |cat: &str| examples.iter().filter(|r| r.category == cat).count() as i64;
    let n = |f: fn(&rollout_dashboard::server::reports::DayRow) -> i64| days.iter().map(f).sum::<i64>();
    assert_eq!(
        [
            n(|d| d.legacy_only),
            n(|d| d.short_only),
            n(|d| d.long_only),
            n(|d| d.both),
            n(|d| d.doubled),
            n(|d| d.empty)
        ],
        [
            count("legacy_only"),
            count("short_only"),
            count("long_only"),
            count("both"),
            count("doubled"),
            count("empty")
        ]
    );
}
