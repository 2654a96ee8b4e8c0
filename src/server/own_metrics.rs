//! The dashboard's own metrics, served on `/metrics` in Prometheus text format: backend queries
//! by source, their latency, cache hits and misses, and how long each source has been failing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct OwnMetrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// source → (queries, failures, total seconds)
    backend: BTreeMap<&'static str, (u64, u64, f64)>,
    /// cache → (hits, misses)
    cache: BTreeMap<&'static str, (u64, u64)>,
    /// (receiver, outcome) → delivery attempts
    notifications: BTreeMap<(String, &'static str), u64>,
}

impl OwnMetrics {
    pub fn backend_query(&self, source: &'static str, took: Duration, ok: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.backend.entry(source).or_default();
        e.0 += 1;
        if !ok {
            e.1 += 1;
        }
        e.2 += took.as_secs_f64();
    }

    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.cache.entry(cache).or_default();
        if hit {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// A delivery attempt to a notification receiver: `delivered`, `rejected` or `failed`.
    pub fn notification(&self, receiver: &str, outcome: &'static str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g.notifications.entry((receiver.to_string(), outcome)).or_default() += 1;
    }

    /// Backend queries made so far for `source`.
    pub fn backend_queries(&self, source: &str) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.backend.get(source).map(|e| e.0).unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP rollout_dashboard_backend_queries_total Queries sent to outside systems.\n");
        out.push_str("# TYPE rollout_dashboard_backend_queries_total counter\n");
        for (s, (n, _, _)) in &g.backend {
            let _ = writeln!(out, "rollout_dashboard_backend_queries_total{{source=\"{s}\"}} {n}");
        }
        out.push_str("# HELP rollout_dashboard_backend_failures_total Queries to outside systems that failed.\n");
        out.push_str("# TYPE rollout_dashboard_backend_failures_total counter\n");
        for (s, (_, f, _)) in &g.backend {
            let _ = writeln!(out, "rollout_dashboard_backend_failures_total{{source=\"{s}\"}} {f}");
        }
        out.push_str("# HELP rollout_dashboard_backend_query_seconds_total Time spent waiting for outside systems.\n");
        out.push_str("# TYPE rollout_dashboard_backend_query_seconds_total counter\n");
        for (s, (_, _, secs)) in &g.backend {
            let _ = writeln!(out, "rollout_dashboard_backend_query_seconds_total{{source=\"{s}\"}} {secs}");
        }
        out.push_str("# HELP rollout_dashboard_cache_hits_total Answers served from the refresh-interval cache.\n");
        out.push_str("# TYPE rollout_dashboard_cache_hits_total counter\n");
        for (c, (h, _)) in &g.cache {
            let _ = writeln!(out, "rollout_dashboard_cache_hits_total{{cache=\"{c}\"}} {h}");
        }
        out.push_str("# HELP rollout_dashboard_cache_misses_total Answers computed by asking the backends.\n");
        out.push_str("# TYPE rollout_dashboard_cache_misses_total counter\n");
        for (c, (_, m)) in &g.cache {
            let _ = writeln!(out, "rollout_dashboard_cache_misses_total{{cache=\"{c}\"}} {m}");
        }
        out.push_str("# HELP rollout_dashboard_notifications_total Delivery attempts to notification receivers.\n");
        out.push_str("# TYPE rollout_dashboard_notifications_total counter\n");
        for ((r, o), n) in &g.notifications {
            let _ = writeln!(out, "rollout_dashboard_notifications_total{{receiver=\"{r}\",outcome=\"{o}\"}} {n}");
        }
        out
    }
}
