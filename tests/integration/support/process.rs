//! The dashboard as a real process (the binary cargo built for these tests), so it can be killed.

use std::time::Duration;

use super::control::SECRET;
use super::repo;

pub struct DashboardProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl DashboardProcess {
    pub fn start(env: Vec<(String, String)>) -> DashboardProcess {
        let addr = env.iter().find(|(k, _)| k == "LEPTOS_SITE_ADDR").unwrap().1.clone();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rollout-dashboard"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .current_dir(repo())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        DashboardProcess { child, url: format!("http://{addr}") }
    }

    pub async fn ready(&self) {
        for _ in 0..300 {
            if reqwest::get(format!("{}/readyz", self.url)).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dashboard process did not become ready");
    }

    /// SIGKILL: no shutdown, no cleanup, as when the node dies.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// A POST as ana (operator), through the proxy.
    pub async fn post(&self, path: &str, body: Option<String>) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("origin", &self.url)
            .header("content-type", "application/json")
            .header("x-forwarded-user", "ana")
            .header("x-forwarded-groups", "oncall")
            .header("x-proxy-secret", SECRET)
            .body(body.unwrap_or_default())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or_default())
    }

    /// `post`, sent from a task of its own: the test can kill the process while it is answered.
    pub fn post_in_background(&self, path: &str, body: String) -> tokio::task::JoinHandle<Result<u16, String>> {
        let (url, path) = (self.url.clone(), path.to_string());
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{url}{path}"))
                .header("origin", &url)
                .header("content-type", "application/json")
                .header("x-forwarded-user", "ana")
                .header("x-forwarded-groups", "oncall")
                .header("x-proxy-secret", SECRET)
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(resp.status().as_u16())
        })
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap().json().await.unwrap()
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
