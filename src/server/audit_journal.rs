//! The write-ahead journal of the audit trail: a local file, one JSON object per line, synced to
//! disk on every write. It covers what the state database alone cannot:
//! - the dashboard killed between changing the flag and recording the change: the change's
//!   intent was journaled before the flag store was touched, so the next start records it
//!   ("failed", outcome unknown, with the flag's value as read then);
//! - the state database down when a change is made (the kill switch must still work): the whole
//!   entry is journaled and recorded in `audit_log` as soon as the database answers again.
//!
//! Replay is idempotent: an entry is inserted only when `audit_log` holds no entry with its
//! request id and action, so a crash between inserting and journaling "recorded" duplicates
//! nothing. Entries keep the time they happened.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::NewEntry;
use super::error::SourceError;
use crate::api::audit::Outcome;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    /// About to change something outside; written before the change.
    Intent { boot: String, at: DateTime<Utc>, entry: NewEntry },
    /// The entry as it should be recorded (the database could not take it).
    Outcome { at: DateTime<Utc>, entry: NewEntry },
    /// `audit_log` holds the entry with this request id and action (lines written before the
    /// action was named stand for every entry of the request).
    Recorded {
        request_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("the audit journal {path} cannot be written: {detail}")]
pub struct JournalError {
    path: String,
    detail: String,
}

/// What one replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Journaled entries now in `audit_log`.
    pub recorded: usize,
    /// Of those, changes interrupted before their outcome was known.
    pub interrupted: usize,
    /// Entries the database already held.
    pub already_there: usize,
}

/// Between a request id and an action in a journal key.
const SEP: char = '\u{1f}';

/// An entry's key in the journal: its request id and action, as `audit::record_once` tells
/// entries apart.
fn key(entry: &NewEntry) -> String {
    format!("{}{SEP}{}", entry.request_id.as_deref().unwrap_or_default(), entry.action)
}

pub struct AuditJournal {
    path: PathBuf,
    /// This process's start, so that replay never mistakes a change in flight for an interrupted one.
    boot: String,
    /// Intents of this process whose entry is not recorded yet.
    open: Mutex<HashSet<String>>,
    file: Mutex<()>,
}

impl AuditJournal {
    pub fn new(path: PathBuf) -> AuditJournal {
        let boot = format!("{}-{}", std::process::id(), Utc::now().timestamp_nanos_opt().unwrap_or_default());
        AuditJournal { path, boot, open: Mutex::default(), file: Mutex::default() }
    }

