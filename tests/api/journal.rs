//! The ingest journal in front of PostgreSQL: Falco is answered 202 while the database is
//! down, nothing acknowledged is lost across an outage or a restart, and each event is
//! stored once.

use crate::helpers::{Backend, TestApp, TestDb, alert, hub_config, wait_until};
use serde_json::json;

/// A hub on `db` journaling into `dir`, small segments so tests cross them.
async fn journaled(db: &TestDb, dir: &std::path::Path, max_bytes: u64) -> TestApp {
    let mut hub = hub_config();
    let journal = &mut hub.ingest.journal;
    journal.enabled = true;
    journal.dir = Some(dir.to_path_buf());
    journal.segment_bytes = 64 * 1024;
    journal.max_bytes = max_bytes;
    journal.drain_timeout_secs = 1;
    TestApp::spawn_with(db, hub, db.store_config()).await
}

fn alerts(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| alert("journal", "2026-05-04T10:00:00Z", &format!("{prefix} {i}")).to_string())
        .collect()
}

async fn stored_once(db: &TestDb, expected: i64) {
    wait_until("every acknowledged alert is in the database", || async {
        db.count_events().await >= expected
    })
    .await;
    let mut side = db.side_connection().await;
    assert_eq!(side.scalar("SELECT count(*) FROM events").await, expected);
    assert_eq!(
        side.scalar("SELECT count(DISTINCT dedup_key) FROM events")
            .await,
        expected,
        "an alert was stored twice"
    );
}

#[tokio::test]
async fn alerts_posted_while_postgresql_refuses_connections_are_acknowledged_and_stored_once_after_it_returns()
 {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let app = journaled(&db, dir.path(), 64 * 1024 * 1024).await;
    for body in alerts("before", 300) {
        assert_eq!(app.ingest(body).await.status, 202);
    }
    let outage = db.break_store().await;
    for body in alerts("during", 300) {
        let reply = app.ingest(body).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
    }
    // Ready while the journal has room: the load balancer keeps sending Falco here.
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["journal"], "has room");
    outage.restore().await;
    stored_once(&db, 600).await;
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("falconer_journal_loaded_events_total 600"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hub_stopped_during_an_outage_loads_its_journal_after_the_next_start() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let app = journaled(&db, dir.path(), 64 * 1024 * 1024).await;
    let outage = db.break_store().await;
    // Batches as well as single alerts, across several segments.
    for chunk in alerts("kept", 600).chunks(50) {
        let body = format!("[{}]", chunk.join(","));
        assert_eq!(app.ingest(body).await.status, 202);
    }
    // The drain gives up while the database is still away: the journal stays on disk.
    app.stop().await;
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 1,
        "segments were left for the next start"
    );
    outage.restore().await;
    let app = journaled(&db, dir.path(), 64 * 1024 * 1024).await;
    stored_once(&db, 600).await;
    // Loaded segments are deleted; the one being written stays.
    wait_until("loaded segments are deleted", || async {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count()
            <= 1
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_full_journal_answers_507_with_retry_after_at_once_and_takes_alerts_again_once_loaded() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let app = journaled(&db, dir.path(), 128 * 1024).await;
    let outage = db.break_store().await;
    let mut accepted = 0;
    let mut refused = None;
    for body in alerts("fill", 2000) {
        let reply = app.ingest(body).await;
        match reply.status {
            202 => accepted += 1,
            _ => {
                refused = Some(reply);
                break;
            }
        }
    }
    let refused = refused.expect("the journal filled up");
    assert_eq!(refused.status, 507, "{}", refused.text);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("journal is full"),
        "{}",
        refused.text
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503, "a full journal is not ready");
    outage.restore().await;
    stored_once(&db, accepted).await;
    wait_until("the journal takes alerts again", || async {
        app.ingest(alerts("after", 1).remove(0)).await.status == 202
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_retried_alert_is_answered_with_the_first_id_before_it_reaches_the_database() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let app = journaled(&db, dir.path(), 64 * 1024 * 1024).await;
    let outage = db.break_store().await;
    let body = json!(alert("retried", "2026-05-04T10:00:00Z", "same")).to_string();
    let first = app.ingest(body.clone()).await;
    let second = app.ingest(body).await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 202);
    assert_eq!(first.ids(), second.ids());
    outage.restore().await;
    stored_once(&db, 1).await;
    let id = &first.ids()[0];
    let event = app.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event.status, 200, "{}", event.text);
    app.stop().await;
}

