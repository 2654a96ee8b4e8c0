//! Downgrade the diary's schema to the previous revision from the deploy journal with the
//! configured command, unless it is there already, and read the revision back.

use super::super::super::config::DowngradeSettings;
use super::commands::{run_command, shown, substitute};
use super::{
    current_revision, for_step, in_working_dir, shown_target, Memory, PlanContext, RollbackStep, StepContext, StepFuture,
};

pub struct SchemaDowngrade;

impl RollbackStep for SchemaDowngrade {
    fn name(&self) -> &'static str {
        "schema_downgrade"
    }

    fn title(&self) -> &'static str {
        "Schema downgrade"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let target = shown_target(cx.memory);
        let DowngradeSettings::Command { argv } = &cx.state.settings.rollback.downgrade;
        let with_target = Memory { target_revision: target.into(), ..cx.memory.clone() };
        vec![
            format!("if alembic_version is not already {target}:"),
            format!(
                "$ {}{} with DATABASE_URL=***",
                shown(&substitute(argv, cx.state, &with_target), cx.state),
                in_working_dir(cx.state)
            ),
            format!("read back alembic_version = {target}"),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let target = cx.memory.target_revision.clone();
            let before = current_revision(state).await?;
            cx.log.line(format!("current revision {}, target {target}", before.as_deref().unwrap_or("none")));
            if before.as_deref() == Some(target.as_str()) {
                cx.log.line("already at the target revision: nothing to run");
                return Ok(());
            }
            let DowngradeSettings::Command { argv } = &state.settings.rollback.downgrade;
            let argv = substitute(argv, state, cx.memory);
            run_command(state, &argv, for_step(cx, self.name()), &mut cx.log).await?;
            let after = current_revision(state).await?;
            if after.as_deref() != Some(target.as_str()) {
                return Err(format!(
                    "the command succeeded but the revision reads back as {} instead of {target}",
                    after.as_deref().unwrap_or("none"),
                ));
            }
            cx.log.line(format!("read back: revision {target}"));
            Ok(())
        })
    }
}
