//! What must hold before a rollback starts, checked against the world: no other active run,
//! the previous revision known, a fresh backup, the rows that will lose their split values
//! counted. The same survey gives the dry run its concrete values.

use std::time::Duration;

use crate::api::check::Check;
use crate::api::rollback::{Choices, RollbackPlan};

use super::super::error::{ApiError, SourceError};
use super::super::records::{DiaryRecords, SchemaState};
use super::super::state::AppState;
use super::steps::{self, Memory, PlanContext};
use super::{deploys, fill, store};

/// What the plan found out, kept for the start.
pub(super) struct Survey {
    pub plan: RollbackPlan,
    pub memory: Memory,
}

pub(super) async fn survey(s: &AppState, choices: Choices) -> Result<Survey, ApiError> {
    let restore_data = choices.restore_data;
    let db = &s.state_db;
    let mut pre = Vec::new();
    let active = store::active_run_id(db).await?;
    pre.push(match active {
        None => Check::pass("no_active_run", "no other rollback run is active"),
        Some(id) => Check::fail("no_active_run", format!("run #{id} is active; open it instead")),
    });
    // One read of the diary's schema serves the revision and the data-loss count.
    let diary = match s.diary.as_ref() {
        Ok(d) => d.schema().await.map(|sc| (d, sc)),
        Err(e) => Err(e.clone()),
    };
    let (from, target) = revisions(s, &diary, &mut pre).await?;
    pre.push(backup_check(s).await);
    pre.push(programs_present(s, restore_data));
    if s.settings.rollback.job.is_some() {
        pre.push(jobs_accepted(s, restore_data).await);
    }
    // A schema that cannot be read is a failed precondition, never "0 rows lost".
    let data_loss = match &diary {
        Ok((d, sc)) => rows_losing_split_values(d, sc).await,
        Err(e) => Err(e.to_string()),
    };
    pre.push(match &data_loss {
        Ok(n) => Check::pass(
            "data_loss_warning",
            format!(
                "{n} row(s) hold insulin_short or insulin_long; the downgrade drops those columns. Step 3 archives them in the state database and verifies the copy, and the downgrade is refused unless it verifies. Acknowledge by typing {n} (acknowledge_data_loss_rows)"
            ),
        ),
        Err(e) => Check::fail("data_loss_warning", format!("cannot count the rows the downgrade would drop: {e}")),
    });
    // How many rows each fill rule would touch (shown in the plan whether chosen or not).
    let fill_counts = match &diary {
        Ok((d, sc)) if sc.has_split_columns() => fill_counts(d).await.ok(),
        _ => None,
    };
    let writer_now = match s.writer_cluster.as_ref() {
        Ok(c) => c.deployment_replicas(&s.settings.writer.deployment).await.ok().map(|r| r.desired),
        Err(_) => None,
    };
    let flag_now = s.flags.read().await.ok().and_then(|r| r.raw);
    let baseline = match s.prometheus.as_ref() {
        Ok(p) => p.scalar(&s.settings.rollback.smoke_baseline_query).await.ok(),
        Err(_) => None,
    };
    let memory = Memory {
        from_revision: from.clone(),
        target_revision: target.clone().unwrap_or_default(),
        baseline_rate: baseline,
        data_loss_rows: *data_loss.as_ref().unwrap_or(&0),
        ..Memory::default()
    };
    let steps = steps::describe(&PlanContext {
        state: s,
        memory: &memory,
        writer_now,
        flag_now: flag_now.as_deref(),
        choices,
        fill_counts: fill_counts.as_deref(),
    });
    let ready = pre.iter().all(|p| p.passed);
    Ok(Survey {
        plan: RollbackPlan {
            environment: s.settings.environment.clone(),
            from_revision: from,
            target_revision: target,
            data_loss_rows: data_loss.ok(),
            preconditions: pre,
            steps,
            ready,
            active_run: active,
            require_approval: s.settings.rollback.require_approval,
        },
        memory,
    })
}

