//! Server-only code: configuration, shared state, the REST API and one module per outside system.

pub mod access;
pub mod adoption;
pub mod alerts;
pub mod audit;
pub mod audit_journal;
pub mod auth;
pub mod autopilot;
pub mod background;
pub mod breaker;
pub mod cache;
pub mod caller;
pub mod categories;
pub mod charts;
pub mod cluster;
pub mod conditions;
pub mod config;
pub mod crossover;
pub mod csp;
pub mod dose_totals;
pub mod error;
pub mod flag_history;
pub mod flags;
pub mod fns;
pub mod hook;
pub mod http;
pub mod kill_requests;
pub mod locks;
pub mod notify;
pub mod overview;
pub mod own_metrics;
pub mod patient_days;
pub mod prometheus;
pub mod records;
pub mod redact;
pub mod reports;
pub mod retention;
pub mod rollback;
pub mod rollout;
pub mod service;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod versions;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the state database is unusable: {0}")]
    StateDatabase(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("{0}")]
    Settings(String),
    #[error("authentication setup: {0}")]
    Auth(String),
}
