//! Stop the writers: scale the writer deployment to 0, remembering its count, and wait until
//! none is ready.

use super::{wait_for_ready, PlanContext, RollbackStep, StepContext, StepFuture};

pub struct StopWriters;

impl RollbackStep for StopWriters {
    fn name(&self) -> &'static str {
        "stop_writers"
    }

    fn title(&self) -> &'static str {
        "Stop writers"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        let (ns, dep) = (&cx.state.settings.writer.namespace, &cx.state.settings.writer.deployment);
        vec![
            format!(
                "read deployment {ns}/{dep} (now {} desired) and remember the count",
                cx.writer_now.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
            ),
            format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/{dep}/scale {{\"spec\":{{\"replicas\":0}}}}"),
            "wait until 0 replicas are ready".into(),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
            let dep = &state.settings.writer.deployment;
            let now = cluster.deployment_replicas(dep).await.map_err(|e| e.to_string())?;
            cx.log.line(format!(
                "deployment {}/{dep}: {} desired, {} ready",
                cluster.namespace(),
                now.desired,
                now.ready
            ));
            if cx.memory.writer_replicas.is_none() {
                let remembered =
                    if now.desired > 0 { now.desired } else { state.settings.rollback.default_writer_replicas };
                cx.memory.writer_replicas = Some(remembered);
                cx.remember().await?;
                cx.log.line(format!("remembered {remembered} replicas to restore when the writers are scaled back"));
            }
            if now.desired != 0 {
                cluster.scale_deployment(dep, 0).await.map_err(|e| e.to_string())?;
                cx.log.line("scaled to 0");
            } else {
                cx.log.line("already scaled to 0: nothing to change");
            }
            wait_for_ready(state, 0, &mut cx.log).await
        })
    }
}
