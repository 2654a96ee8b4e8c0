//! The configured commands a step runs: placeholders filled in each argument (never through a
//! shell), the database URL masked wherever a command or its output is shown. A command runs in
//! the dashboard's process, or as a Kubernetes Job when `rollback.job` is set (`run_as_job`).

use std::time::Instant;

use super::super::super::cluster::{job_name, JobSpec, JobState};
use super::super::super::error::SourceError;
use super::super::super::redact::without_urls;

use super::super::super::config::Secret;
use super::super::super::state::AppState;
use super::{Log, Memory};

/// Replaces the placeholders inside each argument (never through a shell). For a Job, the
/// database URL is `$(DATABASE_URL)`, which the kubelet fills from the Job's Secret.
pub fn substitute(argv: &[String], state: &AppState, mem: &Memory) -> Vec<String> {
    let rb = &state.settings.rollback;
    let backup = match (&rb.backup_file, &rb.job) {
        // A path as the Job sees it.
        (Some(p), Some(_)) => p.display().to_string(),
        // A relative backup file is the dashboard's own (its working directory), not the command's.
        (Some(p), None) => std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string(),
        (None, _) => String::new(),
    };
    let url = match &rb.job {
        Some(_) => "$(DATABASE_URL)",
        None => state.diary_database_url.as_ref().map(Secret::expose).unwrap_or_default(),
    };
    let split = mem.from_revision.as_deref().unwrap_or_default();
    fill_in(
        argv,
        &Placeholders { previous_revision: &mem.target_revision, split_revision: split, backup_file: &backup, url },
    )
}

/// The values of a command's placeholders.
pub struct Placeholders<'a> {
    /// `{previous_revision}`: the revision before the split one (the downgrade's target).
    pub previous_revision: &'a str,
    /// `{split_revision}`: the revision the diary held before the downgrade (the rehearsal's upgrade).
    pub split_revision: &'a str,
    pub backup_file: &'a str,
    /// `{diary_database_url}`.
    pub url: &'a str,
}

/// `argv` with the placeholders replaced inside each argument (never through a shell).
pub fn fill_in(argv: &[String], p: &Placeholders<'_>) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{previous_revision}", p.previous_revision)
                .replace("{split_revision}", p.split_revision)
                .replace("{backup_file}", p.backup_file)
                .replace("{diary_database_url}", p.url)
        })
        .collect()
}

/// How a command is shown: the database URL masked.
pub fn shown(argv: &[String], state: &AppState) -> String {
    let text =
        argv.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }).collect::<Vec<_>>().join(" ");
    redact(&text, state)
}

/// `text` without any configured secret (the diary's URL and its password among them).
pub fn redact(text: &str, state: &AppState) -> String {
    state.secrets.redact(text)
}

const MAX_OUTPUT: usize = 64 * 1024;

/// Which run's step, and which attempt of it, a command is run for (a Job's name).
pub struct ForStep<'a> {
    pub run: i64,
    /// When the run was created: with its id, what tells this run's Jobs from another's of the
    /// same name (a state database recreated counts runs from 1 again).
    pub run_created: chrono::DateTime<chrono::Utc>,
    pub step: &'a str,
    pub attempt: i32,
}

/// Runs a configured command with the diary database as `DATABASE_URL`, here or as a Job; its
/// output (masked, at most 64 KiB) goes to the log. A non-zero exit is an error.
pub(super) async fn run_command(
    state: &AppState,
    argv: &[String],
    of: ForStep<'_>,
    log: &mut Log,
) -> Result<(), String> {
    match &state.settings.rollback.job {
        Some(_) => run_as_job(state, argv, of, log).await,
        None => run_here(state, argv, state.diary_database_url.as_ref(), log).await,
    }
}

/// Runs `argv` in the dashboard's process (in the configured working directory) with `url` as
/// `DATABASE_URL`.
async fn run_here(state: &AppState, argv: &[String], url: Option<&Secret>, log: &mut Log) -> Result<(), String> {
    let env = |cmd: &mut tokio::process::Command| {
        if let Some(url) = url {
            cmd.env("DATABASE_URL", url.expose());
        }
    };
    run_in_process(state, argv, env, log).await
}

/// What an isolated command keeps of the dashboard's environment: where programs are, the
/// locale, TLS roots. Nothing that could name a database.
const KEPT: [&str; 10] =
    ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR", "PGSSLROOTCERT"];

/// Runs `argv` like `run_here`, with an environment of `vars` and `KEPT` only (a rehearsal's
/// commands: no variable of the dashboard's, such as `PGHOST` or the diary's URL, reaches them).
pub async fn run_isolated(
    state: &AppState,
    argv: &[String],
    vars: &[(&str, &str)],
    log: &mut Log,
) -> Result<(), String> {
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env_clear();
        for k in KEPT {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
    };
    run_in_process(state, argv, env, log).await
}

