//! Test harness: a real Prometheus with backfilled history, the demo simulator's emulated
//! Kubernetes API on a real socket, and a dashboard state wired to them.

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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Prometheus server on a free loopback port whose TSDB was backfilled with `series` by promtool.
pub struct PrometheusHarness {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PrometheusHarness {
    pub fn start(series: &[CounterSeries]) -> PrometheusHarness {
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
        std::fs::write(&config, "global: {scrape_interval: 15s}\n").unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=60d")
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (scripts/setup installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let h = PrometheusHarness { url, child, _dir: dir };
        h.wait_ready();
        h
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ok = std::net::TcpStream::connect_timeout(
                &self.url.trim_start_matches("http://").parse::<SocketAddr>().unwrap(),
                Duration::from_millis(200),
            )
            .is_ok()
                && ureq_ready(&self.url);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus did not become ready at {}", self.url);
    }
}

/// A tiny blocking GET of /-/ready, without pulling in another HTTP client.
fn ureq_ready(base: &str) -> bool {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /-/ready HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).is_err() {
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
        let world = diary_writer::World {
            cluster: cluster.clone(),
            counters: Arc::new(DoseCounters::default()),
            diary,
            flag_key: "insulin_dose_split".into(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, diary_writer::router(world)).await;
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url, &token);
        SimulatorHarness { url, token, cluster, kubeconfig, _dir: dir, task }
    }

    pub fn set_fault(&self, fault: Fault) {
        self.cluster.set_fault(fault);
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
    sqlx::raw_sql(include_str!("../../end2end/fixtures/diary.sql")).execute(pool).await.unwrap();
}

/// Dashboard state wired to the given systems; `None` leaves one unconfigured.
pub async fn dashboard_state(
    state_db: &sqlx::PgPool,
    diary_db: Option<&sqlx::PgPool>,
    prometheus: Option<&str>,
    kubeconfig: Option<&Path>,
) -> AppState {
    let state_url = url_of(state_db);
    let diary_url = diary_db.map(url_of);
    let prometheus = prometheus.map(str::to_string);
    let kubeconfig = kubeconfig.map(|p| p.display().to_string());
    let config = Config::from_vars(move |k| match k {
        "STATE_DATABASE_URL" => Some(state_url.clone()),
        "DATABASE_URL" => diary_url.clone(),
        "PROMETHEUS_URL" => prometheus.clone(),
        "KUBECONFIG" => kubeconfig.clone(),
        _ => None,
    })
    .unwrap();
    let options = leptos::config::LeptosOptions::builder().output_name("rollout-dashboard").build();
    AppState::connect(config, options).await.expect("dashboard state")
}
