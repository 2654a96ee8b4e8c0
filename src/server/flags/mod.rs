//! The rollout flag: one store in front of whichever backend holds it (a Kubernetes ConfigMap,
//! a LaunchDarkly flag). The store owns what every backend shares: the write is conditional on
//! the version the person saw, and what was written is read back. A backend only reads, writes
//! if unchanged, and says in words where the flag lives and what its version is called, so no
//! page or sentence names a ConfigMap when the flag lives elsewhere.

mod format;
pub mod kubernetes;
pub mod launchdarkly;
pub mod launchdarkly_api;
pub mod launchdarkly_http;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use format::{FlagFormat, FlagValue, Percentage, UnknownFlagFormat, Unwritable};

use super::error::{Source, SourceError};

/// How an unconfirmed flag write's audit entry begins (the flag observer looks for it).
pub const UNCONFIRMED: &str = "written, not confirmed";

/// What the flag store holds right now.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagReading {
    /// The stored value as text (LaunchDarkly: a readable account of the flag's state); None
    /// when the store holds no value for the flag.
    pub raw: Option<String>,
    pub parsed: Option<Result<Percentage, UnknownFlagFormat>>,
    /// The backend's version of the flag (see [`FlagBackend::version_field`]).
    pub version: Option<String>,
}

/// A flag change that happened and was read back.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagChange {
    pub before: String,
    pub after: String,
    pub version: Option<String>,
}

/// Why a flag change did not happen. Nothing was written in any of these cases, except
/// `ReadBackMismatch`, which says the store holds something other than what was written, and
/// `WrittenNotConfirmed`, where the write went through and the read-back did not.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagWriteError {
    #[error("{0}")]
    Conflict(String),
    #[error("the flag has no value under its key, so its format is unknown; set it outside the dashboard first")]
    Absent,
    #[error(transparent)]
    UnknownFormat(#[from] UnknownFlagFormat),
    #[error(transparent)]
    Unwritable(#[from] Unwritable),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the flag was written but reads back as {read:?} instead of {written:?}")]
    ReadBackMismatch { written: String, read: String },
    /// The write was accepted (2xx), then reading the flag back failed: the change most likely
    /// happened, and is not confirmed. Audited as done, "written, not confirmed", never as failed.
    #[error("written ({written}), not confirmed: reading the flag back failed: {why}")]
    WrittenNotConfirmed { before: String, written: String, why: SourceError },
}

/// What a read-back must show after a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Exactly this text.
    Text(String),
    /// This percentage (the backend's text is a description, not the value).
    Percentage(Percentage),
}

pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One place a flag can live.
pub trait FlagBackend: Send + Sync {
    /// The outside system, for health, metrics and `failing_since`.
    fn source(&self) -> Source;
    /// Its key in the status JSON and `failing_since` ("kubernetes", "launchdarkly").
    fn source_name(&self) -> &'static str {
        self.source().key()
    }
    /// Where the flag lives, in words for people ("ConfigMap diabetes/feature-flags, key ...").
    fn describe_target(&self) -> String;
    /// What the backend calls the flag's version ("resourceVersion", "version").
    fn version_field(&self) -> &'static str;
    /// The sentence for a flag with no value.
    fn absent(&self) -> String;
    fn read(&self) -> BackendFuture<'_, Result<FlagReading, SourceError>>;
    /// Writes `p` only if the flag is still at `expected_version` (`current` was read at it);
    /// says what the read-back must show. `comment` goes where the backend keeps one.
    fn write_if_unchanged<'a>(
        &'a self,
        current: &'a FlagReading,
        expected_version: &'a str,
        p: Percentage,
        comment: &'a str,
    ) -> BackendFuture<'a, Result<Written, FlagWriteError>>;
}

/// Where the flag lives.
#[derive(Clone)]
pub struct FlagStore {
    backend: Arc<dyn FlagBackend>,
}

impl FlagStore {
    pub fn new(backend: impl FlagBackend + 'static) -> FlagStore {
        FlagStore { backend: Arc::new(backend) }
    }

    /// A ConfigMap key (see [`kubernetes::ConfigMapFlag`]).
    pub fn kubernetes(cluster: super::cluster::Cluster, configmap: &str, key: &str) -> FlagStore {
        FlagStore::new(kubernetes::ConfigMapFlag::new(cluster, configmap, key))
    }