async fn run_in_process(
    state: &AppState,
    argv: &[String],
    env: impl FnOnce(&mut tokio::process::Command),
    log: &mut Log,
) -> Result<(), String> {
    let rb = &state.settings.rollback;
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    if let Some(dir) = &rb.working_dir {
        cmd.current_dir(dir);
    }
    env(&mut cmd);
    let cwd = rb.working_dir.as_ref().map(|d| format!(" (in {})", d.display())).unwrap_or_default();
    log.line(format!("$ {}{cwd}", shown(argv, state)));
    let t0 = Instant::now();
    let out = cmd.output().await.map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    log.line(shown_output(&text, state).trim_end());
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

/// Output as shown: masked before it is cut (a secret astride the cut must not leave its first
/// half), at most 64 KiB.
fn shown_output(text: &str, state: &AppState) -> String {
    let mut text = redact(text, state);
    if text.len() > MAX_OUTPUT {
        let cut = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= MAX_OUTPUT).last().unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n… (output cut at 64 KiB)");
    }
    text
}

/// The Job that runs `argv` for this attempt of the step.
pub fn job_spec(state: &AppState, argv: &[String], of: &ForStep<'_>) -> Result<JobSpec, String> {
    let rb = &state.settings.rollback;
    let job = rb.job.as_ref().ok_or("rollback.job is not set")?;
    let attempt = of.attempt.to_string();
    Ok(JobSpec {
        name: job_name(&["rollback", &of.run.to_string(), of.step, &attempt]).map_err(|e| e.to_string())?,
        image: job.image.clone(),
        argv: argv.to_vec(),
        env_secret: job.env_secret.clone(),
        service_account: job.service_account.clone(),
        volume: job.backup_claim.clone().map(|claim| (claim, job.backup_mount.clone())),
        deadline_secs: rb.step_timeout_secs,
        labels: [
            ("rollout-dashboard/run".to_string(), of.run.to_string()),
            ("rollout-dashboard/step".to_string(), of.step.replace('_', "-")),
        ]
        .into(),
        owner: format!("run {} created {}", of.run, of.run_created.to_rfc3339()),
    })
}

/// Runs `argv` as a Job in the writers' namespace and waits for it. An earlier attempt may have
/// left its Job running (the executor died, or its step timed out while the Job went on): this
/// attempt waits for it, and an earlier Job that succeeded is this attempt's success, so a command
/// never runs twice at once and never again after it succeeded (a restore run twice would restore
/// over what came after). When an earlier Job's state cannot be read, nothing is started. A Job of
/// this attempt that exists already (the step resumed) is waited for, not created again.
async fn run_as_job(state: &AppState, argv: &[String], of: ForStep<'_>, log: &mut Log) -> Result<(), String> {
    let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
    for earlier in (1..of.attempt).rev() {
        let name = job_spec(state, argv, &ForStep { attempt: earlier, ..of })?.name;
        match cluster.job_state(&name).await {
            Ok(JobState::Running) => {
                log.line(format!("attempt {earlier}'s Job {name} is still running: waiting for it"));
                if wait_for_job(state, &name, log).await.is_ok() {
                    log.line(format!("Job {name} succeeded: its outcome is this attempt's"));
                    return Ok(());
                }
            }
            Ok(JobState::Succeeded) => {
                log.line(format!("attempt {earlier}'s Job {name} succeeded (after its step gave up): not run again"));
                return Ok(());
            }
            Ok(JobState::Failed(_)) | Err(SourceError::Missing { .. }) => {}
            Err(e) => {
                return Err(format!(
                    "cannot tell whether attempt {earlier}'s Job {name} still runs ({e}); nothing was started: \
                     retry once Kubernetes answers"
                ))
            }
        }
    }
    let spec = job_spec(state, argv, &of)?;
    log.line(format!(
        "$ {} as Job {}/{} (image {}, environment from Secret {})",
        shown(argv, state),
        cluster.namespace(),
        spec.name,
        spec.image,
        spec.env_secret
    ));
    cluster.create_job(&spec, false).await.map_err(|e| format!("the Job could not be created: {e}"))?;
    wait_for_job(state, &spec.name, log).await
}

/// Polls the Job until it ends, then logs its pod's output.
async fn wait_for_job(state: &AppState, name: &str, log: &mut Log) -> Result<(), String> {
    let cluster = state.writer_cluster.as_ref().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let ended = loop {
        match cluster.job_state(name).await {
            Ok(JobState::Running) => {}
            Ok(ended) => break ended,
            // Deleted, or no longer ours to read: it will not be seen to end.
            Err(e @ (SourceError::Missing { .. } | SourceError::Rejected { .. })) => {
                return Err(format!("the Job {name} cannot be followed: {e}"))
            }
            // Kubernetes failing for a moment does not end the Job: look again (the step's time
            // limit bounds the wait).
            Err(e) => tracing::warn!(job = name, "cannot read the Job: {e}"),
        }
        tokio::time::sleep(state.settings.rollback.poll_interval()).await;
    };
    match cluster.job_log(name, MAX_OUTPUT as i64).await {
        // Its database URL is the Secret's, maybe not one the dashboard knows: no URL is shown.
        Ok(text) => log.line(without_urls(&shown_output(&text, state)).trim_end()),
        Err(e) => log.line(format!("its log cannot be read: {e}")),
    }
    log.line(format!("Job {name}: {ended:?} after {:.1} s", t0.elapsed().as_secs_f64()));
    match ended {
        JobState::Succeeded => Ok(()),
        JobState::Failed(reason) => Err(format!("the Job {name} failed: {reason}")),
        JobState::Running => unreachable!("left the loop"),
    }
}