/// The revisions: current from the diary, previous from the deploy journal.
async fn revisions(
    s: &AppState,
    diary: &Result<(&DiaryRecords, SchemaState), SourceError>,
    pre: &mut Vec<Check>,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let current = diary.as_ref().map(|(_, sc)| sc.alembic_revision.clone());
    Ok(match current {
        Ok(Some(rev)) => {
            let prev = deploys::previous_of(&s.state_db, &rev).await?;
            pre.push(match &prev {
                Some(p) => {
                    Check::pass("previous_revision_known", format!("the deploy journal says {rev} came after {p}"))
                }
                None => Check::fail(
                    "previous_revision_known",
                    format!(
                        "the deploy journal does not know the revision before {rev}; enter it (POST /api/v1/deploys)"
                    ),
                ),
            });
            (Some(rev), prev)
        }
        Ok(None) => {
            pre.push(Check::fail("previous_revision_known", "the diary database has no Alembic revision"));
            (None, None)
        }
        Err(e) => {
            pre.push(Check::fail("previous_revision_known", format!("cannot read the current revision: {e}")));
            (None, None)
        }
    })
}

/// Rows whose insulin_short or insulin_long the downgrade drops.
async fn rows_losing_split_values(d: &DiaryRecords, sc: &SchemaState) -> Result<i64, String> {
    let mut conds = Vec::new();
    if sc.insulin_short {
        conds.push("insulin_short IS NOT NULL");
    }
    if sc.insulin_long {
        conds.push("insulin_long IS NOT NULL");
    }
    if conds.is_empty() {
        return Ok(0);
    }
    sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {} WHERE {}", d.table(), conds.join(" OR ")))
        .fetch_one(d.pool())
        .await
        .map_err(|e| e.to_string())
}

async fn fill_counts(d: &DiaryRecords) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(&fill::counts_sql(d.table())).fetch_one(d.pool()).await
}

async fn backup_check(s: &AppState) -> Check {
    let rb = &s.settings.rollback;
    if let Some(cronjob) = &rb.backup_cronjob {
        return backup_cronjob(s, cronjob).await;
    }
    if !rb.backup_status_argv.is_empty() {
        return backup_status_command(s).await;
    }
    let Some(file) = &rb.backup_file else {
        return Check::fail(
            "backup_fresh",
            "no backup is configured (rollback.backup_file or rollback.backup_status_argv)",
        );
    };
    match std::fs::metadata(file).and_then(|m| m.modified()) {
        Ok(t) => {
            let age = std::time::SystemTime::now().duration_since(t).unwrap_or_default();
            let hours = age.as_secs_f64() / 3600.0;
            if age <= Duration::from_secs(rb.backup_max_age_hours * 3600) {
                Check::pass(
                    "backup_fresh",
                    format!("{} is {hours:.1} h old (limit {} h)", file.display(), rb.backup_max_age_hours),
                )
            } else {
                Check::fail(
                    "backup_fresh",
                    format!("{} is {hours:.1} h old, older than {} h", file.display(), rb.backup_max_age_hours),
                )
            }
        }
        Err(e) => Check::fail("backup_fresh", format!("{}: {e}", file.display())),
    }
}

/// `backup_status_argv` exiting 0 means a fresh backup.
async fn backup_status_command(s: &AppState) -> Check {
    let rb = &s.settings.rollback;
    let argv = steps::substitute(&rb.backup_status_argv, s, &Memory::default());
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).kill_on_drop(true);
    if let Some(dir) = &rb.working_dir {
        cmd.current_dir(dir);
    }
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            Check::pass("backup_fresh", format!("`{}` reports a fresh backup", steps::shown(&argv, s)))
        }
        Ok(Ok(out)) => Check::fail(
            "backup_fresh",
            format!(
                "`{}` failed ({}): {}",
                steps::shown(&argv, s),
                out.status,
                steps::redact(String::from_utf8_lossy(&out.stderr).trim(), s)
            ),
        ),
        Ok(Err(e)) => Check::fail("backup_fresh", format!("cannot run {}: {e}", argv[0])),
        Err(_) => Check::fail("backup_fresh", "the backup status command did not finish within 30 s"),
    }
}

/// Every program the run will start (the downgrade's; the restore's when a restore is asked for;
/// the backup status command's) exists and may be run, found as the run will find it: relative
/// to `working_dir` when it names a path, on `PATH` otherwise. An image without them (no
/// `alembic`, no `pg_restore`) is refused here, before any step has stopped the writers.
fn programs_present(s: &AppState, restore_data: bool) -> Check {
    let rb = &s.settings.rollback;
    let super::super::config::DowngradeSettings::Command { argv } = &rb.downgrade;
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    // As Jobs, the downgrade and the restore run in their own image (`jobs_accepted`).
    if rb.job.is_none() {
        wanted.push(("the downgrade", argv.first().map(String::as_str).unwrap_or_default()));
    }
    if restore_data && rb.job.is_none() {
        wanted.push(("the restore", rb.restore_argv.first().map(String::as_str).unwrap_or_default()));
    }
    if let Some(p) = rb.backup_status_argv.first() {
        wanted.push(("the backup status", p));
    }
    if wanted.is_empty() {
        return Check::pass("programs_present", "no program runs here: the downgrade and the restore run as Jobs");
    }
    let mut found = Vec::new();
    for (what, program) in wanted {
        match locate(program, rb.working_dir.as_deref()) {
            Some(path) => found.push(format!("{what}: {}", path.display())),
            None => {
                return Check::fail(
                    "programs_present",
                    format!(
                        "{what} needs `{program}`, which is not there or cannot be run here (on PATH, or relative to \
                         rollback.working_dir): install it, or run the steps as Jobs (rollback.job; README, \
                         Installing in a cluster)"
                    ),
                )
            }
        }
    }
    Check::pass("programs_present", found.join("; "))
}

