//! The ingest journal in front of PostgreSQL: accepted events are appended to local segment
//! files and fsynced as a group (every request waiting at that moment shares one fsync),
//! and the 202 goes out after the fsync; a loader moves them into the database in large
//! batches through the ordinary writer, in journal order, and deletes segments fully loaded.
//!
//! A record is one request's events: `[length u32 LE][CRC-32 u32 LE][JSON array of events]`.
//! Every event's id, dedup key and `received_at` are fixed before it is journaled, so
//! loading a record twice (a crash between the commit and the `loaded` mark) stores it once:
//! the database drops the second copy by its dedup key. On start the segments are read
//! again; a torn or corrupt record and everything after it in its segment is cut (it was
//! never acknowledged: the fsync that would have acknowledged it did not complete).

use crate::error::StoreError;
use crate::event::{Event, Stored};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// `ingest.journal`: where and how much the hub journals before PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Journal accepted events before PostgreSQL (the embedded SQLite store is already a
    /// local durable log and never journals).
    pub enabled: bool,
    /// Directory of the segment files. Unset: `<store.data_dir>/journal`. Each hub replica
    /// needs its own.
    pub dir: Option<PathBuf>,
    /// Most bytes of segments not yet loaded; past it ingest answers 507 with Retry-After.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size; a segment is deleted when
    /// everything in it is loaded.
    pub segment_bytes: u64,
    /// How long a stopping hub waits for the loader to load what is left; the rest is
    /// loaded at the next start from the same directory.
    pub drain_timeout_secs: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: true,
            dir: None,
            max_bytes: 2 * 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            drain_timeout_secs: 10,
        }
    }
}

impl JournalConfig {
    /// Checks the bounds serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < 64 * 1024 {
            return Err(format!(
                "ingest.journal.segment_bytes: {} is below the minimum of 65536",
                self.segment_bytes
            ));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(format!(
                "ingest.journal.max_bytes: {} must be at least twice \
                 ingest.journal.segment_bytes ({})",
                self.max_bytes, self.segment_bytes
            ));
        }
        Ok(())
    }
}

/// Bytes of a record's header: length and checksum.
const HEADER: usize = 8;
/// The name of the file holding how far the loader has committed.
const LOADED: &str = "loaded";
/// Dedup keys remembered after their event was loaded, so a retry soon after still gets
/// the first id.
const RECENT_KEYS: usize = 100_000;
/// Events the loader hands the writer per round.
const LOAD_EVENTS: usize = 10_000;

/// A place in the journal: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Position {
    segment: u64,
    offset: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

