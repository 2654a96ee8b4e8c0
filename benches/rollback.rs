//! Issue 33's figures: the rollback's archive of split values, the whole-table archive (the
//! restore's), and the roll-forward, at 1 M and 10 M rows (`BENCH_ROWS`), each against a plain
//! `COPY` of the same rows measured in the same run (diary → the dashboard's process → an
//! unindexed table of the state database). Printed as times and ratios, not asserted: these
//! machines are shared and noisy. The roll-forward runs on a copy of the seeded database
//! (`CREATE DATABASE … TEMPLATE`) whose split values were emptied, as after a downgrade and the
//! upgrade that adds the columns back. The rehearsal (issue 33, item 5) runs whole through the
//! dashboard's service on a pg_dump of the seeded database at the split revision: restored into a
//! scratch database, archived, downgraded and upgraded by the demo's real Alembic, re-applied and
//! compared; each part's time is printed, the whole against the plain COPY of every row.

#[path = "common/seeded.rs"]
mod seeded;

use std::time::Instant;

use futures::TryStreamExt;
use rollout_dashboard::server::rollback::archive::{self, reapply, whole};
use seeded::{admin_url, db_url, ensure_db, seeded};
use sqlx::postgres::{PgPoolCopyExt, PgPoolOptions};
use sqlx::{Connection, PgPool};

const SPLIT: &str = "(insulin_short IS NOT NULL OR insulin_long IS NOT NULL)";

