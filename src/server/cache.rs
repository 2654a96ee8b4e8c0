//! A time-limited, single-flight cache in front of the outside systems: however many viewers ask
//! within one refresh interval, each distinct question reaches the backend once. Callers that
//! arrive while the answer is being computed wait for that same computation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::own_metrics::OwnMetrics;

struct Entry<V> {
    created: Instant,
    cell: OnceCell<V>,
}

/// Still worth holding: fresh, or still being computed (others may be waiting for it). An entry
/// nobody computes any more (every caller dropped: clients that went away mid-answer) is not: only
/// the map holds it then, and keeping it would count against the callers' limits forever.
fn held<V>(entry: &Arc<Entry<V>>, ttl: Duration) -> bool {
    let computing = entry.cell.get().is_none() && Arc::strong_count(entry) > 1;
    entry.created.elapsed() < ttl || computing
}

pub struct SingleFlight<V> {
    name: &'static str,
    ttl: Duration,
    entries: Mutex<HashMap<String, Arc<Entry<V>>>>,
    metrics: Arc<OwnMetrics>,
}

impl<V: Clone> SingleFlight<V> {
    pub fn new(name: &'static str, ttl: Duration, metrics: Arc<OwnMetrics>) -> Self {
        SingleFlight { name, ttl, entries: Mutex::new(HashMap::new()), metrics }
    }

    /// How many answers are held (those still fresh, and those being computed).
    pub fn held(&self) -> usize {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|e| held(e, self.ttl)).count()
    }

    /// Forgets every answer (the next caller computes afresh): after a change the answers depend on.
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The cached answer for `key`, or the answer `compute` gives (computed once for everyone
    /// waiting). Errors are cached too, for the same interval, so a failing backend is not hammered.
    pub async fn get<F, Fut>(&self, key: &str, compute: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let entry = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| held(e, self.ttl));
            map.entry(key.to_string())
                .or_insert_with(|| Arc::new(Entry { created: Instant::now(), cell: OnceCell::new() }))
                .clone()
        };
        let mut computed = false;
        let v = entry
            .cell
            .get_or_init(|| {
                computed = true;
                compute()
            })
            .await
            .clone();
        self.metrics.cache_lookup(self.name, !computed);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_computation() {
        let metrics = Arc::new(OwnMetrics::default());
        let cache = Arc::new(SingleFlight::<u32>::new("t", Duration::from_secs(60), metrics.clone()));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("k", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(metrics.render().contains("rollout_dashboard_cache_hits_total{cache=\"t\"} 49"));
    }

    #[tokio::test]
    async fn a_computation_every_caller_dropped_is_not_held() {
        let cache = Arc::new(SingleFlight::<u32>::new("t", Duration::from_millis(30), Arc::default()));
        let slow = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get("k", || async { std::future::pending::<u32>().await }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(cache.held(), 1, "being computed");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.held(), 1, "still being computed after the interval");
        slow.abort();
        let _ = slow.await;
        assert_eq!(cache.held(), 0, "the caller went away");
        // The next caller computes afresh.
        assert_eq!(cache.get("k", || async { 5 }).await, 5);
    }

    #[tokio::test]
    async fn a_cleared_cache_computes_afresh() {
        let cache = SingleFlight::<u32>::new("t", Duration::from_secs(60), Arc::default());
        assert_eq!(cache.get("k", || async { 1 }).await, 1);
        cache.clear();
        assert_eq!(cache.get("k", || async { 2 }).await, 2);
    }

    #[tokio::test]
    async fn answers_expire_after_the_interval() {
        let cache = SingleFlight::<u32>::new("t", Duration::from_millis(30), Arc::default());
        assert_eq!(cache.get("k", || async { 1 }).await, 1);
        assert_eq!(cache.get("k", || async { 2 }).await, 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.get("k", || async { 3 }).await, 3);
    }
}
