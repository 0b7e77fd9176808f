//! The `falconer` binary as a library: command line, configuration, and running each
//! subcommand. `main` only parses arguments and reports the outcome.

pub mod cli;
pub mod config;

use cli::{Cli, Command, CrdgenArgs, ManagerArgs, ManagerCommand, ServeArgs};
use config::{Config, LogFormat};
use falconer_delivery::Delivery;
use falconer_hub::Hub;
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
    #[error(
        "`falconer {0}` is not available yet in this version; see the project's issues for its status"
    )]
    NotYet(&'static str),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::NotYet(_) => 2,
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
        Command::Analyst => Err(Error::NotYet("analyst")),
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
        let delivery = Delivery::new(store.clone(), config.delivery.clone(), &mut registry);
        let desired = falconer_delivery::consumers::from_config_file(&config.consumers);
        let (desired, following) = tokio::sync::watch::channel(desired);
        let engine = tokio::spawn(delivery.clone().run(following));
        let hub = Hub::start(config.hub(), store.clone(), delivery, registry)?;
        // Returns after SIGINT/SIGTERM, once in-flight requests are answered.
        hub.server.await?;
        // Dropping the declarations stops every consumer; what they had not confirmed yet
        // is delivered again after the restart.
        drop(desired);
        let _ = engine.await;
        store.close().await;
        tracing::info!("Stopped");
        Ok(())
    })
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
