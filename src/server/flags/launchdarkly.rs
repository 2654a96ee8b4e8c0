//! The flag in LaunchDarkly: the percentage its default rule rolls `true` out to, in one
//! environment, written as a JSON Patch that tests the environment's `version` first (the client and
//! the flag's representation are in `launchdarkly_api.rs`).

use super::super::error::{Source, SourceError};
use super::launchdarkly_http::{LaunchDarkly, PatchError};
use super::{conflict, BackendFuture, FlagBackend, FlagReading, FlagWriteError, Percentage, Written};

/// A LaunchDarkly flag key: letters, digits, `-`, `_` and `.` (LaunchDarkly's own rule).
pub fn valid_key(key: &str) -> bool {
    super::letters_digits_dash_underscore_dot(key)
}

impl FlagBackend for LaunchDarkly {
    fn source(&self) -> Source {
        Source::LaunchDarkly
    }

    fn describe_target(&self) -> String {
        format!(
            "LaunchDarkly flag {} in project {}, environment {} (default rule)",
            self.flag_key(),
            self.project(),
            self.environment()
        )
    }

    fn version_field(&self) -> &'static str {
        "version"
    }

    fn absent(&self) -> String {
        format!("LaunchDarkly has no value for the flag {:?}", self.flag_key())
    }

    fn read(&self) -> BackendFuture<'_, Result<FlagReading, SourceError>> {
        Box::pin(async move {
            let r = LaunchDarkly::read(self).await?;
            Ok(FlagReading { raw: Some(r.describe), parsed: Some(r.parsed), version: Some(r.version) })
        })
    }

    fn write_if_unchanged<'a>(
        &'a self,
        _current: &'a FlagReading,
        expected_version: &'a str,
        p: Percentage,
        comment: &'a str,
    ) -> BackendFuture<'a, Result<Written, FlagWriteError>> {
        Box::pin(async move {
            let flag = self.flag().await?;
            let version = flag.reading(self.environment())?.version;
            if version != expected_version {
                return Err(conflict(&FlagBackend::read(self).await?));
            }
            let ops = flag.patch_for(self.environment(), p)?;
            if !ops.is_empty() {
                let version: i64 = version.parse().unwrap_or_default();
                self.patch(version, ops, comment).await.map_err(|e| match e {
                    PatchError::Conflict(m) => {
                        FlagWriteError::Conflict(format!("LaunchDarkly refused the change: {m}"))
                    }
                    PatchError::Source(s) => FlagWriteError::Source(s),
                })?;
            }
            // LaunchDarkly's text is a description; the read-back check is the percentage.
            Ok(Written::Percentage(p))
        })
    }
}
