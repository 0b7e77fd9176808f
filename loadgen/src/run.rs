//! The load runner: N connections posting alerts, closed-loop (as fast as answers come) or
//! open-loop at a fixed offered rate, with latency measured from each request's intended
//! start so queueing behind a slow server is counted (no coordinated omission).

use crate::alerts::Alerts;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct Plan {
    pub url: Uri,
    pub connections: usize,
    /// Events per request; 1 is what Falco sends.
    pub batch: usize,
    pub duration: Option<Duration>,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Offered events per second (open loop); none = as fast as the server answers.
    pub rate: Option<f64>,
    pub token: Option<String>,
    pub gzip: bool,
    pub ndjson: bool,
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub seconds: f64,
    pub requests: u64,
    pub events_sent: u64,
    /// Events in requests answered 202.
    pub events_accepted: u64,
    pub events_per_second: f64,
    /// HTTP status → requests.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection or protocol failures (no HTTP status).
    pub errors: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--url must be http://host:port/path, got {0}")]
    Url(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(String, hyper::Error),
}

struct Shared {
    plan: Plan,
    alerts: Alerts,
    next_request: AtomicU64,
    started: Instant,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    events_sent: u64,
    events_accepted: u64,
}

pub async fn run(plan: Plan) -> Result<LoadReport, LoadError> {
    let authority = plan
        .url
        .authority()
        .map(|a| a.to_string())
        .filter(|_| plan.url.scheme_str() == Some("http"))
        .ok_or_else(|| LoadError::Url(plan.url.to_string()))?;
    // Fail fast, before timing starts, when nothing listens.
    TcpStream::connect(&authority)
        .await
        .map_err(|e| LoadError::Connect(authority.clone(), e))?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        deadline: plan.duration.map(|d| started + d),
        alerts: Alerts::new(plan.seed),
        next_request: AtomicU64::new(0),
        started,
        plan,
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..shared.plan.connections {
        workers.spawn(worker(shared.clone(), authority.clone()));
    }
    let mut total = Tally::default();
    for tally in workers.join_all().await {
        let tally = tally?;
        total.latencies_us.extend(tally.latencies_us);
        for (status, n) in tally.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        total.errors += tally.errors;
        total.events_sent += tally.events_sent;
        total.events_accepted += tally.events_accepted;
    }
    let seconds = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let pick = |q: f64| {
        let l = &total.latencies_us;
        if l.is_empty() {
            return 0.0;
        }
        let rank = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len());
        f64::from(l[rank - 1]) / 1_000.0
    };
    Ok(LoadReport {
        seconds,
        requests: total.statuses.values().sum::<u64>() + total.errors,
        events_sent: total.events_sent,
        events_accepted: total.events_accepted,
        events_per_second: total.events_accepted as f64 / seconds,
        statuses: total.statuses,
        errors: total.errors,
        latency_ms: Latency {
            p50: pick(0.50),
            p90: pick(0.90),
            p99: pick(0.99),
            max: pick(1.0),
        },
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(authority: &str) -> Result<Sender, LoadError> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| LoadError::Connect(authority.to_string(), e))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| LoadError::Handshake(authority.to_string(), e))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn worker(shared: Arc<Shared>, authority: String) -> Result<Tally, LoadError> {
    let plan = &shared.plan;
    let mut tally = Tally::default();
    let mut sender = connect(&authority).await?;
    let path = plan
        .url
        .path_and_query()
        .map_or("/ingest".to_string(), |p| p.to_string());
    let batch = plan.batch as u64;
    let interval = plan.rate.map(|r| Duration::from_secs_f64(batch as f64 / r));
    loop {
        let k = shared.next_request.fetch_add(1, Ordering::Relaxed);
        let first = k * batch;
        if plan.count.is_some_and(|c| first >= c) {
            break;
        }
        let intended = match interval {
            Some(every) => shared.started + every.mul_f64(k as f64),
            None => Instant::now(),
        };
        if shared.deadline.is_some_and(|d| intended >= d) {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let last = plan.count.map_or(first + batch, |c| (first + batch).min(c));
        let body = body(&shared.alerts, first..last, plan);
        let mut request = Request::post(path.as_str())
            .header("host", authority.as_str())
            .header(
                "content-type",
                if plan.ndjson {
                    "application/x-ndjson"
                } else {
                    "application/json"
                },
            );
        if plan.gzip {
            request = request.header("content-encoding", "gzip");
        }
        if let Some(token) = &plan.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let Ok(request) = request.body(Full::new(Bytes::from(body))) else {
            tally.errors += 1;
            continue;
        };
        tally.events_sent += last - first;
        let outcome = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        }
        .await;
        let micros = intended.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match outcome {
            Ok(status) => {
                *tally.statuses.entry(status).or_default() += 1;
                if status == 202 {
                    tally.events_accepted += last - first;
                }
                tally.latencies_us.push(micros);
            }
            Err(_) => {
                tally.errors += 1;
                sender = connect(&authority).await?;
            }
        }
    }
    Ok(tally)
}

fn body(alerts: &Alerts, range: std::ops::Range<u64>, plan: &Plan) -> Vec<u8> {
    let mut text = String::new();
    if plan.ndjson {
        for n in range {
            text.push_str(&alerts.alert(n));
            text.push('\n');
        }
    } else if plan.batch == 1 {
        text = alerts.alert(range.start);
    } else {
        text.push('[');
        for (i, n) in range.enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&alerts.alert(n));
        }
        text.push(']');
    }
    if !plan.gzip {
        return text.into_bytes();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(text.as_bytes());
    gz.finish().unwrap_or_default()
}
