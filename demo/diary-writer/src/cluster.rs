//! In-memory state of the emulated cluster: ConfigMap `feature-flags` and the scale of
//! deployment `diary-writer`. Optionally persisted to a JSON file so that a demo restart keeps
//! the flag and replica count the operator left.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub namespace: String,
    pub configmap: String,
    pub configmap_data: BTreeMap<String, String>,
    pub deployment: String,
    pub desired_replicas: i32,
    /// Monotonic counter used for every object's resourceVersion, as in etcd.
    pub resource_version: u64,
    pub configmap_version: u64,
    pub deployment_version: u64,
}

/// How the emulated API server misbehaves, for fault tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    #[default]
    None,
    /// Every Kubernetes request answers 500.
    Error,
    /// Every Kubernetes request hangs for a long time.
    Hang,
    /// The next write goes through; from then on every request answers 500 (a read-back fails).
    ErrorAfterWrite,
}

pub struct Cluster {
    inner: Mutex<Inner>,
    state_file: Option<PathBuf>,
    /// How long a new replica takes to become ready.
    pub ready_delay: Duration,
    pub token: Option<String>,
    /// The node that runs Jobs (`jobs.rs`).
    pub node: std::sync::Arc<crate::jobs::Node>,
}

struct Inner {
    snap: ClusterSnapshot,
    /// Ready replicas converge towards desired over time.
    ready: i32,
    last_step: Instant,
    fault: Fault,
    /// The share (0 to 100) of split-writing clients that copy `dose` into both parts: the
    /// defect the autopilot must catch.
    doubled_percent: u32,
    /// Entries a second written by old clients that ignore the flag (a legacy surge).
    legacy_clients_per_s: f64,
    /// Writers stuck on an old value of the flag (they stopped reading the ConfigMap): the
    /// percentage they act on whatever the flag says (None: they follow the flag).
    stuck_percent: Option<u32>,
    /// Visits a second per ready replica (`writer::Traffic`'s, changeable while running).
    per_replica_per_s: f64,
    /// The Role the API server enforces on `token` (None: everything is allowed).
    role: Option<crate::rbac::Role>,
    /// A cluster administrator's token: allowed everything (people acting outside the dashboard).
    admin_token: Option<String>,
}

impl Cluster {
    pub fn new(
        initial: ClusterSnapshot,
        state_file: Option<PathBuf>,
        ready_delay: Duration,
        token: Option<String>,
    ) -> Self {
        let snap = state_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<ClusterSnapshot>(&b).ok())
            .unwrap_or(initial);
        let ready = snap.desired_replicas;
        Cluster {
            inner: Mutex::new(Inner {
                snap,
                ready,
                last_step: Instant::now(),
                fault: Fault::None,
                doubled_percent: 0,
                legacy_clients_per_s: 0.0,
                per_replica_per_s: 0.0,
                stuck_percent: None,
                role: None,
                admin_token: None,
            }),
            state_file,
            ready_delay,
            token,
            node: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Advance readiness: one replica per ready_delay towards desired; scaling down is immediate.
        let desired = g.snap.desired_replicas;
        if g.ready > desired {
            g.ready = desired;
            g.last_step = Instant::now();
        } else if g.ready < desired {
            while g.ready < desired && g.last_step.elapsed() >= self.ready_delay {
                g.ready += 1;
                g.last_step += self.ready_delay;
            }
            if g.ready == desired {
                g.last_step = Instant::now();
            }
        } else {
            g.last_step = Instant::now();
        }
        g
    }

    pub fn snapshot(&self) -> (ClusterSnapshot, i32) {
        let g = self.lock();
        (g.snap.clone(), g.ready)
    }

    pub fn ready_replicas(&self) -> i32 {
        self.lock().ready
    }

    pub fn fault(&self) -> Fault {
        self.lock().fault
    }

    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = fault;
    }

    pub fn doubled_percent(&self) -> u32 {
        self.lock().doubled_percent
    }

    pub fn set_doubled_percent(&self, percent: u32) {
        self.lock().doubled_percent = percent.min(100);
    }

    /// Enforce `role` (RBAC) on every Kubernetes call from now on.
    pub fn set_role(&self, role: Option<crate::rbac::Role>) {
        self.lock().role = role;
    }

    pub fn role(&self) -> Option<crate::rbac::Role> {
        self.lock().role.clone()
    }

    pub fn set_admin_token(&self, token: Option<String>) {
        self.lock().admin_token = token;
    }

    pub fn admin_token(&self) -> Option<String> {
        self.lock().admin_token.clone()
    }

    pub fn legacy_clients_per_s(&self) -> f64 {
        self.lock().legacy_clients_per_s
    }

    pub fn set_legacy_clients_per_s(&self, per_s: f64) {
        self.lock().legacy_clients_per_s = per_s.clamp(0.0, 1000.0);
    }

    pub fn stuck_percent(&self) -> Option<u32> {
        self.lock().stuck_percent
    }

    pub fn set_stuck_percent(&self, percent: Option<u32>) {
        self.lock().stuck_percent = percent.map(|p| p.min(100));
    }

    pub fn per_replica_per_s(&self) -> f64 {
        self.lock().per_replica_per_s
    }

    pub fn set_per_replica_per_s(&self, per_s: f64) {
        self.lock().per_replica_per_s = if per_s.is_finite() { per_s.clamp(0.0, 1000.0) } else { 0.0 };
    }

    /// Replace the ConfigMap's data when `expected_version` (if any) matches.
    pub fn write_configmap(
        &self,
        expected_version: Option<u64>,
        data: BTreeMap<String, String>,
    ) -> Result<ClusterSnapshot, Conflict> {
        let mut g = self.lock();
        if let Some(v) = expected_version {
            if v != g.snap.configmap_version {
                return Err(Conflict { current: g.snap.configmap_version });
            }
        }
        g.snap.resource_version += 1;
        g.snap.configmap_version = g.snap.resource_version;
        g.snap.configmap_data = data;
        let snap = g.snap.clone();
        drop(g);
        self.persist(&snap);
        Ok(snap)
    }

    pub fn scale(&self, expected_version: Option<u64>, replicas: i32) -> Result<ClusterSnapshot, Conflict> {
        let mut g = self.lock();
        if let Some(v) = expected_version {
            if v != g.snap.deployment_version {
                return Err(Conflict { current: g.snap.deployment_version });
            }
        }
        if g.ready >= g.snap.desired_replicas {
            g.last_step = Instant::now();
        }
        g.snap.resource_version += 1;
        g.snap.deployment_version = g.snap.resource_version;
        g.snap.desired_replicas = replicas;
        if g.ready > replicas {
            g.ready = replicas;
        }
        let snap = g.snap.clone();
        drop(g);
        self.persist(&snap);
        Ok(snap)
    }

    fn persist(&self, snap: &ClusterSnapshot) {
        if let Some(path) = &self.state_file {
            let tmp = path.with_extension("tmp");
            let ok = serde_json::to_vec_pretty(snap)
                .ok()
                .and_then(|b| std::fs::write(&tmp, b).ok())
                .and_then(|_| std::fs::rename(&tmp, path).ok());
            if ok.is_none() {
                tracing::warn!(path = %path.display(), "could not persist cluster state");
            }
        }
    }
}

#[derive(Debug)]
pub struct Conflict {
    pub current: u64,
}
