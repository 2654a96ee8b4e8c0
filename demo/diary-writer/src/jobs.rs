//! The emulated cluster's Jobs, their pods' logs and the backup CronJob: what the dashboard's
//! rollback uses when `rollback.job` is set. A Job created here runs at once on the emulated
//! node: its container's command as a local process (never through a shell), in the directory
//! this node holds for its image, with the environment of the Secret it names and `$(VAR)` in
//! its arguments expanded from that environment as the kubelet does. A Job whose image or Secret
//! the node does not have fails as a real one would not start. `dryRun=All` only checks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// What the emulated node can run.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// Image name → the directory its command runs in (the image's working directory).
    pub images: HashMap<String, PathBuf>,
    /// Directories put before the node's own `PATH` (the image's programs).
    pub path: Vec<PathBuf>,
    /// Secret name → its keys and values.
    pub secrets: HashMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
struct JobRecord {
    object: Value,
    created: DateTime<Utc>,
    /// None while it runs; then whether it succeeded, and why not.
    outcome: Option<Result<(), String>>,
    log: String,
}

#[derive(Default)]
pub struct Node {
    runtime: Mutex<Runtime>,
    jobs: Mutex<BTreeMap<String, JobRecord>>,
    /// CronJob name → its last successful run.
    cronjobs: Mutex<BTreeMap<String, Option<DateTime<Utc>>>>,
}

