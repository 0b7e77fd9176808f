//! The `falconer` binary as a library: command line, configuration, and running each
//! subcommand. `main` only parses arguments and reports the outcome.

pub mod cli;
pub mod config;

use cli::{Cli, Command, ServeArgs};
use config::{Config, LogFormat};
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
        Command::Manager => Err(Error::NotYet("manager")),
        Command::Analyst => Err(Error::NotYet("analyst")),
        Command::Crdgen => Err(Error::NotYet("crdgen")),
    }
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
        let hub = Hub::start(config.hub(), store.clone(), registry)?;
        // Returns after SIGINT/SIGTERM, once in-flight requests are answered.
        hub.server.await?;
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
