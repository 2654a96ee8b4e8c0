//! Restore the data from the backup, only when the operator chose it (with its own typed
//! RESTORE), and count the rows back.

use super::commands::{run_command, shown, substitute};
use super::{
    for_step,in_working_dir, Memory, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct RestoreData;

impl RollbackStep for RestoreData {
    fn name(&self) -> &'static str {
        "restore_data"
    }

    fn title(&self) -> &'static str {
        "Restore data"
    }

    fn chosen(&self, restore_data: bool) -> bool {
        restore_data
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        if !cx.restore_data {
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