/// The record of `events`.
fn encode(events: &[Event], out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    serde_json::to_writer(&mut *out, events)
        .map_err(|e| StoreError::Database(format!("journal: encoding events: {e}")))?;
    let body = &out[start + HEADER..];
    let length = u32::try_from(body.len())
        .map_err(|_| StoreError::Database("journal: record over 4 GiB".into()))?;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The next record in `bytes`: its events and length, `Ok(None)` when `bytes` holds no whole
/// record, `Err` when the record is corrupt (checksum or JSON).
fn decode(bytes: &[u8]) -> Result<Option<(Vec<Event>, usize)>, String> {
    if bytes.len() < HEADER {
        return Ok(None);
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let Some(body) = bytes.get(HEADER..HEADER + length) else {
        return Ok(None);
    };
    Ok(Some((events_of(body, crc)?, HEADER + length)))
}

/// The events of a record's `body`, `Err` when it does not match its checksum or is not
/// readable.
fn events_of(body: &[u8], crc: u32) -> Result<Vec<Event>, String> {
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("unreadable record: {e}"))
}

/// Reads `segment` whole and cuts it after its last whole, intact record. Answers the
/// length kept and how many bytes were cut.
fn repair(path: &Path) -> std::io::Result<(u64, u64)> {
    let bytes = fs::read(path)?;
    let mut at = 0;
    while let Ok(Some((_, length))) = decode(&bytes[at..]) {
        at += length;
    }
    let cut = (bytes.len() - at) as u64;
    if cut > 0 {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(at as u64)?;
        file.sync_all()?;
    }
    Ok((at as u64, cut))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The journal's metrics.
#[derive(Clone)]
struct Metrics {
    bytes: Gauge,
    oldest: Gauge<f64, AtomicU64>,
    loaded: Counter,
    load_errors: Counter,
    appends: Counter,
    fsyncs: Counter,
    refused: Counter,
    torn: Counter,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            bytes: Gauge::default(),
            oldest: Gauge::default(),
            loaded: Counter::default(),
            load_errors: Counter::default(),
            appends: Counter::default(),
            fsyncs: Counter::default(),
            refused: Counter::default(),
            torn: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("falconer_journal");
        r.register(
            "bytes",
            "Bytes of journal segments not yet deleted",
            metrics.bytes.clone(),
        );
        r.register(
            "oldest_unloaded_seconds",
            "Age of the oldest journaled event not yet in the database",
            metrics.oldest.clone(),
        );
        r.register(
            "loaded_events",
            "Events moved from the journal into the database",
            metrics.loaded.clone(),
        );
        r.register(
            "load_errors",
            "Loads of journaled events the database failed (retried)",
            metrics.load_errors.clone(),
        );
        r.register("appends", "Requests journaled", metrics.appends.clone());
        r.register(
            "fsyncs",
            "Group fsyncs of the journal (requests share them)",
            metrics.fsyncs.clone(),
        );
        r.register(
            "refused_events",
            "Events refused because the journal was full or could not be written",
            metrics.refused.clone(),
        );
        r.register(
            "torn_records",
            "Torn or corrupt records cut from the journal at start",
            metrics.torn.clone(),
        );
        metrics
    }
}

/// What the appender and the loader share.
struct Shared {
    /// Bytes of segments on disk.
    bytes: u64,
    /// Each group write not yet loaded: where it ends, when it was written, and the dedup
    /// keys it journaled.
    writes: VecDeque<(Position, Instant, Vec<Uuid>)>,
    /// Dedup key → id of journaled events (unloaded, and the last [`RECENT_KEYS`] loaded).
    keys: HashMap<Uuid, Uuid>,
    recent: VecDeque<Uuid>,
    /// Set when a request found no room; cleared when the loader frees a segment.
    full: bool,
}

impl Shared {
    fn oldest_age(&self) -> f64 {
        self.writes
            .front()
            .map_or(0.0, |(_, at, _)| at.elapsed().as_secs_f64())
    }
}

struct Append {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<Stored>, StoreError>>,
}

/// The journal's handle, held by the store.
pub(crate) struct Journal {
    drain: Duration,
    /// The loader, stopped by `close` once the drain is over.
    loader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    appends: mpsc::UnboundedSender<Append>,
    shared: Arc<Mutex<Shared>>,
    max_bytes: u64,
    /// Set when the loader has loaded everything after `close`.
    drained: watch::Receiver<bool>,
    closing: watch::Sender<bool>,
}

/// How the loader writes records into the database: the events of each record, in
/// order; one answer per record.
pub(crate) type Load = Box<
    dyn Fn(
            Vec<Vec<Event>>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Vec<Result<(), StoreError>>> + Send>,
        > + Send
        + Sync,
>;

impl Journal {
    /// Opens the journal in `dir`: repairs the segments a crash left, and starts the
    /// appender and the loader (which writes through `load`).
    pub fn open(
        dir: &Path,
        config: &JournalConfig,
        load: Load,
        registry: &mut Registry,
    ) -> Result<Journal, StoreError> {
        let io = |what: &str, e: std::io::Error| {
            StoreError::Unavailable(format!("journal {}: {what}: {e}", dir.display()))
        };
        fs::create_dir_all(dir).map_err(|e| io("creating the directory", e))?;
        let metrics = Metrics::new(registry);
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io("reading the directory", e))? {
            let entry = entry.map_err(|e| io("reading the directory", e))?;
            let name = entry.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                segments.push(n);
            }
        }
        segments.sort_unstable();
        let loaded = read_loaded(dir);
        let mut bytes = 0;
        let mut start = Position::default();
        let mut torn = 0u64;
        for &segment in &segments {
            let path = segment_path(dir, segment);
            if loaded.is_some_and(|l| segment < l.segment) {
                // Fully loaded before a crash could delete it.
                fs::remove_file(&path).map_err(|e| io("removing a loaded segment", e))?;
                continue;
            }
            let (kept, cut) = repair(&path).map_err(|e| io("repairing a segment", e))?;
            if cut > 0 {
                torn += 1;
                tracing::warn!(segment = %path.display(), cut_bytes = cut,
                    "Cut a torn record from the journal: it was never acknowledged");
            }
            bytes += kept;
            if start == Position::default() {
                start = Position { segment, offset: 0 };
            }
        }
        if let Some(l) = loaded
            && segments.contains(&l.segment)
        {
            start = l;
        }
        metrics.torn.inc_by(torn);
        let next = segments.last().map_or(1, |s| s + 1);
        if segments.is_empty() {
            // A new journal: the first segment the appender opens is where loading starts.
            start = Position {
                segment: next,
                offset: 0,
            };
        }
        let replay = segments
            .iter()
            .filter(|&&s| s >= start.segment)
            .map(|&s| (s, fs::metadata(segment_path(dir, s)).map_or(0, |m| m.len())))
            .collect::<Vec<_>>();
        if !replay.is_empty() {
            tracing::info!(
                segments = replay.len(),
                bytes,
                "Loading the journal left by the last run"
            );
        }
        let shared = Arc::new(Mutex::new(Shared {
            bytes,
            writes: replay
                .iter()
                .map(|&(segment, offset)| {
                    (Position { segment, offset }, Instant::now(), Vec::new())
                })
                .collect(),
            keys: HashMap::new(),
            recent: VecDeque::new(),
            full: false,
        }));
        metrics.bytes.set(bytes as i64);
        let (appends, queue) = mpsc::unbounded_channel();
        let written = Position {
            segment: next,
            offset: 0,
        };
        let (durable, durable_rx) = watch::channel(written);
        let (closing, closing_rx) = watch::channel(false);
        let (drained_tx, drained) = watch::channel(false);
        let appender = Appender {
            dir: dir.to_path_buf(),
            segment_bytes: config.segment_bytes,
            max_bytes: config.max_bytes,
            shared: shared.clone(),
            metrics: metrics.clone(),
            durable,
            file: None,
            at: written,
        };
        tokio::spawn(appender.run(queue));
        let loader = Loader {
            dir: dir.to_path_buf(),
            shared: shared.clone(),
            metrics,
            load,
            at: start,
        };
        let loader = tokio::spawn(loader.run(durable_rx, closing_rx, drained_tx));
        Ok(Journal {
            drain: Duration::from_secs(config.drain_timeout_secs),
            loader: Mutex::new(Some(loader)),
            appends,
            shared,
            max_bytes: config.max_bytes,
            drained,
            closing,
        })
    }

    /// Journals `events` (ids and dedup keys already fixed) and answers after the fsync,
    /// with the first id of a dedup key the journal still knows.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Stored>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.appends
            .send(Append { events, reply })
            .map_err(|_| StoreError::Unavailable("the journal has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the journal has stopped".into()))?
    }

    /// Whether the journal has no room left: ingest refuses before reading a body.
    pub fn is_full(&self) -> bool {
        self.shared
            .lock()
            .map_or(true, |s| s.full || s.bytes >= self.max_bytes)
    }

    /// Waits up to `drain_timeout_secs` for the loader to load what is left. Answers
    /// whether everything was loaded (what is not stays on disk for the next start).
    pub async fn close(&self) -> bool {
        let _ = self.closing.send(true);
        let mut drained = self.drained.clone();
        let done = tokio::time::timeout(self.drain, drained.wait_for(|d| *d))
            .await
            .is_ok_and(|r| r.is_ok());
        // A round cut short here committed or not; either way the next start loads it again
        // and the database keeps one copy.
        if let Some(loader) = self.loader.lock().ok().and_then(|mut l| l.take()) {
            loader.abort();
        }
        done
    }

    /// How long [`Journal::close`] waits.
    pub fn drain(&self) -> Duration {
        self.drain
    }
}

