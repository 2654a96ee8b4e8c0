//! The flag as a key of a Kubernetes ConfigMap, holding text in one of the formats of
//! `format.rs`. The write replaces the key only at the resourceVersion the person saw.

use super::super::cluster::{Cluster, ConditionalWriteError};
use super::super::error::{Source, SourceError};
use super::{BackendFuture, FlagBackend, FlagReading, FlagValue, FlagWriteError, Percentage, Written};

pub struct ConfigMapFlag {
    cluster: Cluster,
    configmap: String,
    key: String,
}

impl ConfigMapFlag {
    pub fn new(cluster: Cluster, configmap: &str, key: &str) -> ConfigMapFlag {
        ConfigMapFlag { cluster, configmap: configmap.into(), key: key.into() }
    }
}

/// A ConfigMap key: letters, digits, `-`, `_` and `.`.
pub fn valid_key(key: &str) -> bool {
    super::letters_digits_dash_underscore_dot(key)
}

impl FlagBackend for ConfigMapFlag {
    fn source(&self) -> Source {
        Source::Kubernetes
    }

    fn describe_target(&self) -> String {
        format!("ConfigMap {}/{}, key {}", self.cluster.namespace(), self.configmap, self.key)
    }

    fn version_field(&self) -> &'static str {
        "resourceVersion"
    }

    fn absent(&self) -> String {
        format!("the ConfigMap has no key {:?}", self.key)
    }

    fn read(&self) -> BackendFuture<'_, Result<FlagReading, SourceError>> {
        Box::pin(async move {
            let cm = self.cluster.configmap(&self.configmap).await?;
            let raw = cm.data.as_ref().and_then(|d| d.get(&self.key)).cloned();
            Ok(FlagReading {
                parsed: raw.as_deref().map(|r| FlagValue::parse(r).map(|v| v.percentage)),
                raw,
                version: cm.metadata.resource_version.clone(),
            })
        })
    }

    fn write_if_unchanged<'a>(
        &'a self,
        current: &'a FlagReading,
        expected_version: &'a str,
        p: Percentage,
        _comment: &'a str,
    ) -> BackendFuture<'a, Result<Written, FlagWriteError>> {
        Box::pin(async move {
            let before = current.raw.as_deref().ok_or(FlagWriteError::Absent)?;
            let after = FlagValue::parse(before)?.render(before, p)?;
            self.cluster.replace_configmap_key(&self.configmap, &self.key, &after, expected_version).await.map_err(
                |e| match e {
                    ConditionalWriteError::Conflict { .. } => FlagWriteError::Conflict(e.to_string()),
                    ConditionalWriteError::Source(s) => FlagWriteError::Source(s),
                },
            )?;
            Ok(Written::Text(after))
        })
    }
}
