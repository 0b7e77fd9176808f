//! Test harness: a real hub on its own fresh store per test, reached over HTTP.
//! PostgreSQL tests create a database of their own on the server named by `DATABASE_URL`
//! (scripts/test sets it) and drop it afterwards; SQLite tests use a file in a temporary
//! directory.

use falconer::app::Application;
use falconer::config::{Config, KubernetesConfig, Toggle};
use falconer_analyst::AnalystConfig;
use falconer_delivery::config::DeliveryConfig;
use falconer_delivery::declared::{Desired, Origin, SecretValue, secret_env_name};
use falconer_hub::HubConfig;
use falconer_model::crd::Consumer;
use falconer_store::{DatabaseUrl, Store, StoreConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each listed `async fn name(backend: Backend)` as two tests, `postgres::name` and
/// `sqlite::name`: the same behaviour is required of both stores.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// A database of one test: dropped (PostgreSQL) or deleted (SQLite) when the test ends.
pub enum TestDb {
    Postgres { admin_url: String, name: String },
    Sqlite { dir: tempfile::TempDir },
}

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name a PostgreSQL server where databases can be created; \
         scripts/test sets it",
    )
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    DatabaseUrl(url.to_string()).with_database(name).0
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::Sqlite {
                dir: tempfile::tempdir().expect("temporary directory"),
            },
            Backend::Postgres => {
                let admin_url = admin_url();
                let name = format!("falconer_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = admin_connection(&admin_url).await;
                sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                TestDb::Postgres { admin_url, name }
            }
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        match self {
            TestDb::Postgres { admin_url, name } => StoreConfig {
                database_url: Some(DatabaseUrl(with_database(admin_url, name))),
                max_connections: 4,
                connect_timeout_ms: 2_000,
                ..StoreConfig::default()
            },
            TestDb::Sqlite { dir } => StoreConfig {
                data_dir: dir.path().to_path_buf(),
                max_connections: 4,
                connect_timeout_ms: 2_000,
                sqlite_busy_timeout_ms: 200,
                ..StoreConfig::default()
            },
        }
    }

    /// A connection of the test's own, beside the hub's, to inspect or disturb the database.
    pub async fn side_connection(&self) -> SideConnection {
        match self {
            TestDb::Postgres { admin_url, name } => {
                SideConnection::Postgres(admin_connection(&with_database(admin_url, name)).await)
            }
            TestDb::Sqlite { dir } => {
                use sqlx::ConnectOptions;
                let conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.path().join("falconer.db"))
                    .connect()
                    .await
                    .expect("open SQLite side connection");
                SideConnection::Sqlite(conn)
            }
        }
    }

    /// Rows in the events table, counted behind the hub's back.
    pub async fn count_events(&self) -> i64 {
        self.side_connection()
            .await
            .scalar("SELECT count(*) FROM events")
            .await
    }

    /// Makes the database refuse the hub (PostgreSQL: no new connections and the hub's
    /// killed; SQLite: another process holds the write lock). Undo with `restore`.
    pub async fn break_store(&self) -> Outage {
        match self {
            TestDb::Postgres { admin_url, name } => {
                let mut admin = admin_connection(admin_url).await;
                // The hub's connections go first, so none of them can still commit once a
                // lock held by another test connection goes away.
                for sql in [
                    format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
                    format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}' AND application_name = 'falconer'"
                    ),
                    format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    ),
                ] {
                    sqlx::Executor::execute(&mut admin, sql.as_str())
                        .await
                        .expect("disturb test database");
                }
                Outage::Postgres {
                    admin,
                    name: name.clone(),
                }
            }
            TestDb::Sqlite { .. } => {
                let mut side = self.side_connection().await;
                side.execute("BEGIN IMMEDIATE").await;
                Outage::Sqlite(side)
            }
        }
    }
}

pub enum Outage {
    Postgres {
        admin: sqlx::PgConnection,
        name: String,
    },
    Sqlite(SideConnection),
}