/// A plain COPY of `select` from the diary into a fresh unindexed table `create`d in `state`;
/// seconds and rows.
async fn plain_copy(diary: &PgPool, state: &PgPool, select: &str, create: &str) -> (f64, u64) {
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS bench_plain_copy; {create}")).execute(state).await.unwrap();
    let t = Instant::now();
    let out_sql = format!("COPY ({select}) TO STDOUT");
    let mut out = diary.copy_out_raw(&out_sql).await.unwrap();
    let mut into = state.copy_in_raw("COPY bench_plain_copy FROM STDIN").await.unwrap();
    while let Some(chunk) = out.try_next().await.unwrap() {
        into.send(chunk).await.unwrap();
    }
    let rows = into.finish().await.unwrap();
    (t.elapsed().as_secs_f64(), rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Line {
    what: &'static str,
    rows: u64,
    secs: f64,
    plain: f64,
}

async fn bench_size(admin: &PgPool, state: &PgPool, rows: i64) -> Vec<Line> {
    let diary = seeded(admin, rows).await;
    let runs = if rows > 2_000_000 { 1 } else { 3 };
    let split_select =
        format!("SELECT id, user_id, created_at, dose, insulin_short, insulin_long FROM history_records WHERE {SPLIT}");
    let split_table =
        "CREATE TABLE bench_plain_copy (id bigint, user_id bigint, created_at timestamptz, dose numeric, \
                       insulin_short numeric, insulin_long numeric)";
    let all_table = "CREATE TABLE bench_plain_copy (id bigint, user_id bigint, created_at timestamptz, dose numeric, \
                     note text, insulin_short numeric, insulin_long numeric)";
    let (mut plain_split, mut archive_s, mut plain_all, mut whole_s) = (vec![], vec![], vec![], vec![]);
    let (mut split_rows, mut all_rows) = (0, 0);
    let run_id = 900_000_000 + rows;
    for _ in 0..runs {
        let (s, n) = plain_copy(&diary, state, &split_select, split_table).await;
        plain_split.push(s);
        split_rows = n;
        let t = Instant::now();
        let tally = archive::take(&diary, state, run_id, "history_records").await.unwrap();
        archive_s.push(t.elapsed().as_secs_f64());
        assert_eq!(tally.rows as u64, split_rows, "the archive holds what the plain COPY copied");
        let (s, n) = plain_copy(&diary, state, "SELECT * FROM history_records", all_table).await;
        plain_all.push(s);
        all_rows = n;
        let t = Instant::now();
        let w = whole::take(&diary, state, run_id, "history_records").await.unwrap();
        whole_s.push(t.elapsed().as_secs_f64());
        assert_eq!(w.rows as u64, all_rows);
    }
    let mut lines = vec![
        Line {
            what: "archive split values (take + verify)",
            rows: split_rows,
            secs: median(archive_s),
            plain: median(plain_split.clone()),
        },
        Line {
            what: "archive whole table (restore chosen)",
            rows: all_rows,
            secs: median(whole_s),
            plain: median(plain_all),
        },
    ];
    for l in &lines {
        println!(
            "  {rows} rows: {} {:.2} s, plain COPY {:.2} s, ratio {:.2}",
            l.what,
            l.secs,
            l.plain,
            l.secs / l.plain
        );
    }
    // A template database must have no other session.
    diary.close().await;
    lines.push(bench_reapply(admin, state, rows, run_id, split_rows, median(plain_split)).await);
    sqlx::query("DELETE FROM rollback_archive_whole WHERE run_id = $1").bind(run_id).execute(state).await.unwrap();
    let plain = lines[1].plain;
    lines.push(bench_rehearsal(admin, rows, all_rows, plain).await);
    lines
}

/// A whole rehearsal on a pg_dump of the seeded database marked at the split revision, through
/// the dashboard's service (a state of its own; no live diary: nothing counts it meanwhile).
async fn bench_rehearsal(admin: &PgPool, rows: i64, all_rows: u64, plain_all: f64) -> Line {
    use rollout_dashboard::api::rehearsal::{RehearsalState, StartRehearsal};
    use rollout_dashboard::server::rollback::{rehearsal, Service};
    let src = format!("rollout_bench_rehearsal_src_{rows}");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {src} WITH (FORCE)")).execute(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {src} TEMPLATE rollout_bench_{rows}")).execute(admin).await.unwrap();
    let db = ensure_db(admin, &src).await;
    sqlx::raw_sql(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('b7e9d1c0f2a3')",
    )
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = std::process::Command::new("pg_dump")
        .args(["-Fc", "-Z1", "-f"])
        .arg(dir.path().join("nightly.dump"))
        .arg(db_url(&src))
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    println!(
        "  {rows} rows: the backup (pg_dump -Fc) took {:.1} s (not part of the rehearsal)",
        t.elapsed().as_secs_f64()
    );
    sqlx::query(&format!("DROP DATABASE IF EXISTS {src} WITH (FORCE)")).execute(admin).await.unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let alembic = repo.join("demo/.venv/bin/alembic").display().to_string();
    let settings = dir.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "[rollback]\nworking_dir = \"{demo}\"\n\
             downgrade = {{ kind = \"command\", argv = [\"{alembic}\", \"-c\", \"services/api/alembic/alembic.ini\", \"downgrade\", \"{{previous_revision}}\"] }}\n\
             [rollback.rehearsal]\nbackup_dir = \"{backups}\"\n\
             upgrade_argv = [\"{alembic}\", \"-c\", \"services/api/alembic/alembic.ini\", \"upgrade\", \"{{split_revision}}\"]\n",
            demo = repo.join("demo").display(),
            backups = dir.path().display(),
        ),
    )
    .unwrap();
    let state_name = format!("rollout_bench_rehearsal_state_{rows}");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {state_name} WITH (FORCE)")).execute(admin).await.unwrap();
    ensure_db(admin, &state_name).await.close().await;
    let vars = [
        ("STATE_DATABASE_URL", db_url(&state_name)),
        ("REHEARSAL_DATABASE_URL", admin_url()),
        ("ROLLOUT_CONFIG", settings.display().to_string()),
    ];
    let config = rollout_dashboard::server::config::Config::from_vars(|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let options = leptos::config::LeptosOptions::builder().output_name("rollout-dashboard").build();
    let app = rollout_dashboard::server::state::AppState::connect(config, options).await.unwrap();
    let caller = rollout_dashboard::server::caller::Caller::system("bench", "bench");
    let svc = Service::new(&app);
    // What the journal would have observed of a live diary (this bench has none).
    sqlx::query(
        "INSERT INTO deploy_journal (revision, previous_revision, source, actor, note)
         VALUES ('b7e9d1c0f2a3', 'a1f3c2d4e5b6', 'operator', 'bench', 'the split revision')",
    )
    .execute(&app.state_db)
    .await
    .unwrap();
    let started = svc.rehearse(&caller, StartRehearsal { fill_dose: true }).await.unwrap();
    let done = loop {
        let r = rehearsal::store::get(&app.state_db, started.id).await.unwrap().unwrap();
        if r.state != RehearsalState::Running {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(done.state, RehearsalState::Passed, "{:?}", done.failure);
    for p in &done.parts {
        println!("  {rows} rows: rehearsal part {:<9} {:>8.2} s", p.name, p.seconds);
    }
    app.state_db.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {state_name} WITH (FORCE)")).execute(admin).await.unwrap();
    Line {
        what: "rehearsal (restore .. compare, with fill)",
        rows: all_rows,
        secs: done.seconds.unwrap_or_default(),
        plain: plain_all,
    }
}

/// The roll-forward on a copy of the seeded database whose split values were emptied.
async fn bench_reapply(admin: &PgPool, state: &PgPool, rows: i64, run_id: i64, split_rows: u64, plain: f64) -> Line {
    let name = format!("rollout_bench_reapply_{rows}");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE rollout_bench_{rows}")).execute(admin).await.unwrap();
    let copy = ensure_db(admin, &name).await;
    // After the downgrade (the archive's values; here the values as seeded) and the upgrade that
    // adds the columns back empty; doubled rows kept their dose.
    sqlx::query(&format!("UPDATE history_records SET insulin_short = NULL, insulin_long = NULL WHERE {SPLIT}"))
        .execute(&copy)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE history_records").execute(&copy).await.unwrap();
    let mut writer = sqlx::PgConnection::connect(&db_url(&name)).await.unwrap();
    let dry = reapply::reapply(&mut writer, state, run_id, "history_records", false, None).await.unwrap();
    let t = Instant::now();
    let done =
        reapply::reapply(&mut writer, state, run_id, "history_records", false, Some(dry.restorable)).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(done.restorable, dry.restorable);
    println!(
        "  {rows} rows: roll-forward restored {} of {split_rows} archived rows (skipped doubled {})",
        done.restorable,
        done.of(reapply::Verdict::SkippedDoubled)
    );
    drop(writer);
    copy.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await.unwrap();
    Line { what: "roll forward (re-apply + verify)", rows: split_rows, secs, plain }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let admin = PgPoolOptions::new().max_connections(2).connect(&admin_url()).await.unwrap();
    let state = ensure_db(&admin, "rollout_bench_state").await;
    sqlx::migrate!("./migrations").run(&state).await.unwrap();
    let sizes: Vec<i64> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("== rollback archive and roll-forward against a plain COPY of the same rows (same run; p50 of 3 runs at 1 M, 1 run above)");
    let mut all = Vec::new();
    for rows in sizes {
        for line in bench_size(&admin, &state, rows).await {
            all.push((rows, line));
        }
    }
    println!(
        "  {:>10}  {:<40} {:>10} {:>9} {:>9} {:>7} {:>10}",
        "table", "operation", "rows", "time s", "COPY s", "ratio", "rows/s"
    );
    for (table, l) in &all {
        println!(
            "  {:>10}  {:<40} {:>10} {:>9.2} {:>9.2} {:>7.2} {:>10.0}",
            table,
            l.what,
            l.rows,
            l.secs,
            l.plain,
            l.secs / l.plain,
            l.rows as f64 / l.secs
        );
    }
}
