//! Kubernetes, through kube-rs: the flag ConfigMap and the writer deployment's scale.
//! Only the calls the product needs; each maps failures to a readable `SourceError`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::config::KubeAccess;
use super::error::{Source, SourceError};

const SOURCE: Source = Source::Kubernetes;

/// A kube-rs client bound to one namespace.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    namespace: String,
}

/// Desired and ready replicas of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
}

impl Cluster {
    /// Builds a client from the configured access. Makes no request yet.
    pub async fn connect(access: &KubeAccess, namespace: &str, timeout: Duration) -> Result<Cluster, SourceError> {
        let mut config = match access {
            KubeAccess::None => {
                return Err(SourceError::NotConfigured { system: SOURCE, hint: "set KUBECONFIG or run in a cluster" })
            }
            KubeAccess::InCluster => kube::Config::incluster().map_err(|e| SourceError::Unreachable {
                system: SOURCE,
                detail: format!("in-cluster configuration: {e}"),
            })?,
            KubeAccess::Kubeconfig(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| SourceError::Unreachable {
                    system: SOURCE,
                    detail: format!("cannot read the kubeconfig {}: {e}", path.display()),
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: format!("kubeconfig: {e}") })?
            }
        };
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        let client = kube::Client::try_from(config)
            .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: e.to_string() })?;
        Ok(Cluster { client, namespace: namespace.to_string() })
    }

    /// The same client, for another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Cluster {
        Cluster { client: self.client.clone(), namespace: namespace.to_string() }
    }

    pub async fn configmap(&self, name: &str) -> Result<ConfigMap, SourceError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get(name).await.map_err(|e| describe(e, "configmap", name, &self.namespace))
    }

    pub async fn deployment_replicas(&self, name: &str) -> Result<Replicas, SourceError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let d = api.get(name).await.map_err(|e| describe(e, "deployment", name, &self.namespace))?;
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        Ok(Replicas { desired, ready })
    }
}

/// A kube-rs error as one sentence about the object it concerned.
fn describe(e: kube::Error, kind: &str, name: &str, namespace: &str) -> SourceError {
    match e {
        kube::Error::Api(status) if status.is_not_found() => {
            SourceError::Missing { system: SOURCE, detail: format!("{kind} {namespace}/{name} does not exist") }
        }
        kube::Error::Api(status) => SourceError::Rejected {
            system: SOURCE,
            detail: format!(
                "{kind} {namespace}/{name}: HTTP {} {}{}",
                status.code,
                status.reason,
                if status.message.is_empty() { String::new() } else { format!(": {}", status.message) }
            ),
        },
        kube::Error::SerdeError(err) => {
            SourceError::Malformed { system: SOURCE, detail: format!("{kind} {namespace}/{name}: {err}") }
        }
        other => SourceError::Unreachable { system: SOURCE, detail: flatten(&other) },
    }
}

/// The error and its causes on one line (kube wraps hyper wraps io).
fn flatten(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}
