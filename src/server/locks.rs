//! Work done by one replica at a time: PostgreSQL advisory locks, every kind named here once.
//!
//! A lock is held on a connection of a small pool of its own (`Locks`), never of the pool that
//! answers requests: a rollback executor holds its lock for minutes, each receiver's delivery loop
//! for a pass, and with both pools shared eight lock holders could starve the kill path's reads
//! (issue 31). The work done under a lock uses the ordinary pool. The lock is released when the
//! holder finishes, and when the process dies (the session ends), which is how a restart knows a
//! run was orphaned.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::error::{db_err, Source, SourceError};

/// What is done one replica at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    /// A rollback run's executor (and the recovery that marks an orphaned run interrupted).
    RollbackRun(i64),
    /// An autopilot plan's evaluation round (and a person's Promote, which is a round).
    AutopilotPlan(i64),
    /// Deliveries to one notification receiver (events, or the alerts it holds).
    Receiver(&'a str),
    /// The retry of kills that were asked for and not yet written.
    KillRetry,
    /// The rollback rehearsal running (one at a time, across replicas).
    Rehearsal,
}

impl Lock<'_> {
    /// The two keys of `pg_try_advisory_lock(int, int)`: a class per kind, then the id.
    pub fn keys(&self) -> (i32, i32) {
        match *self {
            Lock::RollbackRun(id) => (0x524f_4c4c, id as i32),         // "ROLL"
            Lock::AutopilotPlan(id) => (0x4155_544f, id as i32),       // "AUTO"
            Lock::Receiver(name) => (0x4e54_4659, receiver_key(name)), // "NTFY"
            Lock::KillRetry => (0x4b49_4c4c, 0),                       // "KILL"
            Lock::Rehearsal => (0x5248_5253, 0),                       // "RHRS"
        }
    }
}

/// A receiver's lock id: FNV-1a of its name (stable across replicas and releases).
fn receiver_key(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

/// The pool lock holders take their connection from.
#[derive(Clone)]
pub struct Locks {
    pool: PgPool,
    /// How long taking or releasing a lock may take (the source timeout).
    limit: Duration,
}

impl Locks {
    /// Room for every holder one process can have at once: a connection per receiver loop, the
    /// rollback executor, the autopilot's round, a person's Promote, the kill retry and a rehearsal.
    pub fn new(options: PgConnectOptions, receivers: usize, acquire: Duration) -> Locks {
        let size = u32::try_from(receivers).unwrap_or(u32::MAX).saturating_add(5);
        let pool = PgPoolOptions::new().max_connections(size).acquire_timeout(acquire).connect_lazy_with(options);
        Locks { pool, limit: acquire }
    }

    /// How many connections it may open.
    pub fn size(&self) -> u32 {
        self.pool.options().get_max_connections()
    }
}

/// Runs `f` while holding `lock` on a connection of the locks' pool. Returns None, running
/// nothing, when another holder (this replica or another) has it.
pub async fn with_lock<T>(
    locks: &Locks,
    lock: Lock<'_>,
    f: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<Option<T>, SourceError> {
    let (class, id) = lock.keys();
    // Taking the lock is bounded: a connection that went silent must not stall the loop that
    // holds the kill retry (it is closed, not returned, and the next round tries again).
    let limit = locks.limit;
    let silent = || SourceError::Unreachable {
        system: Source::StateDatabase,
        detail: format!("taking the advisory lock {lock:?} took longer than {} s", limit.as_secs()),
    };
    let mut held = Held(None);
    let got = tokio::time::timeout(limit, async {
        held.0 = Some(locks.pool.acquire().await?);
        let conn = held.0.as_mut().expect("just acquired");
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
            .bind(class)
            .bind(id)
            .fetch_one(&mut **conn)
            .await
            .map_err(db_err)
    })
    .await
    .map_err(|_| silent())??;
    if !got {
        // Not taken: the connection holds nothing and goes back to the pool.
        drop(held.0.take());
        return Ok(None);
    }
    let result = f.await;
    let conn = held.0.as_mut().expect("held until here");
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(class).bind(id).execute(&mut **conn);
    let unlocked = tokio::time::timeout(limit, unlock).await;
    if matches!(unlocked, Ok(Ok(_))) {
        // Unlocked: the connection goes back to the pool.
        drop(held.0.take());
    }
    result.map(Some)
}

/// The connection holding an advisory lock. Dropped while it may still hold it (the unlock
/// failed, or the future was dropped mid-run: a client that went away during a Promote), it is
/// closed instead of returned to the pool, and closing the session releases the lock.
struct Held(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_class_of_its_own_and_receiver_ids_are_stable() {
        let classes = [Lock::RollbackRun(1), Lock::AutopilotPlan(1), Lock::Receiver("pager"), Lock::KillRetry]
            .map(|l| l.keys().0);
        for (i, a) in classes.iter().enumerate() {
            assert!(classes[i + 1..].iter().all(|b| b != a), "{classes:x?}");
        }
        assert_eq!(Lock::Receiver("pager").keys(), Lock::Receiver("pager").keys());
        assert_ne!(Lock::Receiver("pager").keys(), Lock::Receiver("slack").keys());
    }
}
