//! The users file of local mode (`[[users]] name, role, password_hash`), read at start (a bad
//! file refuses the start) and read again when it changes, looked at every `RECHECK`: a user
//! removed or demoted stops counting within a minute, whatever their session says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::PasswordHash;
use serde::Deserialize;

use super::AuthSetupError;
use crate::api::auth::Role;

/// How often, at most, the users file is looked at again for changes.
const RECHECK: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalUser {
    name: String,
    role: String,
    password_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<LocalUser>,
}

/// Name: role and password hash.
type ByName = HashMap<String, (Role, String)>;

struct Read {
    by_name: ByName,
    modified: Option<SystemTime>,
    checked: Instant,
}

pub struct Users {
    path: Option<PathBuf>,
    read: RwLock<Read>,
}

impl Users {
    /// No users file (proxy mode, or none configured): nobody signs in with a password.
    pub fn none() -> Users {
        Users {
            path: None,
            read: RwLock::new(Read { by_name: HashMap::new(), modified: None, checked: Instant::now() }),
        }
    }

    pub fn load(path: &Path) -> Result<Users, AuthSetupError> {
        let by_name = read_users(path)?;
        let read = Read { by_name, modified: modified_at(path), checked: Instant::now() };
        Ok(Users { path: Some(path.to_path_buf()), read: RwLock::new(read) })
    }

    /// A user's role and password hash, the file read again when it changed.
    pub fn get(&self, name: &str) -> Option<(Role, String)> {
        let stale = self.read.read().unwrap_or_else(|p| p.into_inner()).checked.elapsed() >= RECHECK;
        if stale {
            self.reread();
        }
        self.read.read().unwrap_or_else(|p| p.into_inner()).by_name.get(name).cloned()
    }

    fn reread(&self) {
        let Some(path) = self.path.as_deref() else { return };
        let mut read = self.read.write().unwrap_or_else(|p| p.into_inner());
        read.checked = Instant::now();
        let modified = modified_at(path);
        if modified == read.modified && modified.is_some() {
            return;
        }
        match read_users(path) {
            Ok(by_name) => {
                tracing::info!(users = by_name.len(), "the users file changed: read again");
                read.by_name = by_name;
                read.modified = modified;
            }
            // Keep who was known: a half-written file must not sign everybody out, nor in.
            Err(e) => tracing::warn!("the users file cannot be read again, the last good one stays: {e}"),
        }
    }
}

fn modified_at(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_users(path: &Path) -> Result<ByName, AuthSetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuthSetupError::Unreadable(path.display().to_string(), e.to_string()))?;
    let file: UsersFile = toml::from_str(&text).map_err(|e| AuthSetupError::Invalid(e.message().to_string()))?;
    let mut users = HashMap::new();
    for u in file.users {
        let role = Role::parse(&u.role)
            .ok_or_else(|| AuthSetupError::Invalid(format!("user {:?}: role must be viewer or operator", u.name)))?;
        PasswordHash::new(&u.password_hash)
            .map_err(|_| AuthSetupError::Invalid(format!("user {:?}: password_hash is not a PHC string", u.name)))?;
        if users.insert(u.name.clone(), (role, u.password_hash)).is_some() {
            return Err(AuthSetupError::Invalid(format!("user {:?} appears twice", u.name)));
        }
    }
    Ok(users)
}
