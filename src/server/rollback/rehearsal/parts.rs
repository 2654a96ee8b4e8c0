//! The rehearsal's parts on its scratch database, each timed and saved as it ends: the restore of
//! the backup, then on the copy the plan's data steps and the round trip's comparison.

use std::future::Future;
use std::time::Instant;

use sqlx::PgPool;

use crate::api::rehearsal::{CategoryRoundTrip, RehearsalPart};

use super::super::super::config::DowngradeSettings;
use super::super::super::records::DiaryRecords;
use super::super::super::redact::without_urls;
use super::super::super::state::AppState;
use super::super::archive::{self, reapply};
use super::super::steps::{fill_in, run_isolated, Log, Placeholders};
use super::super::{deploys, fill};
use super::scratch::Scratch;
use super::{round_trip, store, Backup};

/// The parts done so far, saved after each (the page follows a rehearsal as it goes).
pub(super) struct Progress<'a> {
    pub db: &'a PgPool,
    pub id: i64,
    pub parts: Vec<RehearsalPart>,
}

impl Progress<'_> {
    /// Runs and times one part; its outcome and what it said are kept whatever it was.
    pub async fn part<T>(
        &mut self,
        name: &str,
        f: impl Future<Output = Result<(T, String), String>>,
    ) -> Result<T, String> {
        let t0 = Instant::now();
        let r = f.await;
        let (passed, detail) = match &r {
            Ok((_, d)) => (true, d.clone()),
            Err(e) => (false, e.clone()),
        };
        self.parts.push(RehearsalPart { name: name.into(), seconds: t0.elapsed().as_secs_f64(), passed, detail });
        if let Err(e) = store::save_parts(self.db, self.id, &self.parts).await {
            tracing::warn!(rehearsal = self.id, "its progress could not be saved: {e}");
        }
        r.map(|(t, _)| t).map_err(|e| format!("{name}: {e}"))
    }
}

/// The live diary's revision and split columns, when it can be read (the commands' tripwire).
async fn live_schema(state: &AppState) -> Option<(Option<String>, bool, bool)> {
    let diary = state.diary.as_ref().ok()?;
    diary.schema().await.ok().map(|s| (s.alembic_revision, s.insulin_short, s.insulin_long))
}

/// A configured command against the scratch database, with an environment naming it and nothing
/// else; its last lines are the part's detail. The live diary's schema is read before and after:
/// a change stops the rehearsal (a command that went to the wrong database).
async fn command(
    state: &AppState,
    argv: &[String],
    p: &Placeholders<'_>,
    scratch: &Scratch,
) -> Result<((), String), String> {
    let argv = fill_in(argv, p);
    let mut log = Log::default();
    let vars = scratch.environment();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let live_before = live_schema(state).await;
    let ran = run_isolated(state, &argv, &vars, &mut log).await;
    let live_after = live_schema(state).await;
    if live_before.is_some() && live_after.is_some() && live_before != live_after {
        return Err(format!(
            "the live diary's schema changed while this command ran ({live_before:?} → {live_after:?}): the rehearsal stops; \
             find out what the command connected to"
        ));
    }
    match ran {
        Ok(()) => Ok(((), without_urls(&log.tail(4)))),
        Err(e) => Err(without_urls(&format!("{e}\n{}", log.tail(8)))),
    }
}

/// The rehearsal's parts, in the plan's order, on the scratch database.
pub(super) async fn rehearse(
    state: &AppState,
    scratch: &Scratch,
    backup: &Backup,
    fill_dose: bool,
    p: &mut Progress<'_>,
    categories: &mut Vec<CategoryRoundTrip>,
) -> Result<(), String> {
    let rb = &state.settings.rollback;
    // The commands run in the working directory: the backup's path is the dashboard's.
    let backup_file = std::path::absolute(&backup.path).unwrap_or_else(|_| backup.path.clone()).display().to_string();
    let restore = Placeholders {
        previous_revision: "",
        split_revision: "",
        backup_file: &backup_file,
        url: scratch.url.expose(),
    };
    p.part("restore", async {
        scratch.create().await?;
        let ((), out) = command(state, &rb.rehearsal.restore_argv, &restore, scratch).await?;
        Ok(((), format!("{} restored into {}\n{out}", backup.file_name(), scratch.name).trim_end().to_string()))
    })
    .await?;
    let pool = scratch.pool().await?;
    let result = on_copy(state, scratch, &pool, &backup_file, fill_dose, p, categories).await;
    pool.close().await;
    result
}

