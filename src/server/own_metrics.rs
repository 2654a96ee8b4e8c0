//! The dashboard's own metrics, served on `/metrics` in the OpenMetrics text format by the
//! official `prometheus-client` crate: backend queries by source with a latency histogram, HTTP
//! requests by route with a latency histogram, cache hits and misses, notification deliveries.
//!
//! The crate writes the exposition (escaping label values such as a receiver's name, `# EOF`,
//! `_total`, `_bucket`/`_sum`/`_count`); this module only names the metrics and their labels.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What `/metrics` answers with (`encode` writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabel {
    part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    /// A background task's name (`background.rs`): the code's own, or a configured receiver's.
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    /// An audit action name (`flag.kill`): the code's own, bounded.
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    receiver: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route pattern (`/api/v1/rollout/{flag}`), never the raw path: bounded cardinality.
    route: String,
    /// The standard methods, or `other` (a client may send any token).
    method: &'static str,
    /// `2xx`, `4xx`, `5xx`…
    status: &'static str,
}

/// Latency buckets from 1 ms to about 16 s, doubling: pages, JSON and backends all fit.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15))
}

pub struct OwnMetrics {
    registry: Registry,
    backend_queries: Family<SourceLabel, Counter>,
    backend_failures: Family<SourceLabel, Counter>,
    backend_seconds: Family<SourceLabel, Histogram>,
    cache_hits: Family<CacheLabel, Counter>,
    cache_misses: Family<CacheLabel, Counter>,
    notifications: Family<DeliveryLabels, Counter>,
    anonymous_refusals: Family<ActionLabel, Counter>,
    requests: Family<RequestLabels, Histogram>,
    rollup_entries: Family<PartLabel, Gauge>,
    rollup_bytes: Gauge,
    task_rounds: Family<TaskLabel, Counter>,
    task_failing: Family<TaskLabel, Gauge>,
}

impl Default for OwnMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rollout_dashboard");
        let m = OwnMetrics {
            backend_queries: Family::default(),
            backend_failures: Family::default(),
            backend_seconds: Family::new_with_constructor(latency_histogram),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            notifications: Family::default(),
            anonymous_refusals: Family::default(),
            requests: Family::new_with_constructor(latency_histogram),
            rollup_entries: Family::default(),
            rollup_bytes: Gauge::default(),
            task_rounds: Family::default(),
            task_failing: Family::default(),
            registry: Registry::default(),
        };
        registry.register("backend_queries", "Queries sent to outside systems", m.backend_queries.clone());
        registry.register("backend_failures", "Queries to outside systems that failed", m.backend_failures.clone());
        registry.register_with_unit(
            "backend_query_duration",
            "How long outside systems took to answer (or to fail)",
            prometheus_client::registry::Unit::Seconds,
            m.backend_seconds.clone(),
        );
        registry.register("cache_hits", "Answers served from the refresh-interval cache", m.cache_hits.clone());
        registry.register("cache_misses", "Answers computed by asking the backends", m.cache_misses.clone());
        registry.register("notifications", "Delivery attempts to notification receivers", m.notifications.clone());
        registry.register(
            "anonymous_refusals",
            "Actions refused to callers without an identity (counted here, kept out of the audit trail)",
            m.anonymous_refusals.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP requests served, by route pattern, method and status class",
            prometheus_client::registry::Unit::Seconds,
            m.requests.clone(),
        );
        registry.register(
            "records_rollup_entries",
            "What the history_records rollup holds: minutes and hours counted, rows of edge minutes",
            m.rollup_entries.clone(),
        );
        registry.register_with_unit(
            "records_rollup",
            "Estimated memory held by the history_records rollup",
            prometheus_client::registry::Unit::Bytes,
            m.rollup_bytes.clone(),
        );
        registry.register("background_rounds", "Rounds run by each background task", m.task_rounds.clone());
        registry.register(
            "background_failing",
            "1 while a background task's latest round failed (it is tried again at its pace)",
            m.task_failing.clone(),
        );
        OwnMetrics { registry, ..m }
    }
}

