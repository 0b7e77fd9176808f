//! The effective configuration: built-in defaults, then `--config FILE` (YAML), then
//! `FALCONER__SECTION__KEY` environment variables, then command-line flags.

use falconer_analyst::AnalystConfig;
use falconer_delivery::config::DeliveryConfig;
use falconer_hub::HubConfig;
use falconer_hub::config::{AuthConfig, IngestConfig, ServerConfig, SourcesConfig};
use falconer_model::crd::Consumer;
use falconer_store::StoreConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This hub's cluster name, for events that name none.
    pub cluster: String,
    pub log: LogConfig,
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub auth: AuthConfig,
    pub sources: SourcesConfig,
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    pub kubernetes: KubernetesConfig,
    /// What Policies may ask of the cluster (`falconer manager`).
    pub manager: falconer_manager::limits::Limits,
    /// Risk scores (docs/risk-model.md).
    pub analyst: AnalystConfig,
    /// The dashboard as users reach it.
    pub ui: UiConfig,
    /// Consumers declared here (same shape as a Setting's `spec.consumers`, camelCase keys);
    /// their secrets come from `FALCONER_SECRET_<SECRET>_<KEY>` environment variables.
    pub consumers: Vec<Consumer>,
}

impl Default for Config {
    fn default() -> Self {
        let hub = HubConfig::default();
        Config {
            cluster: hub.cluster,
            log: LogConfig::default(),
            server: hub.server,
            ingest: hub.ingest,
            auth: hub.auth,
            sources: hub.sources,
            store: StoreConfig::default(),
            delivery: DeliveryConfig::default(),
            kubernetes: KubernetesConfig::default(),
            manager: Default::default(),
            analyst: AnalystConfig::default(),
            ui: UiConfig::default(),
            consumers: Vec::new(),
        }
    }
}

/// `ui:` — the dashboard as users reach it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Public base URL of the hub (e.g. `https://falconer.example.com`, the Ingress):
    /// notification messages link to `<external_url>/ui/#/events/<id>`. Unset: no links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
}

impl UiConfig {
    fn validate(&self) -> Result<(), String> {
        let Some(url) = &self.external_url else {
            return Ok(());
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or_default();
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err(format!(
                "ui.external_url: `{url}` must be an http(s) URL without query or fragment"
            ));
        }
        Ok(())
    }
}

/// How the hub uses the cluster it runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Take consumers from `Setting` objects and write their delivery state into the
    /// Settings' status: `auto` (when running in a pod), `on` or `off`.
    pub settings: Toggle,
    /// Namespace whose Secrets hold consumer credentials; default: the pod's own namespace.
    pub namespace: Option<String>,
    /// How often consumer state is written into Setting status.
    pub status_interval_secs: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            settings: Toggle::Auto,
            namespace: None,
            status_interval_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter such as
    /// `info,falconer_store=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// Flags that override every other source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_level: Option<String>,
}

/// Lists read from one environment variable, comma-separated.
const LIST_KEYS: &[&str] = &["auth.ingest_token_sha256", "auth.query_token_sha256"];

impl Config {
    /// The configuration from `files` (each overriding the ones before it), the environment
    /// and `overrides`, in that order of precedence from lowest.
    pub fn load(files: &[PathBuf], overrides: &Overrides) -> Result<Config, String> {
        Self::load_from(files, overrides, None)
    }

    /// Like `load`, reading environment variables from `env` instead of the process (tests).
    pub fn load_from(
        files: &[PathBuf],
        overrides: &Overrides,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Config, String> {
        let mut builder = config::Config::builder();
        for file in files {
            if !file.is_file() {
                return Err(format!("--config {}: no such file", file.display()));
            }
            builder = builder.add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Yaml)
                    .required(true),
            );
        }
        let mut environment = config::Environment::with_prefix("FALCONER")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        if let Some(env) = env {
            environment = environment.source(Some(env));
        }
        builder = builder.add_source(environment);
        let set = |builder: config::ConfigBuilder<_>, key: &str, value: Option<String>| match value
        {
            Some(value) => builder.set_override(key, value),
            None => Ok(builder),
        };
        let error = |e: config::ConfigError| e.to_string();
        builder = set(
            builder,
            "server.listen",
            overrides.listen.map(|a| a.to_string()),
        )
        .map_err(error)?;
        builder = set(
            builder,
            "store.data_dir",
            overrides
                .data_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
        )
        .map_err(error)?;
        builder = set(
            builder,
            "store.database_url",
            overrides.database_url.clone(),
        )
        .map_err(error)?;
        builder = set(builder, "log.level", overrides.log_level.clone()).map_err(error)?;
        let config: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(describe)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.hub().validate()?;
        self.analyst.validate()?;
        self.store.validate()?;
        self.ingest.journal.validate()?;
        self.delivery.validate()?;
        if self.kubernetes.status_interval_secs == 0 {
            return Err("kubernetes.status_interval_secs: must be greater than 0".into());
        }
        falconer_delivery::declared::validate(&self.consumers, "consumers")?;
        self.manager.validate()?;
        self.ui.validate()?;
        if self.ingest.max_report_findings > self.store.queue_max_events {
            return Err(format!(
                "ingest.max_report_findings: {} exceeds store.queue_max_events ({}); such a \
                 report could never be accepted",
                self.ingest.max_report_findings, self.store.queue_max_events
            ));
        }
        if self.ingest.max_events_per_request > self.store.queue_max_events {
            return Err(format!(
                "ingest.max_events_per_request: {} exceeds store.queue_max_events ({}); such a \
                 request could never be accepted",
                self.ingest.max_events_per_request, self.store.queue_max_events
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            format!(
                "log.level: `{}` is not a log level or filter: {e}",
                self.log.level
            )
        })?;
        Ok(())
    }

    pub fn hub(&self) -> HubConfig {
        HubConfig {
            cluster: self.cluster.clone(),
            server: self.server.clone(),
            ingest: self.ingest.clone(),
            auth: self.auth.clone(),
            sources: self.sources.clone(),
        }
    }

    /// The effective config as YAML-compatible JSON, secrets masked.
    pub fn printable(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("unprintable config: {e}"))
    }
}

/// config-rs names the key for bad values but says "unknown field `x` ... for key `section`"
/// for unknown ones; turn that into the full key.
fn describe(error: config::ConfigError) -> String {
    let text = error.to_string();
    let Some(rest) = text.strip_prefix("unknown field `") else {
        return text;
    };
    let Some((field, rest)) = rest.split_once('`') else {
        return text;
    };
    let expected = rest
        .trim_start_matches(", ")
        .split(" for key `")
        .next()
        .unwrap_or("");
    let key = match rest.rsplit_once(" for key `") {
        Some((_, section)) => format!("{}.{field}", section.trim_end_matches('`')),
        None => field.to_string(),
    };
    format!("unknown key `{key}`; {expected}")
}
