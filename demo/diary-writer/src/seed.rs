//! Fills `history_records` with a history shaped like the guide's gradual rollout:
//! legacy-only rows before the rollout, then users in the rollout bucket writing short and/or
//! long parts, legacy rows from everyone else, and a handful of the forbidden "doubled" rows
//! (dose copied into both parts) so that the dashboard's safety checks have something to find.
//!
//! Generated in one INSERT ... SELECT from generate_series, deterministic for given options.

/// Rollout steps, oldest first: (days before now when the step began, percentage).
pub const ROLLOUT_STEPS: [(f64, i32); 3] = [(6.0, 5), (4.0, 10), (2.0, 25)];

/// The flag percentage the seeded history ends on.
pub fn current_percentage() -> i32 {
    ROLLOUT_STEPS.last().map(|s| s.1).unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub days: f64,
    pub rows: i64,
    /// One split row in `doubled_every` is written as the forbidden copy.
    pub doubled_every: i64,
    pub users: i64,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions { days: 14.0, rows: 120_000, doubled_every: 4_999, users: 5_000 }
    }
}

/// Inserts the rows in one statement. Returns how many were inserted.
pub async fn seed(pool: &sqlx::PgPool, opts: &SeedOptions) -> Result<u64, sqlx::Error> {
    let [(d1, p1), (d2, p2), (d3, p3)] = ROLLOUT_STEPS;
    // Row n is spread evenly over the window, oldest first. The user's rollout bucket is
    // user_id % 100, as a percentage rollout assigns it; a user in the bucket writes split parts.
    let sql = r#"
WITH g AS (
    SELECT n,
           now() - make_interval(secs => $1::float8 * 86400 * (1 - (n - 0.5) / $2::float8)) AS created_at,
           1 + (n * 7919) % $4::bigint AS user_id
      FROM generate_series(1, $2::bigint) AS n
), p AS (
    SELECT g.*,
           CASE WHEN created_at < now() - make_interval(secs => $5::float8 * 86400) THEN 0
                WHEN created_at < now() - make_interval(secs => $7::float8 * 86400) THEN $6::int
                WHEN created_at < now() - make_interval(secs => $9::float8 * 86400) THEN $8::int
                ELSE $10::int END AS pct
      FROM g
), c AS (
    SELECT p.*,
           CASE WHEN n % 5003 = 0 THEN 'empty'                      -- a note without any dose
                WHEN pct > 0 AND n % $3::bigint = 0 THEN 'doubled'  -- the copy the guide forbids
                WHEN user_id % 100 >= pct THEN 'legacy'             -- client sends the single dose
                ELSE 'split' END AS category,
           round((2 + (n % 17) * 0.5)::numeric, 1) AS short_units,
           (8 + (n % 11))::numeric AS long_units,
           (n * 13) % 100 AS kind   -- split rows: 60 % short only, 30 % both, 10 % long only
      FROM p
)
INSERT INTO history_records (user_id, created_at, dose, insulin_short, insulin_long, note)
SELECT user_id, created_at,
       CASE WHEN category IN ('legacy', 'doubled') THEN short_units END,
       CASE WHEN category = 'doubled' THEN short_units
            WHEN category = 'split' AND (kind < 75 OR kind >= 85) THEN short_units END,
       CASE WHEN category = 'doubled' THEN short_units
            WHEN category = 'split' AND kind >= 60 THEN long_units END,
       CASE WHEN category = 'empty' THEN 'walked 40 min' END
  FROM c
"#;
    let done = sqlx::query(sql)
        .bind(opts.days)
        .bind(opts.rows)
        .bind(opts.doubled_every.max(1))
        .bind(opts.users.max(1))
        .bind(d1)
        .bind(p1)
        .bind(d2)
        .bind(p2)
        .bind(d3)
        .bind(p3)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