    /// The backend the settings choose (`flag.backend`): the one place each backend is named,
    /// besides its own file and the settings' enum. `cluster`: the flag's namespace, if
    /// Kubernetes answers.
    pub fn open(
        settings: &super::config::Settings,
        cluster: Result<super::cluster::Cluster, SourceError>,
        launchdarkly_token: Option<&super::config::Secret>,
        timeout: std::time::Duration,
    ) -> FlagStore {
        use super::config::FlagBackend as Backend;
        let opened = match settings.flag.backend {
            Backend::Kubernetes => cluster.map(|c| {
                FlagStore::new(kubernetes::ConfigMapFlag::new(c, &settings.flag.configmap, &settings.flag.key))
            }),
            Backend::Launchdarkly => {
                launchdarkly_http::LaunchDarkly::new(settings, launchdarkly_token, timeout).map(FlagStore::new)
            }
        };
        opened.unwrap_or_else(|e| {
            tracing::warn!("the flag's store: {e}");
            FlagStore::unconfigured(e)
        })
    }

    /// The configured backend cannot be reached at all (the error says why).
    pub fn unconfigured(e: SourceError) -> FlagStore {
        FlagStore::new(Unconfigured(e))
    }

    /// Sets the rollout percentage, keeping the stored format, only if the flag is still at
    /// `expected_version`; then reads it back.
    pub async fn write(
        &self,
        expected_version: &str,
        p: Percentage,
        comment: &str,
    ) -> Result<FlagChange, FlagWriteError> {
        let current = self.read().await?;
        if current.version.as_deref() != Some(expected_version) {
            return Err(conflict(&current));
        }
        let before = current.raw.clone().ok_or(FlagWriteError::Absent)?;
        current.parsed.clone().ok_or(FlagWriteError::Absent)??;
        let written = self.backend.write_if_unchanged(&current, expected_version, p, comment).await?;
        let read = match self.read().await {
            Ok(read) => read,
            Err(why) => {
                let written = match written {
                    Written::Text(t) => t,
                    Written::Percentage(p) => format!("{} %", p.get()),
                };
                return Err(FlagWriteError::WrittenNotConfirmed { before, written, why });
            }
        };
        let read_raw = read.raw.clone().unwrap_or_default();
        let matches = match &written {
            Written::Text(text) => read.raw.as_deref() == Some(text.as_str()),
            Written::Percentage(p) => matches!(read.parsed, Some(Ok(r)) if r == *p),
        };
        if !matches {
            return Err(FlagWriteError::ReadBackMismatch {
                written: match written {
                    Written::Text(t) => t,
                    Written::Percentage(p) => format!("{} %", p.get()),
                },
                read: read_raw,
            });
        }
        Ok(FlagChange { before, after: read_raw, version: read.version })
    }

    pub async fn read(&self) -> Result<FlagReading, SourceError> {
        self.backend.read().await
    }

    /// Which outside system holds the flag.
    pub fn source(&self) -> Source {
        self.backend.source()
    }

    /// The outside system's key: "kubernetes", "launchdarkly" (status JSON, `failing_since`),
    /// "none" when no backend could be set up.
    pub fn source_name(&self) -> &'static str {
        self.backend.source_name()
    }

    pub fn describe_target(&self) -> String {
        self.backend.describe_target()
    }

    pub fn version_field(&self) -> &'static str {
        self.backend.version_field()
    }

    pub fn absent(&self) -> String {
        self.backend.absent()
    }
}

/// A conflict: the flag moved on since the person read it; `current` is what it is now.
pub fn conflict(current: &FlagReading) -> FlagWriteError {
    FlagWriteError::Conflict(format!(
        "the flag was changed since it was read: it is now {:?} at version {}",
        current.raw.as_deref().unwrap_or(""),
        current.version.as_deref().unwrap_or("?")
    ))
}

/// Both backends' key rule (ConfigMap keys and LaunchDarkly flag keys happen to agree).
fn letters_digits_dash_underscore_dot(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A backend that could not be set up (no cluster, no token): every call says why.
struct Unconfigured(SourceError);

impl FlagBackend for Unconfigured {
    fn source(&self) -> Source {
        self.0.system()
    }
    fn source_name(&self) -> &'static str {
        "none"
    }
    fn describe_target(&self) -> String {
        format!("the flag ({} is not available)", self.0.system().name())
    }
    fn version_field(&self) -> &'static str {
        "version"
    }
    fn absent(&self) -> String {
        self.0.to_string()
    }
    fn read(&self) -> BackendFuture<'_, Result<FlagReading, SourceError>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
    fn write_if_unchanged<'a>(
        &'a self,
        _: &'a FlagReading,
        _: &'a str,
        _: Percentage,
        _: &'a str,
    ) -> BackendFuture<'a, Result<Written, FlagWriteError>> {
        let e = self.0.clone();
        Box::pin(async move { Err(FlagWriteError::Source(e)) })
    }
}