impl Outage {
    pub async fn restore(self) {
        match self {
            Outage::Postgres { mut admin, name } => {
                sqlx::Executor::execute(
                    &mut admin,
                    format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true").as_str(),
                )
                .await
                .expect("restore test database");
            }
            Outage::Sqlite(mut side) => side.execute("ROLLBACK").await,
        }
    }
}

pub enum SideConnection {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl SideConnection {
    pub async fn execute(&mut self, sql: &str) {
        match self {
            SideConnection::Postgres(c) => sqlx::Executor::execute(c, sql).await.map(|_| ()),
            SideConnection::Sqlite(c) => sqlx::Executor::execute(c, sql).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn scalar(&mut self, sql: &str) -> i64 {
        match self {
            SideConnection::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            SideConnection::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

async fn admin_connection(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at DATABASE_URL: {e}"))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (url, name) = (admin_url.clone(), name.clone());
            // Drop cannot await; a short-lived runtime on its own thread can.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    let mut admin = admin_connection(&url).await;
                    let _ = sqlx::Executor::execute(
                        &mut admin,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                });
            })
            .join();
        }
    }
}

/// A running hub, assembled by the same `Application` as `falconer standalone` and
/// `falconer hub`: tests differ from production only by the config they pass.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Store,
    /// The hub's analyst (not running periodically: tests compute when they want).
    pub analyst: falconer_analyst::Analyst,
    app: Application,
}

impl TestApp {
    /// The address of `server.metrics_listen`, when the test set it.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.app.metrics_addr
    }
}

pub fn hub_config() -> HubConfig {
    let mut config = HubConfig {
        cluster: "home".into(),
        ..HubConfig::default()
    };
    config.server.listen = "127.0.0.1:0".parse().expect("address");
    config.server.workers = 2;
    config.server.shutdown_timeout_secs = 5;
    // Tests read back at once what they posted; the journal's own tests turn it on.
    config.ingest.journal.enabled = false;
    config
}