fn read_loaded(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(LOADED)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// Writes how far the loader has committed. Not fsynced: losing it only makes the next
/// start load some records again, which the database drops by their dedup keys.
fn write_loaded(dir: &Path, at: Position) -> std::io::Result<()> {
    let tmp = dir.join("loaded.tmp");
    fs::write(&tmp, format!("{} {}\n", at.segment, at.offset))?;
    fs::rename(tmp, dir.join(LOADED))
}

struct Appender {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    shared: Arc<Mutex<Shared>>,
    metrics: Metrics,
    durable: watch::Sender<Position>,
    file: Option<File>,
    /// Where the next record goes.
    at: Position,
}

impl Appender {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Append>) {
        while let Some(first) = queue.recv().await {
            let mut group = vec![first];
            while let Ok(next) = queue.try_recv() {
                group.push(next);
            }
            // File I/O blocks: it runs off the runtime's workers, one group at a time.
            let (back, answers) = match tokio::task::spawn_blocking(move || {
                let answers = self.write(&mut group);
                (self, group, answers)
            })
            .await
            {
                Ok((back, group, answers)) => (back, group.into_iter().zip(answers)),
                Err(e) => {
                    tracing::error!(error = %e, "The journal's appender failed");
                    return;
                }
            };
            self = back;
            for (append, answer) in answers {
                let _ = append.reply.send(answer);
            }
        }
    }

    /// Writes the group's records and fsyncs them once; one answer per append.
    fn write(&mut self, group: &mut [Append]) -> Vec<Result<Vec<Stored>, StoreError>> {
        let mut answers: Vec<Option<Result<Vec<Stored>, StoreError>>> =
            (0..group.len()).map(|_| None).collect();
        let mut buffer = Vec::new();
        let mut taken = Vec::new();
        let mut keys: Vec<Vec<Uuid>> = Vec::new();
        {
            let Ok(mut shared) = self.shared.lock() else {
                return refuse_all(group.len(), "the journal's state is poisoned");
            };
            let mut room = self.max_bytes.saturating_sub(shared.bytes);
            for (i, append) in group.iter_mut().enumerate() {
                // Within the group and against what the journal knows, a repeated dedup
                // key is answered with the first id.
                let mut stored = Vec::with_capacity(append.events.len());
                let mut fresh = Vec::new();
                let mut kept = Vec::new();
                for event in append.events.drain(..) {
                    match event.dedup_key.and_then(|k| shared.keys.get(&k).copied()) {
                        Some(id) => stored.push(Stored {
                            id,
                            duplicate: true,
                        }),
                        None => {
                            if let Some(key) = event.dedup_key {
                                shared.keys.insert(key, event.id);
                                fresh.push(key);
                            }
                            stored.push(Stored {
                                id: event.id,
                                duplicate: false,
                            });
                            kept.push(event);
                        }
                    }
                }
                if kept.is_empty() {
                    answers[i] = Some(Ok(stored));
                    continue;
                }
                let before = buffer.len();
                if let Err(e) = encode(&kept, &mut buffer) {
                    forget(&mut shared, &fresh);
                    answers[i] = Some(Err(e));
                    continue;
                }
                let size = (buffer.len() - before) as u64;
                if size > room {
                    buffer.truncate(before);
                    shared.full = true;
                    forget(&mut shared, &fresh);
                    self.metrics.refused.inc_by(kept.len() as u64);
                    answers[i] = Some(Err(StoreError::JournalFull(format!(
                        "the ingest journal is full ({} of {} bytes wait for the database)",
                        shared.bytes, self.max_bytes
                    ))));
                    continue;
                }
                room -= size;
                keys.push(fresh);
                taken.push((i, stored));
            }
        }
        if buffer.is_empty() {
            return answers.into_iter().map(unanswered).collect();
        }
        match self.append_durably(&buffer) {
            Ok(end) => {
                self.metrics.appends.inc_by(taken.len() as u64);
                self.metrics.fsyncs.inc();
                if let Ok(mut shared) = self.shared.lock() {
                    shared.bytes += buffer.len() as u64;
                    shared.writes.push_back((
                        end,
                        Instant::now(),
                        keys.into_iter().flatten().collect(),
                    ));
                    self.metrics.bytes.set(shared.bytes as i64);
                }
                let _ = self.durable.send(end);
                for (i, stored) in taken {
                    answers[i] = Some(Ok(stored));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(),
                    "Writing the ingest journal failed; the requests are refused");
                if let Ok(mut shared) = self.shared.lock() {
                    for fresh in &keys {
                        forget(&mut shared, fresh);
                    }
                }
                for (i, stored) in taken {
                    self.metrics.refused.inc_by(stored.len() as u64);
                    answers[i] = Some(Err(StoreError::JournalFull(format!(
                        "the ingest journal could not be written: {e}"
                    ))));
                }
            }
        }
        answers.into_iter().map(unanswered).collect()
    }

    /// Appends `bytes` to the current segment (a new one past `segment_bytes`) and fsyncs
    /// it; answers where the segment now ends. A failed write is cut off again, so a later
    /// record never follows a torn one.
    fn append_durably(&mut self, bytes: &[u8]) -> std::io::Result<Position> {
        if self.file.is_none() || self.at.offset >= self.segment_bytes {
            if self.file.is_some() {
                self.at = Position {
                    segment: self.at.segment + 1,
                    offset: 0,
                };
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, self.at.segment))?;
            sync_dir(&self.dir)?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("no segment open"));
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Cut what may have reached the file; if even that fails, the next write starts
            // a new segment and the torn tail is cut at the next start.
            if file
                .set_len(self.at.offset)
                .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
                .is_err()
            {
                self.file = None;
                self.at = Position {
                    segment: self.at.segment + 1,
                    offset: 0,
                };
            }
            return Err(e);
        }
        self.at.offset += bytes.len() as u64;
        Ok(self.at)
    }
}