/// The backup's age from its CronJob's last success.
async fn backup_cronjob(s: &AppState, name: &str) -> Check {
    let limit = s.settings.rollback.backup_max_age_hours;
    let cluster = match &s.writer_cluster {
        Ok(c) => c,
        Err(e) => return Check::fail("backup_fresh", format!("the backup CronJob {name} cannot be read: {e}")),
    };
    match cluster.cronjob_last_success(name).await {
        Ok(Some(t)) => {
            let hours = (chrono::Utc::now() - t).num_seconds().max(0) as f64 / 3600.0;
            let at = t.format("%Y-%m-%d %H:%M UTC");
            if hours <= limit as f64 {
                Check::pass(
                    "backup_fresh",
                    format!("CronJob {name} last succeeded at {at}, {hours:.1} h ago (limit {limit} h)"),
                )
            } else {
                Check::fail(
                    "backup_fresh",
                    format!("CronJob {name} last succeeded at {at}, {hours:.1} h ago, older than {limit} h"),
                )
            }
        }
        Ok(None) => Check::fail("backup_fresh", format!("CronJob {name} has never succeeded")),
        Err(e) => Check::fail("backup_fresh", format!("the backup CronJob cannot be read: {e}")),
    }
}

/// As Jobs: the API server accepts each Job the run will create (a server-side dry run: the Role
/// lets the dashboard create Jobs, admission takes them), before any step stops the writers.
async fn jobs_accepted(s: &AppState, restore_data: bool) -> Check {
    let rb = &s.settings.rollback;
    let cluster = match &s.writer_cluster {
        Ok(c) => c,
        Err(e) => return Check::fail("jobs_accepted", format!("the rollback runs its commands as Jobs: {e}")),
    };
    let super::super::config::DowngradeSettings::Command { argv } = &rb.downgrade;
    let mut wanted = vec![("the downgrade", "schema_downgrade", argv)];
    if restore_data {
        wanted.push(("the restore", "restore_data", &rb.restore_argv));
    }
    let mut accepted = Vec::new();
    for (what, step, argv) in wanted {
        let argv = steps::substitute(argv, s, &Memory::default());
        let of = steps::ForStep { run: 0, run_created: chrono::Utc::now(), step, attempt: 1 };
        let spec = match steps::job_spec(s, &argv, &of) {
            Ok(spec) => spec,
            Err(e) => return Check::fail("jobs_accepted", format!("{what}: {e}")),
        };
        if let Err(e) = cluster.create_job(&spec, true).await {
            return Check::fail("jobs_accepted", format!("{what}'s Job would be refused: {e}"));
        }
        accepted.push(format!("{what} (image {})", spec.image));
    }
    Check::pass("jobs_accepted", format!("Kubernetes accepts the Jobs (dry run): {}", accepted.join("; ")))
}

/// Where `program` is, if it is an executable file.
fn locate(program: &str, working_dir: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let path = match working_dir {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => std::path::PathBuf::from(program),
        };
        return runnable(&path).then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
}

#[cfg(test)]
mod tests {
    #[test]
    fn programs_are_found_as_the_run_finds_them() {
        assert!(super::locate("sh", None).is_some(), "on PATH");
        assert!(super::locate("no-such-program-anywhere", None).is_none());
        assert!(super::locate("/bin/sh", None).is_some());
        assert!(super::locate("bin/sh", Some(std::path::Path::new("/"))).is_some(), "relative to the working dir");
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-a-program");
        std::fs::write(&plain, "data").unwrap();
        std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(super::locate(plain.to_str().unwrap(), None).is_none(), "a file that cannot be run");
        assert!(super::locate("", None).is_none());
    }
}