/// `$(NAME)` replaced by the environment's value (an unknown name stays as written; `$$(` is a
/// literal `$(`), as the kubelet expands a container's command and arguments.
pub fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$(") {
            out.push_str("$(");
            rest = after;
        } else if let Some((name, after)) = tail.strip_prefix("$(").and_then(|t| t.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

impl Node {
    pub fn set_runtime(&self, runtime: Runtime) {
        *self.runtime.lock().unwrap() = runtime;
    }

    pub fn set_cronjob(&self, name: &str, last_success: Option<DateTime<Utc>>) {
        self.cronjobs.lock().unwrap().insert(name.to_string(), last_success);
    }

    /// `Some(None)`: a CronJob that never succeeded; None: no such CronJob.
    pub fn cronjob(&self, name: &str) -> Option<Option<DateTime<Utc>>> {
        self.cronjobs.lock().unwrap().get(name).copied()
    }

    /// The names of the Jobs created so far (tests count them).
    pub fn job_names(&self) -> Vec<String> {
        self.jobs.lock().unwrap().keys().cloned().collect()
    }

    /// Accepts a Job (`Err`: why it is invalid) and, unless a dry run, starts it.
    pub fn create(self: &Arc<Self>, namespace: &str, mut job: Value, dry_run: bool) -> Result<Value, CreateError> {
        let name = job["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or(CreateError::Invalid("metadata.name: Required value".into()))?;
        let name = name.to_string();
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        let argv: Vec<String> = container["command"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if argv.is_empty() || container["image"].as_str().unwrap_or_default().is_empty() {
            return Err(CreateError::Invalid("spec.template.spec.containers[0]: a command and an image".into()));
        }
        if self.jobs.lock().unwrap().contains_key(&name) {
            return Err(CreateError::Exists(name));
        }
        job["metadata"]["namespace"] = json!(namespace);
        job["metadata"]["uid"] = json!(format!("job-{name}"));
        job["metadata"]["creationTimestamp"] = json!(Utc::now().to_rfc3339());
        if dry_run {
            return Ok(job);
        }
        let record = JobRecord { object: job.clone(), created: Utc::now(), outcome: None, log: String::new() };
        self.jobs.lock().unwrap().insert(name.clone(), record);
        let node = self.clone();
        let deadline = job["spec"]["activeDeadlineSeconds"].as_u64().unwrap_or(3600);
        tokio::spawn(async move { node.run(&name, deadline).await });
        Ok(job)
    }

    async fn run(&self, name: &str, deadline_secs: u64) {
        let object = self.jobs.lock().unwrap()[name].object.clone();
        let (outcome, log) = self.execute(&object, Duration::from_secs(deadline_secs)).await;
        if let Some(r) = self.jobs.lock().unwrap().get_mut(name) {
            r.outcome = Some(outcome);
            r.log = log;
        }
    }

    async fn execute(&self, job: &Value, deadline: Duration) -> (Result<(), String>, String) {
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        let image = container["image"].as_str().unwrap_or_default();
        let runtime = self.runtime.lock().unwrap().clone();
        let Some(dir) = runtime.images.get(image) else {
            return (Err("ErrImagePull".into()), format!("the emulated node has no image {image}"));
        };
        let mut env = BTreeMap::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let Some(secret) = source["secretRef"]["name"].as_str() else { continue };
            match runtime.secrets.get(secret) {
                Some(values) => env.extend(values.clone()),
                None => {
                    return (Err("CreateContainerConfigError".into()), format!("secret \"{secret}\" not found"));
                }
            }
        }
        let argv: Vec<String> = container["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .map(|a| expand(a, &env))
            .collect();
        let node_path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(runtime.path.iter().cloned().chain(std::env::split_paths(&node_path)))
            .unwrap_or(node_path);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir)
            .env_clear()
            .env("PATH", path)
            .envs(&env)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(deadline, cmd.output()).await {
            Err(_) => (Err("DeadlineExceeded".into()), "the Job was active longer than its deadline".into()),
            Ok(Err(e)) => (Err("StartError".into()), format!("exec {}: {e}", argv[0])),
            Ok(Ok(out)) => {
                let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
                log.push_str(&String::from_utf8_lossy(&out.stderr));
                let outcome = if out.status.success() { Ok(()) } else { Err("BackoffLimitExceeded".into()) };
                (outcome, log)
            }
        }
    }

    /// The Job as the API server shows it, with its status.
    pub fn get(&self, name: &str) -> Option<Value> {
        let jobs = self.jobs.lock().unwrap();
        let r = jobs.get(name)?;
        let mut job = r.object.clone();
        job["status"] = match &r.outcome {
            None => json!({"active": 1, "startTime": r.created.to_rfc3339()}),
            Some(Ok(())) => json!({"succeeded": 1, "startTime": r.created.to_rfc3339(),
                "conditions": [{"type": "Complete", "status": "True"}]}),
            Some(Err(reason)) => json!({"failed": 1, "startTime": r.created.to_rfc3339(),
                "conditions": [{"type": "Failed", "status": "True", "reason": reason}]}),
        };
        Some(job)
    }

    /// The pods of the Jobs a `job-name=<name>` selector picks (one per Job here).
    pub fn pods(&self, namespace: &str, job_name: Option<&str>) -> Value {
        let jobs = self.jobs.lock().unwrap();
        let items: Vec<Value> = jobs
            .iter()
            .filter(|(n, _)| job_name.is_none_or(|j| j == n.as_str()))
            .map(|(n, r)| {
                json!({"metadata": {"name": format!("{n}-pod"), "namespace": namespace,
                    "labels": {"job-name": n}, "creationTimestamp": r.created.to_rfc3339()}})
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items})
    }

    /// A pod's log (None: no such pod).
    pub fn log(&self, pod: &str) -> Option<String> {
        let job = pod.strip_suffix("-pod")?;
        self.jobs.lock().unwrap().get(job).map(|r| r.log.clone())
    }
}

#[derive(Debug)]
pub enum CreateError {
    Invalid(String),
    Exists(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_expanded_as_the_kubelet_does() {
        let env: BTreeMap<String, String> = [("DATABASE_URL".to_string(), "postgres://x".to_string())].into();
        assert_eq!(expand("--dbname=$(DATABASE_URL)", &env), "--dbname=postgres://x");
        assert_eq!(expand("$(MISSING) $$(DATABASE_URL) $5", &env), "$(MISSING) $(DATABASE_URL) $5");
    }
}
