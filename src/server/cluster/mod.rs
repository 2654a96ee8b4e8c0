//! Kubernetes, through kube-rs: the flag ConfigMap and the writer deployment's scale.
//! Only the calls the product needs; each maps failures to a readable `SourceError`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

mod jobs;

pub use jobs::{job_name, JobSpec, JobState, MANAGED_BY};

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

    /// A cluster reached through an already built client (tests use `tower-test` mocks).
    pub fn from_client(client: kube::Client, namespace: &str) -> Cluster {
        Cluster { client, namespace: namespace.to_string() }
    }

    /// The same client, for another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Cluster {
        Cluster { client: self.client.clone(), namespace: namespace.to_string() }
    }

    pub async fn configmap(&self, name: &str) -> Result<ConfigMap, SourceError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get(name).await.map_err(|e| describe(e, GET_CONFIGMAP, name, &self.namespace))
    }

    /// Sets one key of a ConfigMap, only if the ConfigMap is still at `expected_version`
    /// (the API server refuses the replace with 409 otherwise). Returns the object as written.
    pub async fn replace_configmap_key(
        &self,
        name: &str,
        key: &str,
        value: &str,
        expected_version: &str,
    ) -> Result<ConfigMap, ConditionalWriteError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut cm = api.get(name).await.map_err(|e| describe(e, GET_CONFIGMAP, name, &self.namespace))?;
        if cm.metadata.resource_version.as_deref() != Some(expected_version) {
            return Err(ConditionalWriteError::Conflict { current_version: cm.metadata.resource_version });
        }
        cm.data.get_or_insert_with(Default::default).insert(key.to_string(), value.to_string());
        match api.replace(name, &Default::default(), &cm).await {
            Ok(written) => Ok(written),
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                Err(ConditionalWriteError::Conflict { current_version: None })
            }
            Err(e) => Err(ConditionalWriteError::Source(describe(e, UPDATE_CONFIGMAP, name, &self.namespace))),
        }
    }

    pub async fn deployment_replicas(&self, name: &str) -> Result<Replicas, SourceError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let d = api.get(name).await.map_err(|e| describe(e, GET_DEPLOYMENT, name, &self.namespace))?;
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        Ok(Replicas { desired, ready })
    }
}

/// Why a conditional write did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionalWriteError {
    /// Someone changed the object since the operator saw it; nothing was written.
    #[error("the value was changed by someone else since it was read (now at resourceVersion {})", current_version.as_deref().unwrap_or("?"))]
    Conflict { current_version: Option<String> },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// A kube-rs error as one sentence about the object it concerned.
/// One kind of call the dashboard makes: its RBAC verb and resource (deploy/role.yaml grants
/// exactly these).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub verb: &'static str,
    pub resource: &'static str,
    /// The object's kind, in messages.
    pub kind: &'static str,
    /// Whether the Role can name the object (`resourceNames`): not for a create or a list, nor
    /// for objects whose names the dashboard makes up (Jobs, their pods).
    pub named: bool,
    /// The manifest whose Role grants it.
    pub granted_by: &'static str,
}

const GET_CONFIGMAP: Call =
    Call { verb: "get", resource: "configmaps", kind: "configmap", named: true, granted_by: "deploy/role.yaml" };
const UPDATE_CONFIGMAP: Call =
    Call { verb: "update", resource: "configmaps", kind: "configmap", named: true, granted_by: "deploy/role.yaml" };
const GET_DEPLOYMENT: Call =
    Call { verb: "get", resource: "deployments", kind: "deployment", named: true, granted_by: "deploy/role.yaml" };
const PATCH_SCALE: Call = Call {
    verb: "patch",
    resource: "deployments/scale",
    kind: "deployment",
    named: true,
    granted_by: "deploy/role.yaml",
};

/// The sentence for a 403: which verb on which resource the service account lacks, and where to
/// grant it.
pub fn forbidden_sentence(call: Call, name: &str, namespace: &str) -> String {
    let names = if call.named { format!(" for resourceNames [\"{name}\"]") } else { String::new() };
    format!(
        "the dashboard's service account may not {} {} \"{name}\" in namespace {namespace} (HTTP 403 Forbidden). \
         Its Role must allow the verb \"{}\" on resource \"{}\"{names} \
         ({} has it; check the Role and RoleBinding applied to this cluster)",
        call.verb, call.resource, call.verb, call.resource, call.granted_by
    )
}

fn describe(e: kube::Error, call: Call, name: &str, namespace: &str) -> SourceError {
    let kind = call.kind;
    match e {
        kube::Error::Api(status) if status.is_not_found() => {
            SourceError::Missing { system: SOURCE, detail: format!("{kind} {namespace}/{name} does not exist") }
        }
        kube::Error::Api(status) if status.code == 403 => {
            SourceError::Rejected { system: SOURCE, detail: forbidden_sentence(call, name, namespace) }
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

impl Cluster {
    /// Sets a deployment's desired replicas through its `scale` subresource.
    pub async fn scale_deployment(&self, name: &str, replicas: i32) -> Result<(), SourceError> {
        use kube::api::{Patch, PatchParams};
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| describe(e, PATCH_SCALE, name, &self.namespace))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}