/// `answers` when the journal cannot take any of them.
fn refuse_all(n: usize, why: &str) -> Vec<Result<Vec<Stored>, StoreError>> {
    (0..n)
        .map(|_| Err(StoreError::Unavailable(why.to_string())))
        .collect()
}

/// An answer the group left unset (none is: every append is answered above).
fn unanswered(answer: Option<Result<Vec<Stored>, StoreError>>) -> Result<Vec<Stored>, StoreError> {
    answer.unwrap_or_else(|| Err(StoreError::Unavailable("the journal lost a request".into())))
}

fn forget(shared: &mut Shared, keys: &[Uuid]) {
    for key in keys {
        shared.keys.remove(key);
    }
}

struct Loader {
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    metrics: Metrics,
    load: Load,
    /// Where the next record to load starts.
    at: Position,
}

impl Loader {
    async fn run(
        mut self,
        mut durable: watch::Receiver<Position>,
        mut closing: watch::Receiver<bool>,
        drained: watch::Sender<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let end = *durable.borrow_and_update();
            match self.step(end).await {
                Ok(true) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    self.metrics.load_errors.inc();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "Loading the ingest journal into the database failed; retrying");
                    self.gauge();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            // Everything durable is loaded.
            self.gauge();
            if *closing.borrow() {
                let _ = drained.send(true);
                return;
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() {
                    let _ = drained.send(true);
                    return;
                },
                _ = closing.changed() => {}
                _ = tick.tick() => {}
            }
        }
    }

    /// Keeps a record the database refused for good in `refused/`, beside the journal, and
    /// says so in the log: it is never deleted with its segment.
    fn set_aside(&self, record: &[Event], error: &StoreError) {
        self.metrics.load_errors.inc();
        let dir = self.dir.join("refused");
        let path = dir.join(format!("{}-{}.json", self.at.segment, uuid::Uuid::now_v7()));
        let saved = fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&path, serde_json::to_vec(record).unwrap_or_default()));
        match saved {
            Ok(()) => tracing::error!(%error, events = record.len(), file = %path.display(),
                "The database refused journaled events for good; they are kept in this file"),
            Err(e) => tracing::error!(%error, save_error = %e, events = record.len(),
                "The database refused journaled events for good and they could not be kept"),
        }
    }

    fn gauge(&self) {
        if let Ok(shared) = self.shared.lock() {
            self.metrics.oldest.set(shared.oldest_age());
            self.metrics.bytes.set(shared.bytes as i64);
        }
    }

    /// Loads the next records up to `end` (the appender's durable end); answers whether it
    /// loaded anything.
    async fn step(&mut self, end: Position) -> Result<bool, StoreError> {
        let dir = self.dir.clone();
        let at = self.at;
        let read = tokio::task::spawn_blocking(move || read_records(&dir, at, end))
            .await
            .map_err(|e| StoreError::Unavailable(format!("journal reader failed: {e}")))?
            .map_err(|e| StoreError::Unavailable(format!("reading the journal: {e}")))?;
        let Some((records, next)) = read else {
            return Ok(false);
        };
        let events: usize = records.iter().map(Vec::len).sum();
        if !records.is_empty() {
            let answers = (self.load)(records).await;
            // A passing failure loads the whole round again (what did commit is dropped by
            // its dedup key); a record the database refuses for good is set aside.
            if let Some(Err(e)) = answers
                .iter()
                .find(|a| a.as_ref().is_err_and(StoreError::is_retryable))
            {
                return Err(e.clone());
            }
            if answers.iter().any(Result::is_err) {
                // Rare: the round's records are read again rather than copied on every round.
                let (dir, at) = (self.dir.clone(), self.at);
                let again = tokio::task::spawn_blocking(move || read_records(&dir, at, end))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("journal reader failed: {e}")))?
                    .map_err(|e| StoreError::Unavailable(format!("reading the journal: {e}")))?;
                let records = again.map(|(records, _)| records).unwrap_or_default();
                for (record, answer) in records.iter().zip(&answers) {
                    if let Err(e) = answer {
                        self.set_aside(record, e);
                    }
                }
            }
        }
        self.metrics.loaded.inc_by(events as u64);
        let finished: Vec<u64> = (self.at.segment..next.segment).collect();
        self.at = next;
        if let Err(e) = write_loaded(&self.dir, next) {
            tracing::warn!(error = %e, "Could not record how far the journal is loaded");
        }
        let mut freed = 0;
        for segment in finished {
            let path = segment_path(&self.dir, segment);
            let size = fs::metadata(&path).map_or(0, |m| m.len());
            match fs::remove_file(&path) {
                Ok(()) => freed += size,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, segment = %path.display(),
                    "Could not delete a loaded journal segment"),
            }
        }
        if let Ok(mut shared) = self.shared.lock() {
            shared.bytes = shared.bytes.saturating_sub(freed);
            if freed > 0 {
                shared.full = false;
            }
            while shared.writes.front().is_some_and(|(p, _, _)| *p <= next) {
                if let Some((_, _, keys)) = shared.writes.pop_front() {
                    shared.recent.extend(keys);
                }
            }
            while shared.recent.len() > RECENT_KEYS {
                if let Some(old) = shared.recent.pop_front() {
                    shared.keys.remove(&old);
                }
            }
        }
        Ok(true)
    }
}

