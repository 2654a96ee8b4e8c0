//! Reports for BI: charts to review and export, and the rules they are drawn by.

use serde::{Deserialize, Serialize};

/// What a chart's caption states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caption {
    /// Where the numbers come from: "Prometheus" or "PostgreSQL, table history_records".
    pub source: String,
    /// The query, exactly as run (PromQL or SQL).
    pub query: String,
    /// The time range, in the report's time zone.
    pub range: String,
    pub time_zone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportChartView {
    /// URL slug: `usage`, `legacy-share`, `record-categories`, `insulin-units`.
    pub id: String,
    pub title: String,
    pub svg: Option<String>,
    pub points: usize,
    pub caption: Caption,
    /// Which source failed, and why, when the chart could not be drawn.
    pub error: Option<String>,
}

/// One worked example of the rendering rules: a row, its category, and what it adds to each series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleExample {
    pub dose: Option<f64>,
    pub insulin_short: Option<f64>,
    pub insulin_long: Option<f64>,
    pub category: String,
    pub short_units: f64,
    pub long_units: f64,
    pub doubled_units: f64,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportsView {
    pub range: String,
    pub time_zone: String,
    pub charts: Vec<ReportChartView>,
    pub rules: Vec<RuleExample>,
}
