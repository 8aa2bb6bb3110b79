//! The recorder: the bounded channel between the request path and the storage writer, and the
//! writer thread that batches records into transactions.
//!
//! The request path only calls [`Recorder::record`], a `try_send` that never waits: when the
//! channel is full the record is dropped, counted ([`Recorder::dropped`]) and logged. The writer
//! (one OS thread; redb calls block) commits a batch when it holds [`MAX_BATCH`] records or
//! [`FLUSH_INTERVAL`] after the batch's first record (polling the channel every
//! [`POLL_INTERVAL`] meanwhile, so senders never pay for waking it), applies the default tag and cached host
//! names, deletes expired raw records every [`RETENTION_INTERVAL`], and flushes on shutdown.
//!
//! Crash-loss window: a process crash (or SIGKILL) loses the records still in the channel and the
//! batch being collected: at most [`FLUSH_INTERVAL`] of traffic plus one commit's duration
//! (bounded by [`CHANNEL_CAPACITY`] records). A graceful shutdown ([`Recorder::shutdown`]) loses
//! nothing that was recorded before it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::record::{UsageRecord, UsageSettings};
use super::tags::TrustedProxy;
use crate::store::UsageSink;

/// Records the channel holds before the request path starts dropping them (~10 s at 1,000
/// requests/s; each slot is one boxed record).
pub const CHANNEL_CAPACITY: usize = 10_000;

/// Most records per transaction. One durable commit costs a few hundred µs to ms (fsync), so
/// batching is what lets the writer sustain thousands of records per second.
pub const MAX_BATCH: usize = 1_000;

