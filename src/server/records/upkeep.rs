//! The rollup's background work, so that answers rarely count history themselves: after a start,
//! count the last `WARM_SPAN` (newest hour first, so the 24-hour window is ready first); then,
//! every `UPKEEP_TICK`, the minutes that settled; every `RECONCILE_EVERY`, count the last
//! `RECONCILE_SPAN` again (late writes) and drop what is older than the rollup keeps. An hour per
//! statement throughout, each kept as soon as it is counted. Ends when the `DiaryRecords` it
//! serves is dropped.

use std::sync::Arc;
use std::time::Instant;

use super::{floor_to, DiaryRecords, HOUR, RECONCILE_EVERY, RECONCILE_SPAN, UPKEEP_TICK, WARM_SPAN};
use crate::server::error::SourceError;

impl DiaryRecords {
    /// Starts the background work; it holds the rollup weakly and stops when it is gone.
    pub fn start_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.rollup);
        let (pool, table, filling) = (self.pool.clone(), self.table.clone(), self.filling.clone());
        tokio::spawn(async move {
            let mut last_reconcile = Instant::now();
            let mut warmed = false;
            loop {
                let Some(rollup) = weak.upgrade() else { return };
                let records =
                    DiaryRecords { pool: pool.clone(), table: table.clone(), rollup, filling: filling.clone() };
                let reconcile = last_reconcile.elapsed() >= RECONCILE_EVERY;
                match records.upkeep_round(!warmed, reconcile).await {
                    Ok(()) => {
                        warmed = true;
                        if reconcile {
                            last_reconcile = Instant::now();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "records rollup: upkeep round failed; trying again"),
                }
                drop(records);
                tokio::time::sleep(UPKEEP_TICK).await;
            }
        })
    }

    /// One round: warm (after a start), count what settled, and reconcile when due.
    async fn upkeep_round(&self, warm: bool, reconcile: bool) -> Result<(), SourceError> {
        let (split, until) = self.split_and_settled().await?;
        let started = Instant::now();
        let from = if warm { floor_to(until - WARM_SPAN, HOUR) } else { floor_to(until, HOUR) };
        self.fill(from, until, split, None).await?;
        if warm {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                size = ?self.rollup_size(),
                "records rollup: the last 7 days counted"
            );
        }
        if reconcile {
            self.reconcile(until, split).await?;
        }
        Ok(())
    }

    /// What the background does every `RECONCILE_EVERY`, now: late writes into settled minutes
    /// of the last 48 hours are counted.
    pub async fn recount_recent(&self) -> Result<(), SourceError> {
        let (split, until) = self.split_and_settled().await?;
        self.reconcile(until, split).await
    }

    /// Whether the split columns exist, and the first minute not settled by the database's clock.
    async fn split_and_settled(&self) -> Result<(bool, i64), SourceError> {
        let split = self.schema().await?.has_split_columns();
        Ok((split, self.open(split, super::Grouping::Sum).await?.settled_until))
    }

    /// Counts the last `RECONCILE_SPAN` again, hour by hour, replacing what the rollup held.
    async fn reconcile(&self, until: i64, split: bool) -> Result<(), SourceError> {
        let since = until - RECONCILE_SPAN;
        let hours = self.rollup().counted_since(since);
        for (hour, to) in hours.into_iter().rev() {
            let _turn = self.filling.lock().await;
            let counted = self.count_minutes((hour, to), split).await?;
            let mut r = self.rollup();
            r.schema_is(split);
            r.replace(hour, to, counted);
        }
        self.rollup().prune(until, Some(since));
        Ok(())
    }
}
