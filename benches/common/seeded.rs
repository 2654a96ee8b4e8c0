//! The seeded diary databases the benchmarks share: `rollout_bench_<rows>`, seeded once over 14
//! days with the created_at index, and reused by later runs.

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

/// A diary database with `rows` seeded rows over 14 days and the index the README asks for.
pub async fn seeded(admin: &PgPool, rows: i64) -> PgPool {
    let name = format!("rollout_bench_{rows}");
    let pool = ensure_db(admin, &name).await;
    // Reused only when complete: every row and the index (an interrupted seeding starts over).
    let have: Option<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM history_records WHERE to_regclass('history_records_created_at') IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .ok();
    if have != Some(rows) {
        println!("  seeding {name} with {rows} rows (once; reused by later runs)…");
        let t = Instant::now();
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS history_records;
             CREATE TABLE history_records (id bigserial PRIMARY KEY, user_id bigint NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now(), dose numeric, note text,
               insulin_short numeric, insulin_long numeric)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let opts = diary_writer::seed::SeedOptions { rows, ..Default::default() };
        diary_writer::seed::seed(&pool, &opts).await.unwrap();
        sqlx::query("CREATE INDEX history_records_created_at ON history_records (created_at)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("VACUUM ANALYZE history_records").execute(&pool).await.unwrap();
        println!("  seeded in {:.0} s", t.elapsed().as_secs_f64());
    }
    pool
}
