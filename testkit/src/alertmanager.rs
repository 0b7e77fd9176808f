//! A real Prometheus Alertmanager for delivery tests: the Debian package
//! `prometheus-alertmanager` (`scripts/test` installs it), started on a free loopback port
//! with clustering off, its storage in a temporary directory and a configuration whose one
//! receiver notifies nobody (or a configuration the test gives), and read back through its
//! own `GET /api/v2/alerts`.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A configuration routing every alert to a receiver that notifies nobody.
pub const NULL_CONFIG: &str =
    "route:\n  receiver: \"null\"\n  group_by: [falconer_group]\nreceivers:\n  - name: \"null\"\n";

/// Longest wait for `/-/ready` (the machine may be busy building).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Alertmanager {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// The binary: `$FALCONER_ALERTMANAGER`, else `prometheus-alertmanager` (Debian's name), else
/// `alertmanager` on the `PATH`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FALCONER_ALERTMANAGER") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Alertmanager is not installed: apt-get install prometheus-alertmanager \
         (scripts/test does), or set FALCONER_ALERTMANAGER to its binary"
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

impl Alertmanager {
    /// An Alertmanager with [`NULL_CONFIG`], ready.
    pub async fn start() -> Alertmanager {
        Alertmanager::start_with(NULL_CONFIG).await
    }

    /// An Alertmanager with this configuration (YAML), ready.
    pub async fn start_with(config: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let port = free_port();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Alertmanager");
        let mut am = Alertmanager {
            child: Some(child),
            port,
            dir,
            client: reqwest::Client::new(),
        };
        am.wait_ready().await;
        am
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        let ready = format!("{}/-/ready", self.url());
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("Alertmanager exited ({status}):\n{}", self.log());
            }
            if let Ok(response) = self.client.get(&ready).send().await
                && response.status().is_success()
            {
                return;
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "Alertmanager not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its base URL, as a sink's `url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// The alerts it holds that fire now (`GET /api/v2/alerts`: resolved ones are not listed).
    pub async fn alerts(&self) -> Vec<Value> {
        let url = format!("{}/api/v2/alerts", self.url());
        let response = self
            .client
            .get(url)
            .send()
            .await
            .expect("GET /api/v2/alerts");
        assert!(response.status().is_success(), "{}", response.status());
        let text = response.text().await.unwrap();
        match serde_json::from_str(&text).unwrap() {
            Value::Array(alerts) => alerts,
            other => panic!("not an array of alerts: {other}"),
        }
    }

    /// Stops it: its port refuses connections from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}