impl OwnMetrics {
    pub fn backend_query(&self, source: &'static str, took: Duration, ok: bool) {
        let label = SourceLabel { source: source.to_string() };
        self.backend_queries.get_or_create(&label).inc();
        if !ok {
            self.backend_failures.get_or_create(&label).inc();
        }
        self.backend_seconds.get_or_create(&label).observe(took.as_secs_f64());
    }

    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let family = if hit { &self.cache_hits } else { &self.cache_misses };
        family.get_or_create(&CacheLabel { cache }).inc();
    }

    /// A delivery attempt to a notification receiver: `delivered`, `rejected` or `failed`.
    pub fn notification(&self, receiver: &str, outcome: &'static str) {
        self.notifications.get_or_create(&DeliveryLabels { receiver: receiver.to_string(), outcome }).inc();
    }

    /// An HTTP request answered: `route` is the matched pattern (or `unmatched`).
    pub fn anonymous_refusal(&self, action: &str) {
        self.anonymous_refusals.get_or_create(&ActionLabel { action: action.to_string() }).inc();
    }

    /// A background task's round ended, well or not.
    pub fn background_round(&self, task: &str, ok: bool) {
        let label = TaskLabel { task: task.to_string() };
        self.task_rounds.get_or_create(&label).inc();
        self.task_failing.get_or_create(&label).set(i64::from(!ok));
    }

    /// A supervised background loop started (`up`) or ended (it is started again).
    pub fn background_loop(&self, task: &str, up: bool) {
        self.task_failing.get_or_create(&TaskLabel { task: task.to_string() }).set(i64::from(!up));
    }

    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("other");
        let labels = RequestLabels { route: route.to_string(), method, status };
        self.requests.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Backend queries made so far for `source`.
    /// The rollup's size as it is now (set before each exposition).
    pub fn records_rollup(&self, size: crate::server::records::RollupSize) {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.rollup_entries.get_or_create(&PartLabel { part: "minutes" }).set(as_i64(size.minutes));
        self.rollup_entries.get_or_create(&PartLabel { part: "hours" }).set(as_i64(size.hours));
        self.rollup_entries.get_or_create(&PartLabel { part: "edge_rows" }).set(as_i64(size.edge_rows));
        self.rollup_bytes.set(as_i64(size.bytes));
    }

    pub fn backend_queries(&self, source: &str) -> u64 {
        self.backend_queries.get(&SourceLabel { source: source.to_string() }).map(|c| c.get()).unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_histograms_and_escapes_label_values() {
        let m = OwnMetrics::default();
        m.backend_query("prometheus", Duration::from_millis(3), true);
        m.backend_query("prometheus", Duration::from_millis(700), false);
        m.notification("team \"pager\"\n", "delivered");
        m.http_request("/api/v1/status", "GET", 200, Duration::from_millis(2));
        m.http_request("/", "BREW", 404, Duration::from_millis(2));
        let text = m.render();
        assert!(text.contains("rollout_dashboard_backend_queries_total{source=\"prometheus\"} 2"), "{text}");
        assert!(text.contains("rollout_dashboard_backend_failures_total{source=\"prometheus\"} 1"), "{text}");
        assert!(text.contains("# TYPE rollout_dashboard_backend_query_duration_seconds histogram"), "{text}");
        assert!(text.contains("rollout_dashboard_backend_query_duration_seconds_count{source=\"prometheus\"} 2"));
        // 3 ms lands in the 4 ms bucket, 700 ms only from the 1.024 s bucket on.
        assert!(
            text.contains(
                "rollout_dashboard_backend_query_duration_seconds_bucket{le=\"0.004\",source=\"prometheus\"} 1"
            ) || text.contains(
                "rollout_dashboard_backend_query_duration_seconds_bucket{source=\"prometheus\",le=\"0.004\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("route=\"/api/v1/status\",method=\"GET\",status=\"2xx\""), "{text}");
        assert!(text.contains("route=\"/\",method=\"other\",status=\"4xx\""), "{text}");
        assert!(text.contains(r#"receiver="team \"pager\"\n""#), "a receiver's name is escaped: {text}");
        assert!(text.trim_end().ends_with("# EOF"));
        assert_eq!(m.backend_queries("prometheus"), 2);
        assert_eq!(m.backend_queries("nobody"), 0);
    }
}
