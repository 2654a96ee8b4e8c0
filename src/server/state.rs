//! The one shared application state: settings, the state database, and a client per outside
//! system. A missing or broken outside system is a value here, never a reason not to start.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::cluster::Cluster;
use super::config::{Config, Settings};
use super::error::{Source, SourceError};
use super::flags::FlagStore;
use super::prometheus::Prometheus;
use super::records::DiaryRecords;
use super::StartError;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub settings: Arc<Settings>,
    /// The dashboard's own database (audit, runs, observed history).
    pub state_db: PgPool,
    /// Connections holding advisory locks, apart from `state_db` (`locks.rs`).
    pub locks: super::locks::Locks,
    pub diary: Result<DiaryRecords, SourceError>,
    /// The diary database's URL, handed to rollback commands as `DATABASE_URL` (never shown).
    pub diary_database_url: Option<super::config::Secret>,
    /// Where rollback rehearsals create their scratch databases (`REHEARSAL_DATABASE_URL`).
    #[from_ref(skip)]
    pub rehearsal_database_url: Option<super::config::Secret>,
    pub prometheus: Result<Prometheus, SourceError>,
    /// Namespace of the writer deployment; the flag store holds its own.
    pub writer_cluster: Result<Cluster, SourceError>,
    pub flags: FlagStore,
    /// Caches, health and the dashboard's own metrics, shared by both API doors.
    pub services: Arc<super::service::shared::Services>,
    pub auth: Arc<super::auth::Auth>,
    /// Write-ahead journal of audited changes (see `audit_journal`).
    pub journal: Arc<super::audit_journal::AuditJournal>,
    /// Notification receivers and the alert hook's token.
    pub notify: Arc<super::notify::configured::Receivers>,
    /// Every configured secret, masked in what the commands the server runs print.
    pub secrets: super::redact::Secrets,
}

/// sqlx migrations of the state database, embedded at build time.
pub static STATE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// No statement on the state database runs longer than this (a runaway query cannot hold a
/// connection the kill path needs).
const STATE_STATEMENT_TIMEOUT: &str = "30s";
/// Nor on the diary database (its counts over the whole table, at the rollback, stay well under).
const DIARY_STATEMENT_TIMEOUT: &str = "120s";

/// The connection options of `url`, every session with `statement_timeout`.
fn bounded_statements(url: &str, timeout: &str) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
    use std::str::FromStr;
    Ok(sqlx::postgres::PgConnectOptions::from_str(url)?.options([("statement_timeout", timeout)]))
}

impl AppState {
    /// Connects everything. Only the state database is required: it is migrated here, and the
    /// dashboard refuses to start without it (it is where the audit trail lives).
    pub async fn connect(config: Config, leptos_options: LeptosOptions) -> Result<AppState, StartError> {
        let notify =
            Arc::new(super::notify::configured::Receivers::from_config(&config).map_err(StartError::Settings)?);
        let values = config.secret_values();
        if values.iter().any(|v| v.len() < super::redact::SHORTEST_SECRET) {
            tracing::warn!("a configured secret is shorter than 4 characters: it is not masked in command output");
        }
        let secrets = super::redact::Secrets::new(values);
        let settings = config.settings;
        let diary_database_url = config.diary_database_url.clone();
        let timeout = settings.source_timeout();
        let auth = super::auth::Auth::new(&settings.auth, config.proxy_secret.clone(), leptos_options.site_addr)
            .and_then(|a| a.with_session_key(config.session_key.as_ref()))
            .map_err(|e| StartError::Auth(e.to_string()))?;
        let state_options = bounded_statements(config.state_database_url.expose(), STATE_STATEMENT_TIMEOUT)
            .map_err(|e| StartError::StateDatabase(e.to_string()))?;
        let locks = super::locks::Locks::new(state_options.clone(), notify.ready.len(), timeout);
        let state_db =
            PgPoolOptions::new().max_connections(8).acquire_timeout(timeout).connect_lazy_with(state_options);
        migrate_with_retry(&state_db).await?;

        let diary = connect_diary(config.diary_database_url.as_ref(), &settings.schema.table, timeout);
        let prometheus = match &config.prometheus_url {
            Some(url) => Prometheus::new(url.expose(), timeout),
            None => Err(SourceError::NotConfigured { system: Source::Prometheus, hint: "set PROMETHEUS_URL" }),
        };
        let flag_cluster = Cluster::connect(&config.kube, &settings.flag.namespace, timeout).await;
        if let Err(e) = &flag_cluster {
            tracing::warn!("Kubernetes: {e}");
        }
        let writer_cluster =
            flag_cluster.as_ref().map(|c| c.in_namespace(&settings.writer.namespace)).map_err(Clone::clone);
        let flags = FlagStore::open(&settings, flag_cluster, config.launchdarkly_token.as_ref(), timeout);
        tracing::info!(
            settings_file = ?config.settings_file,
            environment = %settings.environment,
            diary = diary.is_ok(),
            prometheus = prometheus.is_ok(),
            kubernetes = writer_cluster.is_ok(),
            "configured"
        );
        let journal_path = match &settings.audit_journal_file {
            Some(p) => std::path::PathBuf::from(p),
            None => super::audit_journal::AuditJournal::default_path(
                config.state_database_url.expose(),
                leptos_options.site_addr,
            ),
        };
        tracing::info!(path = %journal_path.display(), "audit journal");
        Ok(AppState {
            journal: Arc::new(super::audit_journal::AuditJournal::new(journal_path)),
            notify,
            secrets,
            auth: Arc::new(auth),
            leptos_options,
            services: Arc::new(
                super::service::shared::Services::new(settings.refresh_interval())
                    .with_client_reads(settings.client_reads_per_s, settings.client_read_burst),
            ),
            settings: Arc::new(settings),
            state_db,
            locks,
            diary,
            diary_database_url,
            rehearsal_database_url: config.rehearsal_database_url.clone(),
            prometheus,
            writer_cluster,
            flags,
        })
    }
}

/// The diary database's pool (lazy: it connects when first asked), its upkeep started.
fn connect_diary(
    url: Option<&super::config::Secret>,
    table: &str,
    timeout: Duration,
) -> Result<DiaryRecords, SourceError> {
    match url {
        Some(url) => bounded_statements(url.expose(), DIARY_STATEMENT_TIMEOUT)
            .map(|options| PgPoolOptions::new().max_connections(8).acquire_timeout(timeout).connect_lazy_with(options))
            .map(|pool| {
                let diary = DiaryRecords::new(pool, table);
                diary.start_upkeep();
                diary
            })
            .map_err(|e| SourceError::Unreachable { system: Source::DiaryDatabase, detail: e.to_string() }),
        None => Err(SourceError::NotConfigured { system: Source::DiaryDatabase, hint: "set DATABASE_URL" }),
    }
}

async fn migrate_with_retry(pool: &PgPool) -> Result<(), StartError> {
    let mut last = String::new();
    for attempt in 1..=10 {
        match STATE_MIGRATIONS.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                tracing::warn!(attempt, "state database not ready: {last}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    Err(StartError::StateDatabase(last))
}
