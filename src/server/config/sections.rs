//! The settings' sections, each with the guide's defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsSettings {
    /// The reports' time zone: `UTC` or a fixed offset such as `+03:00` (days are cut there).
    pub time_zone: String,
}

impl Default for ReportsSettings {
    fn default() -> Self {
        ReportsSettings { time_zone: "UTC".into() }
    }
}

impl ReportsSettings {
    pub fn tz(&self) -> crate::server::charts::TimeZoneOffset {
        crate::server::charts::TimeZoneOffset::parse(&self.time_zone).unwrap_or_default()
    }
}

/// The guide's rollback plan, each step configurable. Commands are argument lists (never a
/// shell string); `{previous_revision}`, `{backup_file}` and `{diary_database_url}` are replaced
/// inside arguments, and every command gets the diary database as `DATABASE_URL`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RollbackSettings {
    /// A second operator must approve a run before it starts (an emergency bypass needs a reason).
    pub require_approval: bool,
    /// The longest any one step may take before it fails as timed out.
    pub step_timeout_secs: u64,
    /// How often a waiting step looks again (replicas, metrics).
    pub poll_interval_ms: u64,
    /// Writer replicas to restore when the run found none to remember.
    pub default_writer_replicas: i32,
    /// Where commands run (relative paths in them are relative to this).
    pub working_dir: Option<PathBuf>,
    /// The schema_downgrade step: how the schema goes back to the previous revision.
    pub downgrade: DowngradeSettings,
    /// The restore_data step: the restore command.
    pub restore_argv: Vec<String>,
    /// The backup to restore from; must exist and be younger than `backup_max_age_hours`.
    pub backup_file: Option<PathBuf>,
    /// Instead of the file check: a command (e.g. a Barman status) that exits 0 when a fresh
    /// enough backup exists.
    pub backup_status_argv: Vec<String>,
    /// Instead of both: the backup's age is the time since this CronJob (in the writers'
    /// namespace) last succeeded.
    pub backup_cronjob: Option<String>,
    pub backup_max_age_hours: u64,
    /// Run the downgrade and the restore as Kubernetes Jobs (in the writers' namespace) instead
    /// of in the dashboard's process, whose image has neither `alembic` nor `pg_restore`.
    pub job: Option<JobSettings>,
    /// The smoke_checks step: the legacy diary API (`POST /v1/diary`, `GET /v1/diary/{id}`).
    pub diary_api_url: Option<String>,
    /// The smoke_checks step: legacy writes per second now (PromQL).
    pub smoke_legacy_query: String,
    /// The smoke_checks step: all writes per second, snapshotted at the start as the baseline legacy must return to.
    pub smoke_baseline_query: String,
    /// The smoke_checks step: the legacy rate must reach this fraction of the baseline.
    pub smoke_fraction: f64,
    /// Rehearsals of the plan's data steps on a scratch copy of the newest backup.
    pub rehearsal: super::RehearsalSettings,
}

/// How the rollback's commands run as Kubernetes Jobs. The command is the same argument list;
/// `{diary_database_url}` becomes `$(DATABASE_URL)`, which the kubelet fills from the Secret, so no
/// secret is ever written into a Job; `{backup_file}` is a path as the Job sees it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// The diary service's image: it has the programs and the migrations.
    pub image: String,
    /// A Secret in the writers' namespace whose keys become the Job's environment; it must hold
    /// `DATABASE_URL` (the diary database).
    pub env_secret: String,
    #[serde(default)]
    pub service_account: Option<String>,
    /// A PersistentVolumeClaim with the backups, mounted read-only at `backup_mount`.
    #[serde(default)]
    pub backup_claim: Option<String>,
    #[serde(default = "default_backup_mount")]
    pub backup_mount: String,
}

fn default_backup_mount() -> String {
    "/backups".into()
}

/// The kind of the schema downgrade step.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DowngradeSettings {
    /// Run a command (by default the guide's Alembic downgrade).
    Command { argv: Vec<String> },
}

impl Default for RollbackSettings {
    fn default() -> Self {
        RollbackSettings {
            require_approval: false,
            step_timeout_secs: 300,
            poll_interval_ms: 1000,
            default_writer_replicas: 3,
            working_dir: None,
            downgrade: DowngradeSettings::Command {
                argv: ["alembic", "-c", "services/api/alembic/alembic.ini", "downgrade", "{previous_revision}"]
                    .map(String::from)
                    .to_vec(),
            },
            restore_argv: [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                // A restore killed midway leaves the old table or the backup's, never none.
                "--single-transaction",
                "--dbname={diary_database_url}",
                "{backup_file}",
            ]
            .map(String::from)
            .to_vec(),
            backup_file: None,
            backup_status_argv: Vec::new(),
            backup_cronjob: None,
            backup_max_age_hours: 24,
            job: None,
            diary_api_url: None,
            smoke_legacy_query: "sum(rate(legacy_dose_used_total[1m]))".into(),
            smoke_baseline_query: "sum(rate(legacy_dose_used_total[5m])) + sum(rate(split_dose_saved_total[5m]))"
                .into(),
            smoke_fraction: 0.8,
            rehearsal: Default::default(),
        }
    }
}

