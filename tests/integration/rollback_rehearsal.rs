//! The rollback's rehearsal (issue 33, item 5) against the real thing: the demo's Alembic project,
//! a pg_dump backup of the split revision restored by pg_restore into a scratch database, the
//! archive in the state database, the real downgrade and upgrade. The live diary is armed with a
//! row trigger and an event trigger that raise on any write or DDL: the rehearsal must pass
//! without setting one off, and leave the live diary's tally and revision as they were.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::openmetrics::synthetic;
use rollout_dashboard::server::rollback::archive::diary_tally;
use sqlx::PgPool;

use crate::support::control::{call, proxied_state, proxy_auth, As, ControlWorld};
use crate::support::rollback::{alembic, pg_dump, record_previous, BASE_REV, SPLIT_REV};
use crate::support::{repo, url_of, PrometheusHarness, SimulatorHarness};

/// The same server's `postgres` database: where the scratch databases are created from.
fn admin_url(pool: &PgPool) -> String {
    let url = url_of(pool);
    format!("{}/postgres", &url[..url.rfind('/').unwrap()])
}

/// A row of every category and fill rule at the split revision, besides 40 legacy rows.
const SPLIT_ROWS: &str = "INSERT INTO history_records (user_id, dose, insulin_short, insulin_long) VALUES
    (101, NULL, 4, NULL), (102, NULL, 5, NULL), (103, NULL, 6.5, NULL), (104, NULL, 0, NULL), (105, NULL, 12.0, NULL),
    (106, NULL, NULL, 20), (107, NULL, NULL, 22.5),
    (108, NULL, 4, 12), (109, NULL, 6, 6), (110, 3, 4, 12),
    (111, 8, 8, 8),
    (112, 7, NULL, NULL), (113, NULL, NULL, NULL)";

