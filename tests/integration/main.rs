//! Promises of the foundation, each against the real thing that runs here: PostgreSQL (a fresh
//! database per test), Prometheus started with backfilled history, and the demo simulator's
//! emulated Kubernetes API reached through kube-rs over HTTP.
//!
//! One test binary (one link), one file per feature; `support` holds the worlds they share.

mod support;

mod alerting;
mod auth;
mod autopilot;
mod autopilot_safety;
mod kill_histories;
mod launchdarkly;
mod notify;
mod outage;
mod pages;
mod patients;
mod rbac;
mod records;
mod reports;
mod rollback;
mod rollback_archive;
mod rollback_jobs;
mod rollback_lossless;
mod rollback_recovery;
mod rollback_rehearsal;
mod rollout;
mod secrets;
mod sources;
mod status;
mod versions;
