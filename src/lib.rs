//! The `falconer` binary as a library: command line, configuration, and running each
//! subcommand. `main` only parses arguments and reports the outcome.

pub mod cli;
pub mod config;

use cli::{Cli, Command, CrdgenArgs, ManagerArgs, ManagerCommand, ServeArgs};
use config::{Config, LogFormat, Toggle};
use falconer_analyst::Analyst;
use falconer_delivery::Delivery;
use falconer_hub::Hub;
use falconer_hub::retention::Retention;
use falconer_store::Store;
use prometheus_client::registry::Registry;

/// Why `falconer` stopped; the message is printed, the code returned to the shell.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] falconer_store::StoreError),
    #[error("{0}")]
    Hub(#[from] falconer_hub::HubError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("manager: {0}")]
    Manager(#[from] falconer_manager::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

pub fn run(cli: Cli) -> Result<(), Error> {
    let load = || Config::load(cli.common.config.as_deref(), &cli.common.overrides());
    match cli
        .command
        .unwrap_or(Command::Standalone(ServeArgs::default()))
    {
        Command::Standalone(args) => serve(load().map_err(Error::Config)?, &args, "standalone"),
        Command::Hub(args) => serve(load().map_err(Error::Config)?, &args, "hub"),
        Command::Migrate => {
            let config = load().map_err(Error::Config)?;
            init_logging(&config);
            runtime()?.block_on(async {
                let database = Store::migrate(&config.store).await?;
                tracing::info!(database, "Migrations applied");
                Ok(())
            })
        }
        Command::Manager(args) => manager(load, args),
        Command::Analyst(args) => analyst(load().map_err(Error::Config)?, &args),
        Command::Crdgen(args) => crdgen(&args),
    }
}

fn manager(load: impl Fn() -> Result<Config, String>, args: ManagerArgs) -> Result<(), Error> {
    match args
        .command
        .unwrap_or(ManagerCommand::Run { namespace: None })
    {
        ManagerCommand::Run { namespace } => {
            let config = load().map_err(Error::Config)?;
            init_logging(&config);
            let options = falconer_manager::Options {
                listen: config.server.listen,
                default_cluster: config.cluster.clone(),
                namespace,
                ..falconer_manager::Options::default()
            };
            runtime()?.block_on(falconer_manager::run(options))?;
            Ok(())
        }
        ManagerCommand::Render { files } => {
            // Same fallback cluster name as `manager run` with the same configuration.
            let config = load().map_err(Error::Config)?;
            let resources = falconer_manager::render::read_files(&files)?;
            print!(
                "{}",
                falconer_manager::render::render(&resources, &config.cluster)?
            );
            Ok(())
        }
        ManagerCommand::ListImages {
            namespace_selector,
            out,
        } => {
            let listed = runtime()?.block_on(falconer_manager::images::run(
                namespace_selector.as_deref(),
                out.as_deref(),
            ))?;
            eprintln!("falconer: {listed} image(s) listed");
            Ok(())
        }
    }
}

fn crdgen(args: &CrdgenArgs) -> Result<(), Error> {
    match &args.out {
        Some(dir) => {
            for path in falconer_manager::crdgen::write(dir)? {
                eprintln!("falconer: wrote {}", path.display());
            }
        }
        None => print!("{}", falconer_manager::crdgen::stream()?),
    }
    Ok(())
}

fn serve(config: Config, args: &ServeArgs, mode: &'static str) -> Result<(), Error> {
    if args.print_config {
        println!("{}", config.printable());
        return Ok(());
    }
    init_logging(&config);
    runtime()?.block_on(async {
        let mut registry = Registry::default();
        let store = Store::open(&config.store, &mut registry).await?;
        tracing::info!(mode, store = store.database(), cluster = %config.cluster, "Starting");
        let kube = kubernetes_client(&config, mode).await?;
        let delivery = Delivery::with_kube(
            store.clone(),
            config.delivery.clone(),
            &mut registry,
            kube.as_ref().map(|k| k.client.clone()),
        );
        let consumers = Consumers::start(&config, kube, delivery.clone());
        let engine = delivery.clone().spawn(consumers.desired.clone());
        let retention = tokio::spawn(
            Retention::new(
                store.clone(),
                delivery.clone(),
                &config.store,
                consumers.observed.clone(),
                &mut registry,
            )
            .run(),
        );
        let hub = Hub::start(config.hub(), store.clone(), delivery, registry)?;
        let analyst = config
            .analyst
            .enabled
            .then(|| tokio::spawn(hub.analyst.clone().run()));
        // Returns after SIGINT/SIGTERM, once in-flight requests are answered.
        hub.server.await?;
        if let Some(analyst) = analyst {
            analyst.abort();
        }
        retention.abort();
        // Dropping the declarations stops every consumer; what they had not confirmed yet
        // is delivered again after the restart.
        consumers.stop();
        let _ = engine.await;
        store.close().await;
        tracing::info!("Stopped");
        Ok(())
    })
}

/// `falconer analyst`: computes risk scores periodically on its own, serving `/healthz`,
/// `/readyz` and `/metrics` on `server.listen`, until SIGINT or SIGTERM.
fn analyst(config: Config, args: &ServeArgs) -> Result<(), Error> {
    if args.print_config {
        println!("{}", config.printable());
        return Ok(());
    }
    init_logging(&config);
    runtime()?.block_on(async {
        let mut registry = Registry::default();
        let store = Store::open(&config.store, &mut registry).await?;
        tracing::info!(store = store.database(), "Starting the analyst");
        let analyst = Analyst::new(store.clone(), config.analyst.clone(), &mut registry);
        let (server, addr) =
            falconer_analyst::server::start(config.server.listen, store.clone(), registry)?;
        tracing::info!(%addr, "Listening");
        let handle = server.handle();
        let computing = tokio::spawn(analyst.run());
        // actix-web stops the server on SIGINT/SIGTERM.
        server.await?;
        computing.abort();
        handle.stop(true).await;
        store.close().await;
        tracing::info!("Stopped");
        Ok(())
    })
}

/// The cluster the hub runs in, when it uses it.
struct Kube {
    client: kube::Client,
    namespace: String,
}

/// Connects to the cluster when Settings are to be watched: `kubernetes.settings: on`, or
/// `auto` in the `hub` subcommand inside a pod.
async fn kubernetes_client(config: &Config, mode: &str) -> Result<Option<Kube>, Error> {
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let wanted = match config.kubernetes.settings {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => mode == "hub" && in_pod,
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
    Ok(Some(Kube { client, namespace }))
}

/// Where the engine's consumers come from: the configuration file alone, or (in a cluster)
/// Settings merged with it, with their delivery state written back into the Settings.
struct Consumers {
    desired: tokio::sync::watch::Receiver<Vec<falconer_delivery::consumers::Desired>>,
    /// What the Setting watcher saw (in a cluster).
    observed: Option<tokio::sync::watch::Receiver<falconer_delivery::settings::Observed>>,
    /// Keeps the file's declarations alive (dropping it stops the engine).
    file: Option<tokio::sync::watch::Sender<Vec<falconer_delivery::consumers::Desired>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Consumers {
    fn start(config: &Config, kube: Option<Kube>, delivery: Delivery) -> Consumers {
        let Some(kube) = kube else {
            let file = falconer_delivery::consumers::from_config_file(&config.consumers);
            let (file, desired) = tokio::sync::watch::channel(file);
            return Consumers {
                desired,
                observed: None,
                file: Some(file),
                tasks: Vec::new(),
            };
        };
        let watch = falconer_delivery::settings::watch_settings(
            kube.client.clone(),
            &kube.namespace,
            config.consumers.clone(),
        );
        let observed = watch.observed.clone();
        let mut writer = falconer_delivery::settings::StatusWriter::new(kube.client);
        let every = std::time::Duration::from_secs(config.kubernetes.status_interval_secs);
        let status = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
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
        Consumers {
            desired: watch.desired,
            observed: Some(watch.observed),
            file: None,
            tasks: vec![watch.task, status],
        }
    }

    fn stop(self) {
        drop(self.file);
        for task in self.tasks {
            task.abort();
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("falconer-store")
        .build()?)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
