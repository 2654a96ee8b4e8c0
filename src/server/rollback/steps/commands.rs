//! The configured commands a step runs: placeholders filled in each argument (never through a
//! shell), the database URL masked wherever a command or its output is shown.

use std::time::Instant;

use super::super::super::config::Secret;
use super::super::super::state::AppState;
use super::{Log, Memory};

/// Replaces the placeholders inside each argument (never through a shell).
pub fn substitute(argv: &[String], state: &AppState, mem: &Memory) -> Vec<String> {
    // A relative backup file is the dashboard's own (its working directory), not the command's.
    let backup = state
        .settings
        .rollback
        .backup_file
        .as_ref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string())
        .unwrap_or_default();
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

/// `text` without any configured secret (the diary's URL and its password among them).
pub fn redact(text: &str, state: &AppState) -> String {
    state.secrets.redact(text)
}

const MAX_OUTPUT: usize = 64 * 1024;

/// Runs a configured command with the diary database as `DATABASE_URL`; its output (masked,
/// at most 64 KiB) goes to the log. A non-zero exit is an error.
pub(super) async fn run_command(state: &AppState, argv: &[String], log: &mut Log) -> Result<(), String> {
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
    // Masked before it is cut: a secret astride the cut must not leave its first half.
    let mut text = redact(&text, state);
    if text.len() > MAX_OUTPUT {
        let cut = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= MAX_OUTPUT).last().unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n… (output cut at 64 KiB)");
    }
    log.line(text.trim_end());
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
