//! The simulated `diary-writer` replicas: while the emulated deployment has ready replicas, new
//! diary entries arrive at a steady rate per replica. A user inside the flag's rollout
//! percentage writes split parts; everyone else writes the legacy single dose. After a schema
//! downgrade (split columns gone) every client falls back to the legacy dose.
//!
//! Traffic as patients make it, not a constant stream: users are skewed (a few heavy writers,
//! many light ones: `user_of`), and the split path changes how much a user writes (the long,
//! basal dose gets logged as an entry of its own: `Traffic::split_lift`). Checks that count
//! events instead of users, or expect equal write rates on both paths, fail on it.

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

/// The app versions the simulated phones run. One user in a hundred still runs `OLD_VERSION`,
/// which knows nothing of the split and sends `dose` whatever the flag says (the guide's "check
/// that clients are updated"); the others run 4.0.0 or 4.1.0, which follow the flag.
pub const VERSIONS: [&str; 3] = [OLD_VERSION, "4.0.0", "4.1.0"];
pub const OLD_VERSION: &str = "3.1.4";

/// The version of `user_id`'s app: a multiplicative hash of the id (reduced first, so that any
/// id, negative or huge, stays in range), so that it has nothing to do with the flag's bucket
/// (`user_id % 100`). `VERSION_SQL` is the same rule in SQL.
pub fn version_of(user_id: i64) -> &'static str {
    match user_id.rem_euclid(1_000_003) * 2_654_435_761 % (1 << 32) * 100 / (1 << 32) {
        0 => VERSIONS[0],
        1..=59 => VERSIONS[1],
        _ => VERSIONS[2],
    }
}

/// `version_of` over a row's `user_id` in SQL (for the backfill, the seed and the counters' start).
pub const VERSION_SQL: &str = "(CASE WHEN (((user_id::bigint % 1000003) + 1000003) % 1000003) * 2654435761 % 4294967296 * 100 / 4294967296 < 1 THEN '3.1.4'
      WHEN (((user_id::bigint % 1000003) + 1000003) % 1000003) * 2654435761 % 4294967296 * 100 / 4294967296 < 60 THEN '4.0.0' ELSE '4.1.0' END)";

/// The user of the `n`-th entry from a phone never updated (the old app): `user_of` from `n`
/// on, the first whose version is `OLD_VERSION`, so that the counters, the backfill and the
/// seed all attribute the entry to the same version.
pub fn old_user_of(n: u64) -> i64 {
    (0..10_000u64)
        .map(|k| user_of(n.wrapping_mul(10_007).wrapping_add(k)))
        .find(|u| version_of(*u) == OLD_VERSION)
        .unwrap_or(1)
}

/// One diary entry as a client would send it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub user_id: i64,
    /// The app version that sends it (labels the counters).
    pub version: &'static str,
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

/// The simulated users.
pub const USERS: u64 = 5000;

/// A well-mixed 64-bit hash of `n` (splitmix64's finaliser).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The user of the `n`-th entry: a uniform draw squared picks a rank, so the heaviest user
/// writes about 1.4 % of all entries (70 times the average) and the lighter half each about
/// 0.6 times the average. Ranks are spread over ids (7919 is prime to 5000) so that heaviness
/// has nothing to do with the flag's bucket (`user_id % 100`).
pub fn user_of(n: u64) -> i64 {
    let u = (mix(n) >> 11) as f64 / (1u64 << 53) as f64;
    let rank = ((u * u * USERS as f64) as u64).min(USERS - 1);
    1 + (rank.wrapping_mul(7919) % USERS) as i64
}

/// How the simulated clients write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// New entries per second per ready replica (visits: one entry each on the legacy path).
    pub per_replica_per_s: f64,
    /// Entries per visit on the split path (1.3: three visits in ten also log the basal dose
    /// as an entry of its own). Events per user differ between the paths; users do not.
    pub split_lift: f64,
}

impl Traffic {
    pub fn new(per_replica_per_s: f64) -> Traffic {
        Traffic { per_replica_per_s, split_lift: 1.3 }
    }

    /// Whether the split visit `n` also logs the basal dose as an entry of its own.
    fn basal_entry(&self, n: u64) -> bool {
        let extra = (self.split_lift - 1.0).clamp(0.0, 1.0);
        (mix(n ^ 0xBA5A_1000) % 10_000) as f64 / 10_000.0 < extra
    }
}

/// The `n`-th simulated entry, given the rollout percentage and whether the split columns exist.
pub fn entry(n: u64, percentage: u32, split_schema: bool) -> Entry {
    let user_id = user_of(n);
    let version = version_of(user_id);
    let short = 2.0 + (n % 17) as f64 * 0.5;
    let long = 8.0 + (n % 11) as f64;
    let e = Entry { user_id, version, dose: None, insulin_short: None, insulin_long: None };
    if !split_schema || (user_id % 100) as u32 >= percentage || version == OLD_VERSION {
        return Entry { dose: Some(short), ..e };
    }
    match n.wrapping_mul(13) % 100 {
        0..=59 => Entry { insulin_short: Some(short), ..e },
        60..=74 | 85..=99 => Entry { insulin_short: Some(short), insulin_long: Some(long), ..e },
        _ => Entry { insulin_long: Some(long), ..e },
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
        world.counters.record_split(e.version);
    } else if e.dose.is_some() {
        world.counters.record_legacy(e.version);
    }
    Ok(id)
}

