//! Write the incident record: timeline, who, why, each step's output, a postmortem template.

use super::super::{incident, store};
use super::{PlanContext, RollbackStep, StepContext, StepFuture};

pub struct IncidentRecord;

impl RollbackStep for IncidentRecord {
    fn name(&self) -> &'static str {
        "incident_record"
    }

    fn title(&self) -> &'static str {
        "Incident record"
    }

    fn plan(&self, _cx: &PlanContext<'_>) -> Vec<String> {
        vec!["write the incident record: timeline, who, why, each step's output, a postmortem template; GET /api/v1/incidents/{id}.md".into()]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            // The run as it stands now, this step running, with the memory the others left.
            let mut run = store::load(&cx.state.state_db, cx.run.id)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|| cx.run.clone());
            run.memory = cx.memory.clone();
            let id = incident::record(cx.state, &run.view()).await.map_err(|e| e.to_string())?;
            cx.log.line(format!("incident #{id} recorded: GET /api/v1/incidents/{id}.md"));
            Ok(())
        })
    }
}
