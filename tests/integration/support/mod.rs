//! Test harness: a real Prometheus with backfilled history, the demo simulator's emulated
//! Kubernetes API on a real socket, and a dashboard state wired to them; the worlds built on
//! them live in the submodules (`control`, `rollback`, `autopilot`), with the browser's side of
//! the requests (`web`) and the dashboard as a real process (`process`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diary_writer::cluster::{Cluster as SimCluster, ClusterSnapshot, Fault};
use diary_writer::counters::DoseCounters;
use diary_writer::openmetrics::{self, CounterSeries};
use rollout_dashboard::server::config::Config;
use rollout_dashboard::server::state::AppState;

pub mod alertmanager;

// The worlds the feature files share, each in its own module (imported by path).
pub mod autopilot;
pub mod control;
pub mod process;
pub mod rollback;
pub mod web;

/// The repository's root (this crate's manifest directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Prometheus server on a free loopback port whose TSDB was backfilled with `series` by promtool.
pub struct PrometheusHarness {
    pub url: String,
    child: Child,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl PrometheusHarness {
    pub fn start(series: &[CounterSeries]) -> PrometheusHarness {
        Self::start_with_rules(series, None)
    }

    /// Also loads an alerting-rules file (YAML text).
    pub fn start_with_rules(series: &[CounterSeries], rules: Option<&str>) -> PrometheusHarness {
        Self::start_alerting(series, rules, None)
    }

    /// Also sends its firing alerts to the Alertmanager at `alertmanager` (host:port).
    pub fn start_alerting(
        series: &[CounterSeries],
        rules: Option<&str>,
        alertmanager: Option<&str>,
    ) -> PrometheusHarness {
        let dir = tempfile::tempdir().unwrap();
        let om = dir.path().join("history.om");
        std::fs::write(&om, openmetrics::render(series)).unwrap();
        let data = dir.path().join("data");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h"])
            .arg(&om)
            .arg(&data)
            .output()
            .expect("promtool must be installed (scripts/setup installs it)");
        assert!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));
        let config = dir.path().join("prometheus.yml");
        let mut cfg = "global: {scrape_interval: 15s, evaluation_interval: 1s}\n".to_string();
        if let Some(rules) = rules {
            let path = dir.path().join("rules.yml");
            std::fs::write(&path, rules).unwrap();
            cfg.push_str(&format!("rule_files: ['{}']\n", path.display()));
        }
        if let Some(am) = alertmanager {
            cfg.push_str(&format!("alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am}']}}]}}]}}\n"));
        }
        std::fs::write(&config, cfg).unwrap();
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.retention.time=60d".to_string(),
            "--log.level=error".to_string(),
        ];
        if alertmanager.is_some() {
            // Its first notification can leave before the Alertmanager is discovered (dropped);
            // the next comes after the resend delay, a minute by default.
            args.push("--rules.alert.resend-delay=1s".to_string());
        }
        let child = Self::spawn(&args);
        let url = format!("http://127.0.0.1:{port}");
        let h = PrometheusHarness { url, child, args, _dir: dir };
        h.wait_ready();
        h
    }

    fn spawn(args: &[String]) -> Child {
        Command::new("prometheus")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (scripts/setup installs it)")
    }

    /// Stops the server (its data stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.args);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ok = std::net::TcpStream::connect_timeout(
                &self.url.trim_start_matches("http://").parse::<SocketAddr>().unwrap(),
                Duration::from_millis(200),
            )
            .is_ok()
                && ureq_ready(&self.url, "/-/ready");
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus did not become ready at {}", self.url);
    }
}

/// A tiny blocking GET of `path` (200 or not), without pulling in another HTTP client.
pub fn ureq_ready(base: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

impl Drop for PrometheusHarness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo simulator's emulated Kubernetes API (and diary API) on a real socket.
pub struct SimulatorHarness {
    pub url: String,
    pub token: String,
    pub cluster: Arc<SimCluster>,
    pub kubeconfig: PathBuf,
    /// The LaunchDarkly stand-in on the same port; its access token is `launchdarkly_token`.
    pub launchdarkly: Arc<diary_writer::launchdarkly_api::Stub>,
    pub launchdarkly_token: String,
    world: diary_writer::World,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl SimulatorHarness {
    pub async fn start(flag_value: &str, replicas: i32, diary: Option<sqlx::PgPool>) -> SimulatorHarness {
        let token = format!("test-token-{}", free_port());
        let cluster = Arc::new(SimCluster::new(
            ClusterSnapshot {
                namespace: "diabetes".into(),
                configmap: "feature-flags".into(),
                configmap_data: [("insulin_dose_split".to_string(), flag_value.to_string())].into(),
                deployment: "diary-writer".into(),
                desired_replicas: replicas,
                resource_version: 100,
                configmap_version: 100,
                deployment_version: 100,
            },
            None,
            Duration::ZERO,
            Some(token.clone()),
        ));
        // The API server enforces the shipped Role: every test proves the manifests are enough.
        let role = diary_writer::rbac::Role::from_yaml(include_str!("../../../deploy/role.yaml")).unwrap();
        cluster.set_role(Some(role));
        let launchdarkly_token = format!("api-{token}");
        let launchdarkly = Arc::new(diary_writer::launchdarkly_api::Stub::new(Some(launchdarkly_token.clone())));
        let world = diary_writer::World {
            cluster: cluster.clone(),
            counters: Arc::new(DoseCounters::default()),
            launchdarkly: launchdarkly.clone(),
            diary,
            flag_key: "insulin_dose_split".into(),
            receivers: Arc::new(diary_writer::receivers_api::StandIns::new(Some("glsa_test".into()))),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = world.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, diary_writer::router(served)).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url, &token);
        SimulatorHarness { url, token, cluster, kubeconfig, launchdarkly, launchdarkly_token, world, _dir: dir, task }
    }

    /// Starts the writer replicas' loop: each ready replica writes `per_replica_per_s` entries
    /// a second into the diary, split or legacy by the flag (until the test ends).
    pub fn spawn_writer(&self, pool: sqlx::PgPool, per_replica_per_s: f64) {
        tokio::spawn(diary_writer::writer::run(
            self.world.clone(),
            pool,
            diary_writer::writer::Traffic::new(per_replica_per_s),
        ));
    }

    pub fn set_fault(&self, fault: Fault) {
        self.cluster.set_fault(fault);
    }

    /// The receiver stand-ins (Slack, Grafana, a webhook) on the same port, under `/stand-ins`.
    pub fn stand_ins(&self) -> Arc<diary_writer::receivers_api::StandIns> {
        self.world.receivers.clone()
    }
}

impl Drop for SimulatorHarness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn write_kubeconfig(path: &Path, server: &str, token: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"{server}\"}}\n\
             users:\n- name: t\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\n\
             current-context: t\n"
        ),
    )
    .unwrap();
}