/// Longest a record waits in a partial batch before it is committed.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How often a writer that is collecting a batch looks for more records (at most
/// [`CHANNEL_CAPACITY`] records arrive per interval before the channel is full: 1M records/s).
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often expired raw records are deleted (also once at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Host names remembered per IP (reverse DNS); beyond this the cache is cleared.
const DNS_CACHE_MAX: usize = 10_000;

enum Msg {
    Record(Box<UsageRecord>),
    /// Commit what is pending, then answer.
    Flush(SyncSender<()>),
    /// Commit what is pending and stop.
    Shutdown,
}

/// Handle to the usage pipeline, shared by every request (clone the `Arc`).
pub struct Recorder {
    tx: Option<SyncSender<Msg>>,
    /// The writer's store, kept for the readiness probe ([`Recorder::check`]).
    sink: Option<Arc<dyn UsageSink>>,
    /// Settings in effect; the writer takes a copy when `settings_version` changes.
    settings: Arc<Mutex<UsageSettings>>,
    settings_version: Arc<AtomicU64>,
    tracking: AtomicBool,
    dropped: AtomicU64,
    trusted_proxies: Vec<TrustedProxy>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("running", &self.tx.is_some())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Recorder {
    /// A recorder that records nothing (no database): usage is only logged.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Recorder {
            tx: None,
            sink: None,
            settings: Arc::new(Mutex::new(UsageSettings::default())),
            settings_version: Arc::new(AtomicU64::new(0)),
            tracking: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            trusted_proxies: Vec::new(),
            writer: Mutex::new(None),
        })
    }

    /// Start the writer thread over `sink` with `settings` in effect; `trusted_proxies` decide
    /// whose `X-Forwarded-For` is believed.
    ///
    /// Errors: the thread cannot be spawned.
    pub fn start(
        sink: Arc<dyn UsageSink>,
        settings: UsageSettings,
        trusted_proxies: Vec<TrustedProxy>,
    ) -> std::io::Result<Arc<Self>> {
        Self::start_with_capacity(sink, settings, trusted_proxies, CHANNEL_CAPACITY)
    }

    /// [`Recorder::start`] with a chosen channel capacity (tests, benchmarks).
    ///
    /// Errors: the thread cannot be spawned.
    pub fn start_with_capacity(
        sink: Arc<dyn UsageSink>,
        settings: UsageSettings,
        trusted_proxies: Vec<TrustedProxy>,
        capacity: usize,
    ) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let tracking = settings.tracking;
        let shared = Arc::new(Mutex::new(settings.clone()));
        let version = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            sink: Arc::clone(&sink),
            settings,
            shared: Arc::clone(&shared),
            version: Arc::clone(&version),
            seen_version: 0,
            batch: Vec::new(),
            dns: Arc::new(Mutex::new(HashMap::new())),
            last_retention: None,
        };
        let handle = std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(Recorder {
            tx: Some(tx),
            sink: Some(sink),
            settings: shared,
            settings_version: version,
            tracking: AtomicBool::new(tracking),
            dropped: AtomicU64::new(0),
            trusted_proxies,
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Whether requests are being recorded (a writer runs and the tracking setting is on).
    pub fn is_recording(&self) -> bool {
        self.tx.is_some() && self.tracking.load(Ordering::Relaxed)
    }

    /// Readiness of the usage pipeline (`GET /health/ready`): the writer thread runs and the store
    /// answers a read. A disabled recorder (no database) is ready. Blocking (one read
    /// transaction): call from `spawn_blocking`.
    ///
    /// Errors: a message saying what is wrong (writer stopped, store unreadable).
    pub fn check(&self) -> Result<(), String> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        let stopped = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished);
        if stopped {
            return Err("the usage writer has stopped".into());
        }
        sink.check().map_err(|e| e.to_string())
    }

    /// The trusted proxies (for `X-Forwarded-For`).
    pub fn trusted_proxies(&self) -> &[TrustedProxy] {
        &self.trusted_proxies
    }

    /// Records dropped because the channel was full (or the writer had stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hand a record to the writer without waiting. A full channel drops it (counted, logged).
    pub fn record(&self, r: UsageRecord) {
        let Some(tx) = &self.tx else { return };
        if !self.tracking.load(Ordering::Relaxed) {
            return;
        }
        match tx.try_send(Msg::Record(Box::new(r))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One warning per 1,000 drops keeps an overload from flooding the log.
                if n % 1000 == 1 {
                    tracing::warn!(dropped_total = n, "usage channel full: record dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Apply new settings (never blocks on the writer): tracking on/off at once, the rest from
    /// the writer's next batch; a changed retention is applied at once.
    pub fn apply_settings(&self, settings: UsageSettings) {
        self.tracking.store(settings.tracking, Ordering::Relaxed);
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
        self.settings_version.fetch_add(1, Ordering::Release);
    }

    /// The settings in effect.
    pub fn settings(&self) -> UsageSettings {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Commit everything recorded so far and wait for it (blocking; call from a blocking
    /// context or `spawn_blocking`).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// Flush and stop the writer, waiting for it (blocking). Records sent afterwards are dropped.
    pub fn shutdown(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Shutdown);
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("usage writer thread panicked");
        }
    }
}

struct Writer {
    sink: Arc<dyn UsageSink>,
    /// The writer's copy of the settings.
    settings: UsageSettings,
    shared: Arc<Mutex<UsageSettings>>,
    version: Arc<AtomicU64>,
    seen_version: u64,
    batch: Vec<UsageRecord>,
    /// IP -> host name (`None`: looked up, no name). Filled by lookup threads.
    dns: Arc<Mutex<HashMap<IpAddr, Option<String>>>>,
    last_retention: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        self.retention();
        loop {
            // Idle: block until the first message (or the next retention run).
            let wake = self
                .last_retention
                .map_or_else(Instant::now, |t| t + RETENTION_INTERVAL);
            match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(msg) => {
                    if self.control(msg) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit();
                    return;
                }
            }
            // Collecting: poll every POLL_INTERVAL rather than being woken per record (a
            // wake-up costs sender and writer a futex call each, tens of µs on a VM), until the
            // batch is full or FLUSH_INTERVAL has passed since its first record.
            let deadline = Instant::now() + FLUSH_INTERVAL;
            while !self.batch.is_empty() {
                while self.batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(msg) => {
                            if self.control(msg) {
                                return;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.commit();
                            return;
                        }
                    }
                }
                let now = Instant::now();
                if self.batch.len() >= MAX_BATCH || now >= deadline {
                    self.commit();
                } else if !self.batch.is_empty() {
                    std::thread::sleep(POLL_INTERVAL.min(deadline - now));
                }
            }
            self.refresh_settings();
            if self
                .last_retention
                .is_none_or(|t| t.elapsed() >= RETENTION_INTERVAL)
            {
                self.retention();
            }
        }
    }

    /// Handle a control message; `true` = stop.
    fn control(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Record(r) => {
                self.batch.push(*r);
                false
            }
            Msg::Flush(ack) => {
                self.commit();
                let _ = ack.send(());
                false
            }
            Msg::Shutdown => {
                self.commit();
                true
            }
        }
    }

    /// Take the shared settings if they changed; a new retention period applies at once.
    fn refresh_settings(&mut self) {
        let v = self.version.load(Ordering::Acquire);
        if v == self.seen_version {
            return;
        }
        self.seen_version = v;
        let s = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let retention_changed = s.retention_days != self.settings.retention_days;
        self.settings = s;
        if retention_changed {
            self.retention();
        }
    }

    // Never inlined: benches/callgrind.sh reports the writer's commits by this function's name.
    #[inline(never)]
    fn commit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.refresh_settings();
        for r in &mut self.batch {
            if r.tags.is_empty() {
                r.tags.push(self.settings.default_tag.clone());
            }
        }
        if self.settings.dns {
            self.fill_host_names();
        }
        if let Err(e) = self.sink.write_batch(&self.batch) {
            tracing::error!(error = %e, records = self.batch.len(), "usage batch lost");
        }
        self.batch.clear();
    }

    /// Host names from the cache; unknown IPs are looked up on a separate thread, so a later
    /// record from the same client gets the name (never the request path, never this thread).
    fn fill_host_names(&mut self) {
        let mut cache = self.dns.lock().unwrap_or_else(PoisonError::into_inner);
        let mut missing = Vec::new();
        for r in &mut self.batch {
            let Some(ip) = r
                .client_ip
                .as_deref()
                .and_then(|s| s.parse::<IpAddr>().ok())
            else {
                continue;
            };
            match cache.get(&ip) {
                Some(name) => r.client_host.clone_from(name),
                None => missing.push(ip),
            }
        }
        if cache.len() > DNS_CACHE_MAX {
            cache.clear();
        }
        missing.sort_unstable();
        missing.dedup();
        for ip in &missing {
            // Placeholder: one lookup per IP even while it runs.
            cache.insert(*ip, None);
        }
        drop(cache);
        if !missing.is_empty() {
            let dns = Arc::clone(&self.dns);
            let _ = std::thread::Builder::new()
                .name("usage-dns".into())
                .spawn(move || {
                    for ip in missing {
                        let name = super::dns::reverse_lookup(ip);
                        dns.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(ip, name);
                    }
                });
        }
    }

    fn retention(&mut self) {
        self.last_retention = Some(Instant::now());
        if self.settings.retention_days == 0 {
            return;
        }
        let cutoff = now_ms() - i64::from(self.settings.retention_days) * super::query::DAY_MS;
        match self.sink.delete_before(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "usage retention: old raw records deleted"),
            Err(e) => tracing::warn!(error = %e, "usage retention failed"),
        }
    }
}

/// Now, Unix ms.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