/// The whole records from `at` on, up to about [`LOAD_EVENTS`] events and never past `end`
/// in `end`'s segment, with where the next record starts; `None` when there is nothing to
/// load. A segment before `end`'s is read to its end, then the next one is started.
#[allow(clippy::type_complexity)]
fn read_records(
    dir: &Path,
    mut at: Position,
    end: Position,
) -> std::io::Result<Option<(Vec<Vec<Event>>, Position)>> {
    let mut records = Vec::new();
    let mut events = 0;
    while at < end && events < LOAD_EVENTS {
        let path = segment_path(dir, at.segment);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            // A segment that never got a record (a failed first write).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && at.segment < end.segment => {
                at = Position {
                    segment: at.segment + 1,
                    offset: 0,
                };
                continue;
            }
            Err(e) => return Err(e),
        };
        let limit = if at.segment == end.segment {
            end.offset
        } else {
            file.metadata()?.len()
        };
        file.seek(SeekFrom::Start(at.offset))?;
        // Record by record, so a round holds its own records only, never the rest of a
        // 64 MiB segment.
        let available = limit.saturating_sub(at.offset);
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(available));
        let mut used = 0u64;
        let mut torn = None;
        while events < LOAD_EVENTS && used < available {
            let left = available - used;
            let mut header = [0; HEADER];
            if left < HEADER as u64 {
                torn = Some("a partial record".to_string());
                break;
            }
            reader.read_exact(&mut header)?;
            let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if u64::from(length) > left - HEADER as u64 {
                torn = Some("a partial record".to_string());
                break;
            }
            let mut body = vec![0; length as usize];
            reader.read_exact(&mut body)?;
            match events_of(&body, crc) {
                Ok(record) => {
                    events += record.len();
                    records.push(record);
                    used += HEADER as u64 + u64::from(length);
                }
                Err(why) => {
                    torn = Some(why);
                    break;
                }
            }
        }
        let closed = at.segment < end.segment;
        if let Some(why) = torn {
            let place = format!("{} at byte {}", path.display(), at.offset + used);
            if !closed {
                return Err(std::io::Error::other(format!("{place}: {why}")));
            }
            // A closed segment ends in a write that failed and was never acknowledged.
            tracing::warn!(segment = %place, reason = %why,
                "Skipping the torn end of a closed journal segment: it was never acknowledged");
            used = available;
        }
        at.offset += used;
        if closed && at.offset >= limit {
            at = Position {
                segment: at.segment + 1,
                offset: 0,
            };
        } else {
            break;
        }
    }
    Ok(if records.is_empty() && at == end {
        None
    } else {
        Some((records, at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": Uuid::now_v7(),
            "dedup_key": Uuid::now_v7(),
            "time": "2026-05-04T10:11:12Z",
            "received_at": "2026-05-04T10:11:13Z",
            "source": "falco",
            "kind": "runtime_alert",
            "severity": "warning",
            "severity_raw": "Warning",
            "rule": format!("rule {n}"),
            "message": "m",
            "tags": [],
            "cluster": "prod",
            "fields": {"n": n},
            "raw": {"output": "x"},
        }))
        .unwrap()
    }

    fn records(n: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 0..n {
            encode(&[event(i), event(i + 100)], &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn a_record_round_trips_with_its_events_and_a_flipped_bit_is_caught() {
        let mut bytes = records(1);
        let (events, length) = decode(&bytes).unwrap().unwrap();
        assert_eq!(length, bytes.len());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].rule, "rule 100");
        assert_eq!(events[0].raw.as_ref().unwrap().get(), r#"{"output":"x"}"#);
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        assert_eq!(decode(&bytes).unwrap_err(), "checksum mismatch");
        assert!(
            decode(&bytes[..HEADER + 3]).unwrap().is_none(),
            "a partial record"
        );
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_whole_ones_before_it_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let whole = records(3);
        let mut torn = whole.clone();
        torn.extend_from_slice(&records(1)[..40]);
        fs::write(&path, &torn).unwrap();
        assert_eq!(repair(&path).unwrap(), (whole.len() as u64, 40));
        assert_eq!(fs::read(&path).unwrap(), whole);
        // A corrupt record cuts from there: nothing after it was acknowledged either.
        let mut corrupt = whole.clone();
        let second = records(1).len();
        corrupt[second + HEADER] ^= 0xff;
        fs::write(&path, &corrupt).unwrap();
        assert_eq!(repair(&path).unwrap().0, second as u64);
    }

    #[test]
    fn the_loader_reads_up_to_the_durable_end_and_skips_the_torn_end_of_a_closed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut closed = records(2);
        closed.extend_from_slice(b"\x10\x00\x00\x00garbage");
        fs::write(segment_path(dir.path(), 1), &closed).unwrap();
        let current = records(3);
        fs::write(segment_path(dir.path(), 2), &current).unwrap();
        let one = records(1).len() as u64;
        let end = Position {
            segment: 2,
            offset: 2 * one,
        };
        let (read, next) = read_records(dir.path(), Position::default_at(1), end)
            .unwrap()
            .unwrap();
        // Two records of the closed segment, two of the current one up to the durable end.
        assert_eq!(read.len(), 4);
        assert_eq!(next, end);
        assert!(read_records(dir.path(), end, end).unwrap().is_none());
    }

    impl Position {
        fn default_at(segment: u64) -> Position {
            Position { segment, offset: 0 }
        }
    }

    #[test]
    fn the_journal_config_names_the_key_of_a_bad_bound() {
        let small = JournalConfig {
            segment_bytes: 1024,
            ..JournalConfig::default()
        };
        assert!(
            small
                .validate()
                .unwrap_err()
                .starts_with("ingest.journal.segment_bytes")
        );
        let tight = JournalConfig {
            max_bytes: 64 * 1024 * 1024,
            ..JournalConfig::default()
        };
        assert!(
            tight
                .validate()
                .unwrap_err()
                .starts_with("ingest.journal.max_bytes")
        );
        assert!(JournalConfig::default().validate().is_ok());
    }
}
