//! Everything the overview page shows, in one answer, so the page makes one request per refresh.

use serde::{Deserialize, Serialize};

use super::adoption::DayCheck;
use super::alerts::Alert;
use super::records::{DoubledRecord, RecordSummary};
use super::StatusReport;

/// The adoption numbers without their series (those are drawn into the charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdoptionSummary {
    pub current_share: Option<f64>,
    pub target: f64,
    pub check: DayCheck,
}

/// A chart drawn on the server, or why it could not be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartView {
    pub id: String,
    pub title: String,
    pub svg: Option<String>,
    pub points: usize,
    /// Where the numbers come from (shown as the caption).
    pub caption: String,
    /// Which source failed, and how.
    pub error: Option<String>,
    /// The source key, to look up since when it has been failing.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub status: StatusReport,
    pub range: String,
    pub window: String,
    pub summary: Result<RecordSummary, String>,
    pub doubled: Result<Vec<DoubledRecord>, String>,
    pub alerts: Result<Vec<Alert>, String>,
    pub adoption: Result<AdoptionSummary, String>,
    pub charts: Vec<ChartView>,
    /// Legacy and split writes by app version over the range.
    pub versions: Result<super::versions::ClientVersions, String>,
    /// Patients who cross over per day (their ids only for a signed-in viewer).
    pub crossover: Result<super::patients::Crossover, String>,
    pub dose_totals: Result<super::patients::DoseTotals, String>,
    /// Kills whose write has not landed (a red line above everything).
    #[serde(default)]
    pub pending_kills: Vec<super::rollout::PendingKill>,
}

pub const RANGES: [&str; 5] = ["1h", "6h", "24h", "7d", "30d"];
pub const WINDOWS: [&str; 3] = ["1h", "24h", "7d"];