impl RollbackSettings {
    pub fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.step_timeout_secs)
    }
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Users in a file (argon2 hashes), a login form and a session cookie.
    #[default]
    Local,
    /// Identity and groups from an authenticating proxy's headers (oauth2-proxy).
    Proxy,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// Local mode: the users file (TOML: `[[users]] name, role, password_hash`).
    pub users_file: Option<PathBuf>,
    pub session_hours: u64,
    /// The ingress or proxy in front (addresses or networks: `10.0.0.7`, `10.42.0.0/16`): the
    /// client's address is read from their `X-Forwarded-For` (sign-in delays, logs). In proxy
    /// mode their identity headers are believed only from these addresses **and** with the
    /// shared secret (`ROLLOUT_PROXY_SECRET`, sent as `X-Proxy-Secret`).
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Proxy mode: groups (from `X-Forwarded-Groups`) that make an operator, and a viewer.
    pub operator_groups: Vec<String>,
    pub viewer_groups: Vec<String>,
    /// The origin browsers use to reach the dashboard (scheme://host[:port]); state-changing
    /// requests from any other origin are refused. Default: http://<LEPTOS_SITE_ADDR>.
    pub public_origin: Option<String>,
    /// Failed sign-ins in a row a (user name, client address) pair makes before each further
    /// attempt waits, twice as long each time (1 s, 2 s, … at most 15 minutes).
    pub login_attempts: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Local,
            users_file: None,
            session_hours: 12,
            trusted_proxies: Vec::new(),
            operator_groups: vec!["oncall".into()],
            viewer_groups: Vec::new(),
            public_origin: None,
            login_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdoptionSettings {
    /// The legacy share must stay below this fraction 24 hours after the rollout started.
    pub legacy_share_target: f64,
    /// When the rollout started, if the dashboard did not see it happen (RFC 3339).
    pub rollout_started_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for AdoptionSettings {
    fn default() -> Self {
        AdoptionSettings { legacy_share_target: 0.05, rollout_started_at: None }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Only alerts carrying all of these labels are shown (and guard the rollout).
    pub match_labels: std::collections::BTreeMap<String, String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings { match_labels: [("rollout".to_string(), "insulin_dose_split".to_string())].into() }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlagSettings {
    /// Where the flag lives: a Kubernetes ConfigMap (default) or LaunchDarkly.
    pub backend: FlagBackend,
    pub namespace: String,
    pub configmap: String,
    pub key: String,
    /// Used when `backend = "launchdarkly"`; the access token comes from `LAUNCHDARKLY_API_TOKEN`.
    pub launchdarkly: LaunchDarklySettings,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FlagBackend {
    #[default]
    Kubernetes,
    Launchdarkly,
}

/// The flag in LaunchDarkly: its project, its environment and its key (`flag.key` when not set).
/// The dashboard reads and writes the percentage rollout of the flag's default rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LaunchDarklySettings {
    pub base_url: String,
    pub project: String,
    pub environment: String,
    pub flag_key: Option<String>,
}

impl Default for LaunchDarklySettings {
    fn default() -> Self {
        LaunchDarklySettings {
            base_url: "https://app.launchdarkly.com".into(),
            project: "default".into(),
            environment: "production".into(),
            flag_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WriterSettings {
    pub namespace: String,
    pub deployment: String,
}

/// PromQL templates; `{window}` is replaced by the rate window (for example `5m`, or wider for
/// long chart ranges). A query without `{window}` is used as it is.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// PromQL for split writes per second.
    pub split_rate_query: String,
    /// PromQL for legacy writes per second.
    pub legacy_rate_query: String,
}

impl FlagSettings {
    /// How the flag is named in the audit trail: namespace/configmap/key, or
    /// launchdarkly:project/environment/flag.
    pub fn target(&self) -> String {
        match self.backend {
            FlagBackend::Kubernetes => format!("{}/{}/{}", self.namespace, self.configmap, self.key),
            FlagBackend::Launchdarkly => {
                let ld = &self.launchdarkly;
                format!("launchdarkly:{}/{}/{}", ld.project, ld.environment, self.launchdarkly_key())
            }
        }
    }

    /// The flag's key in LaunchDarkly.
    pub fn launchdarkly_key(&self) -> &str {
        self.launchdarkly.flag_key.as_deref().unwrap_or(&self.key)
    }
}

impl MetricsSettings {
    pub fn split_rate(&self, window: &str) -> String {
        self.split_rate_query.replace("{window}", window)
    }
    pub fn legacy_rate(&self, window: &str) -> String {
        self.legacy_rate_query.replace("{window}", window)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaSettings {
    pub table: String,
    /// The Alembic revision the split migration creates (the expected head), if known.
    pub expected_head: Option<String>,
}

impl Default for FlagSettings {
    fn default() -> Self {
        FlagSettings {
            backend: FlagBackend::Kubernetes,
            namespace: "diabetes".into(),
            configmap: "feature-flags".into(),
            key: "insulin_dose_split".into(),
            launchdarkly: LaunchDarklySettings::default(),
        }
    }
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings { namespace: "diabetes".into(), deployment: "diary-writer".into() }
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            split_rate_query: "sum(rate(split_dose_saved_total[{window}]))".into(),
            legacy_rate_query: "sum(rate(legacy_dose_used_total[{window}]))".into(),
        }
    }
}

impl Default for SchemaSettings {
    fn default() -> Self {
        SchemaSettings { table: "history_records".into(), expected_head: None }
    }
}

/// Addresses or networks: `10.0.0.7` is `10.0.0.7/32`.
fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|r| {
            r.parse::<ipnet::IpNet>().or_else(|_| r.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(|_| {
                serde::de::Error::custom(format!("{r:?} is neither an address nor a network (10.42.0.0/16)"))
            })
        })
        .collect()
}
