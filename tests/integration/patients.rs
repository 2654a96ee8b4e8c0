//! Patients who cross over, against the diary in PostgreSQL: counted per day from the rows, the
//! ones who went back named only to a signed-in caller, and ended days counted once.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::web::{post_form, users_file, ORIGIN};
use crate::support::{dashboard_state_with, diary_schema, url_of};

async fn get_json(app: &axum::Router, path: &str, cookie: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[sqlx::test(migrations = false)]
async fn patients_who_go_back_are_counted_per_day_and_named_only_to_the_signed_in(pool: PgPool) {
    diary_schema(&pool).await;
    // Yesterday (UTC), at fixed hours: 1 crosses forward (legacy, then split: a rollout step);
    // 2 goes back (split, then legacy: a second phone); 3 writes split only, 4 legacy only, 5 a
    // note without a dose (not active). The day before: 2 goes back again.
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long, note)
         SELECT u, date_trunc('day', now()) - (d || ' days')::interval + (h || ' hours')::interval, dose, s, l, NULL
           FROM (VALUES (1, 1, 8, 6.0, NULL, NULL), (1, 1, 12, NULL, 6.0, NULL),
                        (2, 1, 9, NULL, 4.0, 12.0), (2, 1, 15, 4.0, NULL, NULL),
                        (3, 1, 10, NULL, 5.0, NULL), (4, 1, 11, 7.0, NULL, NULL), (5, 1, 12, NULL, NULL, NULL),
                        (2, 2, 9, NULL, 4.0, NULL), (2, 2, 21, 5.0, NULL, NULL))
                AS v(u, d, h, dose, s, l);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "refresh_interval_secs = 1\n[auth]\nmode = \"local\"\nusers_file = \"{}\"\n[crossover]\ndays = 3\nmin_patients = 2\n",
        users_file(dir.path()).display()
    );
    let state = dashboard_state_with(&pool, Some(url_of(&pool)), None, None, Some(&settings)).await;
    let app = rollout_dashboard::site::app(state.clone());

    let (status, c) = get_json(&app, "/api/v1/patients/crossover", None).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let n = |d: &serde_json::Value, k: &str| d[k].as_i64().unwrap();
    let days: Vec<(i64, i64, i64, i64, bool)> = c["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (n(d, "active"), n(d, "exposed"), n(d, "crossing"), n(d, "back"), d["complete"] == true))
        .collect();
    // Oldest first: two days ago, yesterday, today (no rows yet, still counting).
    let counts: Vec<(i64, i64, i64, i64)> = days.iter().map(|d| (d.0, d.1, d.2, d.3)).collect();
    assert_eq!(counts, [(1, 1, 1, 1), (4, 3, 2, 1), (0, 0, 0, 0)], "(active, on the split path, crossed, back): {c}");
    assert_eq!((days[0].4, days[2].4), (true, false), "ended, and still counting: {c}");
    assert!(c["examples"].is_null(), "no user id for an anonymous caller: {c}");
    assert!(!c.to_string().contains("\"user_id\":"), "{c}");

    // Signed in: the patient who went back, with what they wrote that day.
    let resp = post_form(&app, "/auth/login", "username=bo&password=viewer-pw&next=%2F", ORIGIN, None).await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let (_, c) = get_json(&app, "/api/v1/patients/crossover", Some(&cookie)).await;
    let examples = c["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 1, "{c}");
    assert_eq!(examples[0]["user_id"], 2);
    assert_eq!(examples[0]["categories"], "both 1, legacy_only 1", "{c}");

    // The check judges yesterday (today has no patient yet): 1 of the 3 on the split path went
    // back, over 0.5 %.
    let found = rollout_dashboard::server::crossover::judge(
        &serde_json::from_value::<rollout_dashboard::api::patients::Crossover>(c.clone()).unwrap().days,
        &state.settings.crossover,
    );
    assert!(
        matches!(found, rollout_dashboard::server::crossover::Judgement::Judged { passed: false, share, .. } if (share - 1.0 / 3.0).abs() < 1e-12),
        "{found:?}"
    );

    // An ended day is counted once: a row slipped into it later is not seen (the current day's are).
    sqlx::query("INSERT INTO history_records (user_id, created_at, dose) VALUES (9, date_trunc('day', now()) - interval '2 days' + interval '3 hours', 5)")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, again) = get_json(&app, "/api/v1/patients/crossover", None).await;
    assert_eq!(again["days"][0]["active"], 1, "kept from the first count: {again}");
}
