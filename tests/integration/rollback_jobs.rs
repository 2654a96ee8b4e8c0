//! The rollback as the shipped image runs it in a cluster (issue 31): the dashboard's image has
//! neither `alembic` nor `pg_restore`, so with `rollback.job` the downgrade and the restore run
//! as Kubernetes Jobs in the diary service's image, the backup's age comes from its CronJob, and
//! the optional Role `deploy/rollback-jobs/role.yaml` is what lets the dashboard start them. The
//! emulated node runs each Job's command for real (the demo's Alembic, `pg_restore`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use diary_writer::jobs::Runtime;
use diary_writer::rbac::Role;
use sqlx::PgPool;

use crate::support::control::{call, As};
use crate::support::repo;
use crate::support::rollback::{record_previous, rollback_world, rows, settle, start_body, step, BASE_REV, SPLIT_REV};

const IMAGE: &str = "registry.example/diary-api:1.42";

#[sqlx::test(migrations = false)]
async fn the_rollback_runs_its_commands_as_jobs_with_no_secret_in_them(pool: PgPool) {
    let url = crate::support::url_of(&pool);
    let job_toml = format!(
        "backup_cronjob = \"diary-backup\"\n\
         downgrade = {{ kind = \"command\", argv = [\"alembic\", \"-c\", \"services/api/alembic/alembic.ini\", \"downgrade\", \"{{previous_revision}}\"] }}\n\
         [rollback.job]\nimage = \"{IMAGE}\"\nenv_secret = \"diary-database\"\nbackup_claim = \"diary-backups\"\n\
         backup_mount = \"{mount}\"\n",
        // The world's backup is in a temporary directory; the emulated node sees the same files.
        mount = std::env::temp_dir().display()
    );
    let rw = rollback_world(pool, &job_toml).await;
    let w = &rw.w;
    let node = w.sim.cluster.node.clone();
    // The node has no image yet (as a cluster that cannot pull it); the Secret is there.
    let secrets = [("diary-database".to_string(), BTreeMap::from([("DATABASE_URL".to_string(), url.clone())]))];
    node.set_runtime(Runtime { secrets: secrets.clone().into(), ..Runtime::default() });
    record_previous(w, BASE_REV).await;
    let pre = |plan: &serde_json::Value, name: &str| {
        plan["preconditions"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone()
    };
    let plan_of = || call(w, As::Viewer, "POST", "/api/v1/rollback/plan", Some(r#"{"restore_data": true}"#.into()));

    // The base Role does not let the dashboard start Jobs: the plan says so before anything acts.
    node.set_cronjob("diary-backup", None);
    let (_, plan) = plan_of().await;
    assert_eq!(plan["ready"], false);
    let jobs = pre(&plan, "jobs_accepted");
    assert_eq!(jobs["passed"], false);
    let detail = jobs["detail"].as_str().unwrap();
    assert!(detail.contains("may not create jobs") && detail.contains("deploy/rollback-jobs/role.yaml"), "{jobs}");
    assert!(pre(&plan, "backup_fresh")["detail"].as_str().unwrap().contains("may not get cronjobs"), "{plan}");
    assert_eq!(pre(&plan, "programs_present")["passed"], true, "nothing runs in the dashboard's process");

    // With the optional Role: the Jobs are accepted; a backup CronJob that never succeeded is no backup.
    let base = Role::from_yaml(include_str!("../../deploy/role.yaml")).unwrap();
    let jobs_role = Role::from_yaml(include_str!("../../deploy/rollback-jobs/role.yaml")).unwrap();
    w.sim.cluster.set_role(Some(base.with_rules_of(&jobs_role)));
    let cache = std::time::Duration::from_millis(1100); // the plan's one-second cache
    tokio::time::sleep(cache).await;
    let (_, plan) = plan_of().await;
    assert_eq!(pre(&plan, "jobs_accepted")["passed"], true, "{plan}");
    assert!(pre(&plan, "backup_fresh")["detail"].as_str().unwrap().contains("never succeeded"), "{plan}");
    node.set_cronjob("diary-backup", Some(chrono::Utc::now() - chrono::Duration::hours(3)));
    tokio::time::sleep(cache).await;
    let (_, plan) = plan_of().await;
    assert_eq!(plan["ready"], true, "{plan:#}");
    assert!(pre(&plan, "backup_fresh")["detail"].as_str().unwrap().contains("3.0 h ago"), "{plan}");
    let text = plan["steps"].to_string();
    assert!(text.contains("as a Job in namespace diabetes (image registry.example/diary-api:1.42"), "{text}");
    assert!(text.contains("--dbname=$(DATABASE_URL)"), "the kubelet fills it from the Secret: {text}");
    assert!(!text.contains("postgres://"), "{text}");
    assert!(node.job_names().is_empty(), "the dry runs created no Job: {:?}", node.job_names());

    // The run: the downgrade's Job cannot start (no image), the run stops there.
    let loss = plan["data_loss_rows"].as_i64().unwrap();
    let (status, run) = call(w, As::Operator, "POST", "/api/v1/rollback", Some(start_body(loss, true))).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let id = run["id"].as_i64().unwrap();
    let run = settle(w, id).await;
    assert_eq!(run["state"], "stopped", "{run:#}");
    let downgrade = step(&run, "schema_downgrade");
    assert!(downgrade["error"].as_str().unwrap().contains("ErrImagePull"), "{downgrade:#}");

    // The node gets the image; retried, the second attempt's Job runs the real downgrade.
    let images = [(IMAGE.to_string(), repo().join("demo"))].into();
    node.set_runtime(Runtime { images, path: vec![repo().join("demo/.venv/bin")], secrets: secrets.into() });
    let (status, _) = call(w, As::Operator, "POST", &format!("/api/v1/rollback/{id}/retry"), None).await;
    assert_eq!(status, StatusCode::OK);
    let run = settle(w, id).await;
    assert_eq!(run["state"], "done", "{run:#}");
    let output = step(&run, "schema_downgrade")["output"].as_str().unwrap().to_string();
    assert!(output.contains(&format!("as Job diabetes/rollback-{id}-schema-downgrade-2")), "{output}");
    assert!(output.contains(&format!("Running downgrade {SPLIT_REV} -> {BASE_REV}")), "the Job's log: {output}");
    let restore = step(&run, "restore_data")["output"].as_str().unwrap().to_string();
    assert!(restore.contains(&format!("rollback-{id}-restore-data-1")), "{restore}");
    let mut names = node.job_names();
    names.sort();
    assert_eq!(
        names,
        [
            format!("rollback-{id}-restore-data-1"),
            format!("rollback-{id}-schema-downgrade-1"),
            format!("rollback-{id}-schema-downgrade-2")
        ]
    );
    // No Job carries the database URL: the kubelet expanded it from the Secret.
    for name in &names {
        let job = node.get(name).unwrap().to_string();
        assert!(!job.contains("postgres://") && !job.contains(&url), "{job}");
    }
    let rev: String =
        sqlx::query_scalar("SELECT version_num::text FROM alembic_version").fetch_one(&w.pool).await.unwrap();
    assert_eq!(rev, BASE_REV);
    let from_backup: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history_records WHERE id <= 40").fetch_one(&w.pool).await.unwrap();
    assert_eq!(from_backup, 40, "the restore's Job brought the backup back ({} rows now)", rows(&w.pool).await);
}
