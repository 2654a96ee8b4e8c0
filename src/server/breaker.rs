//! A breaker in front of the state database on the kill path. With the database down, every
//! call waits out the pool's acquire timeout (sqlx retries the connection until then): a kill
//! that makes five such calls took 10 s in the proof. After a call fails for want of the
//! database, the breaker is open for a few seconds and the kill path's calls fail at once
//! (the session from its signed cookie, the audit entry into the journal, the hook's claim held
//! in the process); the first call after that tries again, for at most half a second while the
//! last failure is recent, and an answer closes it.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::{Source, SourceError};

pub struct Breaker {
    /// When a call last found the database down (cleared by an answer).
    failed_at: Mutex<Option<Instant>>,
    cooldown: Duration,
}

/// A call made within this long of a failure is a probe: it waits at most `PROBE`, not the
/// pool's timeout (a database that answers at all answers a probe in milliseconds).
const SUSPECT: Duration = Duration::from_secs(60);
const PROBE: Duration = Duration::from_millis(500);

impl Breaker {
    pub fn new(cooldown: Duration) -> Breaker {
        Breaker { failed_at: Mutex::new(None), cooldown }
    }

    fn since_failure(&self) -> Option<Duration> {
        self.failed_at.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed())
    }

    /// Whether calls are skipped now.
    pub fn is_open(&self) -> bool {
        self.since_failure().is_some_and(|d| d < self.cooldown)
    }

    fn set(&self, down: bool) {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = down.then(Instant::now);
    }

    /// `fut` within `limit`, unless the breaker is open. An unreachable or silent database
    /// opens it; any answer (an error of the query's own included) closes it.
    pub async fn call<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        if self.is_open() {
            return Err(SourceError::Unreachable {
                system: Source::StateDatabase,
                detail: "it failed moments ago; not asked again yet".into(),
            });
        }
        let limit = if self.since_failure().is_some_and(|d| d < SUSPECT) { limit.min(PROBE) } else { limit };
        let answer = tokio::time::timeout(limit, fut)
            .await
            .unwrap_or(Err(SourceError::Timeout { system: Source::StateDatabase, after: limit }));
        let down = matches!(&answer, Err(SourceError::Unreachable { .. } | SourceError::Timeout { .. }));
        self.set(down);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_after_an_outage_closed_by_an_answer() {
        let b = Breaker::new(Duration::from_millis(200));
        let down =
            || async { Err::<(), _>(SourceError::Unreachable { system: Source::StateDatabase, detail: "x".into() }) };
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let up = || async {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, SourceError>(1)
        };
        assert!(b.call(Duration::from_secs(1), down()).await.is_err());
        assert!(b.is_open());
        assert!(b.call(Duration::from_secs(1), up()).await.is_err(), "skipped while open");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(b.call(Duration::from_secs(1), up()).await.unwrap(), 1);
        assert!(!b.is_open());
        // A silent database opens it too; a query's own error (a refusal) does not.
        let silent = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, SourceError>(())
        };
        assert!(matches!(b.call(Duration::from_millis(50), silent()).await, Err(SourceError::Timeout { .. })));
        assert!(b.is_open());
        tokio::time::sleep(Duration::from_millis(250)).await;
        let refused =
            || async { Err::<(), _>(SourceError::Rejected { system: Source::StateDatabase, detail: "x".into() }) };
        assert!(b.call(Duration::from_secs(1), refused()).await.is_err());
        assert!(!b.is_open());
    }
}