async fn rehearse_and_settle(w: &ControlWorld, fill: bool) -> serde_json::Value {
    let body = serde_json::json!({ "fill_dose": fill }).to_string();
    let (status, started) = call(w, As::Operator, "POST", "/api/v1/rollback/rehearsals", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["state"], "running", "{started}");
    let id = started["id"].as_i64().unwrap();
    for _ in 0..1200 {
        let (_, all) = call(w, As::Viewer, "GET", "/api/v1/rollback/rehearsals", None).await;
        if all["latest"]["id"] == id && all["latest"]["state"] != "running" {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rehearsal {id} did not end in 120 s");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rehearsal_rolls_a_copy_back_and_forward_losing_nothing_and_never_touches_the_live_diary(pool: PgPool) {
    let url = url_of(&pool);
    alembic(&url, &["upgrade", BASE_REV]);
    sqlx::query("INSERT INTO history_records (user_id, dose) SELECT g, 4 FROM generate_series(1, 40) g")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let legacy_dump = dir.path().join("legacy.dump");
    pg_dump(&url, &legacy_dump);
    alembic(&url, &["upgrade", SPLIT_REV]);
    sqlx::query(SPLIT_ROWS).execute(&pool).await.unwrap();
    pg_dump(&url, &backups.join("diary-nightly.dump"));

    let alembic_bin = repo().join("demo/.venv/bin/alembic").display().to_string();
    let settings = format!(
        "environment = \"staging-eu\"\nrefresh_interval_secs = 1\n[autopilot.require_rehearsal]\nabove_percentage = 25\nmax_age_hours = 24\n\
         {auth}[rollback]\nworking_dir = \"{demo}\"\n\
         downgrade = {{ kind = \"command\", argv = [\"{alembic_bin}\", \"-c\", \"services/api/alembic/alembic.ini\", \"downgrade\", \"{{previous_revision}}\"] }}\n\
         [rollback.rehearsal]\nbackup_dir = \"{backups}\"\ntimeout_secs = 120\n\
         upgrade_argv = [\"{alembic_bin}\", \"-c\", \"services/api/alembic/alembic.ini\", \"upgrade\", \"{{split_revision}}\"]\n",
        auth = proxy_auth(&["analytics"]),
        demo = repo().join("demo").display(),
        backups = backups.display(),
    );
    let prom = PrometheusHarness::start(&synthetic(1.9, 0.07, 7200, 3600, 15));
    let sim = SimulatorHarness::start("25", 3, None).await;
    let admin = admin_url(&pool);
    let state = proxied_state(&pool, &prom, &sim, &settings, &[("REHEARSAL_DATABASE_URL", &admin)]).await;
    let w =
        ControlWorld { app: rollout_dashboard::site::app(state.clone()), state, sim, pool: pool.clone(), _prom: prom };

    let (_, none) = call(&w, As::Viewer, "GET", "/api/v1/rollback/rehearsals", None).await;
    assert_eq!(none["summary"], "never rehearsed", "{none}");
    assert!(none["unavailable"].is_null(), "{none}");
    assert!(none["required_by_autopilot"].as_str().unwrap().contains("above 25 %"), "{none}");
    // Without the deploy journal's previous revision there is no downgrade target.
    let failed = rehearse_and_settle(&w, false).await;
    assert_eq!(failed["latest"]["state"], "failed", "{failed}");
    assert!(failed["latest"]["failure"].as_str().unwrap().contains("the deploy journal does not know"), "{failed}");
    record_previous(&w, BASE_REV).await;

    // Arm the live diary: any row written or any DDL there raises.
    let before = diary_tally(&pool, "history_records").await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION live_guard() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'the live diary was written to'; END $$;
         CREATE TRIGGER live_rows BEFORE INSERT OR UPDATE OR DELETE ON history_records
           FOR EACH ROW EXECUTE FUNCTION live_guard();
         CREATE TRIGGER live_truncate BEFORE TRUNCATE ON history_records
           FOR EACH STATEMENT EXECUTE FUNCTION live_guard();
         CREATE FUNCTION live_ddl_guard() RETURNS event_trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'DDL on the live diary: %', tg_tag; END $$;
         CREATE EVENT TRIGGER live_ddl ON ddl_command_start EXECUTE FUNCTION live_ddl_guard();",
    )
    .execute(&pool)
    .await
    .unwrap();
    // The guards are armed: a write and a DDL statement on the live diary fail.
    let write = sqlx::query("UPDATE history_records SET dose = dose WHERE id = 1").execute(&pool).await;
    assert!(write.unwrap_err().to_string().contains("the live diary was written to"));
    let ddl = sqlx::query("ALTER TABLE history_records DROP COLUMN insulin_long").execute(&pool).await;
    assert!(ddl.unwrap_err().to_string().contains("DDL on the live diary"));

    // A viewer may look, not rehearse.
    let (status, _) =
        call(&w, As::Viewer, "POST", "/api/v1/rollback/rehearsals", Some(r#"{"fill_dose": false}"#.into())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let all = rehearse_and_settle(&w, true).await;
    let r = &all["latest"];
    assert_eq!(r["state"], "passed", "{all:#}");
    let parts: Vec<&str> = r["parts"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(parts, ["restore", "read", "archive", "fill", "downgrade", "verify", "upgrade", "reapply", "compare"]);
    assert!(r["parts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["passed"] == true && p["seconds"].as_f64().unwrap() >= 0.0));
    let fill = &r["parts"][3]["detail"];
    assert!(fill.as_str().unwrap().starts_with("filled 6 row(s)"), "{fill}");
    // Every record back by its category; the doubled one as a legacy row with its dose.
    let cat = |c: &str| r["categories"].as_array().unwrap().iter().find(|x| x["category"] == c).cloned().unwrap();
    for (c, rows) in [("short_only", 5), ("long_only", 2), ("both", 3), ("legacy_only", 41), ("empty", 1)] {
        let x = cat(c);
        assert_eq!((x["rows"].as_i64(), x["identical"].as_i64()), (Some(rows), Some(rows)), "{c}: {x}");
        assert_eq!(x["checksum_before"], x["checksum_after"], "{c}");
        assert_eq!((x["changed"].as_i64(), x["gone"].as_i64()), (Some(0), Some(0)), "{c}");
    }
    let doubled = cat("doubled");
    assert_eq!((doubled["rows"].as_i64(), doubled["kept_legacy"].as_i64()), (Some(1), Some(1)), "{doubled}");
    assert_eq!(cat("short_only")["guide_plan_loses"], 5);
    assert_eq!(cat("legacy_only")["guide_plan_loses"], 0);
    let summary = all["summary"].as_str().unwrap();
    assert!(summary.starts_with("rehearsed less than a minute ago on the backup of "), "{summary}");
    assert!(summary.ends_with(" s, passed"), "{summary}");
    assert_eq!(all["last_passed"]["id"], r["id"]);

    // The live diary: not a row, not a column changed; its scratch copy and archive are gone.
    assert_eq!(diary_tally(&pool, "history_records").await.unwrap(), before);
    let rev: String = sqlx::query_scalar("SELECT version_num FROM alembic_version").fetch_one(&pool).await.unwrap();
    assert_eq!(rev, SPLIT_REV);
    let id = r["id"].as_i64().unwrap();
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'rollout_rehearsal_%_' || $1")
            .bind(id.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0, "the scratch database is dropped");
    let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM rollback_archive_rows WHERE run_id = $1")
        .bind(-id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(archived, 0, "the rehearsal's archive is forgotten");
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT outcome, outcome_detail FROM audit_log WHERE action = 'rollback.rehearse' AND target = $1 ORDER BY id",
    )
    .bind(format!("rollback rehearsal #{id}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit[0].1.starts_with(&format!("started rehearsal #{id} on the backup diary-nightly.dump")), "{audit:?}");
    assert!(audit[1].0 == "done" && audit[1].1.contains("passed in"), "{audit:?}");

    // A backup from before the split rehearses nothing of it: refused, and the last pass stays.
    std::fs::copy(&legacy_dump, backups.join("diary-older-schema.dump")).unwrap();
    let all = rehearse_and_settle(&w, false).await;
    assert_eq!(all["latest"]["state"], "failed", "{all:#}");
    assert!(all["latest"]["failure"].as_str().unwrap().contains("predates the split revision"), "{all:#}");
    assert_eq!(all["last_passed"]["id"], id);
    assert!(all["summary"].as_str().unwrap().contains("; the last that passed ended"), "{all}");
    assert_eq!(diary_tally(&pool, "history_records").await.unwrap(), before);
    sqlx::raw_sql("DROP EVENT TRIGGER live_ddl").execute(&pool).await.unwrap();
}