/// The parts after the restore, on the copy: read, archive, fill, downgrade, verify, upgrade,
/// re-apply, compare.
async fn on_copy(
    state: &AppState,
    scratch: &Scratch,
    pool: &PgPool,
    backup_file: &str,
    fill_dose: bool,
    p: &mut Progress<'_>,
    categories: &mut Vec<CategoryRoundTrip>,
) -> Result<(), String> {
    let rb = &state.settings.rollback;
    let table = state.settings.schema.table.clone();
    let key = archive::rehearsal_key(p.id);
    let db = &state.state_db;
    let diary = DiaryRecords::new(pool.clone(), &table);
    let (split, previous, total) = p.part("read", read(db, pool, &diary, &table)).await?;
    p.part("archive", async {
        let t = archive::take(pool, db, key, &table).await.map_err(|e| e.to_string())?;
        Ok(((), format!("archived and verified: {t}")))
    })
    .await?;
    if fill_dose {
        p.part("fill", fill_copy(scratch, db, key, &table)).await?;
    }
    let ph =
        Placeholders { previous_revision: &previous, split_revision: &split, backup_file, url: scratch.url.expose() };
    let DowngradeSettings::Command { argv } = &rb.downgrade;
    p.part("downgrade", command(state, argv, &ph, scratch)).await?;
    p.part("verify", async {
        let s = diary.schema().await.map_err(|e| e.to_string())?;
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.map_err(|e| e.to_string())?;
        if s.alembic_revision.as_deref() != Some(previous.as_str()) || s.insulin_short || s.insulin_long || rows != total {
            return Err(format!(
                "after the downgrade: revision {}, insulin_short {}, insulin_long {}, {rows} rows; expected revision {previous}, neither column, {total} rows",
                s.alembic_revision.as_deref().unwrap_or("none"), s.insulin_short, s.insulin_long
            ));
        }
        Ok(((), format!("revision {previous}, no split columns, {rows} rows")))
    })
    .await?;
    p.part("upgrade", async {
        let ((), out) = command(state, &rb.rehearsal.upgrade_argv, &ph, scratch).await?;
        let s = diary.schema().await.map_err(|e| e.to_string())?;
        if s.alembic_revision.as_deref() != Some(split.as_str()) || !s.has_split_columns() {
            return Err(format!(
                "after the upgrade the revision is {}, not {split} with both split columns",
                s.alembic_revision.as_deref().unwrap_or("none")
            ));
        }
        Ok(((), format!("revision {split} with both split columns again\n{out}").trim_end().to_string()))
    })
    .await?;
    p.part("reapply", reapply_copy(scratch, db, key, &table, fill_dose)).await?;
    let added;
    (*categories, added) = p
        .part("compare", async {
            let c = round_trip::compare(pool, &table).await?;
            let added = round_trip::added(pool, &table).await?;
            let shown: Vec<String> =
                c.iter().map(|c| format!("{} {}/{} identical", c.category, c.identical, c.rows)).collect();
            Ok(((c, added), format!("{}; {added} added", shown.join(", "))))
        })
        .await?;
    round_trip::verdict(categories, added)
}

/// The backup's revision (it must have the split columns) and the one before it, from the deploy
/// journal; every row's category and hashes kept; the rows.
async fn read(
    db: &PgPool,
    pool: &PgPool,
    diary: &DiaryRecords,
    table: &str,
) -> Result<((String, String, i64), String), String> {
    let schema = diary.schema().await.map_err(|e| e.to_string())?;
    let rev = schema.alembic_revision.clone().ok_or("the backup has no Alembic revision")?;
    if !schema.has_split_columns() {
        return Err(format!(
            "the backup holds revision {rev}, without insulin_short and insulin_long: it predates the split \
             revision, so it rehearses nothing of the split; rehearse on a newer backup"
        ));
    }
    let previous = deploys::previous_of(db, &rev).await.map_err(|e| e.to_string())?.ok_or_else(|| {
        format!("the deploy journal does not know the revision before {rev}: enter it (POST /api/v1/deploys)")
    })?;
    let counts = round_trip::snapshot(pool, table).await?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let shown: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let detail = format!("revision {rev} (the deploy journal: after {previous}); {total} rows: {}", shown.join(", "));
    Ok(((rev, previous, total), detail))
}

/// The fill on the copy, verified against the rehearsal's archive, as step 4 does it.
async fn fill_copy(scratch: &Scratch, db: &PgPool, key: i64, table: &str) -> Result<((), String), String> {
    let mut conn = scratch.connect().await?;
    let counts = archive::fill_counts(db, key).await.map_err(|e| e.to_string())?;
    let (written, t) = archive::apply_fill(&mut conn, db, key, table).await?;
    archive::mark_filled(db, key, fill::counts_json(&counts)).await.map_err(|e| e.to_string())?;
    Ok(((), format!("filled {written} row(s); verified: {t}")))
}

/// The roll-forward on the copy: its dry run, then the real one with the dry run's count.
async fn reapply_copy(
    scratch: &Scratch,
    db: &PgPool,
    key: i64,
    table: &str,
    fill_dose: bool,
) -> Result<((), String), String> {
    let mut conn = scratch.connect().await?;
    let dry = reapply::reapply(&mut conn, db, key, table, fill_dose, None).await.map_err(|e| e.to_string())?;
    let r = reapply::reapply(&mut conn, db, key, table, fill_dose, Some(dry.restorable))
        .await
        .map_err(|e| e.to_string())?;
    let counts: Vec<String> = r.counts.iter().map(|(v, c, n)| format!("{v} {c}: {n}")).collect();
    let verified = r.verified.map(|t| t.to_string()).unwrap_or_default();
    Ok((
        (),
        format!(
            "{} row(s) re-applied ({} with the fill undone): {}; verified: {verified}",
            r.restorable,
            r.undo_fill,
            counts.join(", ")
        ),
    ))
}