/// The whole configuration of a test hub: `hub` and `store` as given, delivery polling and
/// retrying quickly, file consumers writing under the temporary directory, no Settings, the analyst computing only when a test asks.
pub fn app_config(hub: HubConfig, store: StoreConfig) -> Config {
    Config {
        cluster: hub.cluster,
        server: hub.server,
        ingest: hub.ingest,
        auth: hub.auth,
        sources: hub.sources,
        store,
        delivery: DeliveryConfig {
            poll_interval_ms: 100,
            backoff_initial_ms: 20,
            backoff_max_ms: 200,
            status_interval_secs: 1,
            // File consumers of the tests write into temporary directories.
            file_dir: Some(std::env::temp_dir()),
            ..DeliveryConfig::default()
        },
        kubernetes: KubernetesConfig {
            settings: Toggle::Off,
            ..KubernetesConfig::default()
        },
        analyst: AnalystConfig {
            enabled: false,
            ..AnalystConfig::default()
        },
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn(db: &TestDb) -> TestApp {
        TestApp::spawn_with(db, hub_config(), db.store_config()).await
    }

    pub async fn spawn_with(db: &TestDb, hub: HubConfig, store: StoreConfig) -> TestApp {
        TestApp::spawn_with_consumers(db, hub, store, Vec::new()).await
    }

    /// A hub delivering to `consumers`, declared as the configuration file declares them
    /// (with the secrets given here instead of environment variables).
    pub async fn spawn_with_consumers(
        _db: &TestDb,
        hub: HubConfig,
        store: StoreConfig,
        consumers: Vec<Desired>,
    ) -> TestApp {
        TestApp::spawn_config(app_config(hub, store), consumers).await
    }

    /// A hub assembled from `config`, with `consumers` declared in its configuration file:
    /// their secrets reach it as `FALCONER_SECRET_<SECRET>_<KEY>` environment variables do,
    /// and they exist before the hub accepts its first request. A list that also holds
    /// consumers of Settings is declared once the hub runs, as the Setting watcher would.
    pub async fn spawn_config(config: Config, consumers: Vec<Desired>) -> TestApp {
        TestApp::spawn_in(config, consumers, None).await
    }

    /// [`Self::spawn_config`] for a hub running in a cluster: `kube` is its connection (a
    /// scripted API server's client), as `kubernetes.settings: on` would give it.
    pub async fn spawn_in(
        mut config: Config,
        consumers: Vec<Desired>,
        kube: Option<falconer::app::Kube>,
    ) -> TestApp {
        let mut env = HashMap::new();
        let mut later = Vec::new();
        if consumers.iter().all(|d| d.origin == Origin::ConfigFile) {
            for desired in consumers {
                let secret = desired.consumer.secret_ref.as_ref().map(|s| s.name.clone());
                if let Some(secret) = secret {
                    for (key, value) in desired.secrets {
                        env.insert(secret_env_name(&secret, &key), value.0);
                    }
                } else {
                    assert!(desired.secrets.is_empty(), "secrets need a secretRef");
                }
                config.consumers.push(desired.consumer);
            }
        } else {
            later = consumers;
        }
        config.validate().expect("a valid test configuration");
        let app = Application::assemble(&config, &move |name: &str| env.get(name).cloned(), kube)
            .await
            .expect("start the hub");
        if !later.is_empty() {
            assert!(app.declare(later), "consumers come from the file");
        }
        TestApp {
            addr: app.addr,
            client: reqwest::Client::new(),
            store: app.store.clone(),
            analyst: app.analyst.clone(),
            app,
        }
    }

    /// Replaces the declared consumers, as an edited configuration file would.
    pub fn declare(&self, consumers: Vec<Desired>) {
        self.app.declare(consumers);
    }

    /// Stops serving (answering what is in flight), stops delivery, closes the store.
    pub async fn stop(self) {
        self.app.stop().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        Reply::read(response).await
    }

    pub async fn ingest(&self, body: impl Into<reqwest::Body>) -> Reply {
        self.post("/ingest", "application/json", body).await
    }

    /// POST of a JSON body with `Authorization: Bearer <token>`.
    pub async fn post_as(&self, token: &str, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .expect("POST");
        Reply::read(response).await
    }

    /// GET with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, token: &str, path: &str) -> Reply {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        Reply::read(request.send().await.expect("GET")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        Reply::read(response).await
    }
}

/// A response read to its end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("response body"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The ids of a 202 reply, as strings.
    pub fn ids(&self) -> Vec<String> {
        self.json()["ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no ids in {}", self.text))
            .iter()
            .map(|id| id.as_str().expect("id").to_string())
            .collect()
    }
}

/// A valid Falco alert with the given rule, time and output.
pub fn alert(rule: &str, time: &str, output: &str) -> Value {
    serde_json::json!({
        "time": time,
        "rule": rule,
        "priority": "Warning",
        "source": "syscall",
        "hostname": "node-1",
        "output": format!("{time}: Warning {output}"),
        "tags": ["test"],
        "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": "web-1", "proc.name": "sh"}
    })
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/falco/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub const FIXTURES: &[&str] = &[
    "0.36-terminal-shell.json",
    "0.39-message-property.json",
    "0.41-container-plugin.json",
    "0.44-host-null-fields.json",
    "k8saudit-exec.json",
    "falcosidekick-webhook.json",
];

/// A consumer from its Setting-style JSON (camelCase), declared in the configuration file
/// with the given secret keys.
pub fn consumer(spec: Value, secrets: &[(&str, &str)]) -> Desired {
    Desired {
        consumer: serde_json::from_value::<Consumer>(spec).expect("consumer spec"),
        origin: Origin::ConfigFile,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue(v.to_string())))
            .collect(),
    }
}

/// Polls `check` until it holds; the test fails (naming `what`) if it never does within a
/// minute. Waiting, not timing: nothing asserts how long it took.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

/// A fixture of any source, by its path under `tests/fixtures/` (e.g. `trivy/x.json`).
pub fn source_fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
