//! The simulated `diary-writer` replicas: while the emulated deployment has ready replicas, new
//! diary entries arrive at a steady rate per replica. A user inside the flag's rollout
//! percentage writes split parts; everyone else writes the legacy single dose. After a schema
//! downgrade (split columns gone) every client falls back to the legacy dose.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::World;

pub async fn split_columns_exist(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = 'history_records'
            AND column_name IN ('insulin_short', 'insulin_long')",
    )
    .fetch_one(pool)
    .await?;
    Ok(n == 2)
}

/// Reads the rollout percentage from the emulated ConfigMap with the same tolerant rules as the
/// product would (`off`, `on`, `25`, `25%`, JSON with `percentage`); unknown formats mean 0.
pub fn flag_percentage(raw: Option<&str>) -> u32 {
    let Some(raw) = raw.map(str::trim) else {
        return 0;
    };
    match raw.to_ascii_lowercase().as_str() {
        "off" | "false" => return 0,
        "on" | "true" => return 100,
        _ => {}
    }
    if let Ok(n) = raw.trim_end_matches('%').trim().parse::<u32>() {
        return n.min(100);
    }
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| {
            if v.get("enabled").and_then(|e| e.as_bool()) == Some(false) {
                return Some(0);
            }
            v.get("percentage").and_then(|p| p.as_u64()).map(|p| p.min(100) as u32)
        })
        .unwrap_or(0)
}

/// One diary entry as a client would send it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub user_id: i64,
    pub dose: Option<f64>,
    pub insulin_short: Option<f64>,
    pub insulin_long: Option<f64>,
}

/// The `n`-th simulated entry, given the rollout percentage and whether the split columns exist;
/// `doubled_percent` of the split writers copy the dose into both parts (a faulty client).
pub fn entry_with_fault(n: u64, percentage: u32, split_schema: bool, doubled_percent: u32) -> Entry {
    let e = entry(n, percentage, split_schema);
    let split = e.insulin_short.is_some() || e.insulin_long.is_some();
    if split && (n.wrapping_mul(31) % 100) < u64::from(doubled_percent) {
        let d = 2.0 + (n % 17) as f64 * 0.5;
        return Entry { dose: Some(d), insulin_short: Some(d), insulin_long: Some(d), ..e };
    }
    e
}

/// The `n`-th simulated entry, given the rollout percentage and whether the split columns exist.
pub fn entry(n: u64, percentage: u32, split_schema: bool) -> Entry {
    let user_id = 1 + (n.wrapping_mul(7919) % 5000) as i64;
    let short = 2.0 + (n % 17) as f64 * 0.5;
    let long = 8.0 + (n % 11) as f64;
    if !split_schema || (user_id % 100) as u32 >= percentage {
        return Entry { user_id, dose: Some(short), insulin_short: None, insulin_long: None };
    }
    match n.wrapping_mul(13) % 100 {
        0..=59 => Entry { user_id, dose: None, insulin_short: Some(short), insulin_long: None },
        60..=74 | 85..=99 => Entry { user_id, dose: None, insulin_short: Some(short), insulin_long: Some(long) },
        _ => Entry { user_id, dose: None, insulin_short: None, insulin_long: Some(long) },
    }
}

/// Inserts one entry, counting it on the matching counter. Returns the new row's id.
pub async fn insert(world: &World, pool: &PgPool, e: Entry, note: Option<&str>) -> Result<i64, sqlx::Error> {
    let split = e.insulin_short.is_some() || e.insulin_long.is_some();
    let id: i64 = if split {
        sqlx::query_scalar(
            "INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long, note)
             VALUES ($1, now(), $2::float8::numeric, $3::float8::numeric, $4::float8::numeric, $5) RETURNING id",
        )
        .bind(e.user_id)
        .bind(e.dose)
        .bind(e.insulin_short)
        .bind(e.insulin_long)
        .bind(note)
        .fetch_one(pool)
        .await?
    } else {
        // Legacy clients know nothing of the split columns, which may not exist.
        sqlx::query_scalar(
            "INSERT INTO history_records (user_id, created_at, dose, note)
             VALUES ($1, now(), $2::float8::numeric, $3) RETURNING id",
        )
        .bind(e.user_id)
        .bind(e.dose)
        .bind(note)
        .fetch_one(pool)
        .await?
    };
    if split {
        world.counters.record_split();
    } else if e.dose.is_some() {
        world.counters.record_legacy();
    }
    Ok(id)
}

