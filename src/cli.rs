//! Command line: `falconer [standalone|hub|manager|analyst|migrate|crdgen]`.

use crate::config::Overrides;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "falconer",
    version,
    about = "Security hub for Kubernetes: stores Falco and scanner events durably, routes them, \
             scores risk",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to run; `standalone` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// YAML configuration file; repeat it to layer files, a later one overriding an earlier
    /// one key by key (the chart keeps the `auth` section in a Secret this way).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database (overrides store.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without it the embedded SQLite store is used
    /// (overrides store.database_url).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log level or tracing filter (overrides log.level).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

impl CommonArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            log_level: self.log_level.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hub and analyst in one process on the embedded store (the default).
    Standalone(ServeArgs),
    /// Ingest and query API for a cluster deployment (usually on PostgreSQL).
    Hub(ServeArgs),
    /// Reconciles Policy and Setting resources into agents on the cluster.
    Manager(ManagerArgs),
    /// Computes risk scores every analyst.interval_secs (serves /healthz, /readyz and
    /// /metrics on --listen).
    Analyst(ServeArgs),
    /// Applies database migrations and exits.
    Migrate,
    /// Prints the CustomResourceDefinitions, or writes one file per CRD with --out.
    Crdgen(CrdgenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ManagerArgs {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<ManagerCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ManagerCommand {
    /// Runs the controllers (leader-elected; serves /healthz and /metrics on --listen).
    Run {
        /// Namespace of the leader Lease and of Setting Secrets (default: the pod's).
        #[arg(long, value_name = "NAMESPACE")]
        namespace: Option<String>,
    },
    /// Prints, as YAML, the objects the manager would apply for these Policies and Settings.
    Render {
        /// YAML file with Policies and/or Settings; repeatable.
        #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Writes the images running in the selected namespaces (a step of the Trivy job).
    ListImages {
        /// Label selector of the namespaces to scan (default: all).
        #[arg(long, value_name = "SELECTOR")]
        namespace_selector: Option<String>,
        /// File to write, one image per line (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CrdgenArgs {
    /// Write one file per CRD into DIR (e.g. charts/falconer/crds).
    #[arg(long, value_name = "DIR", conflicts_with = "stdout")]
    pub out: Option<PathBuf>,
    /// Print every CRD to stdout as one YAML stream (what happens without --out).
    #[arg(long)]
    pub stdout: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
}
