//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, clustering
//! off, routing every alert to a webhook (the dashboard's hook, when given) except the dashboard's
//! own alerts (label `source="rollout-dashboard"`), which it only holds: the tests read them back
//! through its API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, ureq_ready};

pub struct AlertmanagerHarness {
    pub url: String,
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl AlertmanagerHarness {
    /// `hook`: (URL, bearer token) of the webhook receiver for alerts from Prometheus.
    pub fn start(hook: Option<(&str, &str)>) -> AlertmanagerHarness {
        let dir = tempfile::tempdir().unwrap();
        let webhook = match hook {
            Some((url, token)) => format!(
                "    webhook_configs:\n      - url: '{url}'\n        send_resolved: false\n        \
                 http_config: {{authorization: {{type: Bearer, credentials: '{token}'}}}}\n"
            ),
            None => String::new(),
        };
        let config = format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n  \
             routes:\n    - matchers: ['source=\"rollout-dashboard\"']\n      receiver: hold\n\
             receivers:\n  - name: hold\n  - name: hook\n{webhook}"
        );
        let path = dir.path().join("alertmanager.yml");
        std::fs::write(&path, config).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager must be installed (scripts/setup installs it)");
        let url = format!("http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ureq_ready(&url, "/-/ready") {
            assert!(Instant::now() < deadline, "Alertmanager did not become ready at {url}");
            std::thread::sleep(Duration::from_millis(200));
        }
        AlertmanagerHarness { url, addr, child, _dir: dir }
    }

    /// The alerts Alertmanager holds now (`GET /api/v2/alerts`; resolved ones are left out).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("{}/api/v2/alerts", self.url)).await.unwrap().json().await.unwrap()
    }

    /// The names of the held alerts that carry `label=value`.
    pub async fn names_with(&self, label: &str, value: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .alerts()
            .await
            .iter()
            .filter(|a| a["labels"][label] == value)
            .map(|a| a["labels"]["alertname"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    }
}

impl Drop for AlertmanagerHarness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
