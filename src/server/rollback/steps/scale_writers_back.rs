//! Scale the writers back to the count remembered when they were stopped, and wait until ready.

use super::{wait_for_ready, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct ScaleWritersBack;

impl RollbackStep for ScaleWritersBack {
    fn name(&self) -> &'static str {
        "scale_writers_back"
    }

    fn title(&self) -> &'static str {
        "Scale writers back"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let s = &cx.state.settings;
        let (ns, dep) = (&s.writer.namespace, &s.writer.deployment);
        let restore_to = cx.writer_now.filter(|n| *n > 0).unwrap_or(s.rollback.default_writer_replicas);
        vec![
            format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/{dep}/scale {{\"spec\":{{\"replicas\":{restore_to}}}}} (the remembered count)"),
            format!("wait until {restore_to} replicas are ready"),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
            let dep = &state.settings.writer.deployment;
            let want = cx.memory.writer_replicas.unwrap_or(state.settings.rollback.default_writer_replicas);
            let now = cluster.deployment_replicas(dep).await.map_err(|e| e.to_string())?;
            cx.log.line(format!(
                "deployment {}/{dep}: {} desired, {} ready; restoring {want}",
                cluster.namespace(),
                now.desired,
                now.ready
            ));
            if now.desired != want {
                cluster.scale_deployment(dep, want).await.map_err(|e| e.to_string())?;
                cx.log.line(format!("scaled to {want}"));
            } else {
                cx.log.line(format!("already at {want}: nothing to change"));
            }
            wait_for_ready(state, want, &mut cx.log).await
        })
    }
}