/// Runs forever: every tick, each ready replica writes `per_replica_per_s * tick` entries on average.
pub async fn run(world: World, pool: PgPool, per_replica_per_s: f64) {
    let per_replica_per_s = per_replica_per_s.max(0.0);
    let tick = Duration::from_millis(250);
    let mut owed = 0.0f64;
    let mut legacy_owed = 0.0f64;
    let mut n: u64 = 1_000_000;
    let schema_cache = Arc::new(tokio::sync::Mutex::new((false, std::time::Instant::now() - Duration::from_secs(60))));
    loop {
        tokio::time::sleep(tick).await;
        let ready = world.cluster.ready_replicas().max(0) as f64;
        owed += ready * per_replica_per_s * tick.as_secs_f64();
        legacy_owed += world.cluster.legacy_clients_per_s() * tick.as_secs_f64();
        while legacy_owed >= 1.0 {
            legacy_owed -= 1.0;
            n += 1;
            if let Err(e) = insert(&world, &pool, entry_with_fault(n, 0, false, 0), None).await {
                tracing::warn!(error = %e, "an old client could not insert an entry");
                break;
            }
        }
        if owed < 1.0 {
            continue;
        }
        let split_schema = {
            let mut c = schema_cache.lock().await;
            if c.1.elapsed() > Duration::from_secs(5) {
                if let Ok(exists) = split_columns_exist(&pool).await {
                    *c = (exists, std::time::Instant::now());
                }
            }
            c.0
        };
        let (snap, _) = world.cluster.snapshot();
        let pct = flag_percentage(snap.configmap_data.get(&world.flag_key).map(String::as_str));
        while owed >= 1.0 {
            owed -= 1.0;
            n += 1;
            let e = entry_with_fault(n, pct, split_schema, world.cluster.doubled_percent());
            if let Err(e) = insert(&world, &pool, e, None).await {
                tracing::warn!(error = %e, "diary-writer could not insert an entry");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doubled_dose_fault_copies_the_dose_into_both_parts_for_its_share_of_split_writers() {
        let doubled = |e: &Entry| e.dose.is_some() && e.dose == e.insulin_short && e.dose == e.insulin_long;
        assert!((0..1000).map(|n| entry_with_fault(n, 100, true, 0)).all(|e| !doubled(&e)));
        let all: Vec<Entry> = (0..1000).map(|n| entry_with_fault(n, 100, true, 100)).collect();
        assert!(all.iter().all(doubled));
        let some = (0..1000).map(|n| entry_with_fault(n, 100, true, 10)).filter(doubled).count();
        assert!((50..=150).contains(&some), "{some} of 1000 at 10 %");
        // Legacy writers cannot double anything.
        assert!((0..1000).map(|n| entry_with_fault(n, 0, true, 100)).all(|e| !doubled(&e)));
    }

    #[test]
    fn flag_formats() {
        assert_eq!(flag_percentage(Some("off")), 0);
        assert_eq!(flag_percentage(Some("on")), 100);
        assert_eq!(flag_percentage(Some("25%")), 25);
        assert_eq!(flag_percentage(Some(r#"{"enabled": true, "percentage": 40}"#)), 40);
        assert_eq!(flag_percentage(Some(r#"{"enabled": false, "percentage": 40}"#)), 0);
        assert_eq!(flag_percentage(Some("banana")), 0);
        assert_eq!(flag_percentage(None), 0);
    }

    #[test]
    fn entries_never_copy_the_dose() {
        for n in 0..10_000 {
            for pct in [0, 5, 25, 100] {
                let e = entry(n, pct, true);
                assert!(e.dose.is_none() || (e.insulin_short.is_none() && e.insulin_long.is_none()));
                assert!(e.dose.is_some() || e.insulin_short.is_some() || e.insulin_long.is_some());
            }
            assert!(entry(n, 100, false).dose.is_some());
        }
    }
}
