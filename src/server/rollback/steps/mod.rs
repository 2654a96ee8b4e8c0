//! The guide's rollback plan, one step per file, listed once in [`REGISTRY`]. Each step looks
//! at the world before acting (so a retry after a crash does not act twice), acts, and reads the
//! world back. A step's result is its output (what it saw and did) or an error that says what
//! went wrong. The plan (dry run), the run's creation, the executor and the page all iterate the
//! registry: adding a step is one new file and one line there.

mod commands;

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

pub use crate::api::rollback::Choices;
use crate::api::rollback::PlannedStep;

use super::super::state::AppState;
pub use super::memory::Memory;
use super::store::{self, Run};
pub use commands::{fill_in, job_spec, redact, run_isolated, shown, substitute, ForStep, Placeholders};

/// Declares each step's file and lists the step in [`REGISTRY`], from one line per step.
macro_rules! registry {
    ($($file:ident => $step:ident),+ $(,)?) => {
        $(mod $file;)+
        /// The plan's steps, in order.
        pub static REGISTRY: &[&dyn RollbackStep] = &[$(&$file::$step),+];
    };
}

registry! {
    stop_writers => StopWriters,
    flag_off => FlagOff,
    archive_split_values => ArchiveSplitValues,
    fill_dose => FillDose,
    schema_downgrade => SchemaDowngrade,
    verify_schema => VerifySchema,
    restore_data => RestoreData,
    reinsert_dropped_rows => ReinsertDroppedRows,
    scale_writers_back => ScaleWritersBack,
    smoke_checks => SmokeChecks,
    incident_record => IncidentRecord,
}

/// The step called `name` (a run's steps are stored by name).
pub fn find(name: &str) -> Option<&'static dyn RollbackStep> {
    REGISTRY.iter().copied().find(|s| s.name() == name)
}

pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One step of the rollback.
pub trait RollbackStep: Sync {
    /// Its stable name (stored with the run, used in URLs of tests and in the page's test ids).
    fn name(&self) -> &'static str;
    fn title(&self) -> &'static str;
    /// Whether this run does it (the fill and the data restore are the operator's choices).
    fn chosen(&self, _choices: Choices) -> bool {
        true
    }
    /// The dry run: the concrete commands, calls and values it would use.
    fn plan(&self, cx: &PlanContext<'_>) -> Vec<String>;
    /// Looks at the world, acts, reads it back; writes what it saw and did to `cx.log`.
    fn run<'a>(&'a self, cx: &'a mut StepContext<'_>) -> StepFuture<'a>;
}

/// What the dry run knows about the world.
pub struct PlanContext<'a> {
    pub state: &'a AppState,
    pub memory: &'a Memory,
    pub writer_now: Option<i32>,
    pub flag_now: Option<&'a str>,
    pub choices: Choices,
    /// Rows per fill rule (`FillRule::ALL`'s order), when the diary could be read.
    pub fill_counts: Option<&'a [i64]>,
}

/// What a running step works with.
pub struct StepContext<'a> {
    pub state: &'a AppState,
    pub run: &'a Run,
    pub memory: &'a mut Memory,
    pub log: Log,
}

impl StepContext<'_> {
    /// Persists the memory before the step acts on what it just remembered.
    pub async fn remember(&self) -> Result<(), String> {
        store::save_memory(&self.state.state_db, self.run.id, self.memory)
            .await
            .map_err(|e| format!("cannot persist the run's memory: {e}"))
    }
}

/// Output of a step, built as it goes; part of it survives a failure.
#[derive(Default)]
pub struct Log(String);

impl Log {
    pub fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.0, "{}", s.as_ref());
    }

    /// Its last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.0.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[derive(Debug)]
pub struct StepFailure {
    pub output: String,
    pub error: String,
}

/// Runs `step` of `run`; the memory it changed stays in `memory` whatever the outcome.
pub async fn execute(
    state: &AppState,
    run: &Run,
    memory: &mut Memory,
    step: &dyn RollbackStep,
) -> Result<String, StepFailure> {
    let mut cx = StepContext { state, run, memory, log: Log::default() };
    let result = step.run(&mut cx).await;
    let output = std::mem::take(&mut cx.log).0;
    result.map(|()| output.clone()).map_err(|error| StepFailure { output, error })
}

