//! Who is asking (sign-in, cookies, cross-origin, proxy headers), who may call what (the access table walked), and the audit journal.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::support::control::{audit_rows, call, control_world, flag_value, proxy_auth, As, PROXY_SECRET_VAR, SECRET};
use crate::support::web::{post_form, users_file, ORIGIN};
use crate::support::{dashboard_state_vars, dashboard_state_with};

// ---------------------------------------------------------------- who is asking

async fn me(app: &axum::Router, cookie: Option<&str>, headers: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get("/api/v1/me");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[sqlx::test(migrations = false)]
async fn local_sign_in_sets_a_strict_cookie_and_sign_out_ends_it(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("[auth]\nmode = \"local\"\nusers_file = \"{}\"\n", users_file(dir.path()).display());
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    assert_eq!(me(&app, None, &[]).await.0, StatusCode::UNAUTHORIZED);

    let resp =
        post_form(&app, "/auth/login", "username=ana&password=operator-pw&next=%2F%3Frange%3D7d", ORIGIN, None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/?range=7d");
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let (status, who) = me(&app, Some(&cookie), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((who["user"].as_str(), who["role"].as_str()), (Some("ana"), Some("operator")));
    // Only a hash of the token is stored.
    let stored: String = sqlx::query_scalar("SELECT token_sha256 FROM sessions").fetch_one(&pool).await.unwrap();
    assert!(!cookie.contains(&stored));

    let resp = post_form(&app, "/auth/logout", "", ORIGIN, Some(&cookie)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(me(&app, Some(&cookie), &[]).await.0, StatusCode::UNAUTHORIZED);

    // An open redirect through `next` is not possible.
    let resp =
        post_form(&app, "/auth/login", "username=bo&password=viewer-pw&next=%2F%2Fevil.example", ORIGIN, None).await;
    assert_eq!(resp.headers()["location"], "/");
}

/// A sign-in from `peer` (a socket's address), through whatever `X-Forwarded-For` says.
async fn login_from(
    app: &axum::Router,
    body: &str,
    peer: &str,
    forwarded_for: Option<&str>,
) -> axum::response::Response {
    let mut req = Request::post("/auth/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", ORIGIN);
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    app.clone().oneshot(req).await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn wrong_passwords_are_refused_and_then_slowed_per_name_and_address(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "[auth]\nusers_file = \"{}\"\nlogin_attempts = 3\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        users_file(dir.path()).display()
    );
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    // Unknown users are refused exactly like wrong passwords.
    for body in ["username=ana&password=guess", "username=nobody&password=x", "username=ana&password=guess2"] {
        let resp = post_form(&app, "/auth/login", body, ORIGIN, None).await;
        assert_eq!(resp.headers()["location"], "/login?error=wrong", "{body}");
        assert!(resp.headers().get("set-cookie").is_none());
    }
    // Through the ingress (a trusted proxy), a guesser at 203.0.113.7 fails three times for ana:
    // even the right password from there then waits, and the answer says how long.
    let guesser = |body: &'static str| login_from(&app, body, "10.0.0.5", Some("203.0.113.7"));
    for _ in 0..3 {
        assert_eq!(guesser("username=ana&password=guess").await.headers()["location"], "/login?error=wrong");
    }
    let resp = guesser("username=ana&password=operator-pw").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("set-cookie").is_none());
    assert_eq!(resp.headers()["retry-after"], "1");
    // Ana herself, at another address behind the same ingress, is not locked out by the guesser,
    // and neither is another name from the guesser's address.
    let resp = login_from(&app, "username=ana&password=operator-pw", "10.0.0.5", Some("203.0.113.8")).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers().get("set-cookie").is_some());
    assert_eq!(guesser("username=bo&password=viewer-pw").await.headers()["location"], "/");
    // A client that writes X-Forwarded-For itself, not through a trusted proxy, is its own address:
    // it cannot pose as ana's address to spend her turns, nor escape its own.
    for _ in 0..3 {
        let resp = login_from(&app, "username=ana&password=guess", "198.51.100.1", Some("203.0.113.8")).await;
        assert_eq!(resp.headers()["location"], "/login?error=wrong");
    }
    let resp = login_from(&app, "username=ana&password=operator-pw", "198.51.100.1", Some("203.0.113.9")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login_from(&app, "username=ana&password=operator-pw", "10.0.0.5", Some("203.0.113.8")).await.status(),
        StatusCode::SEE_OTHER
    );
    // A delay, not a lock-out: once the wait has passed, the right password signs in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(guesser("username=ana&password=operator-pw").await.status(), StatusCode::SEE_OTHER);
}

#[sqlx::test(migrations = false)]
async fn a_client_over_its_reads_is_answered_429_and_nothing_else_is_held(pool: PgPool) {
    let settings = "client_reads_per_s = 1\nclient_read_burst = 5\n[auth]\ntrusted_proxies = [\"10.0.0.0/8\"]\n";
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(settings)).await);
    let get = |path: &'static str, peer: &'static str, forwarded_for: Option<&'static str>| {
        let mut req = Request::get(path);
        if let Some(f) = forwarded_for {
            req = req.header("x-forwarded-for", f);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(format!("{peer}:40000").parse::<std::net::SocketAddr>().unwrap()));
        app.clone().oneshot(req)
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get("/api/v1/audit", "203.0.113.7", None).await.unwrap().status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 5, "the burst: {statuses:?}");
    let over = get("/api/v1/audit", "203.0.113.7", None).await.unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(over.into_body(), 1 << 16).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "too_many_requests");
    // Another client is not held, nor are the probes of the one over its reads.
    assert_eq!(get("/api/v1/audit", "203.0.113.8", None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz", "203.0.113.7", None).await.unwrap().status(), StatusCode::OK);
    // Behind the trusted ingress, each client is its own: the ingress is not one client.
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..5 {
            assert_eq!(get("/api/v1/audit", "10.0.0.5", Some(client)).await.unwrap().status(), StatusCode::OK);
        }
    }
    assert_eq!(
        get("/api/v1/audit", "10.0.0.5", Some("198.51.100.1")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A change is never limited: the client over its reads still reaches the kill switch's door
    // (no identity here: 401, not 429).
    let mut kill = Request::post("/api/v1/rollout/kill").header("origin", ORIGIN).body(Body::empty()).unwrap();
    kill.extensions_mut()
        .insert(axum::extract::ConnectInfo("203.0.113.7:40000".parse::<std::net::SocketAddr>().unwrap()));
    assert_eq!(app.clone().oneshot(kill).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = false)]
async fn the_users_file_is_read_again_so_a_removed_user_is_signed_out(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = users_file(dir.path());
    let settings = format!("[auth]\nusers_file = \"{}\"\n", path.display());
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    let resp = post_form(&app, "/auth/login", "username=bo&password=viewer-pw", ORIGIN, None).await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_eq!(me(&app, Some(&cookie), &[]).await.0, StatusCode::OK);
    // bo leaves the team: the file is rewritten without him.
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.split("[[users]]").filter(|u| !u.contains("name = \"bo\"")).collect();
    assert!(kept.len() < text.split("[[users]]").count(), "the fixture names bo");
    std::fs::write(&path, kept.join("[[users]]")).unwrap();
    // Within the recheck interval (30 s; the test waits for it), his session stops counting.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        if me(&app, Some(&cookie), &[]).await.0 == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bo's session still counts 40 s after he was removed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn state_changing_requests_from_another_origin_are_refused(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("[auth]\nusers_file = \"{}\"\n", users_file(dir.path()).display());
    let app = rollout_dashboard::site::app(dashboard_state_with(&pool, None, None, None, Some(&settings)).await);
    for origin in ["http://evil.example", "http://127.0.0.1:3001", "null"] {
        let resp = post_form(&app, "/auth/login", "username=ana&password=operator-pw", origin, None).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(resp.headers().get("set-cookie").is_none());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "forbidden");
    }
    let no_origin = app.clone().oneshot(Request::post("/auth/logout").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
}

#[sqlx::test(migrations = false)]
async fn proxy_headers_count_only_with_the_shared_secret(pool: PgPool) {
    let settings = proxy_auth(&["analytics", "bi"]);
    let state =
        dashboard_state_vars(&pool, None, None, None, Some(&settings), &[(PROXY_SECRET_VAR, "s3cret-proxy")]).await;
    let app = rollout_dashboard::site::app(state);
    let oncall =
        [("x-forwarded-user", "ana"), ("x-forwarded-groups", "staff, oncall"), ("x-proxy-secret", "s3cret-proxy")];
    let (status, who) = me(&app, None, &oncall).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (who["user"].as_str(), who["role"].as_str(), who["via"].as_str()),
        (Some("ana"), Some("operator"), Some("proxy"))
    );
    let bi =
        [("x-forwarded-email", "bo@example.org"), ("x-forwarded-groups", "bi"), ("x-proxy-secret", "s3cret-proxy")];
    assert_eq!(me(&app, None, &bi).await.1["role"], "viewer");
    // Forged headers without the secret, or with a wrong one, or outside every group: no identity.
    let forged = [("x-forwarded-user", "mallory"), ("x-forwarded-groups", "oncall")];
    assert_eq!(me(&app, None, &forged).await.0, StatusCode::UNAUTHORIZED);
    let wrong = [("x-forwarded-user", "mallory"), ("x-forwarded-groups", "oncall"), ("x-proxy-secret", "guess")];
    assert_eq!(me(&app, None, &wrong).await.0, StatusCode::UNAUTHORIZED);
    let outsider = [("x-forwarded-user", "eve"), ("x-forwarded-groups", "sales"), ("x-proxy-secret", "s3cret-proxy")];
    assert_eq!(me(&app, None, &outsider).await.0, StatusCode::UNAUTHORIZED);
    // An identity header twice (a client's own line the proxy passed on): no identity.
    let twice = [
        ("x-forwarded-user", "ana"),
        ("x-forwarded-user", "mallory"),
        ("x-forwarded-groups", "oncall"),
        ("x-proxy-secret", "s3cret-proxy"),
    ];
    assert_eq!(me(&app, None, &twice).await.0, StatusCode::UNAUTHORIZED);
    // Over a socket, the secret is not enough: the request must come from a trusted proxy too.
    let from = |peer: &str| {
        let mut req = Request::get("/api/v1/me");
        for (k, v) in oncall {
            req = req.header(k, v);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(format!("{peer}:40000").parse::<std::net::SocketAddr>().unwrap()));
        app.clone().oneshot(req)
    };
    assert_eq!(from("127.0.0.1").await.unwrap().status(), StatusCode::OK, "the trusted proxy, with the secret");
    assert_eq!(from("203.0.113.9").await.unwrap().status(), StatusCode::UNAUTHORIZED, "the secret from elsewhere");
}

// ---------------------------------------------------------------- who may call what: the whole table

#[sqlx::test(migrations = false)]
async fn every_route_and_server_function_answers_each_role_as_the_access_table_says(pool: PgPool) {
    use rollout_dashboard::server::access::{Access, ROUTES, SERVER_FNS};
    let w = control_world(pool, "5").await;
    // Every server function the pages can call is in the table, and nothing else.
    let mut registered: Vec<String> =
        leptos::server_fn::axum::server_fn_paths().map(|(p, _)| p.trim_start_matches("/api/").to_string()).collect();
    registered.sort();
    let mut listed: Vec<String> = SERVER_FNS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(registered, listed);

    let fn_request = |name: &str| -> (&'static str, String, Option<String>, &'static str) {
        match name {
            "overview" => ("GET", "/api/overview?range=24h&window=24h".into(), None, ""),
            "rollback" => ("GET", "/api/rollback?restore_data=false".into(), None, ""),
            "reports" => ("GET", "/api/reports?range=7d".into(), None, ""),
            "me" | "audit" | "rollout" | "rollback_progress" | "notifications" => {
                ("GET", format!("/api/{name}"), None, "")
            }
            "autopilot" => ("GET", "/api/autopilot".into(), None, "application/json"),
            other => panic!("no request written for server function {other}"),
        }
    };
    let mut cases: Vec<(String, String, Option<String>, &str, Access)> = ROUTES
        .iter()
        .map(|(m, _, p, a)| {
            let body = (*m == "POST").then(|| {
                if p.starts_with("/auth/login") {
                    "username=x&password=y".into()
                } else {
                    "{}".into()
                }
            });
            let ct = if p.starts_with("/auth/") { "application/x-www-form-urlencoded" } else { "application/json" };
            (m.to_string(), p.to_string(), body, ct, *a)
        })
        .collect();
    for (name, access) in SERVER_FNS {
        let (m, p, body, ct) = fn_request(name);
        cases.push((m.into(), p, body, ct, *access));
    }
    let mut failures = Vec::new();
    for (method, path, body, ct, access) in &cases {
        for who in [As::Anonymous, As::Viewer, As::Operator] {
            let mut req = Request::builder()
                .method(method.as_str())
                .uri(path.as_str())
                .header("origin", ORIGIN)
                .header("content-type", *ct);
            if !matches!(who, As::Anonymous) {
                let (user, group) = if matches!(who, As::Viewer) { ("bo", "analytics") } else { ("ana", "oncall") };
                req = req
                    .header("x-forwarded-user", user)
                    .header("x-forwarded-groups", group)
                    .header("x-proxy-secret", SECRET);
            }
            let resp =
                w.app.clone().oneshot(req.body(Body::from(body.clone().unwrap_or_default())).unwrap()).await.unwrap();
            let status = resp.status();
            let text =
                String::from_utf8_lossy(&axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap()).to_string();
            let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            let ok = match (access, who) {
                // Signing in with a wrong password is 401 for everyone: the route itself is open.
                (Access::Anyone, _) if path.starts_with("/auth/login") => status != StatusCode::FORBIDDEN,
                (Access::Anyone, _) => !refused,
                (Access::SignedIn, As::Anonymous) => status == StatusCode::UNAUTHORIZED,
                (Access::SignedIn, _) => !refused,
                (Access::Operator, As::Anonymous) => status == StatusCode::UNAUTHORIZED,
                (Access::Operator, As::Viewer) => status == StatusCode::FORBIDDEN,
                (Access::Operator, _) => !refused,
                // No session opens the hook: only its bearer token does (none is sent here).
                (Access::Token, _) => refused,
            };
            // A 404 must be the service's own answer (no such run), never a route that is gone.
            let routed = status != StatusCode::NOT_FOUND || text.contains("not_found") || text.contains("there is no");
            if !ok || !routed {
                failures.push(format!("{method} {path} as {who:?}: {status} {}", &text[..text.len().min(160)]));
            }
        }
    }
    assert!(failures.is_empty(), "{} answers differ from the table:\n{}", failures.len(), failures.join("\n"));
    // Only the operator changed anything (the kill switch, which needs no more than the role).
    let done: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, action FROM audit_log WHERE outcome = 'done' ORDER BY id")
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert!(!done.is_empty() && done.iter().all(|(actor, _)| actor == "ana"), "{done:?}");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM rollback_runs").fetch_one(&w.pool).await.unwrap();
    assert_eq!(runs, 0, "no rollback started: the walk's start bodies fail their checks");
}

#[sqlx::test(migrations = false)]
async fn no_audit_entry_is_lost_when_the_state_database_refuses_or_the_dashboard_dies(pool: PgPool) {
    use rollout_dashboard::server::audit::NewEntry;
    use rollout_dashboard::server::audit_journal::{AuditJournal, Replayed};
    let w = control_world(pool.clone(), "25").await;
    let journal = w.state.journal.clone();
    let _ = std::fs::remove_file(journal.path());

    // The state database cannot take audit entries: the kill switch still works, and its entry
    // waits in the journal with the time it happened.
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_away").execute(&pool).await.unwrap();
    let (status, body) =
        call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some(r#"{"reason":"alarm"}"#.into())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(flag_value(&w), "0");
    let killed_at = chrono::Utc::now();
    sqlx::query("ALTER TABLE audit_log_away RENAME TO audit_log").execute(&pool).await.unwrap();
    assert!(audit_rows(&w).await.is_empty());
    assert!(!journal.is_empty());

    // A previous process journaled a change and died before recording it.
    let previous = AuditJournal::new(journal.path().to_path_buf());
    let died = NewEntry {
        actor: "ana".into(),
        role: "operator".into(),
        action: rollout_dashboard::api::audit::Action::FlagSet,
        target: "diabetes/feature-flags/insulin_dose_split".into(),
        value_before: None,
        value_after: None,
        reason: Some("step two".into()),
        outcome: rollout_dashboard::api::audit::Outcome::Done,
        outcome_detail: None,
        request_id: Some("req-died".into()),
        run_id: None,
        plan_id: None,
    };
    previous.intent(&died).unwrap();
    drop(previous);

    let r = journal.replay(&pool, Some("0".into())).await.unwrap();
    assert_eq!(r, Replayed { recorded: 2, interrupted: 1, already_there: 0 });
    type Row = (String, String, Option<String>, Option<String>, chrono::DateTime<chrono::Utc>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT action, outcome, value_after, outcome_detail, at FROM audit_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_deref()), ("flag.kill", "done", Some("0")));
    assert!(rows[0].4 <= killed_at, "the kill keeps the time it happened");
    assert_eq!((rows[1].0.as_str(), rows[1].1.as_str()), ("flag.set", "failed"));
    assert!(rows[1].3.as_deref().unwrap().starts_with("interrupted"), "{:?}", rows[1].3);
    assert!(rows[1].3.as_deref().unwrap().contains("read 0"));
    assert!(journal.is_empty(), "a fully recorded journal is emptied");

    // Replaying again, or a journal line replayed twice, records nothing twice.
    assert_eq!(journal.replay(&pool, None).await.unwrap(), Replayed::default());
    let again = AuditJournal::new(journal.path().to_path_buf());
    again.settle(&NewEntry { outcome_detail: Some("dup".into()), ..died }, false);
    assert_eq!(journal.replay(&pool, None).await.unwrap().already_there, 1);
    assert_eq!(audit_rows(&w).await.len(), 2);

    // A normal change leaves nothing in the journal.
    let (status, body) = call(&w, As::Operator, "POST", "/api/v1/rollout/kill", Some("{}".into())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(journal.is_empty());
    assert_eq!(audit_rows(&w).await.len(), 3);
}
