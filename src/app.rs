//! The composition root: the one place where `falconer standalone`, `falconer hub` and the
//! API tests assemble the application from a [`Config`] — store, delivery engine with its
//! declared consumers (the configuration file, or Settings in a cluster, with their status
//! writer), retention, the analyst and the HTTP server, in that order.

use crate::Error;
use crate::config::{Config, Toggle};
use actix_web::dev::ServerHandle;
use falconer_analyst::Analyst;
use falconer_delivery::Delivery;
use falconer_delivery::declared::{Declarations, Desired, Environment, process_env};
use falconer_hub::Hub;
use falconer_hub::retention::Retention;
use falconer_hub::suppressions::DeclaredSuppressions;
use falconer_store::Store;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Which subcommand runs the application; `kubernetes.settings: auto` watches Settings only
/// in `hub` inside a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Hub,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Hub => "hub",
        }
    }
}

/// The cluster the hub runs in, when it takes its consumers from Settings (and Phoenix acts
/// on it).
pub use falconer_delivery::Home as Kube;

/// A running application: the HTTP server serves, delivery and retention run.
pub struct Application {
    /// The address the server is bound to (the real port when `server.listen` asked for 0).
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `server.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub store: Store,
    pub delivery: Delivery,
    /// Serves `POST /api/v1/risk/recompute`, and runs periodically when `analyst.enabled`.
    pub analyst: Analyst,
    handle: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    consumers: Declarations,
    engine: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects to the cluster when the config asks for Settings, then [`Self::assemble`]
    /// with the process's environment.
    pub async fn build(config: &Config, mode: Mode) -> Result<Application, Error> {
        let kube = kubernetes_client(config, mode).await?;
        Self::assemble(config, &process_env, kube).await
    }

    /// Builds and starts everything: consumers from `config.consumers` (their secrets from
    /// `env`, `FALCONER_SECRET_<SECRET>_<KEY>`) and, through `kube` when given, from Settings.
    /// Consumers declared here exist before the server accepts its first request.
    pub async fn assemble(
        config: &Config,
        env: &Environment,
        kube: Option<Kube>,
    ) -> Result<Application, Error> {
        let mut registry = Registry::default();
        let store =
            Store::open_journaled(&config.store, &config.ingest.journal, &mut registry).await?;
        tracing::info!(store = store.database(), cluster = %config.cluster, "Starting");
        let mut delivery_config = config.delivery.clone();
        delivery_config.dashboard_url = config.ui.external_url.clone();
        delivery_config.file_dir.get_or_insert_with(|| {
            std::path::absolute(&config.store.data_dir)
                .unwrap_or_else(|_| config.store.data_dir.clone())
        });
        let delivery =
            Delivery::with_kube(store.clone(), delivery_config, &mut registry, kube.clone());
        let consumers = Declarations::start(
            &config.consumers,
            env,
            kube.as_ref(),
            Duration::from_secs(config.kubernetes.status_interval_secs),
            delivery.clone(),
        );
        let engine = delivery.clone().spawn(consumers.desired.clone());
        let mut tasks = vec![tokio::spawn(
            Retention::new(
                store.clone(),
                delivery.clone(),
                &config.store,
                consumers.observed.clone(),
                &mut registry,
            )
            .run(),
        )];
        if let Some(settings) = consumers.observed.clone() {
            tasks.push(tokio::spawn(
                DeclaredSuppressions::new(store.clone(), settings, &mut registry).run(),
            ));
        }
        let analyst = Analyst::new(store.clone(), config.analyst.clone(), &mut registry);
        if config.analyst.enabled {
            tasks.push(tokio::spawn(analyst.clone().run()));
        }
        let hub = match Hub::start(
            config.hub(),
            store.clone(),
            delivery.clone(),
            analyst.clone(),
            registry,
        ) {
            Ok(hub) => hub,
            Err(e) => {
                // Nothing half-started is left running when the server cannot start.
                for task in &tasks {
                    task.abort();
                }
                consumers.stop();
                let _ = engine.await;
                store.close().await;
                return Err(e.into());
            }
        };
        let handle = hub.server.handle();
        Ok(Application {
            addr: hub.addr,
            metrics_addr: hub.metrics_addr,
            store,
            delivery,
            analyst,
            handle,
            server: tokio::spawn(hub.server),
            consumers,
            engine,
            tasks,
        })
    }

    /// Replaces the consumers declared by the configuration file, as an edited file read
    /// again would; `false` when consumers come from Settings (the cluster declares them).
    pub fn declare(&self, consumers: Vec<Desired>) -> bool {
        self.consumers.declare(consumers)
    }

    /// Runs until SIGINT/SIGTERM, then stops as [`Self::stop`] does after the server.
    pub async fn run_until_stopped(mut self) -> Result<(), Error> {
        let served = (&mut self.server).await;
        self.shut_down().await;
        match served {
            Ok(served) => Ok(served?),
            Err(e) => Err(Error::Io(std::io::Error::other(e))),
        }
    }

    /// Stops serving (answering what is in flight), then delivery, retention and the
    /// analyst, and closes the store.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        let _ = (&mut self.server).await;
        self.shut_down().await;
    }

    async fn shut_down(self) {
        for task in self.tasks {
            task.abort();
        }
        // Dropping the declarations stops every consumer; what they had not confirmed yet
        // is delivered again after the restart.
        self.consumers.stop();
        let _ = self.engine.await;
        self.store.close().await;
        tracing::info!("Stopped");
    }
}

/// Connects to the cluster when Settings are to be watched: `kubernetes.settings: on`, or
/// `auto` in the `hub` subcommand inside a pod.
async fn kubernetes_client(config: &Config, mode: Mode) -> Result<Option<Kube>, Error> {
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let wanted = match config.kubernetes.settings {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => mode == Mode::Hub && in_pod,
    };
    if !wanted {
        return Ok(None);
    }
    falconer_manager::run::install_crypto_provider();
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::Config(format!(
            "kubernetes.settings: cannot reach the cluster: {e}"
        ))
    })?;
    let namespace = match &config.kubernetes.namespace {
        Some(namespace) => namespace.clone(),
        None => std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .map(|n| n.trim().to_string())
            .or_else(|_| std::env::var("POD_NAMESPACE"))
            .map_err(|_| {
                Error::Config(
                    "kubernetes.namespace: not set and not running in a pod; name the namespace \
                     of the consumers' Secrets"
                        .into(),
                )
            })?,
    };
    tracing::info!(%namespace, "Taking consumers from Setting objects");
    Ok(Some(Kube {
        client,
        cluster: config.cluster.clone(),
        namespace,
    }))
}