/// The dry run: each step with the concrete commands, calls and values it would use.
pub fn describe(cx: &PlanContext<'_>) -> Vec<PlannedStep> {
    REGISTRY
        .iter()
        .enumerate()
        .map(|(i, step)| PlannedStep {
            index: i as u32 + 1,
            name: step.name().to_string(),
            title: step.title().to_string(),
            actions: step.plan(cx),
            chosen: step.chosen(cx.choices),
        })
        .collect()
}

/// Polls the writer deployment until exactly `want` replicas are ready (the step's time limit
/// bounds the wait).
async fn wait_for_ready(state: &AppState, want: i32, log: &mut Log) -> Result<(), String> {
    let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
    let dep = &state.settings.writer.deployment;
    let t0 = Instant::now();
    loop {
        let r = cluster.deployment_replicas(dep).await.map_err(|e| e.to_string())?;
        if r.ready == want && r.desired == want {
            log.line(format!(
                "{want} ready after {:.1} s (read back: {} desired, {} ready)",
                t0.elapsed().as_secs_f64(),
                r.desired,
                r.ready
            ));
            return Ok(());
        }
        tokio::time::sleep(state.settings.rollback.poll_interval()).await;
    }
}

/// A connection to the diary that may write (the fill, the re-insert): `DATABASE_URL`, the one
/// the downgrade's command gets.
pub(super) async fn diary_writer(state: &AppState) -> Result<sqlx::PgConnection, String> {
    use sqlx::Connection;
    let url = state.diary_database_url.as_ref().ok_or("DATABASE_URL is not configured: nothing can be written")?;
    sqlx::PgConnection::connect(url.expose()).await.map_err(|e| {
        let e = crate::server::error::from_sqlx(crate::server::error::Source::DiaryDatabase, &e);
        format!("cannot connect to the diary database to write: {e}")
    })
}

/// The diary's Alembic revision now.
async fn current_revision(state: &AppState) -> Result<Option<String>, String> {
    let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
    diary.schema().await.map(|s| s.alembic_revision).map_err(|e| e.to_string())
}

/// The revision the plan shows: the target, or a placeholder when the journal does not know it.
fn shown_target(memory: &Memory) -> &str {
    if memory.target_revision.is_empty() {
        "<unknown previous revision>"
    } else {
        memory.target_revision.as_str()
    }
}

/// " in <dir>" when commands run in a configured working directory.
/// Where a command runs, as the plan says it: here (in the working directory), or as a Job.
fn in_working_dir(state: &AppState) -> String {
    let rb = &state.settings.rollback;
    match &rb.job {
        Some(job) => format!(
            " as a Job in namespace {} (image {}, environment from Secret {})",
            state.settings.writer.namespace, job.image, job.env_secret
        ),
        None => rb.working_dir.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default(),
    }
}

/// This attempt of the current step, for the commands it runs. The run was read before the
/// executor counted this attempt: it is one more than the run says.
fn for_step<'a>(cx: &StepContext<'_>, step: &'a str) -> commands::ForStep<'a> {
    let attempt = cx.run.steps.iter().find(|s| s.name == step).map(|s| s.attempts).unwrap_or(0) + 1;
    commands::ForStep { run: cx.run.id, run_created: cx.run.created_at, step, attempt }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_the_guides_plan_once_in_order() {
        let names: Vec<&str> = REGISTRY.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "stop_writers",
                "flag_off",
                "archive_split_values",
                "fill_dose",
                "schema_downgrade",
                "verify_schema",
                "restore_data",
                "reinsert_dropped_rows",
                "scale_writers_back",
                "smoke_checks",
                "incident_record"
            ]
        );
        for s in REGISTRY {
            assert!(std::ptr::eq(find(s.name()).unwrap() as *const _ as *const u8, *s as *const _ as *const u8));
        }
        assert!(find("drop_table").is_none());
        // Only the fill and the restore depend on the operator's choices, each on its own.
        let left_out = |c: Choices| REGISTRY.iter().filter(|s| !s.chosen(c)).map(|s| s.name()).collect::<Vec<_>>();
        assert_eq!(left_out(Choices::default()), ["fill_dose", "restore_data", "reinsert_dropped_rows"]);
        assert_eq!(
            left_out(Choices { fill_dose: true, restore_data: false }),
            ["restore_data", "reinsert_dropped_rows"]
        );
        assert_eq!(left_out(Choices { fill_dose: false, restore_data: true }), ["fill_dose"]);
        assert!(left_out(Choices { fill_dose: true, restore_data: true }).is_empty());
    }
}
