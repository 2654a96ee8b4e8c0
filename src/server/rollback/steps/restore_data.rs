//! Restore the data from the backup, only when the operator chose it (with its own typed
//! RESTORE), and count the rows back.

use super::super::archive::{self, whole};
use super::commands::{run_command, shown, substitute};
use super::{for_step, in_working_dir, Choices, Memory, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct RestoreData;

impl RollbackStep for RestoreData {
    fn name(&self) -> &'static str {
        "restore_data"
    }

    fn title(&self) -> &'static str {
        "Restore data"
    }

    fn chosen(&self, choices: Choices) -> bool {
        choices.restore_data
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        if !cx.choices.restore_data {
            return vec!["not chosen: no data is restored".into()];
        }
        let rb = &cx.state.settings.rollback;
        vec![
            format!(
                "$ {}{}",
                shown(&substitute(&rb.restore_argv, cx.state, cx.memory), cx.state),
                in_working_dir(cx.state)
            ),
            format!("read back: count the rows of {}", cx.state.settings.schema.table),
            "refused unless step 3 archived the whole table (verified): pg_restore --clean drops every row written after the backup; step 8 re-inserts them".into(),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let rb = &state.settings.rollback;
            let Some(file) = &rb.backup_file else { return Err("rollback.backup_file is not configured".into()) };
            // A Job's backup is in its volume, out of the dashboard's sight.
            if rb.job.is_none() && !file.exists() {
                return Err(format!("the backup {} does not exist", file.display()));
            }
            nothing_dropped_unarchived(cx).await?;
            let argv = substitute(&rb.restore_argv, state, &Memory::default());
            backup_is_legacy(cx, &argv).await?;
            run_command(state, &argv, for_step(cx, self.name()), &mut cx.log).await?;
            let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", diary.table()))
                .fetch_one(diary.pool())
                .await
                .map_err(|e| format!("reading back: {e}"))?;
            cx.log.line(format!("read back: {} holds {rows} rows", diary.table()));
            // The backup must not have brought the split schema back (it would undo steps 5-6).
            let schema = diary.schema().await.map_err(|e| e.to_string())?;
            let target = &cx.memory.target_revision;
            if schema.insulin_short || schema.insulin_long || schema.alembic_revision.as_deref() != Some(target.as_str()) {
                return Err(format!(
                    "the restored backup brought back revision {} with the split columns {}: the downgrade is undone; \
                     restore an older backup (from before the split revision) by hand and skip this step with a reason",
                    schema.alembic_revision.as_deref().unwrap_or("none"),
                    if schema.has_split_columns() { "present" } else { "partly present" }
                ));
            }
            cx.log.line(format!("read back: revision {target}, no split columns"));
            Ok(())
        })
    }
}

/// The guard: `pg_restore --clean` drops the rows written after the backup; it runs only when
/// step 3 archived the whole table, so that step 8 can put them back.
async fn nothing_dropped_unarchived(cx: &mut StepContext<'_>) -> Result<(), String> {
    let state = cx.state;
    let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
    let backup_at = state
        .settings
        .rollback
        .backup_file
        .as_ref()
        .filter(|_| state.settings.rollback.job.is_none())
        .and_then(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .map(chrono::DateTime::<chrono::Utc>::from);
    let newer = match backup_at {
        Some(t) => {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {} WHERE created_at > $1", diary.table()))
                .bind(t)
                .fetch_one(diary.pool())
                .await
                .map_err(|e| format!("counting the rows written after the backup: {e}"))?;
            format!("{n} row(s) written after the backup of {} (by created_at)", t.format("%Y-%m-%d %H:%M:%S UTC"))
        }
        None => "the rows written after the backup (its time is not known here)".to_string(),
    };
    match whole::rows(&state.state_db, cx.run.id).await.map_err(|e| e.to_string())? {
        Some(rows) => {
            let filled = archive::header(&state.state_db, cx.run.id)
                .await
                .map_err(|e| e.to_string())?
                .is_some_and(|h| h.filled_at.is_some());
            let now = whole::verify_legacy(diary.pool(), &state.state_db, cx.run.id, diary.table(), filled)
                .await
                .map_err(|e| {
                    format!(
                        "the diary changed since the whole table was archived ({e}): pg_restore would drop or revert \
                         rows without a copy; the restore is refused (abort, and start a new run to archive afresh)"
                    )
                })?;
            cx.log.line(format!(
                "{newer}; all {rows} rows of the table were archived and verified, and the diary still equals the \
                 archive ({now}): the next step re-inserts what pg_restore drops"
            ));
            Ok(())
        }
        None => Err(format!("pg_restore --clean would drop {newer}; they are not archived: the restore is refused")),
    }
}

/// Before restoring a local backup with `pg_restore`: its schema must not have the split
/// columns (a backup taken after the split revision would undo the downgrade). Other restore
/// commands, and a Job's backup, are not readable here: said so in the output.
async fn backup_is_legacy(cx: &mut StepContext<'_>, argv: &[String]) -> Result<(), String> {
    let rb = &cx.state.settings.rollback;
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let (Some(file), None, true) = (&rb.backup_file, &rb.job, program.ends_with("pg_restore")) else {
        cx.log.line("the backup's schema is not read before the restore (not a local pg_restore): read back after");
        return Ok(());
    };
    let table = &cx.state.settings.schema.table;
    let out = tokio::process::Command::new(program)
        .args(["--schema-only", "--table", table, "--file", "-"])
        .arg(file)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program} to read the backup's schema: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} could not read the backup's schema: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let ddl = String::from_utf8_lossy(&out.stdout);
    if ddl.contains("insulin_short") || ddl.contains("insulin_long") {
        return Err(format!(
            "the backup {} holds {table} with the split columns (it was taken after the split revision): restoring it \
             would undo the downgrade; the restore is refused (point rollback.backup_file at a backup from before)",
            file.display()
        ));
    }
    cx.log.line(format!("the backup's {table} has no split columns (read with {program} --schema-only)"));
    Ok(())
}
