//! Restore the data from the backup, only when the operator chose it (with its own typed
//! RESTORE), and count the rows back.

use super::super::archive::whole;
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
            run_command(state, &argv, for_step(cx, self.name()), &mut cx.log).await?;
            let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", diary.table()))
                .fetch_one(diary.pool())
                .await
                .map_err(|e| format!("reading back: {e}"))?;
            cx.log.line(format!("read back: {} holds {rows} rows", diary.table()));
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
            cx.log.line(format!(
                "{newer}; all {rows} rows of the table were archived and verified: the next step re-inserts what pg_restore drops"
            ));
            Ok(())
        }
        None => Err(format!("pg_restore --clean would drop {newer}; they are not archived: the restore is refused")),
    }
}
