//! Turn the flag off: remember its value, write 0 % in the flag's own format, conditional on the
//! version read, and read it back.

use super::super::super::flags::Percentage;
use super::{PlanContext, RollbackStep, StepContext, StepFuture};

pub struct FlagOff;

impl RollbackStep for FlagOff {
    fn name(&self) -> &'static str {
        "flag_off"
    }

    fn title(&self) -> &'static str {
        "Flag off"
    }

    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String> {
        vec![
            format!(
                "read flag {} (now {:?}) and remember it",
                cx.state.settings.flag.target(),
                cx.flag_now.unwrap_or("?")
            ),
            "write 0 % in the flag's own format, conditional on the version read; read it back".into(),
        ]
    }

    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a> {
        Box::pin(async move {
            let state = cx.state;
            let reading = state.flags.read().await.map_err(|e| e.to_string())?;
            let raw = reading.raw.clone().unwrap_or_default();
            cx.log.line(format!(
                "flag {}: {raw:?} (version {})",
                state.settings.flag.target(),
                reading.version.as_deref().unwrap_or("?")
            ));
            if cx.memory.flag_before.is_none() {
                cx.memory.flag_before = Some(raw.clone());
                cx.remember().await?;
                cx.log.line(format!("remembered the old value {raw:?}"));
            }
            let pct = match &reading.parsed {
                Some(Ok(p)) => *p,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the flag has no value; nothing can be turned off".into()),
            };
            if pct == Percentage::OFF {
                cx.log.line("already at 0 %: nothing to change");
                return Ok(());
            }
            let version = reading.version.clone().unwrap_or_default();
            let run = cx.run;
            let comment = format!("rollback run #{} by {}: {}", run.id, run.actor, run.reason);
            let change = state.flags.write(&version, Percentage::OFF, &comment).await.map_err(|e| e.to_string())?;
            cx.log.line(format!(
                "set to 0 %: {:?} → {:?}, read back at version {}",
                change.before,
                change.after,
                change.version.as_deref().unwrap_or("?")
            ));
            Ok(())
        })
    }
}
