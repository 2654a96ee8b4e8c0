//! What a run remembers between its steps, stored with the run (`store.rs`).

use serde::{Deserialize, Serialize};

/// What a run remembers between steps (persisted with the run before a step acts on it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The writer deployment's replica count before the writers were stopped.
    pub writer_replicas: Option<i32>,
    /// The flag's value before it was turned off.
    pub flag_before: Option<String>,
    pub from_revision: Option<String>,
    pub target_revision: String,
    /// All writes per second when the run started: what the legacy rate must come back to.
    pub baseline_rate: Option<f64>,
    pub data_loss_rows: i64,
    /// The rows the archive holds and its checksum, once it was taken and verified.
    pub archived_rows: Option<i64>,
    pub archive_checksum: Option<String>,
    /// The legacy entry the smoke check wrote.
    pub smoke_entry_id: Option<i64>,
}
