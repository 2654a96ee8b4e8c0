//! Rolling forward again after a rollback (issue 33, item 4): the two doors' service for the
//! re-apply of a run's archive (`archive/reapply.rs` decides and writes). The dry run first;
//! then operators only, with the environment's name typed and the dry run's count acknowledged,
//! under the run's lock, audited as `rollback.reapply`.

use crate::api::audit::{Action, Outcome};
use crate::api::rollback::{RollForward, RollForwardView, VerdictCount};

use super::super::caller::Caller;
use super::super::error::ApiError;
use super::super::locks::{with_lock, Lock};
use super::super::rollout::check_reason;
use super::archive::{self, reapply, ArchiveError};
use super::{conflict, operator, steps, store, Service};

impl Service<'_> {
    /// `POST /api/v1/rollback/{id}/roll_forward/plan`: what the re-apply would do; writes nothing.
    pub async fn roll_forward_plan(&self, id: i64) -> Result<RollForwardView, ApiError> {
        self.reapplied(id, None).await
    }

    /// `POST /api/v1/rollback/{id}/roll_forward/apply`.
    pub async fn roll_forward(&self, caller: &Caller, id: i64, body: RollForward) -> Result<RollForwardView, ApiError> {
        let result = self.try_roll_forward(caller, id, body).await;
        self.recorded(caller, Action::RollbackReapply, result).await
    }

    async fn try_roll_forward(&self, caller: &Caller, id: i64, b: RollForward) -> Result<RollForwardView, ApiError> {
        operator(caller)?;
        let reason = check_reason(&b.reason, "a reason", true)?.unwrap_or_default();
        let environment = &self.state.settings.environment;
        if &b.confirm_environment != environment {
            return Err(ApiError::BadRequest(format!(
                "the typed confirmation {:?} is not the environment's name; type {environment:?} exactly",
                b.confirm_environment
            )));
        }
        let view = self.reapplied(id, Some(b.acknowledge_rows)).await?;
        let detail = format!(
            "{} row(s) re-applied ({} with the fill undone); {}",
            view.restorable,
            view.undo_fill,
            view.counts
                .iter()
                .map(|c| format!("{} {}: {}", c.verdict, c.category, c.rows))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let entry = caller
            .entry(Action::RollbackReapply, format!("rollback run #{id}"))
            .values(None, view.verified.clone())
            .reason(Some(reason))
            .outcome(Outcome::Done, Some(detail));
        super::super::audit::record(
            &self.state.state_db,
            &crate::server::audit::NewEntry { run_id: Some(id), ..entry },
        )
        .await?;
        Ok(view)
    }

    /// The re-apply of run `id`'s archive: a dry run without `acknowledged`, else for real when
    /// the verdicts' count equals it.
    async fn reapplied(&self, id: i64, acknowledged: Option<i64>) -> Result<RollForwardView, ApiError> {
        let s = self.state;
        let (run, header) = self.rollable(id).await?;
        let diary = s.diary.as_ref().map_err(|e| ApiError::Unavailable(e.clone()))?;
        let schema = diary.schema().await.map_err(ApiError::Unavailable)?;
        if !schema.has_split_columns() {
            return Err(ApiError::Conflict {
                code: "split_columns_missing",
                message: format!(
                    "{} has no insulin_short/insulin_long columns (revision {}): apply the split revision{} first",
                    diary.table(),
                    schema.alembic_revision.as_deref().unwrap_or("unknown"),
                    run.memory.from_revision.as_deref().map(|r| format!(" {r}")).unwrap_or_default()
                ),
                details: None,
            });
        }
        let writer = steps::diary_writer(s).await.map_err(ApiError::Failed)?;
        let table = diary.table().to_string();
        let filled = header.filled_at.is_some();
        let work = async move {
            let mut writer = writer;
            Ok(reapply::reapply(&mut writer, &s.state_db, id, &table, filled, acknowledged).await)
        };
        let report = match with_lock(&s.locks, Lock::RollbackRun(id), work).await? {
            Some(r) => r.map_err(|e| match e {
                ArchiveError::Refused(m) => conflict(m),
                ArchiveError::Source(e) => ApiError::Unavailable(e),
                e => ApiError::Failed(e.to_string()),
            })?,
            None => return Err(conflict(format!("run #{id}'s archive is being re-applied by another request"))),
        };
        if !report.dry_run {
            let counts = serde_json::to_value(&report.counts).unwrap_or_default();
            reapply::mark_reapplied(&s.state_db, id, counts).await?;
            // Old hours changed category: the charts count them again (this replica).
            diary.forget_counts();
        }
        let header = archive::header(&s.state_db, id).await?.unwrap_or(header);
        Ok(view(id, &header, report))
    }

    /// Run `id` and its archive, when its split values may be re-applied now: the run ended,
    /// no other is active, its archive is the newest and not purged, and its downgrade ran.
    async fn rollable(&self, id: i64) -> Result<(store::Run, archive::Header), ApiError> {
        let s = self.state;
        let run = self.load(id).await?;
        if run.state.active() {
            return Err(conflict(format!("run #{id} is still {}: roll forward once it has ended", run.state)));
        }
        if let Some(active) = store::active_run_id(&s.state_db).await? {
            return Err(conflict(format!("rollback run #{active} is active: roll forward once it has ended")));
        }
        let header = archive::header(&s.state_db, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("run #{id} has no archive of split values")))?;
        if let Some(purged) = header.purged_at {
            return Err(conflict(format!(
                "run #{id}'s archive was purged on {} (retention_days after its roll-forward): nothing left to re-apply",
                purged.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        // Only the newest archive, and only of a run whose downgrade ran: an older run's values
        // would overwrite what users wrote since it (a later run archived those).
        if let Some(newer) = archive::newest_run(&s.state_db).await?.filter(|n| *n != id) {
            return Err(conflict(format!(
                "run #{newer} archived the split values after run #{id}: roll forward from run #{newer}"
            )));
        }
        let downgraded = run.steps.iter().any(|st| st.name == "schema_downgrade" && st.state.passed());
        if !downgraded {
            return Err(conflict(format!(
                "run #{id} never downgraded the schema: its split values were not dropped, nothing to roll forward"
            )));
        }
        Ok((run, header))
    }
}

fn view(id: i64, header: &archive::Header, report: reapply::Report) -> RollForwardView {
    RollForwardView {
        run_id: id,
        dry_run: report.dry_run,
        archived_rows: header.rows,
        archived_at: header.archived_at,
        filled: header.filled_at.is_some(),
        counts: report
            .counts
            .iter()
            .map(|(verdict, category, rows)| VerdictCount {
                verdict: verdict.clone(),
                category: category.clone(),
                rows: *rows,
            })
            .collect(),
        restorable: report.restorable,
        undo_fill: report.undo_fill,
        verified: report.verified.map(|t| t.to_string()),
        reapplied_at: header.reapplied_at,
    }
}
