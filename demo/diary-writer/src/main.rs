//! `diary-writer`: the demo world's simulator. Subcommands:
//! - `seed`: fill history_records with a rollout-shaped history
//! - `backfill`: write the OpenMetrics history of the two counters for promtool
//! - `serve`: the writer replicas, the legacy diary API, `/metrics`, the emulated Kubernetes API and
//!   the receiver stand-ins (Slack, Grafana, a webhook)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use diary_writer::cluster::{Cluster, ClusterSnapshot};
use diary_writer::counters::{count_rows, DoseCounters};
use diary_writer::{openmetrics, seed, writer, World};

#[derive(Parser)]
#[command(name = "diary-writer", about = "Demo-world simulator of the diary service and its cluster")]
struct Cli {
    /// The diary database holding history_records.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the `serve` variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Fill history_records (only when it is empty, unless --force).
    Seed {
        #[arg(long, default_value_t = 14.0)]
        days: f64,
        #[arg(long, default_value_t = 120_000)]
        rows: i64,
        #[arg(long, default_value_t = 4_999)]
        doubled_every: i64,
        /// The faulty client was fixed this many days ago: no doubled row since (0: never fixed).
        #[arg(long, default_value_t = 0.0)]
        doubled_until_days_ago: f64,
        #[arg(long)]
        force: bool,
    },
    /// Write the OpenMetrics history of both counters, derived from the rows in history_records.
    Backfill {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 60)]
        step_secs: i64,
    },
    /// Write constant-rate counter history (for test fixtures), from the past into the near future
    /// so that an instant `rate()` query gives the same answer for the whole test run.
    Synthetic {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        split_per_s: f64,
        #[arg(long)]
        legacy_per_s: f64,
        #[arg(long, default_value_t = 7200)]
        from_secs_ago: i64,
        #[arg(long, default_value_t = 3600)]
        until_secs_ahead: i64,
        #[arg(long, default_value_t = 15)]
        step_secs: i64,
    },
    /// Run the simulator.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        #[arg(long, default_value = "diabetes")]
        namespace: String,
        #[arg(long, default_value = "feature-flags")]
        configmap: String,
        #[arg(long, default_value = "insulin_dose_split")]
        flag_key: String,
        /// Initial flag value; defaults to where the seeded history ends.
        #[arg(long)]
        flag_value: Option<String>,
        #[arg(long, default_value = "diary-writer")]
        deployment: String,
        #[arg(long, default_value_t = 3)]
        replicas: i32,
        /// New entries per second per ready replica (0 writes nothing).
        #[arg(long, default_value_t = 0.04)]
        rate_per_replica: f64,
        /// Entries per visit on the split path: 1.3 means three split visits in ten also log
        /// the basal dose as an entry of its own (the treatment changes writes per user).
        #[arg(long, default_value_t = 1.3)]
        split_write_lift: f64,
        /// Seconds a new replica needs to become ready.
        #[arg(long, default_value_t = 2.0)]
        ready_delay_secs: f64,
        /// Keep the cluster state (flag, replicas) here across restarts.
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// Bearer token the emulated API server demands.
        #[arg(long, env = "DEMO_KUBE_TOKEN")]
        token: Option<String>,
        /// Access token the LaunchDarkly stand-in demands (it holds flag `<flag-key>` in
        /// project `diary`, environment `production`, at the seeded percentage).
        #[arg(long, env = "DEMO_LAUNCHDARKLY_TOKEN")]
        launchdarkly_token: Option<String>,
        /// A Kubernetes Role (YAML, e.g. deploy/role.yaml) the emulated API server enforces:
        /// calls it does not allow get 403 Forbidden (unset: everything is allowed).
        #[arg(long, env = "DEMO_KUBE_ROLE")]
        rbac_role: Option<PathBuf>,
        /// A cluster administrator's bearer token, allowed everything whatever the Role (for
        /// people and tests acting outside the dashboard, as with kubectl).
        #[arg(long, env = "DEMO_KUBE_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Service-account token the Grafana stand-in demands (unset: any Bearer token).
        #[arg(long, env = "DEMO_GRAFANA_TOKEN")]
        grafana_token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let pool = match &cli.database_url {
        Some(url) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy(url)?,
        ),
        None => None,
    };
    match cli.command {
        Command::Seed { days, rows, doubled_every, doubled_until_days_ago, force } => {
            let pool = pool.ok_or("seed needs DATABASE_URL")?;
            let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM history_records").fetch_one(&pool).await?;
            if existing > 0 && !force {
                println!("history_records already holds {existing} rows; not seeding (use --force to add more)");
                return Ok(());
            }
            let opts = seed::SeedOptions { days, rows, doubled_every, doubled_until_days_ago, ..Default::default() };
            let n = seed::seed(&pool, &opts).await?;
            let on_purpose = seed::seed_patients_on_purpose(&pool).await?;
            println!("seeded {n} rows over {days} days, and {on_purpose} of patients seeded on purpose");
        }
        Command::Backfill { out, step_secs } => {
            let pool = pool.ok_or("backfill needs DATABASE_URL")?;
            let until = chrono::Utc::now() - chrono::Duration::seconds(1);
            let series = openmetrics::series_from_history(&pool, step_secs, until).await?;
            std::fs::write(&out, openmetrics::render(&series))?;
            let samples: usize = series.iter().map(|s| s.samples.len()).sum();
            println!("wrote {samples} samples to {}", out.display());
        }
        Command::Synthetic { out, split_per_s, legacy_per_s, from_secs_ago, until_secs_ahead, step_secs } => {
            let series = openmetrics::synthetic(split_per_s, legacy_per_s, from_secs_ago, until_secs_ahead, step_secs);
            std::fs::write(&out, openmetrics::render(&series))?;
            println!("wrote constant-rate history to {}", out.display());
        }
        Command::Serve {
            listen,
            namespace,
            configmap,
            flag_key,
            flag_value,
            deployment,
            replicas,
            rate_per_replica,
            split_write_lift,
            ready_delay_secs,
            state_file,
            token,
            launchdarkly_token,
            grafana_token,
            rbac_role,
            admin_token,
        } => {
            let launchdarkly = diary_writer::launchdarkly_api::Stub::new(launchdarkly_token);
            launchdarkly.put_boolean_rollout(
                "diary",
                &flag_key,
                "production",
                seed::current_percentage().max(0) as u32,
            );
            let flag_value = flag_value.unwrap_or_else(|| seed::current_percentage().to_string());
            let initial = ClusterSnapshot {
                namespace,
                configmap,
                configmap_data: BTreeMap::from([(flag_key.clone(), flag_value)]),
                deployment,
                desired_replicas: replicas,
                resource_version: 100,
                configmap_version: 100,
                deployment_version: 100,
            };
            let cluster = Cluster::new(initial, state_file, Duration::from_secs_f64(ready_delay_secs.max(0.0)), token);
            if let Some(path) = rbac_role {
                let role = diary_writer::rbac::Role::from_yaml(&std::fs::read_to_string(&path)?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                println!("enforcing Role {}/{} from {}", role.namespace, role.name, path.display());
                cluster.set_role(Some(role));
            }
            cluster.set_admin_token(admin_token);
            let counters = match &pool {
                Some(p) => match count_rows(p).await {
                    Ok(rows) => DoseCounters::starting_at(&rows),
                    Err(e) => {
                        tracing::warn!("cannot count existing rows ({e}); counters start at 0");
                        DoseCounters::default()
                    }
                },
                None => DoseCounters::default(),
            };
            let world = World {
                cluster: Arc::new(cluster),
                counters: Arc::new(counters),
                launchdarkly: Arc::new(launchdarkly),
                diary: pool.clone(),
                flag_key,
                receivers: Arc::new(diary_writer::receivers_api::StandIns::new(grafana_token)),
            };
            if let Some(p) = pool {
                tokio::spawn(writer::run(
                    world.clone(),
                    p,
                    writer::Traffic { per_replica_per_s: rate_per_replica, split_lift: split_write_lift },
                ));
            }
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("diary-writer simulator listening on http://{}", listener.local_addr()?);
            axum::serve(listener, diary_writer::router(world))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
    }
    Ok(())
}
