//! The seeded diary databases the benchmarks share: `rollout_bench_<rows>`, seeded once over 14
//! days (8 before the seeding and 6 after it, so that a database reused for days still has rows
//! in its last minute, hour and week, as a live service does) with the created_at index, and
//! reused by later runs until their history no longer reaches a day ahead of now.

use std::time::Instant;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must name the PostgreSQL server")
}

pub fn db_url(name: &str) -> String {
    let base = admin_url();
    let i = base.rfind('/').expect("DATABASE_URL has a database part");
    format!("{}/{name}", &base[..i])
}

pub async fn ensure_db(admin: &PgPool, name: &str) -> PgPool {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap();
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin).await.unwrap();
    }
    PgPoolOptions::new().max_connections(8).connect(&db_url(name)).await.unwrap()
}

/// Days of seeded history after the seeding's own time.
const AHEAD_DAYS: f64 = 6.0;

/// A diary database with `rows` seeded rows over 14 days and the index the README asks for.
pub async fn seeded(admin: &PgPool, rows: i64) -> PgPool {
    let name = format!("rollout_bench_{rows}");
    let pool = ensure_db(admin, &name).await;
    // Reused only when complete (every row and both indexes; an interrupted seeding starts
    // over) and still reaching a day ahead. The count scans the table: seconds at 100 M rows.
    let have: Option<(i64, bool)> = sqlx::query_as(
        "SELECT count(*), coalesce(max(created_at) > now() + interval '1 day', false) FROM history_records
          WHERE to_regclass('history_records_created_at') IS NOT NULL AND to_regclass('history_records_pkey') IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .ok();
    if have != Some((rows, true)) {
        println!("  seeding {name} with {rows} rows (once; reused by later runs)…");
        let t = Instant::now();
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS history_records;
             CREATE TABLE history_records (id bigserial, user_id bigint NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), dose numeric, note text,
               insulin_short numeric, insulin_long numeric)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let opts = diary_writer::seed::SeedOptions { rows, ahead_days: AHEAD_DAYS, ..Default::default() };
        diary_writer::seed::seed_with_progress(&pool, &opts, |n| {
            println!("    {n} rows ({:.0} s)", t.elapsed().as_secs_f64());
        })
        .await
        .unwrap();
        // Indexes built once after the load: far faster than maintained row by row.
        sqlx::raw_sql(
            "ALTER TABLE history_records ADD CONSTRAINT history_records_pkey PRIMARY KEY (id);
             CREATE INDEX history_records_created_at ON history_records (created_at)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("VACUUM ANALYZE history_records").execute(&pool).await.unwrap();
        println!("  seeded in {:.0} s", t.elapsed().as_secs_f64());
    }
    pool
}
