//! Rehearsing the rollback before it is needed (issue 33, item 5). A rehearsal restores the
//! newest backup into a scratch database of its own (`scratch.rs`), then runs the plan's data
//! steps on it with the very functions and commands a run uses: the archive (kept in the state
//! database under the rehearsal's own key, forgotten at the end), the fill when asked for, the
//! configured downgrade, the schema's read-back, the split revision back (`upgrade_argv`), and the
//! re-apply; each part timed. It passes when every record came back (`round_trip.rs`). The live
//! diary is never connected to: every connection and every command gets the scratch URL.
//!
//! One runs at a time across replicas (an advisory lock held for its whole length, and a partial
//! unique index); one whose dashboard stopped is marked failed, and its scratch database dropped,
//! by the next look.

mod parts;
mod round_trip;
mod scratch;
pub mod store;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api::audit::{Action, Outcome};
use crate::api::rehearsal::{CategoryRoundTrip, RehearsalState, RehearsalView, Rehearsals, StartRehearsal};

use super::super::audit::{self, NewEntry};
use super::super::caller::Caller;
use super::super::config::Secret;
use super::super::error::ApiError;
use super::super::locks::{with_lock, Lock};
use super::super::state::AppState;
use super::archive;
use super::{conflict, operator, store as runs, Service};
use parts::Progress;

/// The backup a rehearsal restores: its path and when it was taken (its modification time).
#[derive(Debug, Clone)]
pub struct Backup {
    pub path: PathBuf,
    pub at: DateTime<Utc>,
}

impl Backup {
    fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

fn modified(path: &std::path::Path) -> Option<DateTime<Utc>> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from)
}

/// The newest backup: the newest `*.dump` in `rollback.rehearsal.backup_dir`, else the
/// rollback's `backup_file`.
pub fn newest_backup(state: &AppState) -> Result<Backup, String> {
    let rb = &state.settings.rollback;
    if let Some(dir) = &rb.rehearsal.backup_dir {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("rollback.rehearsal.backup_dir {} cannot be read: {e}", dir.display()))?;
        return entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dump"))
            .filter_map(|path| modified(&path).map(|at| Backup { path, at }))
            .max_by_key(|b| b.at)
            .ok_or_else(|| format!("rollback.rehearsal.backup_dir {} holds no *.dump file", dir.display()));
    }
    let path = rb.backup_file.clone().ok_or("no backup to rehearse on: set rollback.rehearsal.backup_dir")?;
    let at = modified(&path).ok_or_else(|| format!("the backup {} cannot be read", path.display()))?;
    Ok(Backup { path, at })
}

/// What a rehearsal needs (the scratch server and the newest backup), or why none can run here.
fn ready(state: &AppState) -> Result<(Secret, Backup), String> {
    let admin = state.rehearsal_database_url.clone().ok_or(
        "rehearsals are not configured: set REHEARSAL_DATABASE_URL (a role that may CREATE DATABASE, not the live \
         diary's database)",
    )?;
    if state.settings.rollback.job.is_some() {
        return Err("rehearsals run pg_restore and the downgrade in the dashboard's process, and rollback.job says \
                    this image has neither: rehearse where the commands are installed"
            .into());
    }
    Ok((admin, newest_backup(state)?))
}