/// The URL of the database behind a `#[sqlx::test]` pool.
pub fn url_of(pool: &sqlx::PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL must name the test server");
    let db = pool.connect_options().get_database().unwrap_or("postgres").to_string();
    match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => {
            format!("{}/{db}", &base[..i])
        }
        _ => format!("{base}/{db}"),
    }
}

/// Creates the diary schema as the demo's Alembic head does, plus its version table.
pub async fn diary_schema(pool: &sqlx::PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE history_records (
             id bigserial PRIMARY KEY, user_id bigint NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(),
             dose numeric NULL, note text NULL,
             insulin_short numeric NULL, insulin_long numeric NULL);
         CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('b7e9d1c0f2a3');",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The end2end fixture rows (end2end/fixtures/diary.sql): 11 rows in the last 24 hours,
/// 6 with insulin_short, 4 with insulin_long.
pub async fn diary_fixture(pool: &sqlx::PgPool) {
    sqlx::raw_sql(include_str!("../../../end2end/fixtures/diary.sql")).execute(pool).await.unwrap();
}

/// Dashboard state wired to the given systems; `None` leaves one unconfigured.
pub async fn dashboard_state(
    state_db: &sqlx::PgPool,
    diary_db: Option<&sqlx::PgPool>,
    prometheus: Option<&str>,
    kubeconfig: Option<&Path>,
) -> AppState {
    dashboard_state_with(state_db, diary_db.map(url_of), prometheus, kubeconfig, None).await
}

/// Like `dashboard_state`, with the diary database's URL given and optional TOML settings.
pub async fn dashboard_state_with(
    state_db: &sqlx::PgPool,
    diary_url: Option<String>,
    prometheus: Option<&str>,
    kubeconfig: Option<&Path>,
    settings_toml: Option<&str>,
) -> AppState {
    dashboard_state_vars(state_db, diary_url, prometheus, kubeconfig, settings_toml, &[]).await
}

/// The most general form: also extra environment variables (e.g. ROLLOUT_PROXY_SECRET).
pub async fn dashboard_state_vars(
    state_db: &sqlx::PgPool,
    diary_url: Option<String>,
    prometheus: Option<&str>,
    kubeconfig: Option<&Path>,
    settings_toml: Option<&str>,
    extra: &[(&str, &str)],
) -> AppState {
    dashboard_state_at(url_of(state_db), diary_url, prometheus, kubeconfig, settings_toml, extra).await
}

/// Like `dashboard_state_vars`, with the state database's URL given (through a `PgProxy`, say).
pub async fn dashboard_state_at(
    state_url: String,
    diary_url: Option<String>,
    prometheus: Option<&str>,
    kubeconfig: Option<&Path>,
    settings_toml: Option<&str>,
    extra: &[(&str, &str)],
) -> AppState {
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let settings_file = settings_toml.map(|t| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), t).unwrap();
        f.into_temp_path()
    });
    let settings_path = settings_file.as_ref().map(|p| p.display().to_string());
    let prometheus = prometheus.map(str::to_string);
    let kubeconfig = kubeconfig.map(|p| p.display().to_string());
    let config = Config::from_vars(move |k| match k {
        "STATE_DATABASE_URL" => Some(state_url.clone()),
        "DATABASE_URL" => diary_url.clone(),
        "PROMETHEUS_URL" => prometheus.clone(),
        "KUBECONFIG" => kubeconfig.clone(),
        "ROLLOUT_CONFIG" => settings_path.clone(),
        other => extra.iter().find(|(k, _)| k == other).map(|(_, v)| v.clone()),
    })
    .unwrap();
    let options = leptos::config::LeptosOptions::builder().output_name("rollout-dashboard").build();
    AppState::connect(config, options).await.expect("dashboard state")
}

/// A TCP proxy in front of PostgreSQL that can be cut and restored, so a test can watch the
/// dashboard lose its database and find it again without stopping the shared server.
pub struct PgProxy {
    pub port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(upstream: &str) -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (d, c, upstream) = (down.clone(), conns.clone(), upstream.to_string());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().unwrap().push(h.abort_handle());
            }
        });
        PgProxy { port, down, conns, task }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` (of a database on the proxied server) rewritten to go through the proxy.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
