//! Configuration: connection settings from the environment, everything else from an optional
//! TOML file named by `ROLLOUT_CONFIG`. Every default follows the migration guide.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A value that must never reach a log or a page (a URL with a password, a token).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the dashboard reaches Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeAccess {
    /// `KUBECONFIG` names a kubeconfig file.
    Kubeconfig(PathBuf),
    /// Running in a pod: the service account's in-cluster configuration.
    InCluster,
    /// Neither: Kubernetes-backed values say "not configured".
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The diary database holding `history_records` (read access is enough for monitoring).
    pub diary_database_url: Option<Secret>,
    /// The dashboard's own database: audit, runs, observed history.
    pub state_database_url: Secret,
    pub prometheus_url: Option<Secret>,
    pub kube: KubeAccess,
    /// Proxy auth mode: the shared secret the proxy sends as `X-Proxy-Secret`.
    pub proxy_secret: Option<Secret>,
    /// LaunchDarkly flag backend: an API access token with writer rights on the flag.
    pub launchdarkly_token: Option<Secret>,
    pub settings: Settings,
    /// Where the settings came from, for the log.
    pub settings_file: Option<PathBuf>,
}

/// Everything that is not a connection: names, queries, thresholds, intervals.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The environment's name (shown in the header; typed to confirm dangerous actions).
    pub environment: String,
    /// How often pages refresh and how long backend answers are reused.
    pub refresh_interval_secs: u64,
    /// How long any one outside system may take to answer before its panel says so.
    pub source_timeout_secs: u64,
    /// The audit trail's write-ahead journal (a local file that must survive restarts); by
    /// default a file per state database in the temporary directory.
    pub audit_journal_file: Option<String>,
    pub flag: FlagSettings,
    pub writer: WriterSettings,
    pub metrics: MetricsSettings,
    pub schema: SchemaSettings,
    pub adoption: AdoptionSettings,
    pub alerts: AlertSettings,
    pub auth: AuthSettings,
    pub rollback: RollbackSettings,
    pub reports: ReportsSettings,
}

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
    pub fn tz(&self) -> super::charts::TimeZoneOffset {
        super::charts::TimeZoneOffset::parse(&self.time_zone).unwrap_or_default()
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
    pub backup_max_age_hours: u64,
    /// The smoke_checks step: the legacy diary API (`POST /v1/diary`, `GET /v1/diary/{id}`).
    pub diary_api_url: Option<String>,
    /// The smoke_checks step: legacy writes per second now (PromQL).
    pub smoke_legacy_query: String,
    /// The smoke_checks step: all writes per second, snapshotted at the start as the baseline legacy must return to.
    pub smoke_baseline_query: String,
    /// The smoke_checks step: the legacy rate must reach this fraction of the baseline.
    pub smoke_fraction: f64,
}

/// The kind of the schema downgrade step. Production may add a Kubernetes Job kind here.
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
                "--dbname={diary_database_url}",
                "{backup_file}",
            ]
            .map(String::from)
            .to_vec(),
            backup_file: None,
            backup_status_argv: Vec::new(),
            backup_max_age_hours: 24,
            diary_api_url: None,
            smoke_legacy_query: "sum(rate(legacy_dose_used_total[1m]))".into(),
            smoke_baseline_query: "sum(rate(legacy_dose_used_total[5m])) + sum(rate(split_dose_saved_total[5m]))"
                .into(),
            smoke_fraction: 0.8,
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
    /// Proxy mode: requests from these addresses are trusted even without the shared secret
    /// (`ROLLOUT_PROXY_SECRET`, sent as `X-Proxy-Secret`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Proxy mode: groups (from `X-Forwarded-Groups`) that make an operator, and a viewer.
    pub operator_groups: Vec<String>,
    pub viewer_groups: Vec<String>,
    /// The origin browsers use to reach the dashboard (scheme://host[:port]); state-changing
    /// requests from any other origin are refused. Default: http://<LEPTOS_SITE_ADDR>.
    pub public_origin: Option<String>,
    /// Login attempts allowed per user name and per client address within 10 minutes.
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

