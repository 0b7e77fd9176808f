//! The `falconer` binary as a library: command line, configuration, and running each
//! subcommand. `main` only parses arguments and reports the outcome.

pub mod app;
pub mod cli;
pub mod config;

use app::{Application, Mode};
use cli::{Cli, Command, CrdgenArgs, ManagerArgs, ManagerCommand, ServeArgs};
use config::{Config, LogFormat};
use falconer_analyst::Analyst;
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
    let load = || Config::load(&cli.common.config, &cli.common.overrides());
    match cli
        .command
        .unwrap_or(Command::Standalone(ServeArgs::default()))
    {
        Command::Standalone(args) => serve(load().map_err(Error::Config)?, &args, Mode::Standalone),
        Command::Hub(args) => serve(load().map_err(Error::Config)?, &args, Mode::Hub),
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
                limits: config.manager.clone(),
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
                falconer_manager::render::render(&resources, &config.cluster, &config.manager)?
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

fn serve(config: Config, args: &ServeArgs, mode: Mode) -> Result<(), Error> {
    if args.print_config {
        println!("{}", config.printable());
        return Ok(());
    }
    init_logging(&config);
    runtime()?.block_on(async {
        tracing::info!(mode = mode.name(), "Starting");
        // Returns after SIGINT/SIGTERM, once in-flight requests are answered.
        Application::build(&config, mode)
            .await?
            .run_until_stopped()
            .await
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