impl Service<'_> {
    /// `GET /api/v1/rollback/rehearsals`.
    pub async fn rehearsals(&self) -> Result<Rehearsals, ApiError> {
        let db = &self.state.state_db;
        let mut recent = store::recent(db, 10).await?;
        // A running rehearsal whose heartbeat stopped: its dashboard stopped (written only then,
        // not at every look).
        if recent.first().is_some_and(|r| r.state == RehearsalState::Running) && store::fail_stale(db).await? > 0 {
            recent = store::recent(db, 10).await?;
        }
        let last_passed = store::last_passed(db).await?;
        Ok(Rehearsals {
            summary: summary(recent.first(), last_passed.as_ref(), Utc::now()),
            unavailable: ready(self.state).err(),
            latest: recent.first().cloned(),
            last_passed,
            recent,
            required_by_autopilot: self.state.settings.autopilot.require_rehearsal.map(|r| {
                format!(
                    "the autopilot steps above {} % only with a rehearsal that passed within {} h",
                    r.above_percentage, r.max_age_hours
                )
            }),
        })
    }

    /// `POST /api/v1/rollback/rehearsals`: starts a rehearsal (operators); it runs in the
    /// background, and the answer is the rehearsal just begun.
    pub async fn rehearse(&self, caller: &Caller, body: StartRehearsal) -> Result<RehearsalView, ApiError> {
        let result = self.try_rehearse(caller, body).await;
        self.recorded(caller, Action::RollbackRehearse, result).await
    }

    async fn try_rehearse(&self, caller: &Caller, body: StartRehearsal) -> Result<RehearsalView, ApiError> {
        operator(caller)?;
        let (admin, backup) = ready(self.state).map_err(|message| ApiError::Conflict {
            code: "rehearsal_unavailable",
            message,
            details: None,
        })?;
        if let Some(run) = runs::active_run_id(&self.state.state_db).await? {
            return Err(conflict(format!("rollback run #{run} is active: rehearse once it has ended")));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let entry = caller.entry(Action::RollbackRehearse, "rollback rehearsal");
        tokio::spawn(rehearse_locked(self.state.clone(), admin, backup, body.fill_dose, entry, tx));
        let id = rx.await.map_err(|_| ApiError::Failed("the rehearsal stopped before it began".into()))??;
        store::get(&self.state.state_db, id).await?.ok_or_else(|| ApiError::NotFound(format!("rehearsal #{id}")))
    }
}

/// "3 h", "12 min", "2 days".
fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let mins = (now - then).num_minutes().max(0);
    match mins {
        0 => "less than a minute".into(),
        1..=59 => format!("{mins} min"),
        60..=2879 => format!("{} h", mins / 60),
        _ => format!("{} days", mins / 1440),
    }
}

/// The rehearsal's one line for the page and the API.
pub fn summary(latest: Option<&RehearsalView>, last_passed: Option<&RehearsalView>, now: DateTime<Utc>) -> String {
    let Some(r) = latest else { return "never rehearsed".into() };
    let backup = match r.backup_at {
        Some(at) => format!("the backup of {} UTC", at.format("%Y-%m-%d %H:%M")),
        None => "a backup".into(),
    };
    let took = r.seconds.map(|s| format!("{s:.0} s")).unwrap_or_default();
    let ended = r.finished_at.map(|f| ago(f, now)).unwrap_or_default();
    match r.state {
        RehearsalState::Running => {
            let part = r.parts.len() + 1;
            format!("rehearsing on {backup} for {} (part {part})", ago(r.started_at, now))
        }
        RehearsalState::Passed => format!("rehearsed {ended} ago on {backup}, {took}, passed"),
        RehearsalState::Failed => {
            let why = r.failure.as_deref().unwrap_or("no reason recorded");
            let passed = match last_passed {
                Some(p) => p.finished_at.map(|f| format!("; the last that passed ended {} ago", ago(f, now))),
                None => Some("; none has passed".into()),
            };
            format!("rehearsal failed {ended} ago on {backup} after {took}: {why}{}", passed.unwrap_or_default())
        }
    }
}

/// Before a rehearsal (holding the rehearsal lock): rehearsals whose heartbeat stopped are failed,
/// and the scratch databases and archives of ended ones not known to be gone are dropped now.
async fn sweep(state: &AppState, admin: &Secret, tag: &str) -> Result<(), super::super::error::SourceError> {
    let db = &state.state_db;
    if store::fail_stale(db).await? > 0 {
        tracing::warn!("a rehearsal was interrupted (its dashboard stopped): marked failed");
    }
    let Ok(options) = scratch::admin_options(admin) else { return Ok(()) };
    for id in store::undropped(db).await? {
        archive::forget_rehearsal(db, id).await?;
        match scratch::drop_database(&options, &scratch::name_of(tag, id)).await {
            Ok(()) => store::mark_dropped(db, id).await?,
            Err(e) => tracing::warn!(rehearsal = id, "its scratch database stays: {e}"),
        }
    }
    Ok(())
}