#[tokio::test]
async fn consumers_are_listed_from_their_last_known_state_while_postgresql_is_down() {
    let db = TestDb::new(Backend::Postgres).await;
    let hook = falconer_testkit::webhook::WebhookServer::start();
    let spec = json!({"name": "hook", "type": "webhook", "webhook": {"url": hook.url()}});
    let app = crate::helpers::TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![crate::helpers::consumer(spec, &[])],
    )
    .await;
    for body in alerts("listed", 3) {
        assert_eq!(app.ingest(body).await.status, 202);
    }
    wait_until("the consumer delivered and saved its cursor", || async {
        app.get("/api/v1/consumers").await.json()["consumers"][0]["delivered"] == 3
    })
    .await;
    let outage = db.break_store().await;
    let listed = app.get("/api/v1/consumers").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let view = &listed.json()["consumers"][0];
    assert_eq!(view["name"], "hook");
    assert_eq!(view["delivered"], 3, "the counters last read");
    outage.restore().await;
    app.stop().await;
    hook.stop().await;
}

/// The `falconer hub` binary on `db`, journaling under `data_dir`, killed with SIGKILL when
/// dropped unless stopped before.
pub struct HubProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl HubProcess {
    pub async fn start(db: &TestDb, data_dir: &std::path::Path) -> HubProcess {
        HubProcess::start_with(db, data_dir, &[]).await
    }

    /// The hub with extra command-line arguments (e.g. `--config FILE`).
    pub async fn start_with(db: &TestDb, data_dir: &std::path::Path, args: &[&str]) -> HubProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let url = db
            .store_config()
            .database_url
            .expect("a PostgreSQL test database")
            .0;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_falconer"));
        for (key, _) in std::env::vars() {
            if key.starts_with("FALCONER__") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(["hub", "--listen", &addr.to_string(), "--database-url", &url])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("FALCONER__INGEST__JOURNAL__SEGMENT_BYTES", "65536")
            .env("FALCONER__INGEST__JOURNAL__MAX_BYTES", "67108864")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start falconer hub");
        let hub = HubProcess { child, addr };
        let client = reqwest::Client::new();
        let health = format!("http://{addr}/healthz");
        wait_until("the hub answers", || async {
            client.get(&health).send().await.is_ok()
        })
        .await;
        hub
    }

    pub async fn post(&self, body: String) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{}/ingest", self.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub fn kill(mut self) {
        // SIGKILL: no drain, no shutdown of anything.
        self.child.kill().expect("kill -9 the hub");
        self.child.wait().expect("reap the hub");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn alerts_acknowledged_across_a_postgresql_stop_and_two_kill_9s_of_the_hub_are_all_stored_once()
 {
    let db = TestDb::new(Backend::Postgres).await;
    let data = tempfile::tempdir().unwrap();
    let mut bodies = alerts("falco", 600).into_iter();
    let mut send = async |hub: &HubProcess, n: usize| {
        for body in bodies.by_ref().take(n) {
            assert_eq!(hub.post(body).await, 202, "an alert was not acknowledged");
        }
    };

    let hub = HubProcess::start(&db, data.path()).await;
    send(&hub, 200).await;
    let outage = db.break_store().await;
    send(&hub, 200).await;
    // Killed with everything since the outage only in the journal.
    hub.kill();
    outage.restore().await;

    // Killed again as soon as it has taken 100 more: the loader is mid-load or has just
    // committed without marking it.
    let hub = HubProcess::start(&db, data.path()).await;
    send(&hub, 100).await;
    hub.kill();

    let hub = HubProcess::start(&db, data.path()).await;
    send(&hub, 100).await;
    stored_once(&db, 600).await;
    drop(hub);
}
