//! Values an island shows, starting from what the server rendered (the island's props) and read
//! again from a server function when something they depend on changes. No resource, suspense or
//! hydration data: the first value is in the page already, so nothing is fetched at hydration.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leptos::prelude::*;

/// What an island shows: the last answer, or why the last reading failed (shown in its place,
/// as a failed resource was).
pub type Shown<T> = RwSignal<Result<T, String>>;

/// `shown`, starting from `first`, read again with `read(key())` each time `key()` changes (not
/// at the start). Only the answer to the newest reading is kept: an older one arriving late is
/// dropped, so a slow answer never overwrites a newer one; an answer equal to what is shown
/// changes nothing (what a person is typing into the region is not redrawn away every tick).
pub fn reread<K, T, Fut>(
    first: T,
    key: impl Fn() -> K + Send + Sync + 'static,
    read: impl Fn(K) -> Fut + Copy + Send + Sync + 'static,
) -> Shown<T>
where
    K: Send + Sync + 'static,
    T: PartialEq + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ServerFnError>> + 'static,
{
    let shown = RwSignal::new(Ok(first));
    let issued = Arc::new(AtomicU64::new(0));
    Effect::new(move |ran: Option<()>| {
        let k = key();
        if ran.is_none() {
            return;
        }
        let n = issued.fetch_add(1, Ordering::Relaxed) + 1;
        let issued = issued.clone();
        leptos::task::spawn_local(async move {
            let answer = read(k).await.map_err(|e| e.to_string());
            if issued.load(Ordering::Relaxed) == n && shown.with_untracked(|s| *s != answer) {
                shown.set(answer);
            }
        });
    });
    shown
}

/// A counter that goes up every `secs` seconds while the island is shown: a key for `reread`.
pub fn ticks(secs: u64) -> ReadSignal<u64> {
    let (tick, set_tick) = signal(0u64);
    Effect::new(move |_| {
        let _ = set_interval_with_handle(move || set_tick.update(|t| *t += 1), std::time::Duration::from_secs(secs));
    });
    tick
}
