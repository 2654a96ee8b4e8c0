//! The rollback's rehearsal (`[rollback.rehearsal]`) and the autopilot's demand for a recent
//! passing one (`[autopilot.require_rehearsal]`). The scratch server is `REHEARSAL_DATABASE_URL`
//! (a role that may `CREATE DATABASE`; never the live diary's database).

use std::path::PathBuf;

use serde::Deserialize;

/// How a rehearsal restores the newest backup and puts the split revision back. Commands are
/// argument lists; `{diary_database_url}` is the scratch database's URL, `{backup_file}` the
/// backup rehearsed on, `{previous_revision}` and `{split_revision}` the downgrade's target and
/// the revision the backup holds. The downgrade is the rollback's own (`rollback.downgrade`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RehearsalSettings {
    /// The backups: the newest `*.dump` here (by modification time) is rehearsed on. Unset: the
    /// rollback's `backup_file`.
    pub backup_dir: Option<PathBuf>,
    /// Restores the backup into the empty scratch database.
    pub restore_argv: Vec<String>,
    /// Puts the split revision back after the downgrade (the roll-forward's deploy).
    pub upgrade_argv: Vec<String>,
    /// The longest a whole rehearsal may take; past it, it fails and its scratch database goes.
    pub timeout_secs: u64,
}

impl Default for RehearsalSettings {
    fn default() -> Self {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        RehearsalSettings {
            backup_dir: None,
            restore_argv: argv(&[
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--dbname={diary_database_url}",
                "{backup_file}",
            ]),
            upgrade_argv: argv(&["alembic", "-c", "services/api/alembic/alembic.ini", "upgrade", "{split_revision}"]),
            timeout_secs: 3600,
        }
    }
}

/// The autopilot goes past `above_percentage` only with a rehearsal that passed within
/// `max_age_hours` (it holds, and says why, until one has).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequireRehearsal {
    pub above_percentage: u8,
    pub max_age_hours: u64,
}