/// Runs forever: every tick, each ready replica writes `per_replica_per_s * tick` visits on
/// average (a split visit may add the basal entry: `Traffic::split_lift`). The rate starts at
/// `traffic`'s and follows the cluster's (`POST /__emulator/traffic`) from then on.
pub async fn run(world: World, pool: PgPool, traffic: Traffic) {
    world.cluster.set_per_replica_per_s(traffic.per_replica_per_s);
    let tick = Duration::from_millis(250);
    let mut owed = 0.0f64;
    let mut legacy_owed = 0.0f64;
    let mut n: u64 = 1_000_000;
    let schema_cache = Arc::new(tokio::sync::Mutex::new((false, std::time::Instant::now() - Duration::from_secs(60))));
    loop {
        tokio::time::sleep(tick).await;
        let ready = world.cluster.ready_replicas().max(0) as f64;
        owed += ready * world.cluster.per_replica_per_s() * tick.as_secs_f64();
        legacy_owed += world.cluster.legacy_clients_per_s() * tick.as_secs_f64();
        while legacy_owed >= 1.0 {
            legacy_owed -= 1.0;
            n += 1;
            // Phones that were never updated: users on the old app.
            let user_id = old_user_of(n);
            let old = Entry { user_id, version: version_of(user_id), ..entry_with_fault(n, 0, false, 0) };
            if let Err(e) = insert(&world, &pool, old, None).await {
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
        let pct = world
            .cluster
            .stuck_percent()
            .unwrap_or_else(|| flag_percentage(snap.configmap_data.get(&world.flag_key).map(String::as_str)));
        while owed >= 1.0 {
            owed -= 1.0;
            n += 1;
            let e = entry_with_fault(n, pct, split_schema, world.cluster.doubled_percent());
            let split = e.insulin_short.is_some() || e.insulin_long.is_some();
            let basal = (split && e.dose.is_none() && traffic.basal_entry(n)).then_some(Entry {
                insulin_short: None,
                insulin_long: Some(8.0 + (n % 11) as f64),
                ..e
            });
            for e in std::iter::once(e).chain(basal) {
                if let Err(e) = insert(&world, &pool, e, None).await {
                    tracing::warn!(error = %e, "diary-writer could not insert an entry");
                    break;
                }
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
        // Every split writer copies; the old app writes the legacy dose and copies nothing.
        let (old, new): (Vec<&Entry>, Vec<&Entry>) = all.iter().partition(|e| e.version == OLD_VERSION);
        assert!(new.iter().all(|e| doubled(e)) && new.len() > 900);
        assert!(old.iter().all(|e| !doubled(e) && e.dose.is_some() && e.insulin_short.is_none()));
        let some = (0..1000).map(|n| entry_with_fault(n, 100, true, 10)).filter(doubled).count();
        assert!((50..=150).contains(&some), "{some} of 1000 at 10 %");
        // Legacy writers cannot double anything.
        assert!((0..1000).map(|n| entry_with_fault(n, 0, true, 100)).all(|e| !doubled(&e)));
    }

    #[test]
    fn users_are_skewed_but_buckets_are_not() {
        let mut per_user = std::collections::HashMap::<i64, u64>::new();
        let draws = 200_000u64;
        for n in 0..draws {
            *per_user.entry(user_of(n)).or_default() += 1;
        }
        let mut counts: Vec<u64> = per_user.values().copied().collect();
        counts.sort_unstable();
        let average = draws as f64 / USERS as f64;
        let heaviest = *counts.last().unwrap() as f64;
        assert!(heaviest > 40.0 * average, "the heaviest user writes {heaviest} against {average} on average");
        let median = counts[counts.len() / 2] as f64;
        assert!(median < 0.9 * average, "most users are light: median {median} against {average}");
        // The heavy users are spread over the buckets: the 25 % bucket holds about 25 % of writes.
        let in_bucket: u64 = per_user.iter().filter(|(u, _)| *u % 100 < 25).map(|(_, c)| c).sum();
        let share = in_bucket as f64 / draws as f64;
        assert!((0.20..0.30).contains(&share), "the 25 % bucket writes {share}");
    }

    #[test]
    fn split_visits_log_the_basal_dose_at_the_lift() {
        let t = Traffic::new(1.0);
        let extra = (0..100_000).filter(|n| t.basal_entry(*n)).count() as f64 / 100_000.0;
        assert!((0.28..0.32).contains(&extra), "{extra}");
        let none = Traffic { split_lift: 1.0, ..t };
        assert!((0..10_000).all(|n| !none.basal_entry(n)));
    }

    #[test]
    fn one_user_in_a_hundred_runs_the_old_app_and_it_never_writes_split() {
        let old = (1..=USERS as i64).filter(|u| version_of(*u) == OLD_VERSION).count();
        assert!((30..=70).contains(&old), "{old} of {USERS}");
        for n in 0..20_000 {
            let e = entry(n, 100, true);
            assert_eq!(e.version, version_of(e.user_id));
            if e.version == OLD_VERSION {
                assert!(e.dose.is_some() && e.insulin_short.is_none() && e.insulin_long.is_none());
            }
        }
        for n in 0..200 {
            assert_eq!(version_of(old_user_of(n)), OLD_VERSION);
        }
        // Any id has a version, negative or huge.
        assert!(VERSIONS.contains(&version_of(-1)) && VERSIONS.contains(&version_of(i64::MAX)));
        // Versions are spread over the flag's buckets: each bucket holds every version.
        for bucket in [0, 7, 42, 99] {
            let in_bucket: Vec<&str> = (0..400).map(|k| version_of(k * 100 + bucket + 1)).collect();
            assert!(VERSIONS[1..].iter().all(|v| in_bucket.contains(v)), "bucket {bucket}");
        }
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
