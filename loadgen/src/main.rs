//! `falconer-loadgen`: posts realistic Falco alerts to a hub and reports events/s and latency
//! percentiles; also dumps the same alerts for database baselines, serves the HTTP baseline and
//! the OpenSearch-compatible test server of `falconer-testkit` (the delivery benchmark's sink).

mod alerts;
mod noop;
mod run;

use clap::{Parser, Subcommand};
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "falconer-loadgen",
    about = "Load generator for Falconer's ingest API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post alerts and report throughput and latency.
    Run {
        #[arg(long, default_value = "http://127.0.0.1:8080/ingest")]
        url: hyper::Uri,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Events per request (1 = one alert per request, as Falco sends).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Seconds to run (default 10 unless --count is given).
        #[arg(long)]
        duration: Option<f64>,
        /// Events to send, then stop.
        #[arg(long)]
        count: Option<u64>,
        /// Offered load in events per second (open loop); default: as fast as answered.
        #[arg(long)]
        rate: Option<f64>,
        /// Bearer token for the ingest API.
        #[arg(long)]
        token: Option<String>,
        #[arg(long)]
        gzip: bool,
        /// Send NDJSON instead of a JSON array for batches.
        #[arg(long)]
        ndjson: bool,
        /// Alerts are a function of (seed, index): same seed, same alerts.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write alerts as CSV (id, time, body) for `COPY … FROM STDIN (FORMAT csv)`.
    Dump {
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Serve the HTTP baseline: 202 for any POST whose body is JSON, nothing stored.
    NoopServer {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
    /// Serve the OpenSearch-compatible test server (the delivery benchmark's sink).
    OpensearchServer {
        #[arg(long, default_value = "127.0.0.1:9200")]
        listen: std::net::SocketAddr,
        /// Print the server's counters as JSON and exit once this many documents are written.
        #[arg(long)]
        expect: Option<u64>,
        /// Keep document sources (for `_search`); off, only ids and versions are kept.
        #[arg(long)]
        keep_sources: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            url,
            connections,
            batch,
            duration,
            count,
            rate,
            token,
            gzip,
            ndjson,
            seed,
            json,
        } => {
            if connections == 0 || batch == 0 || rate.is_some_and(|r| r <= 0.0) {
                eprintln!("falconer-loadgen: --connections, --batch and --rate must be positive");
                return ExitCode::from(2);
            }
            let plan = run::Plan {
                url,
                connections,
                batch,
                duration: match (duration, count) {
                    (Some(d), _) => Some(Duration::from_secs_f64(d)),
                    (None, Some(_)) => None,
                    (None, None) => Some(Duration::from_secs(10)),
                },
                count,
                rate,
                token,
                gzip,
                ndjson,
                seed: seed.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64)
                }),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("falconer-loadgen: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run::run(plan)) {
                Ok(report) if json => {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    println!(
                        "{:.0} events/s accepted ({} of {} events in {:.1} s, {} requests)\n\
                         statuses {:?}, connection errors {}\n\
                         latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                        r.events_per_second,
                        r.events_accepted,
                        r.events_sent,
                        r.seconds,
                        r.requests,
                        r.statuses,
                        r.errors,
                        r.latency_ms.p50,
                        r.latency_ms.p90,
                        r.latency_ms.p99,
                        r.latency_ms.max
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("falconer-loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dump { count, seed } => {
            let alerts = alerts::Alerts::new(seed);
            let mut out = BufWriter::new(std::io::stdout().lock());
            for n in 0..count {
                let body = alerts.alert(n).replace('"', "\"\"");
                let line = format!(
                    "{:08x}-0000-7000-8000-{:012x},{},\"{body}\"\n",
                    seed as u32,
                    n,
                    alerts.time(n)
                );
                if out.write_all(line.as_bytes()).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            if out.flush().is_err() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::OpensearchServer {
            listen,
            expect,
            keep_sources,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("falconer-loadgen: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve_opensearch(listen, expect, keep_sources)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("falconer-loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::NoopServer { listen } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("falconer-loadgen: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(noop::serve(listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("falconer-loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Serves until killed, or until `expect` documents are written: then prints the counters.
async fn serve_opensearch(
    listen: std::net::SocketAddr,
    expect: Option<u64>,
    keep_sources: bool,
) -> std::io::Result<()> {
    use falconer_testkit::opensearch::{OpenSearchServer, Options};
    let server = OpenSearchServer::bind(
        listen,
        Options {
            keep_sources,
            ..Options::default()
        },
    )?;
    eprintln!("OpenSearch test server on {}", server.url());
    match expect {
        None => std::future::pending::<()>().await,
        Some(n) => {
            while server.stats().writes < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!(
                "{}",
                serde_json::to_string(&server.stats()).unwrap_or_default()
            );
            server.stop().await;
        }
    }
    Ok(())
}
