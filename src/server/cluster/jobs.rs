//! Kubernetes Jobs: how the rollback runs its commands in a cluster, where the dashboard's own
//! image has no `alembic` and no `pg_restore` (and should not: the migrations are the diary
//! service's). A Job runs the command in the diary service's image with the diary database's
//! Secret as its environment; the dashboard waits for it, reads its pod's log, and never puts a
//! secret into the Job's spec. Also the backup CronJob's last success (the backup's age).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::json;

use super::super::error::SourceError;
use super::{describe, Call, Cluster, SOURCE};

const JOBS_ROLE: &str = "deploy/rollback-jobs/role.yaml";
const CREATE_JOB: Call = Call { verb: "create", resource: "jobs", kind: "job", named: false, granted_by: JOBS_ROLE };
const GET_JOB: Call = Call { verb: "get", resource: "jobs", kind: "job", named: false, granted_by: JOBS_ROLE };
const LIST_PODS: Call =
    Call { verb: "list", resource: "pods", kind: "pods of job", named: false, granted_by: JOBS_ROLE };
const GET_LOG: Call =
    Call { verb: "get", resource: "pods/log", kind: "log of pod", named: false, granted_by: JOBS_ROLE };
const GET_CRONJOB: Call =
    Call { verb: "get", resource: "cronjobs", kind: "cronjob", named: true, granted_by: JOBS_ROLE };

/// The label every Job the dashboard starts carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "rollout-dashboard");

/// A command to run once as a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub image: String,
    /// The command and its arguments (no shell).
    pub argv: Vec<String>,
    /// A Secret whose keys become the container's environment (`DATABASE_URL`).
    pub env_secret: String,
    pub service_account: Option<String>,
    /// A PersistentVolumeClaim mounted read-only at `mount` (the backups).
    pub volume: Option<(String, String)>,
    /// Killed after this many seconds (the step's time limit).
    pub deadline_secs: u64,
    pub labels: BTreeMap<String, String>,
    /// Whose the Job is (an annotation): a Job of the same name that is not the same owner's is
    /// another run's, never taken for this one's.
    pub owner: String,
}

/// The annotation naming a Job's owner.
pub const OWNER: &str = "rollout-dashboard/owner";

impl JobSpec {
    /// The Job object: one pod, never restarted or retried (a downgrade is not run twice
    /// blindly), deleted a day after it finished.
    pub fn object(&self) -> Job {
        let mut labels = self.labels.clone();
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        let (volumes, mounts) = match &self.volume {
            Some((claim, mount)) => (
                json!([{"name": "backups", "persistentVolumeClaim": {"claimName": claim, "readOnly": true}}]),
                json!([{"name": "backups", "mountPath": mount, "readOnly": true}]),
            ),
            None => (json!([]), json!([])),
        };
        let value = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.name, "labels": labels, "annotations": {OWNER: self.owner}},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": self.deadline_secs,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": self.service_account,
                        "automountServiceAccountToken": false,
                        "volumes": volumes,
                        "containers": [{
                            "name": "command",
                            "image": self.image,
                            "command": self.argv,
                            "envFrom": [{"secretRef": {"name": self.env_secret}}],
                            "volumeMounts": mounts,
                            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                        }],
                    },
                },
            },
        });
        serde_json::from_value(value).expect("a Job object")
    }
}

/// Where a Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    /// Failed, with the reason Kubernetes gives (`BackoffLimitExceeded`, `DeadlineExceeded`).
    Failed(String),
}

