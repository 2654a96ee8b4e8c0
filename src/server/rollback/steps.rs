//! The guide's rollback plan, step by step. Each step looks at the world before acting (so a
//! retry after a crash does not act twice), acts, and reads the world back. A step's result is
//! its output (what it saw and did) or an error that says what went wrong.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::api::rollback::{PlannedStep, RunView};

use super::super::config::{DowngradeSettings, Secret};
use super::super::flags::Percentage;
use super::super::state::AppState;

/// The plan's steps, in order: (name, title).
pub const STEPS: [(&str, &str); 8] = [
    ("stop_writers", "Stop writers"),
    ("flag_off", "Flag off"),
    ("schema_downgrade", "Schema downgrade"),
    ("verify_schema", "Verify the schema"),
    ("restore_data", "Restore data"),
    ("scale_writers_back", "Scale writers back"),
    ("smoke_checks", "Smoke checks"),
    ("incident_record", "Incident record"),
];

/// What a run remembers between steps (persisted with the run before each step acts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The writer deployment's replica count before step 1.
    pub writer_replicas: Option<i32>,
    /// The flag's value before step 2.
    pub flag_before: Option<String>,
    pub from_revision: Option<String>,
    pub target_revision: String,
    /// All writes per second when the run started: what the legacy rate must come back to.
    pub baseline_rate: Option<f64>,
    pub data_loss_rows: i64,
    /// The legacy entry the smoke check wrote.
    pub smoke_entry_id: Option<i64>,
}

/// Output of a step, built as it goes; part of it survives a failure.
#[derive(Default)]
pub struct Log(String);

impl Log {
    pub fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.0, "{}", s.as_ref());
    }
    pub fn into_string(self) -> String {
        self.0
    }
    pub fn fail(self, e: impl std::fmt::Display) -> StepFailure {
        StepFailure { output: self.0, error: e.to_string() }
    }
}

#[derive(Debug)]
pub struct StepFailure {
    pub output: String,
    pub error: String,
}

