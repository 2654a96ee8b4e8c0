//! Configuration: connection settings from the environment, everything else from an optional
//! TOML file named by `ROLLOUT_CONFIG`. Every default follows the migration guide.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod autopilot;
mod notify;
mod patients;
mod rehearsal;
mod sections;
mod validate;
mod versions;
pub use autopilot::*;
pub use notify::*;
pub use patients::*;
pub use rehearsal::*;
pub use sections::*;
pub use versions::*;

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
    /// Local auth mode: the key that signs session cookies (`ROLLOUT_SESSION_KEY`), the same on
    /// every replica, so that a signed-in operator stays signed in while the state database is
    /// down. Unset: a key of this process's own (sessions then survive an outage only here).
    pub session_key: Option<Secret>,
    /// LaunchDarkly flag backend: an API access token with writer rights on the flag.
    pub launchdarkly_token: Option<Secret>,
    /// The server rollback rehearsals create their scratch databases on (`REHEARSAL_DATABASE_URL`,
    /// a role with `CREATEDB`); unset, there are no rehearsals.
    pub rehearsal_database_url: Option<Secret>,
    /// The secrets the settings name by environment variable (receivers' URLs, keys and
    /// tokens; the alert hook's token), by variable name. Unset variables are absent.
    pub named_secrets: std::collections::BTreeMap<String, Secret>,
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
    /// Days the state database keeps what only grows with time (`retention.rs`); the audit
    /// trail is kept forever.
    pub retention_days: u32,
    /// Reads (GET) a client address may make a second on average, in bursts of
    /// `client_read_burst` (`http::client_reads`); 0: not limited. Changes are never limited.
    pub client_reads_per_s: u32,
    pub client_read_burst: u32,
    pub flag: FlagSettings,
    pub writer: WriterSettings,
    pub metrics: MetricsSettings,
    pub client_versions: ClientVersionSettings,
    pub crossover: CrossoverSettings,
    pub dose_totals: DoseTotalsSettings,
    pub schema: SchemaSettings,
    pub adoption: AdoptionSettings,
    pub autopilot: AutopilotSettings,
    pub alerts: AlertSettings,
    pub auth: AuthSettings,
    pub rollback: RollbackSettings,
    pub reports: ReportsSettings,
    pub notify: NotifySettings,
    pub hooks: HookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            environment: "production".into(),
            refresh_interval_secs: 15,
            source_timeout_secs: 5,
            audit_journal_file: None,
            retention_days: 90,
            client_reads_per_s: 30,
            client_read_burst: 300,
            flag: FlagSettings::default(),
            writer: WriterSettings::default(),
            metrics: MetricsSettings::default(),
            client_versions: ClientVersionSettings::default(),
            crossover: CrossoverSettings::default(),
            dose_totals: DoseTotalsSettings::default(),
            schema: SchemaSettings::default(),
            adoption: AdoptionSettings::default(),
            autopilot: AutopilotSettings::default(),
            alerts: AlertSettings::default(),
            auth: AuthSettings::default(),
            rollback: RollbackSettings::default(),
            reports: ReportsSettings::default(),
            notify: NotifySettings::default(),
            hooks: HookSettings::default(),
        }
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
        validate::settings(&s)?;
        Ok(s)
    }
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
        let named_secrets = settings
            .notify
            .receivers
            .iter()
            .flat_map(ReceiverSettings::env_names)
            .chain(std::iter::once(settings.hooks.alertmanager.token_env.as_str()))
            .filter_map(|name| var(name).map(|v| (name.to_string(), Secret::new(v))))
            .collect();
        Ok(Config {
            named_secrets,
            diary_database_url: var("DATABASE_URL").map(Secret::new),
            state_database_url: var("STATE_DATABASE_URL")
                .map(Secret::new)
                .ok_or(ConfigError::Missing("STATE_DATABASE_URL"))?,
            prometheus_url: var("PROMETHEUS_URL").map(|u| Secret::new(u.trim_end_matches('/'))),
            kube,
            proxy_secret: var("ROLLOUT_PROXY_SECRET").map(Secret::new),
            session_key: var("ROLLOUT_SESSION_KEY").map(Secret::new),
            launchdarkly_token: var("LAUNCHDARKLY_API_TOKEN").map(Secret::new),
            rehearsal_database_url: var("REHEARSAL_DATABASE_URL").map(Secret::new),
            settings,
            settings_file,
        })
    }
}

impl Config {
    /// Every secret value this configuration holds: the databases' and Prometheus' URLs, the
    /// proxy secret, the session key, the LaunchDarkly token, and the secrets the settings name
    /// by environment variable (`redact::Secrets` masks them in what commands print).
    pub fn secret_values(&self) -> Vec<String> {
        let single = [
            self.diary_database_url.as_ref(),
            Some(&self.state_database_url),
            self.prometheus_url.as_ref(),
            self.proxy_secret.as_ref(),
            self.session_key.as_ref(),
            self.launchdarkly_token.as_ref(),
            self.rehearsal_database_url.as_ref(),
        ];
        single.into_iter().flatten().chain(self.named_secrets.values()).map(|s| s.expose().to_string()).collect()
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
        // What each check does by default: the kill class kills, crossover and dose totals only
        // judge and show, every other check pauses; the settings' word overrides all but the kill class.
        use crate::api::autopilot::CheckAction;
        let a = &c.settings.autopilot;
        assert_eq!((a.action("doubled_doses"), a.action("schema")), (CheckAction::Kill, CheckAction::Kill));
        assert_eq!((a.action("crossover"), a.action("split_only_versions")), (CheckAction::DryRun, CheckAction::Pause));
        assert_eq!(a.action("dose_totals"), CheckAction::DryRun);
        assert_eq!(c.settings.dose_totals.span(), 16, "7 whole days each side, the move's day and today");
        let mut set = a.clone();
        set.actions.insert("crossover".into(), CheckAction::Pause);
        set.actions.insert("doubled_doses".into(), CheckAction::DryRun);
        assert_eq!((set.action("crossover"), set.action("doubled_doses")), (CheckAction::Pause, CheckAction::Kill));
        for name in crate::api::autopilot::DRY_RUN_BY_DEFAULT {
            assert!(!crate::api::autopilot::KILL_CLASS.contains(&name), "{name} cannot be both");
        }
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
    fn the_demo_and_end2end_settings_are_valid() {
        let demo = Settings::from_toml(include_str!("../../../demo/settings.toml")).unwrap();
        assert_eq!(demo.autopilot.steps.len(), 3, "the demo's compressed schedule");
        assert_eq!(demo.autopilot.steps[0].percentage, 25, "from the demo flag's 25 %: a plan never lowers it unasked");
        assert_eq!(demo.autopilot.interval_secs, Some(5));
        Settings::from_toml(include_str!("../../../end2end/fixtures/settings.toml")).unwrap();
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
