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

#[sqlx::test(migrations = false)]
async fn dose_totals_compare_each_patients_days_before_and_after_the_move(pool: PgPool) {
    diary_schema(&pool).await;
    // Days 9 to 6 ago legacy doses at 07, 12 and 18 h; day 5 the move (a legacy dose at 07 h,
    // split after); days 4 to 1 split. Patient 10's new client halves the short dose and drops
    // the long one; 11 keeps their total and logs a long dose; 13 as 11 but one short dose
    // written in tens of units on day 2 (0.4 for 4); 12 never moves (a doubled row is not a move).
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long)
         SELECT u, date_trunc('day', now()) - (d || ' days')::interval + (h || ' hours')::interval,
                CASE WHEN d > 5 OR (d = 5 AND h = 7) THEN base END,
                CASE WHEN d < 5 OR (d = 5 AND h > 7) THEN
                     CASE WHEN u = 10 THEN base / 2 WHEN u = 13 AND d = 2 AND h = 12 THEN base / 10 ELSE base END END,
                CASE WHEN u <> 10 AND d < 5 AND h = 18 THEN 12 END
           FROM (VALUES (10, 6.0), (11, 4.0), (13, 4.0)) AS p(u, base), generate_series(1, 9) AS d,
                (VALUES (7), (12), (18)) AS hh(h);
         INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long)
         SELECT 12, date_trunc('day', now()) - (d || ' days')::interval + interval '9 hours', 5, NULL, NULL
           FROM generate_series(1, 9) AS d;
         INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long)
         VALUES (12, date_trunc('day', now()) - interval '3 days' + interval '10 hours', 5, 5, 5);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "refresh_interval_secs = 1\n[auth]\nmode = \"local\"\nusers_file = \"{}\"\n[dose_totals]\nmin_patients = 3\n",
        users_file(dir.path()).display()
    );
    let state = dashboard_state_with(&pool, Some(url_of(&pool)), None, None, Some(&settings)).await;
    let app = rollout_dashboard::site::app(state.clone());

    let (status, t) = get_json(&app, "/api/v1/patients/dose-totals", None).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let n = |k: &str| t[k].as_i64().unwrap();
    assert_eq!((n("moved"), n("both_sides"), n("changed"), n("no_long_after")), (3, 3, 1, 1), "{t}");
    // Ratios 0.5 (10), 0.925 (13: its day 2 holds 8.4 units for 12), 1 (11).
    assert!((t["median_ratio"].as_f64().unwrap() - 11.1 / 12.0).abs() < 1e-9, "{t}");
    // Patient 10: 18 units a day before, 9 after; the others unchanged.
    let buckets: Vec<(String, i64)> = t["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["patients"] != 0)
        .map(|b| (b["label"].as_str().unwrap().to_string(), b["patients"].as_i64().unwrap()))
        .collect();
    assert_eq!(buckets, [("¼ to ½".to_string(), 1), ("0.8 to 1.25".to_string(), 2)], "{t}");
    // Split patient days from the move on: 5 each; patient 13's day 2 holds a dose of 0.4 units
    // where their legacy doses were 4.
    assert_eq!(
        (t["consistency"]["patient_days"].as_i64(), t["consistency"]["in_range"].as_i64()),
        (Some(15), Some(14))
    );
    assert!(
        t["examples"].is_null() && !t.to_string().contains("\"user_id\":"),
        "no user id for an anonymous caller: {t}"
    );
    let found = serde_json::from_value::<rollout_dashboard::api::patients::DoseTotals>(t.clone()).unwrap();
    assert!(matches!(
        rollout_dashboard::server::dose_totals::judge(&found),
        rollout_dashboard::server::dose_totals::Judgement::Judged { passed: false, .. }
    ));

    // The CSV: the distribution for anyone, user ids only when asked and signed in.
    let csv = |cookie: Option<String>, query: &'static str| {
        let app = app.clone();
        async move {
            let mut req = Request::get(format!("/api/v1/patients/dose-totals.csv{query}"));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (status, body) = csv(None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("after/before short total,patients\r\n") && body.contains("¼ to ½,1\r\n"), "{body}");
    assert!(!body.contains("user_id"), "{body}");
    assert_eq!(csv(None, "?patients=yes").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(csv(None, "?patients=maybe").await.0, StatusCode::BAD_REQUEST);
    let resp = post_form(&app, "/auth/login", "username=bo&password=viewer-pw&next=%2F", ORIGIN, None).await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let (_, signed) = csv(Some(cookie.clone()), "?patients=yes").await;
    assert!(signed.contains("\r\n10,"), "{signed}");
    assert!(!csv(Some(cookie.clone()), "").await.1.contains("user_id"), "not asked: no user ids");
    let (_, t) = get_json(&app, "/api/v1/patients/dose-totals", Some(&cookie)).await;
    let ex = t["examples"].as_array().unwrap();
    assert_eq!(ex.len(), 1, "{t}");
    assert_eq!((ex[0]["user_id"].as_i64(), ex[0]["ratio"].as_f64()), (Some(10), Some(0.5)), "{t}");
    assert_eq!((ex[0]["short_before"].as_f64(), ex[0]["short_after"].as_f64()), (Some(18.0), Some(9.0)));
}

#[sqlx::test(migrations = false)]
async fn the_first_fill_goes_on_over_refreshes_instead_of_running_into_the_timeout(pool: PgPool) {
    use rollout_dashboard::server::error::SourceError;
    use rollout_dashboard::server::patient_days::{patient_days, DayCache};
    diary_schema(&pool).await;
    sqlx::raw_sql(
        "INSERT INTO history_records (user_id, created_at, dose)
         SELECT d, date_trunc('day', now()) - (d || ' days')::interval + interval '12 hours', 5
           FROM generate_series(1, 3) AS d",
    )
    .execute(&pool)
    .await
    .unwrap();
    let diary = rollout_dashboard::server::records::DiaryRecords::new(pool.clone(), "history_records");
    let cache = DayCache::default();
    // No time at all: each call still counts one ended day, then says it is still counting.
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(patient_days(&diary, &cache, true, 4, std::time::Duration::ZERO).await);
    }
    let counting: Vec<String> = answers
        .iter()
        .filter_map(|a| match a {
            Err(SourceError::Counting { detail, .. }) => Some(detail.clone()),
            Err(e) => panic!("{e}"),
            Ok(_) => None,
        })
        .collect();
    assert_eq!(
        counting,
        [
            "patient days: 2 of 4 days counted, the rest over the next refreshes",
            "patient days: 3 of 4 days counted, the rest over the next refreshes"
        ]
    );
    let days = answers.pop().unwrap().unwrap();
    let users: Vec<Vec<i64>> = days.days.iter().map(|d| d.patients.iter().map(|p| p.user_id).collect()).collect();
    assert_eq!(users, [vec![3], vec![2], vec![1], vec![]], "oldest first, each day once");
}
