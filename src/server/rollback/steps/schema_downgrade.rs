//! Downgrade the diary's schema to the previous revision from the deploy journal with the
//! configured command, unless it is there already, and read the revision back.

use super::super::super::config::DowngradeSettings;
use super::super::archive::{self, ArchiveError};
use super::super::fill;
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
            "verify the archive of step 3 against the diary now (count, checksum, units); refuse the downgrade unless it verifies".into(),
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
            archive_verifies(cx).await?;
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

/// The guard: the downgrade drops the split columns, so it runs only while the run's archive
/// holds exactly what the diary holds.
async fn archive_verifies(cx: &mut StepContext<'_>) -> Result<(), String> {
    let state = cx.state;
    let run = cx.run.id;
    let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
    match archive::verify(diary.pool(), &state.state_db, run, diary.table()).await {
        Ok(t) => {
            cx.log.line(format!(
                "{} row(s) archived and verified (run #{run}): the downgrade may drop their split values",
                t.rows
            ));
            Ok(())
        }
        Err(ArchiveError::Missing(_)) => {
            Err(format!("no verified archive of run #{run}'s split values: the downgrade is refused"))
        }
        Err(ArchiveError::Mismatch { diary: now, .. }) if fill_landed(state, run, &now).await? => {
            // The fill committed in the diary and the run died before it recorded so (step 4
            // killed between its two commits, then skipped): recorded now, from the archive.
            let counts = archive::fill_counts(&state.state_db, run).await.map_err(|e| e.to_string())?;
            let named: serde_json::Map<String, serde_json::Value> = fill::named_counts(&counts)
                .iter()
                .map(|(r, n)| (r.name().to_string(), (*n).into()))
                .collect();
            archive::mark_filled(&state.state_db, run, named.into()).await.map_err(|e| e.to_string())?;
            cx.log.line(format!(
                "{} row(s) archived and verified (run #{run}), with the fill of dose found applied in the diary and \
                 recorded now: the downgrade may drop their split values",
                now.rows
            ));
            Ok(())
        }
        Err(ArchiveError::Mismatch { diary, archive }) => Err(format!(
            "the diary changed since the archive (diary {diary}; archive {archive}): the downgrade is refused; \
             abort and start a new run, which archives afresh"
        )),
        Err(e) => Err(format!("cannot verify the archive: {e}: the downgrade is refused")),
    }
}

/// Whether the diary holds exactly the archive with the fill applied while the header says no
/// fill was made.
async fn fill_landed(
    state: &crate::server::state::AppState,
    run: i64,
    now: &archive::Tally,
) -> Result<bool, String> {
    let header = archive::header(&state.state_db, run).await.map_err(|e| e.to_string())?;
    if header.is_none_or(|h| h.filled_at.is_some()) {
        return Ok(false);
    }
    let filled = archive::filled_tally(&state.state_db, run).await.map_err(|e| e.to_string())?;
    Ok(&filled == now)
}
