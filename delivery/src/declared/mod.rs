//! The consumers delivery should be running, from wherever they are declared: the hub's
//! config file (`file`) and, in a cluster, `Setting` objects (`settings`), whose consumers'
//! delivery state is written back into their status (`status`). Both parse into
//! `crd::Consumer`. [`Declarations`] runs whichever applies and feeds the engine.

pub mod file;
pub mod settings;
pub mod status;

pub use file::{
    Environment, from_config_file, process_env, secret_env_name, secrets_from, secrets_from_env,
};
pub use settings::{Observed, watch_settings};
pub use status::StatusWriter;

use crate::Delivery;
use falconer_model::crd::{Consumer, ConsumerStatus};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where a consumer was declared; names must be unique across all origins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// The hub's configuration file.
    ConfigFile,
    /// A cluster-scoped `Setting` object, by name.
    Setting(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ConfigFile => f.write_str("the configuration file"),
            Origin::Setting(name) => write!(f, "Setting {name}"),
        }
    }
}

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The keys of a consumer's `secretRef`, resolved (Kubernetes Secret data in a cluster;
/// environment variables for the config file, see `secrets_from_env`).
pub type Secrets = BTreeMap<String, SecretValue>;

/// One consumer as delivery should run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub consumer: Consumer,
    pub origin: Origin,
    pub secrets: Secrets,
}

/// A consumer's delivery as reported to the API and written into its Setting's status.
pub type ConsumerReport = ConsumerStatus;

/// Checks a list of consumers the way the API server's schema rules check a Setting: unique
/// names, and each type with its own settings section and no other. The error names the
/// entry.
pub fn validate(consumers: &[falconer_model::crd::Consumer], key: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, c) in consumers.iter().enumerate() {
        let at = format!("{key}[{i}]");
        if c.name.is_empty() || c.name.len() > 63 {
            return Err(format!("{at}.name: must be 1 to 63 characters"));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("{at}.name: `{}` is used twice", c.name));
        }
        for (sink, present) in c.sections() {
            let section = sink.as_str();
            let needed = sink == c.sink && c.needs_section();
            if needed && !present {
                return Err(format!(
                    "{at}: type {} needs a `{section}` section",
                    sink.as_str()
                ));
            }
            if present && sink != c.sink {
                return Err(format!("{at}: a `{section}` section needs type {section}"));
            }
        }
        if let Some(url) = c.configured_url().filter(|u| !u.is_empty()) {
            let field = format!("{at}.{}.url", c.sink.as_str());
            let parsed =
                reqwest::Url::parse(url).map_err(|e| format!("{field}: not a URL ({e})"))?;
            crate::sinks::http::check_endpoint(&parsed, c)
                .map_err(|why| format!("{field}: {why}"))?;
        }
        crate::notify::check(c).map_err(|(field, why)| format!("{at}.{field}: {why}"))?;
        c.filter.validate(&format!("{at}.filter"))?;
    }
    Ok(())
}

/// Where the engine's consumers come from while the hub runs: the configuration file alone,
/// or (in a cluster) Settings merged with it, with their delivery state written back into
/// the Settings every `status_every`.
pub struct Declarations {
    /// Every consumer to run; the engine follows it.
    pub desired: watch::Receiver<Vec<Desired>>,
    /// What the Setting watcher saw (in a cluster).
    pub observed: Option<watch::Receiver<Observed>>,
    /// Keeps the file's declarations alive (dropping it stops the engine).
    file: Option<watch::Sender<Vec<Desired>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Declarations {
    /// Starts declaring `config` (the file's consumers, their secrets from `env`), and the
    /// Settings of `cluster` when given (consumers' Secrets in its namespace). Must be called inside the Tokio runtime.
    pub fn start(
        config: &[Consumer],
        env: &Environment,
        cluster: Option<&crate::Home>,
        status_every: Duration,
        delivery: Delivery,
    ) -> Declarations {
        let Some(cluster) = cluster else {
            let (file, desired) = watch::channel(from_config_file(config, env));
            return Declarations {
                desired,
                observed: None,
                file: Some(file),
                tasks: Vec::new(),
            };
        };
        let watch = watch_settings(cluster.client.clone(), &cluster.namespace, config.to_vec());
        let observed = watch.observed.clone();
        let mut writer = StatusWriter::new(cluster.client.clone());
        let status = tokio::spawn(async move {
            let mut tick = tokio::time::interval(status_every);
            loop {
                tick.tick().await;
                let observed = observed.borrow().clone();
                delivery.set_left_out(observed.problems.clone());
                match delivery.reports().await {
                    Ok(reports) => {
                        if let Err(e) = writer.write(&observed, &reports).await {
                            tracing::warn!(error = %e, "Cannot write Setting status");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot read consumer state"),
                }
            }
        });
        Declarations {
            desired: watch.desired,
            observed: Some(watch.observed),
            file: None,
            tasks: vec![watch.task, status],
        }
    }

    /// Replaces the consumers declared by the configuration file, as the file read again
    /// would; `false` when consumers come from Settings (the cluster declares them).
    pub fn declare(&self, consumers: Vec<Desired>) -> bool {
        match &self.file {
            Some(file) => file.send(consumers).is_ok(),
            None => false,
        }
    }

    /// Stops declaring: the engine stops every consumer once `desired` closes.
    pub fn stop(self) {
        drop(self.file);
        for task in self.tasks {
            task.abort();
        }
    }
}