/// Where a step can persist memory before it acts.
pub trait Remember {
    fn remember(&self, memory: &Memory) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// Runs step `name` of `run`.
pub async fn execute(
    state: &AppState,
    run: &RunView,
    mem: &mut Memory,
    name: &str,
    store: &impl Remember,
) -> Result<String, StepFailure> {
    let mut log = Log::default();
    let r = match name {
        "stop_writers" => stop_writers(state, mem, store, &mut log).await,
        "flag_off" => flag_off(state, run, mem, store, &mut log).await,
        "schema_downgrade" => schema_downgrade(state, mem, &mut log).await,
        "verify_schema" => verify_schema(state, mem, &mut log).await,
        "restore_data" => restore_data(state, &mut log).await,
        "scale_writers_back" => scale_writers_back(state, mem, &mut log).await,
        "smoke_checks" => smoke_checks(state, run, mem, store, &mut log).await,
        // The incident record is written by the executor, which holds the whole run.
        "incident_record" => Ok(()),
        other => Err(format!("unknown step {other:?}")),
    };
    match r {
        Ok(()) => Ok(log.into_string()),
        Err(e) => Err(log.fail(e)),
    }
}

async fn stop_writers(state: &AppState, mem: &mut Memory, store: &impl Remember, log: &mut Log) -> Result<(), String> {
    let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
    let dep = &state.settings.writer.deployment;
    let now = cluster.deployment_replicas(dep).await.map_err(|e| e.to_string())?;
    log.line(format!("deployment {}/{dep}: {} desired, {} ready", cluster.namespace(), now.desired, now.ready));
    if mem.writer_replicas.is_none() {
        let remembered = if now.desired > 0 { now.desired } else { state.settings.rollback.default_writer_replicas };
        mem.writer_replicas = Some(remembered);
        store.remember(mem).await?;
        log.line(format!("remembered {remembered} replicas to restore in step 6"));
    }
    if now.desired != 0 {
        cluster.scale_deployment(dep, 0).await.map_err(|e| e.to_string())?;
        log.line("scaled to 0");
    } else {
        log.line("already scaled to 0: nothing to change");
    }
    wait_for_ready(state, 0, log).await
}

async fn scale_writers_back(state: &AppState, mem: &Memory, log: &mut Log) -> Result<(), String> {
    let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
    let dep = &state.settings.writer.deployment;
    let want = mem.writer_replicas.unwrap_or(state.settings.rollback.default_writer_replicas);
    let now = cluster.deployment_replicas(dep).await.map_err(|e| e.to_string())?;
    log.line(format!(
        "deployment {}/{dep}: {} desired, {} ready; restoring {want}",
        cluster.namespace(),
        now.desired,
        now.ready
    ));
    if now.desired != want {
        cluster.scale_deployment(dep, want).await.map_err(|e| e.to_string())?;
        log.line(format!("scaled to {want}"));
    } else {
        log.line(format!("already at {want}: nothing to change"));
    }
    wait_for_ready(state, want, log).await
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

async fn flag_off(
    state: &AppState,
    run: &RunView,
    mem: &mut Memory,
    store: &impl Remember,
    log: &mut Log,
) -> Result<(), String> {
    let reading = state.flags.read().await.map_err(|e| e.to_string())?;
    let raw = reading.raw.clone().unwrap_or_default();
    log.line(format!(
        "flag {}: {raw:?} (version {})",
        state.settings.flag.target(),
        reading.version.as_deref().unwrap_or("?")
    ));
    if mem.flag_before.is_none() {
        mem.flag_before = Some(raw.clone());
        store.remember(mem).await?;
        log.line(format!("remembered the old value {raw:?}"));
    }
    let pct = match &reading.parsed {
        Some(Ok(v)) => v.percentage,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("the flag has no value; nothing can be turned off".into()),
    };
    if pct == Percentage::OFF {
        log.line("already at 0 %: nothing to change");
        return Ok(());
    }
    let version = reading.version.clone().unwrap_or_default();
    let comment = format!("rollback run #{} by {}: {}", run.id, run.actor, run.reason);
    let change = state.flags.write(&version, Percentage::OFF, &comment).await.map_err(|e| e.to_string())?;
    log.line(format!(
        "set to 0 %: {:?} → {:?}, read back at version {}",
        change.before,
        change.after,
        change.version.as_deref().unwrap_or("?")
    ));
    Ok(())
}

async fn current_revision(state: &AppState) -> Result<Option<String>, String> {
    let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
    diary.schema().await.map(|s| s.alembic_revision).map_err(|e| e.to_string())
}

async fn schema_downgrade(state: &AppState, mem: &Memory, log: &mut Log) -> Result<(), String> {
    let before = current_revision(state).await?;
    log.line(format!("current revision {}, target {}", before.as_deref().unwrap_or("none"), mem.target_revision));
    if before.as_deref() == Some(mem.target_revision.as_str()) {
        log.line("already at the target revision: nothing to run");
        return Ok(());
    }
    let DowngradeSettings::Command { argv } = &state.settings.rollback.downgrade;
    let argv = substitute(argv, state, mem);
    run_command(state, &argv, log).await?;
    let after = current_revision(state).await?;
    if after.as_deref() != Some(mem.target_revision.as_str()) {
        return Err(format!(
            "the command succeeded but the revision reads back as {} instead of {}",
            after.as_deref().unwrap_or("none"),
            mem.target_revision
        ));
    }
    log.line(format!("read back: revision {}", mem.target_revision));
    Ok(())
}

async fn verify_schema(state: &AppState, mem: &Memory, log: &mut Log) -> Result<(), String> {
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
    log.line(format!(
        "information_schema.columns of {}: split columns present: {}",
        diary.table(),
        if columns.is_empty() { "none".to_string() } else { columns.join(", ") }
    ));
    log.line(format!("alembic_version: {} (target {})", revision.as_deref().unwrap_or("none"), mem.target_revision));
    let mut wrong = Vec::new();
    if !columns.is_empty() {
        wrong.push(format!("{} still has {}", diary.table(), columns.join(" and ")));
    }
    if revision.as_deref() != Some(mem.target_revision.as_str()) {
        wrong.push(format!(
            "the revision is {} instead of {}",
            revision.as_deref().unwrap_or("none"),
            mem.target_revision
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

async fn restore_data(state: &AppState, log: &mut Log) -> Result<(), String> {
    let rb = &state.settings.rollback;
    let Some(file) = &rb.backup_file else { return Err("rollback.backup_file is not configured".into()) };
    if !file.exists() {
        return Err(format!("the backup {} does not exist", file.display()));
    }
    let argv = substitute(&rb.restore_argv, state, &Memory::default());
    run_command(state, &argv, log).await?;
    let diary = state.diary.as_ref().map_err(|e| e.to_string())?;
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", diary.table()))
        .fetch_one(diary.pool())
        .await
        .map_err(|e| format!("reading back: {e}"))?;
    log.line(format!("read back: {} holds {rows} rows", diary.table()));
    Ok(())
}

async fn smoke_checks(
    state: &AppState,
    run: &RunView,
    mem: &mut Memory,
    store: &impl Remember,
    log: &mut Log,
) -> Result<(), String> {
    let rb = &state.settings.rollback;
    let Some(api) = &rb.diary_api_url else { return Err("rollback.diary_api_url is not configured".into()) };
    let http =
        reqwest::Client::builder().timeout(state.settings.source_timeout()).build().map_err(|e| e.to_string())?;
    let base = api.trim_end_matches('/');
    if mem.smoke_entry_id.is_none() {
        let body =
            serde_json::json!({"user_id": 0, "dose": 1.0, "note": format!("rollback run #{} smoke check", run.id)});
        let resp = http
            .post(format!("{base}/v1/diary"))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST {base}/v1/diary: {}", e.without_url()))?;
        let status = resp.status();
        let created: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.as_u16() != 201 {
            return Err(format!("POST {base}/v1/diary answered {status}: {created}"));
        }
        let id = created["id"].as_i64().ok_or_else(|| format!("POST {base}/v1/diary gave no id: {created}"))?;
        mem.smoke_entry_id = Some(id);
        store.remember(mem).await?;
        log.line(format!("POST {base}/v1/diary {body} → 201, entry #{id}"));
    }
    let id = mem.smoke_entry_id.unwrap_or_default();
    let resp = http
        .get(format!("{base}/v1/diary/{id}"))
        .send()
        .await
        .map_err(|e| format!("GET {base}/v1/diary/{id}: {}", e.without_url()))?;
    let status = resp.status();
    let entry: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() || entry["dose"].as_f64() != Some(1.0) {
        return Err(format!("GET {base}/v1/diary/{id} answered {status}: {entry} (expected dose 1.0)"));
    }
    if entry.get("insulin_short").is_some() || entry.get("insulin_long").is_some() {
        return Err(format!("the legacy entry came back with split fields: {entry}"));
    }
    log.line(format!("GET {base}/v1/diary/{id} → {status}: dose 1.0, no split fields"));
    let prom = state.prometheus.as_ref().map_err(|e| e.to_string())?;
    let Some(baseline) = mem.baseline_rate.filter(|b| *b > 0.0) else {
        log.line("no baseline rate was recorded at the start: the legacy rate is not compared");
        return Ok(());
    };
    let want = baseline * rb.smoke_fraction;
    loop {
        match prom.scalar(&rb.smoke_legacy_query).await {
            Ok(rate) if rate >= want => {
                log.line(format!(
                    "legacy rate {rate:.3}/s ≥ {want:.3}/s ({:.0} % of the baseline {baseline:.3}/s)",
                    rb.smoke_fraction * 100.0
                ));
                return Ok(());
            }
            Ok(rate) => {
                log.line(format!("legacy rate {rate:.3}/s, waiting for {want:.3}/s"));
            }
            Err(e) => log.line(format!("legacy rate unavailable: {e}")),
        }
        tokio::time::sleep(rb.poll_interval().max(Duration::from_secs(1))).await;
    }
}

/// Replaces the placeholders inside each argument (never through a shell).
pub fn substitute(argv: &[String], state: &AppState, mem: &Memory) -> Vec<String> {
    let backup = state.settings.rollback.backup_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let url = state.diary_database_url.as_ref().map(Secret::expose).unwrap_or_default();
    argv.iter()
        .map(|a| {
            a.replace("{previous_revision}", &mem.target_revision)
                .replace("{backup_file}", &backup)
                .replace("{diary_database_url}", url)
        })
        .collect()
}

/// How a command is shown: the database URL masked.
pub fn shown(argv: &[String], state: &AppState) -> String {
    let text =
        argv.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }).collect::<Vec<_>>().join(" ");
    redact(&text, state)
}

pub fn redact(text: &str, state: &AppState) -> String {
    match state.diary_database_url.as_ref().map(Secret::expose) {
        Some(url) if !url.is_empty() => text.replace(url, "***"),
        _ => text.to_string(),
    }
}

const MAX_OUTPUT: usize = 64 * 1024;

/// Runs a configured command with the diary database as `DATABASE_URL`; its output (masked,
/// at most 64 KiB) goes to the log. A non-zero exit is an error.
async fn run_command(state: &AppState, argv: &[String], log: &mut Log) -> Result<(), String> {
    let rb = &state.settings.rollback;
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    if let Some(dir) = &rb.working_dir {
        cmd.current_dir(dir);
    }
    if let Some(url) = &state.diary_database_url {
        cmd.env("DATABASE_URL", url.expose());
    }
    let cwd = rb.working_dir.as_ref().map(|d| format!(" (in {})", d.display())).unwrap_or_default();
    log.line(format!("$ {}{cwd}", shown(argv, state)));
    let t0 = Instant::now();
    let out = cmd.output().await.map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if text.len() > MAX_OUTPUT {
        let cut = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= MAX_OUTPUT).last().unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n… (output cut at 64 KiB)");
    }
    log.line(redact(text.trim_end(), state));
    log.line(format!(
        "exit status {} after {:.1} s",
        out.status.code().map(|c| c.to_string()).unwrap_or_else(|| "none (killed)".into()),
        t0.elapsed().as_secs_f64()
    ));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} failed with {}", out.status))
    }
}

/// The dry run: each step with the concrete commands, calls and values it would use.
pub fn describe(
    state: &AppState,
    mem: &Memory,
    writer_now: Option<i32>,
    flag_now: Option<&str>,
    restore: bool,
) -> Vec<PlannedStep> {
    let s = &state.settings;
    let rb = &s.rollback;
    let ns = &s.writer.namespace;
    let dep = &s.writer.deployment;
    let restore_to = writer_now.filter(|n| *n > 0).unwrap_or(rb.default_writer_replicas);
    let target =
        if mem.target_revision.is_empty() { "<unknown previous revision>" } else { mem.target_revision.as_str() };
    let DowngradeSettings::Command { argv } = &rb.downgrade;
    let cwd = rb.working_dir.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default();
    let api = rb.diary_api_url.as_deref().unwrap_or("<rollback.diary_api_url not configured>");
    let actions: [Vec<String>; 8] = [
        vec![
            format!("read deployment {ns}/{dep} (now {} desired) and remember the count", writer_now.map(|n| n.to_string()).unwrap_or_else(|| "?".into())),
            format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/{dep}/scale {{\"spec\":{{\"replicas\":0}}}}"),
            "wait until 0 replicas are ready".into(),
        ],
        vec![
            format!("read flag {} (now {:?}) and remember it", s.flag.target(), flag_now.unwrap_or("?")),
            "write 0 % in the flag's own format, conditional on the version read; read it back".into(),
        ],
        vec![
            format!("if alembic_version is not already {target}:"),
            format!("$ {}{cwd} with DATABASE_URL=***", shown(&substitute(argv, state, &Memory { target_revision: target.into(), ..mem.clone() }), state)),
            format!("read back alembic_version = {target}"),
        ],
        vec![
            format!("SELECT column_name FROM information_schema.columns WHERE table_name = '{}' AND column_name IN ('insulin_short', 'insulin_long') → expect none", s.schema.table),
            format!("SELECT version_num FROM alembic_version → expect {target}"),
        ],
        if restore {
            vec![
                format!("$ {}{cwd}", shown(&substitute(&rb.restore_argv, state, mem), state)),
                format!("read back: count the rows of {}", s.schema.table),
            ]
        } else {
            vec!["not chosen: no data is restored".into()]
        },
        vec![
            format!("PATCH /apis/apps/v1/namespaces/{ns}/deployments/{dep}/scale {{\"spec\":{{\"replicas\":{restore_to}}}}} (the remembered count)"),
            format!("wait until {restore_to} replicas are ready"),
        ],
        vec![
            format!("POST {api}/v1/diary {{\"user_id\": 0, \"dose\": 1.0, \"note\": \"rollback run #N smoke check\"}} → 201, then GET it back: dose 1.0, no split fields"),
            format!(
                "PromQL `{}` ≥ {:.0} % of the baseline `{}` snapshotted at the start{}",
                rb.smoke_legacy_query,
                rb.smoke_fraction * 100.0,
                rb.smoke_baseline_query,
                mem.baseline_rate.map(|b| format!(" (now {b:.3}/s)")).unwrap_or_default()
            ),
        ],
        vec!["write the incident record: timeline, who, why, each step's output, a postmortem template; GET /api/v1/incidents/{id}.md".into()],
    ];
    STEPS
        .iter()
        .zip(actions)
        .enumerate()
        .map(|(i, ((name, title), actions))| PlannedStep {
            index: i as u32 + 1,
            name: name.to_string(),
            title: title.to_string(),
            actions,
            chosen: *name != "restore_data" || restore,
        })
        .collect()
}
