//! Archive the split values before anything destructive (issue 33, item 1): with the writers
//! stopped and the flag off, every row holding `insulin_short` or `insulin_long` is copied, with
//! its id, user, time and `dose`, into the state database in one transaction, kept only when the
//! row count and the checksum equal the diary's (`archive.rs`). The downgrade that follows is
//! refused unless the archive still verifies.

use super::super::super::flags::Percentage;
use super::super::archive::{self, whole, ArchiveError};
use super::{PlanContext, RollbackStep, StepContext, StepFuture};

pub struct ArchiveSplitValues;

impl RollbackStep for ArchiveSplitValues {
    fn name(&self) -> &'static str {
        "archive_split_values"
    }

    fn title(&self) -> &'static str {
        "Archive split values"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let s = &cx.state.settings;
        vec![
            format!(
                "read back: deployment {}/{} has 0 replicas, flag {} is 0 % (nothing may move while the archive is taken)",
                s.writer.namespace,
                s.writer.deployment,
                s.flag.target()
            ),
            format!(
                "copy the {} row(s) of {} holding insulin_short or insulin_long (id, user_id, created_at, dose, \
                 insulin_short, insulin_long) from one REPEATABLE READ snapshot into the state database \
                 (rollback_archive_rows, one transaction)",
                cx.memory.data_loss_rows, s.schema.table
            ),
            "verify: row count, checksum and units equal on both sides, else nothing is kept and the step fails".into(),
            if cx.choices.restore_data {
                format!(
                    "the restore is chosen: also every row of {} with all its columns (as JSON), verified alike, so that \
                     the rows pg_restore --clean drops can be re-inserted",
                    s.schema.table
                )
            } else {
                "the restore is not chosen: only the split values".into()
            },
            "kept in the state database, which no restore touches; the downgrade is refused unless it still verifies"
                .into(),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let run = cx.run.id;
            nothing_moves(cx).await?;
            let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
            let schema = diary.schema().await.map_err(|e| e.to_string())?;
            let table = diary.table();
            if !schema.has_split_columns() {
                // The downgrade ran already (by hand, or this run before a crash).
                return match archive::header(&state.state_db, run).await.map_err(|e| e.to_string())? {
                    Some(h) => {
                        cx.log.line(format!(
                            "the split columns are gone; the archive of {} row(s) was taken at {}",
                            h.rows, h.archived_at
                        ));
                        Ok(())
                    }
                    None => Err(format!(
                        "{table} has no insulin_short/insulin_long columns and run #{run} has no archive: \
                         nothing is left to archive (skip this step with a reason if the values were kept elsewhere)"
                    )),
                };
            }
            let tally = match archive::verify(diary.pool(), &state.state_db, run, table).await {
                Ok(t) => {
                    cx.log.line("already archived, and it verifies against the diary now: nothing copied");
                    t
                }
                Err(e @ ArchiveError::Mismatch { .. }) if filled(state, run).await? => {
                    return Err(format!(
                        "{e}; the fill of dose was applied since: taking the archive again would keep filled doses \
                         as the originals, so it is refused"
                    ))
                }
                Err(ArchiveError::Missing(_) | ArchiveError::Mismatch { .. }) => {
                    let t = archive::take(diary.pool(), &state.state_db, run, table).await.map_err(|e| e.to_string())?;
                    cx.log.line(format!("copied {} row(s) into the state database", t.rows));
                    t
                }
                Err(e) => return Err(e.to_string()),
            };
            cx.log.line(format!(
                "{} row(s) archived and verified: the diary and the archive both hold {tally}",
                tally.rows
            ));
            cx.memory.archived_rows = Some(tally.rows);
            cx.memory.archive_checksum = Some(tally.checksum);
            cx.remember().await?;
            if cx.run.restore_data {
                archive_whole_table(cx).await?;
            }
            Ok(())
        })
    }
}

/// With the restore chosen: every row, every column, so that what `pg_restore --clean` drops
/// (rows written after the backup) can be put back.
async fn archive_whole_table(cx: &mut StepContext<'_>) -> Result<(), String> {
    let state = cx.state;
    let run = cx.run.id;
    if let Some(rows) = whole::rows(&state.state_db, run).await.map_err(|e| e.to_string())? {
        cx.log.line(format!("the whole table was archived before ({rows} rows, verified): nothing copied"));
        return Ok(());
    }
    let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
    let t = whole::take(diary.pool(), &state.state_db, run, diary.table()).await.map_err(|e| e.to_string())?;
    cx.log.line(format!(
        "the restore is chosen: the whole table archived and verified too (every column): the diary and the archive both hold {t}"
    ));
    Ok(())
}

async fn filled(state: &crate::server::state::AppState, run: i64) -> Result<bool, String> {
    let header = archive::header(&state.state_db, run).await.map_err(|e| e.to_string())?;
    Ok(header.is_some_and(|h| h.filled_at.is_some()))
}

/// The writers stopped and the flag off: a skipped step 1 or 2 must not let rows move under the
/// archive.
async fn nothing_moves(cx: &mut StepContext<'_>) -> Result<(), String> {
    let state = cx.state;
    let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
    let dep = &state.settings.writer.deployment;
    let r = cluster.deployment_replicas(dep).await.map_err(|e| e.to_string())?;
    if r.desired != 0 || r.ready != 0 {
        return Err(format!(
            "deployment {dep} has {} desired, {} ready: the writers must be stopped before the archive, or rows \
             written meanwhile would be missing from it",
            r.desired, r.ready
        ));
    }
    let flag = state.flags.read().await.map_err(|e| e.to_string())?;
    match flag.parsed {
        Some(Ok(p)) if p == Percentage::OFF => {}
        _ => {
            return Err(format!(
                "the flag reads {:?}, not 0 %: it must be off before the archive",
                flag.raw.as_deref().unwrap_or("(no value)")
            ))
        }
    }
    cx.log.line(format!("read back: deployment {dep} 0 desired, 0 ready; flag 0 %"));
    Ok(())
}