impl Default for Settings {
    fn default() -> Self {
        Settings {
            environment: "production".into(),
            refresh_interval_secs: 15,
            source_timeout_secs: 5,
            audit_journal_file: None,
            flag: FlagSettings::default(),
            writer: WriterSettings::default(),
            metrics: MetricsSettings::default(),
            schema: SchemaSettings::default(),
            adoption: AdoptionSettings::default(),
            alerts: AlertSettings::default(),
            auth: AuthSettings::default(),
            rollback: RollbackSettings::default(),
            reports: ReportsSettings::default(),
        }
    }
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

impl Settings {
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_interval_secs)
    }
    pub fn source_timeout(&self) -> Duration {
        Duration::from_secs(self.source_timeout_secs)
    }

    /// Parses and checks a TOML settings document.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let s: Settings = toml::from_str(text).map_err(|e| ConfigError::Toml(e.message().to_string()))?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.refresh_interval_secs) {
            return Err(ConfigError::Invalid("refresh_interval_secs must be between 1 and 3600".into()));
        }
        if !(1..=120).contains(&self.source_timeout_secs) {
            return Err(ConfigError::Invalid("source_timeout_secs must be between 1 and 120".into()));
        }
        for (name, v) in [
            ("flag.namespace", &self.flag.namespace),
            ("flag.configmap", &self.flag.configmap),
            ("writer.namespace", &self.writer.namespace),
            ("writer.deployment", &self.writer.deployment),
        ] {
            if !is_dns_label(v) {
                return Err(ConfigError::Invalid(format!("{name} {v:?} is not a valid Kubernetes name")));
            }
        }
        // The key is a ConfigMap key only where the flag lives in one (LaunchDarkly keys below).
        if self.flag.backend == FlagBackend::Kubernetes && !super::flags::kubernetes::valid_key(&self.flag.key) {
            return Err(ConfigError::Invalid(format!("flag.key {:?} is not a valid ConfigMap key", self.flag.key)));
        }
        let ld = &self.flag.launchdarkly;
        if !(ld.base_url.starts_with("http://") || ld.base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "flag.launchdarkly.base_url {:?} must be an http(s) URL",
                ld.base_url
            )));
        }
        for (name, v) in [
            ("flag.launchdarkly.project", ld.project.as_str()),
            ("flag.launchdarkly.environment", ld.environment.as_str()),
            ("flag.launchdarkly.flag_key", self.flag.launchdarkly_key()),
        ] {
            if !super::flags::launchdarkly::valid_key(v) {
                return Err(ConfigError::Invalid(format!("{name} {v:?} is not a valid LaunchDarkly key")));
            }
        }
        if super::charts::TimeZoneOffset::parse(&self.reports.time_zone).is_none() {
            return Err(ConfigError::Invalid(format!(
                "reports.time_zone {:?} must be UTC or a fixed offset such as +03:00",
                self.reports.time_zone
            )));
        }
        let rb = &self.rollback;
        if !(1..=24 * 3600).contains(&rb.step_timeout_secs) {
            return Err(ConfigError::Invalid("rollback.step_timeout_secs must be between 1 and 86400".into()));
        }
        if !(10..=60_000).contains(&rb.poll_interval_ms) {
            return Err(ConfigError::Invalid("rollback.poll_interval_ms must be between 10 and 60000".into()));
        }
        let DowngradeSettings::Command { argv } = &rb.downgrade;
        if argv.is_empty() || rb.restore_argv.is_empty() {
            return Err(ConfigError::Invalid("rollback commands must name a program".into()));
        }
        if !(1..=100).contains(&rb.default_writer_replicas) {
            return Err(ConfigError::Invalid("rollback.default_writer_replicas must be between 1 and 100".into()));
        }
        if !(0.0..=1.0).contains(&rb.smoke_fraction) {
            return Err(ConfigError::Invalid("rollback.smoke_fraction must be between 0 and 1".into()));
        }
        if self.schema.table.is_empty()
            || !self.schema.table.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "schema.table {:?} must be a plain lower-case identifier",
                self.schema.table
            )));
        }
        if !(1..=24 * 30).contains(&self.auth.session_hours) {
            return Err(ConfigError::Invalid("auth.session_hours must be between 1 and 720".into()));
        }
        if let Some(o) = &self.auth.public_origin {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "auth.public_origin {o:?} must look like https://host[:port]"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.adoption.legacy_share_target) {
            return Err(ConfigError::Invalid("adoption.legacy_share_target must be a fraction between 0 and 1".into()));
        }
        if self.metrics.split_rate_query.trim().is_empty() || self.metrics.legacy_rate_query.trim().is_empty() {
            return Err(ConfigError::Invalid("metrics queries must not be empty".into()));
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("cannot read the settings file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the settings file is not valid TOML for this dashboard: {0}")]
    Toml(String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `var`, so tests need not touch the process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let settings_file = var("ROLLOUT_CONFIG").map(PathBuf::from);
        let settings = match &settings_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Unreadable { path: path.display().to_string(), reason: e.to_string() })?;
                Settings::from_toml(&text)?
            }
            None => Settings::default(),
        };
        let kube = if let Some(path) = var("KUBECONFIG") {
            KubeAccess::Kubeconfig(PathBuf::from(path))
        } else if var("KUBERNETES_SERVICE_HOST").is_some() {
            KubeAccess::InCluster
        } else {
            KubeAccess::None
        };
        Ok(Config {
            diary_database_url: var("DATABASE_URL").map(Secret::new),
            state_database_url: var("STATE_DATABASE_URL")
                .map(Secret::new)
                .ok_or(ConfigError::Missing("STATE_DATABASE_URL"))?,
            prometheus_url: var("PROMETHEUS_URL").map(|u| Secret::new(u.trim_end_matches('/'))),
            kube,
            proxy_secret: var("ROLLOUT_PROXY_SECRET").map(Secret::new),
            launchdarkly_token: var("LAUNCHDARKLY_API_TOKEN").map(Secret::new),
            settings,
            settings_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_follow_the_guide() {
        let c = Config::from_vars(vars(&[("STATE_DATABASE_URL", "postgres://x/state")])).unwrap();
        assert_eq!(c.settings.flag.namespace, "diabetes");
        assert_eq!(c.settings.flag.configmap, "feature-flags");
        assert_eq!(c.settings.flag.key, "insulin_dose_split");
        assert_eq!(c.settings.writer.deployment, "diary-writer");
        assert_eq!(c.settings.refresh_interval_secs, 15);
        assert_eq!(c.kube, KubeAccess::None);
        assert!(c.prometheus_url.is_none());
    }

    #[test]
    fn state_database_is_required() {
        let e = Config::from_vars(vars(&[])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("STATE_DATABASE_URL"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("postgres://u:hunter2@db/x");
        assert!(!format!("{s} {s:?}").contains("hunter2"));
    }

    #[test]
    fn toml_overrides_and_rejects_unknown_keys() {
        let s = Settings::from_toml("environment = \"demo\"\n[flag]\nkey = \"split\"\n").unwrap();
        assert_eq!(s.environment, "demo");
        assert_eq!(s.flag.key, "split");
        assert_eq!(s.flag.namespace, "diabetes");
        assert!(matches!(Settings::from_toml("colour = 1"), Err(ConfigError::Toml(_))));
        assert!(matches!(Settings::from_toml("[flag]\nnamespace = \"Bad Name\""), Err(ConfigError::Invalid(_))));
        assert!(matches!(Settings::from_toml("refresh_interval_secs = 0"), Err(ConfigError::Invalid(_))));
    }
}