/// Takes the rehearsal lock, records the rehearsal, tells the request its id, runs it, records
/// its end. A rehearsal already running (here or on another replica) is the request's 409.
async fn rehearse_locked(
    state: AppState,
    admin: Secret,
    backup: Backup,
    fill_dose: bool,
    entry: NewEntry,
    started: tokio::sync::oneshot::Sender<Result<i64, ApiError>>,
) {
    let started = std::sync::Mutex::new(Some(started));
    let tell = |r: Result<i64, ApiError>| {
        if let Some(tx) = started.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(r);
        }
    };
    let db = state.state_db.clone();
    let work = async {
        let tag = store::installation_tag(&db).await?;
        sweep(&state, &admin, &tag).await?;
        let Some(id) = store::insert(&db, &entry.actor, fill_dose, (&backup.file_name(), backup.at)).await? else {
            tell(Err(conflict("a rehearsal is running: wait for it to end".into())));
            return Ok(());
        };
        let begun = format!(
            "rehearsal #{id} on the backup {} of {}{}",
            backup.file_name(),
            backup.at.format("%Y-%m-%d %H:%M UTC"),
            if fill_dose { ", with the fill of dose" } else { "" }
        );
        let target = format!("rollback rehearsal #{id}");
        audit::record(
            &db,
            &NewEntry { target: target.clone(), ..entry.clone() }
                .outcome(Outcome::Done, Some(format!("started {begun}"))),
        )
        .await?;
        tell(Ok(id));
        let mut progress = Progress { db: &db, id, parts: Vec::new() };
        let mut categories = Vec::new();
        let (failure, dropped) =
            on_scratch(&state, &admin, &tag, &backup, fill_dose, &mut progress, &mut categories).await;
        archive::forget_rehearsal(&db, id).await?;
        store::finish(&db, id, failure.as_deref(), &progress.parts, &categories).await?;
        if dropped {
            store::mark_dropped(&db, id).await?;
        }
        let took = store::get(&db, id).await?.and_then(|r| r.seconds).unwrap_or_default();
        let (outcome, detail) = match &failure {
            None => (Outcome::Done, format!("{begun}: passed in {took:.0} s, every record back")),
            Some(f) => (Outcome::Failed, format!("{begun}: failed after {took:.0} s: {f}")),
        };
        audit::record(&db, &NewEntry { target, ..entry.clone() }.outcome(outcome, Some(detail))).await?;
        Ok(())
    };
    match with_lock(&state.locks, Lock::Rehearsal, work).await {
        Ok(Some(())) => {}
        Ok(None) => tell(Err(conflict("a rehearsal is running on another replica: wait for it to end".into()))),
        Err(e) => {
            tracing::warn!("the rehearsal could not be recorded: {e}");
            tell(Err(ApiError::Unavailable(e)));
        }
    }
}

/// The rehearsal on its scratch database, within its time limit and beating; then the scratch
/// database dropped. Why it failed, if it did, and whether the database is gone.
async fn on_scratch(
    state: &AppState,
    admin: &Secret,
    tag: &str,
    backup: &Backup,
    fill_dose: bool,
    progress: &mut Progress<'_>,
    categories: &mut Vec<CategoryRoundTrip>,
) -> (Option<String>, bool) {
    let id = progress.id;
    let limit = std::time::Duration::from_secs(state.settings.rollback.rehearsal.timeout_secs);
    let scratch = match scratch::for_rehearsal(admin, state.diary_database_url.as_ref(), tag, id) {
        Ok(s) => s,
        Err(e) => return (Some(e), true),
    };
    let db = progress.db;
    let mut failure = tokio::select! {
        r = tokio::time::timeout(limit, parts::rehearse(state, &scratch, backup, fill_dose, progress, categories)) => match r {
            Ok(r) => r.err(),
            Err(_) => Some(format!("it took longer than rollback.rehearsal.timeout_secs ({} s)", limit.as_secs())),
        },
        () = heartbeat(db, id) => None,
    };
    let dropped = match scratch.drop_now().await {
        Ok(()) => true,
        Err(e) => {
            let kept = format!(
                "its scratch database {} could not be dropped (the next rehearsal tries again): {e}",
                scratch.name
            );
            failure = Some(failure.map_or(kept.clone(), |f| format!("{f}; {kept}")));
            false
        }
    };
    (failure, dropped)
}

/// Beats every 5 s while the rehearsal runs (never ends by itself).
async fn heartbeat(db: &PgPool, id: i64) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        if let Err(e) = store::heartbeat(db, id).await {
            tracing::warn!(rehearsal = id, "its heartbeat could not be written: {e}");
        }
    }
}
