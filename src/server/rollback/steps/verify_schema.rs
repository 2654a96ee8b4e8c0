//! Verify the schema: neither split column is left and the revision is the target.

use super::{current_revision, shown_target, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct VerifySchema;

impl RollbackStep for VerifySchema {
    fn name(&self) -> &'static str {
        "verify_schema"
    }

    fn title(&self) -> &'static str {
        "Verify the schema"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let target = shown_target(cx.memory);
        vec![
            format!("SELECT column_name FROM information_schema.columns WHERE table_name = '{}' AND column_name IN ('insulin_short', 'insulin_long') → expect none", cx.state.settings.schema.table),
            format!("SELECT version_num FROM alembic_version → expect {target}"),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let target = cx.memory.target_revision.as_str();
            let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name IN ('insulin_short', 'insulin_long')
                 ORDER BY column_name",
            )
            .bind(diary.table())
            .fetch_all(diary.pool())
            .await
            .map_err(|e| format!("the diary database: {e}"))?;
            let revision = current_revision(state).await?;
            cx.log.line(format!(
                "information_schema.columns of {}: split columns present: {}",
                diary.table(),
                if columns.is_empty() { "none".to_string() } else { columns.join(", ") }
            ));
            cx.log.line(format!("alembic_version: {} (target {target})", revision.as_deref().unwrap_or("none")));
            let mut wrong = Vec::new();
            if !columns.is_empty() {
                wrong.push(format!("{} still has {}", diary.table(), columns.join(" and ")));
            }
            if revision.as_deref() != Some(target) {
                wrong.push(format!("the revision is {} instead of {target}", revision.as_deref().unwrap_or("none")));
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            }
        })
    }
}