impl Cluster {
    /// Creates the Job; with `dry_run` the API server only checks it (admission, RBAC, the
    /// Secret's and the image's names are not checked by it). A Job of that name that exists
    /// already and is the same owner's (a step resumed after a restart) is the same Job: not
    /// created twice. One of another owner's is refused.
    pub async fn create_job(&self, spec: &JobSpec, dry_run: bool) -> Result<(), SourceError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PostParams { dry_run, field_manager: Some("rollout-dashboard".into()) };
        match api.create(&params, &spec.object()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 && !dry_run => {
                let there = api.get(&spec.name).await.map_err(|e| describe(e, GET_JOB, &spec.name, &self.namespace))?;
                let owner = there.metadata.annotations.as_ref().and_then(|a| a.get(OWNER));
                if owner == Some(&spec.owner) {
                    return Ok(());
                }
                Err(SourceError::Rejected {
                    system: SOURCE,
                    detail: format!(
                        "a Job {}/{} exists and is not this run's (it says {:?}): was the state database recreated? \
                         Delete that Job if it is done, then retry",
                        self.namespace,
                        spec.name,
                        owner.map(String::as_str).unwrap_or("no owner")
                    ),
                })
            }
            Err(e) => Err(describe(e, CREATE_JOB, &spec.name, &self.namespace)),
        }
    }

    pub async fn job_state(&self, name: &str) -> Result<JobState, SourceError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let job = api.get(name).await.map_err(|e| describe(e, GET_JOB, name, &self.namespace))?;
        let status = job.status.unwrap_or_default();
        let failed =
            status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Failed" && c.status == "True");
        Ok(match failed {
            Some(c) => JobState::Failed(c.reason.or(c.message).unwrap_or_else(|| "failed".into())),
            None if status.succeeded.unwrap_or(0) > 0 => JobState::Succeeded,
            None => JobState::Running,
        })
    }

    /// The log of the Job's newest pod, at most `limit` bytes (empty when it has no pod yet).
    pub async fn job_log(&self, name: &str, limit: i64) -> Result<String, SourceError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={name}")))
            .await
            .map_err(|e| describe(e, LIST_PODS, name, &self.namespace))?;
        let newest = list.items.into_iter().max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let Some(pod) = newest.and_then(|p| p.metadata.name) else { return Ok(String::new()) };
        let params = LogParams { limit_bytes: Some(limit), ..LogParams::default() };
        pods.logs(&pod, &params).await.map_err(|e| describe(e, GET_LOG, &pod, &self.namespace))
    }

    /// When the CronJob last succeeded (None: never).
    pub async fn cronjob_last_success(&self, name: &str) -> Result<Option<DateTime<Utc>>, SourceError> {
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), &self.namespace);
        let cj = api.get(name).await.map_err(|e| describe(e, GET_CRONJOB, name, &self.namespace))?;
        let last = cj.status.and_then(|s| s.last_successful_time).map(|t| t.0);
        Ok(last.and_then(|t| DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)))
    }
}

/// A Job name from its parts: lower case, digits and '-', at most 63 characters.
pub fn job_name(parts: &[&str]) -> Result<String, SourceError> {
    let name: String =
        parts.join("-").chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() || name.len() > 63 {
        return Err(SourceError::Malformed { system: SOURCE, detail: format!("no valid Job name from {parts:?}") });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_once_with_the_secret_as_environment_and_no_secret_in_its_spec() {
        let spec = JobSpec {
            name: "rollback-7-schema-downgrade-1".into(),
            image: "registry.example/diary-api:1.42".into(),
            argv: vec!["alembic".into(), "downgrade".into(), "a1f3c2d4e5b6".into()],
            env_secret: "diary-database".into(),
            service_account: None,
            volume: Some(("diary-backups".into(), "/backups".into())),
            deadline_secs: 600,
            labels: [("rollout-dashboard/run".to_string(), "7".to_string())].into(),
            owner: "run 7 created 2026-12-06T10:00:00Z".into(),
        };
        let job = serde_json::to_value(spec.object()).unwrap();
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["command"], json!(["alembic", "downgrade", "a1f3c2d4e5b6"]));
        assert_eq!(pod["containers"][0]["envFrom"][0]["secretRef"]["name"], "diary-database");
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);
        assert_eq!(job["metadata"]["labels"]["app.kubernetes.io/managed-by"], "rollout-dashboard");
        assert_eq!(job["metadata"]["annotations"][OWNER], "run 7 created 2026-12-06T10:00:00Z");
        assert_eq!(job_name(&["rollback", "7", "schema_downgrade", "1"]).unwrap(), "rollback-7-schema-downgrade-1");
        assert!(job_name(&[&"x".repeat(70)]).is_err());
    }
}