    /// The journal used when the settings name none: per state database and listen address (one
    /// journal per dashboard process: a replica must never replay another's changes in flight), in
    /// the temporary directory (it survives the process, not the machine; production sets
    /// `audit_journal_file`).
    pub fn default_path(state_database_url: &str, listen: std::net::SocketAddr) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{state_database_url} {listen}").as_bytes());
        let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("rollout-dashboard-journal-{tag}.jsonl"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, line: &Line) -> Result<(), JournalError> {
        let err = |e: std::io::Error| JournalError { path: self.path.display().to_string(), detail: e.to_string() };
        let mut text = serde_json::to_string(line).map_err(|e| err(std::io::Error::other(e)))?;
        text.push('\n');
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Journals that `entry` is about to be acted on. A change that cannot be journaled must not
    /// be made: nothing would record it if the dashboard died half-way.
    pub fn intent(&self, entry: &NewEntry) -> Result<(), JournalError> {
        let id = key(entry);
        // Open before it is written, so that no compaction can empty the journal in between.
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
        let written = self.append(&Line::Intent { boot: self.boot.clone(), at: Utc::now(), entry: entry.clone() });
        if written.is_err() {
            self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
        written
    }

    /// After the attempt to record `entry` in `audit_log`: marks it recorded, or journals it
    /// whole for replay. Returns false only when the entry is in neither place.
    pub fn settle(&self, entry: &NewEntry, in_database: bool) -> bool {
        let had_intent = self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(entry));
        let line = if in_database {
            if !had_intent {
                return true;
            }
            Line::Recorded {
                request_id: entry.request_id.clone().unwrap_or_default(),
                action: Some(entry.action.as_str().to_string()),
            }
        } else {
            Line::Outcome { at: Utc::now(), entry: entry.clone() }
        };
        match self.append(&line) {
            Ok(()) => {
                if in_database {
                    self.compact();
                }
                true
            }
            Err(e) => {
                tracing::error!(request_id = %entry.request_id.as_deref().unwrap_or(""), "{e}");
                in_database
            }
        }
    }

    fn read(&self) -> Vec<Line> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(_) => return Vec::new(),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str(l) {
                Ok(line) => Some(line),
                Err(e) => {
                    // A line cut short by a crash mid-write: its change never started.
                    tracing::warn!("audit journal: skipping an unreadable line: {e}");
                    None
                }
            })
            .collect()
    }

    /// What replay must record: whole entries, and intents of earlier processes that never got an
    /// outcome (true: interrupted), keyed by request id and action (one request may make
    /// several entries: the hook's kill and its alert), in journal order.
    fn pending(&self, lines: &[Line]) -> Vec<(DateTime<Utc>, NewEntry, bool)> {
        let mut recorded = HashSet::new();
        let mut todo: BTreeMap<String, (usize, DateTime<Utc>, NewEntry, bool)> = BTreeMap::new();
        for (n, line) in lines.iter().enumerate() {
            match line {
                Line::Intent { boot, at, entry } if *boot != self.boot => {
                    todo.entry(key(entry)).or_insert((n, *at, entry.clone(), true));
                }
                Line::Intent { .. } => {}
                Line::Outcome { at, entry } => {
                    todo.insert(key(entry), (n, *at, entry.clone(), false));
                }
                Line::Recorded { request_id, action } => {
                    recorded.insert(match action {
                        Some(a) => format!("{request_id}{SEP}{a}"),
                        None => request_id.clone(),
                    });
                }
            }
        }
        let done = |k: &String| recorded.contains(k) || recorded.contains(k.split(SEP).next().unwrap_or_default());
        let mut out: Vec<_> = todo.into_iter().filter(|(k, _)| !done(k)).map(|(_, v)| v).collect();
        out.sort_by_key(|v| v.0);
        out.into_iter().map(|(_, at, e, interrupted)| (at, e, interrupted)).collect()
    }

    /// Records in `audit_log` everything journaled that it lacks, then empties the journal when
    /// nothing in it is open. `flag_now` describes the flag for interrupted changes.
    pub async fn replay(&self, db: &sqlx::PgPool, flag_now: Option<String>) -> Result<Replayed, SourceError> {
        let lines = self.read();
        let mut done = Replayed::default();
        for (at, mut entry, interrupted) in self.pending(&lines) {
            if interrupted {
                entry.outcome = Outcome::Failed;
                entry.value_after = None;
                entry.outcome_detail = Some(format!(
                    "interrupted: the dashboard stopped during this change, its outcome is unknown; the flag read {} afterwards",
                    flag_now.as_deref().unwrap_or("(unreadable)")
                ));
            }
            let inserted = super::audit::record_once(db, at, &entry).await?;
            if inserted {
                done.recorded += 1;
                done.interrupted += usize::from(interrupted);
            } else {
                done.already_there += 1;
            }
            let recorded = Line::Recorded {
                request_id: entry.request_id.clone().unwrap_or_default(),
                action: Some(entry.action.as_str().to_string()),
            };
            if let Err(e) = self.append(&recorded) {
                tracing::error!("{e}");
            }
        }
        self.compact();
        Ok(done)
    }

    /// Empties the journal when every change in it is recorded and none is in flight.
    fn compact(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if !open.is_empty() {
            return;
        }
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let lines = self.read();
        if !lines.is_empty() && self.pending(&lines).is_empty() {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                let _ = f.set_len(0).and_then(|_| f.sync_data());
            }
        }
    }

    /// Lines in the journal (for tests and the log).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Empty or absent: a look at the file's size, not a read (replay asks every refresh interval).
    pub fn is_empty(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::audit::Action;

    fn entry(id: &str) -> NewEntry {
        NewEntry {
            actor: "ana".into(),
            role: "operator".into(),
            action: Action::FlagKill,
            target: "diabetes/feature-flags/insulin_dose_split".into(),
            value_before: None,
            value_after: None,
            reason: Some("alarm".into()),
            outcome: Outcome::Done,
            outcome_detail: None,
            request_id: Some(id.into()),
            run_id: None,
            plan_id: None,
        }
    }

    #[test]
    fn in_flight_intents_wait_and_earlier_ones_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let before = AuditJournal::new(path.clone());
        before.intent(&entry("r1")).unwrap(); // the process dies here
        before.intent(&entry("r2")).unwrap();
        assert!(before.settle(&entry("r2"), true));
        before.intent(&entry("r3")).unwrap();
        assert!(before.settle(&entry("r3"), false)); // the database was down
        assert!(before.pending(&before.read()).iter().all(|(_, e, _)| e.request_id.as_deref() == Some("r3")));

        let after = AuditJournal::new(path);
        after.intent(&entry("r4")).unwrap(); // in flight now
        let todo: Vec<(String, bool)> =
            after.pending(&after.read()).into_iter().map(|(_, e, i)| (e.request_id.unwrap(), i)).collect();
        assert_eq!(todo, vec![("r1".to_string(), true), ("r3".to_string(), false)]);
    }

    #[test]
    fn one_request_may_journal_several_entries() {
        // The alert hook's delivery: the kill and the alert's own entry, one request id.
        let dir = tempfile::tempdir().unwrap();
        let j = AuditJournal::new(dir.path().join("j.jsonl"));
        let alert = NewEntry { action: Action::HookAlert, ..entry("r1") };
        j.intent(&entry("r1")).unwrap();
        assert!(j.settle(&entry("r1"), false));
        assert!(j.settle(&alert, false));
        let todo: Vec<Action> = j.pending(&j.read()).into_iter().map(|(_, e, _)| e.action).collect();
        assert_eq!(todo, [Action::FlagKill, Action::HookAlert]);
        // Recorded one by one; a line from before actions were named stands for the whole request.
        j.append(&Line::Recorded { request_id: "r1".into(), action: Some(Action::FlagKill.as_str().into()) }).unwrap();
        let todo: Vec<Action> = j.pending(&j.read()).into_iter().map(|(_, e, _)| e.action).collect();
        assert_eq!(todo, [Action::HookAlert]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&j.path)
            .unwrap()
            .write_all(b"{\"kind\":\"recorded\",\"request_id\":\"r1\"}\n")
            .unwrap();
        assert!(j.pending(&j.read()).is_empty());
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let j = AuditJournal::new(path.clone());
        j.intent(&entry("r1")).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"kind\":\"outc").unwrap();
        assert_eq!(AuditJournal::new(path).read().len(), 1);
    }
}
