//! Per-second rate limits and persisted daily request ceilings.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::persist::{read_optional, write_atomic};
use crate::{AuthConfig, AuthError, Role, lock};

/// File name of the daily request counters inside the data directory.
pub const QUOTA_FILE: &str = "quota-usage.json";

const FILE_VERSION: u32 = 1;

/// Per-second limiter and daily ceilings, checked and consumed together.
pub(crate) struct Quotas {
    rate: RateLimiter,
    daily: Arc<DailyCounters>,
    daily_limit_public: u64,
    daily_limit_partner: u64,
}

impl Quotas {
    /// Loads the daily counters of the UTC day of `now` from `data_dir`.
    pub(crate) fn open(
        data_dir: &Path,
        config: &AuthConfig,
        now: DateTime<Utc>,
    ) -> Result<Self, AuthError> {
        Ok(Self {
            rate: RateLimiter::new(config.requests_per_second, config.burst),
            daily: Arc::new(DailyCounters::open(
                &data_dir.join(QUOTA_FILE),
                config.quota_flush_every,
                now,
            )?),
            daily_limit_public: config.daily_limit_public,
            daily_limit_partner: config.daily_limit_partner,
        })
    }

    /// Counts one request of `client_id` if both the daily ceiling and the
    /// per-second rate allow it. A rejected request consumes neither.
    pub(crate) fn admit(
        &self,
        client_id: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let limit = match role {
            Role::Public => self.daily_limit_public,
            Role::Partner => self.daily_limit_partner,
        };
        self.daily
            .consume(client_id, limit, now, || self.rate.acquire(client_id, now))
    }

    pub(crate) fn daily_usage(&self, client_id: &str, now: DateTime<Utc>) -> u64 {
        self.daily.usage(client_id, now)
    }

    pub(crate) fn flush(&self) -> Result<(), AuthError> {
        self.daily.flush()
    }

    pub(crate) fn spawn_flusher(&self, interval: Duration) -> QuotaFlusher {
        QuotaFlusher::spawn(Arc::clone(&self.daily), interval)
    }
}

/// Generic cell rate algorithm (GCRA) limiter per client.
///
/// Each client has a theoretical arrival time (TAT). A request at `now` is
/// accepted if `now >= TAT - tolerance`, after which TAT advances by one
/// emission interval. With `burst = 1` the tolerance is zero, so requests
/// must be at least one interval apart.
struct RateLimiter {
    /// Sustained rate and burst as configured, for error messages.
    requests_per_second: f64,
    burst: u32,
    /// Time between requests at the sustained rate.
    interval: TimeDelta,
    /// `interval * (burst - 1)`: how far ahead of schedule a client may be.
    tolerance: TimeDelta,
    arrivals: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl RateLimiter {
    fn new(requests_per_second: f64, burst: u32) -> Self {
        let interval = TimeDelta::nanoseconds((1e9 / requests_per_second).round() as i64);
        Self {
            requests_per_second,
            burst,
            interval,
            tolerance: interval * (burst.saturating_sub(1) as i32),
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(&self, client_id: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
        let mut arrivals = lock(&self.arrivals);
        let arrival = arrivals.get(client_id).copied().unwrap_or(now).max(now);
        let earliest = arrival - self.tolerance;
        if now < earliest {
            return Err(AuthError::RateLimited {
                client_id: client_id.to_owned(),
                requests_per_second: self.requests_per_second,
                burst: self.burst,
                retry_after: (earliest - now).to_std().unwrap_or_default(),
            });
        }
        arrivals.insert(client_id.to_owned(), arrival + self.interval);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct QuotaFile {
    version: u32,
    /// UTC day that the counts belong to.
    day: NaiveDate,
    counts: BTreeMap<String, u64>,
}

struct DailyState {
    day: NaiveDate,
    counts: HashMap<String, u64>,
    /// Changes since the last snapshot taken for writing.
    unflushed: u64,
    /// Number of the last snapshot taken.
    sequence: u64,
}

struct Snapshot {
    sequence: u64,
    changes: u64,
    bytes: Vec<u8>,
}

/// Request counts per client for the current UTC day, persisted with write-behind.
///
/// The counts are written to `quota-usage.json` when `flush_every` requests
/// have been counted since the last write, when [`DailyCounters::flush`] is
/// called (by the background flusher or at shutdown), and when the value is
/// dropped. A crash therefore loses at most `flush_every - 1` counted
/// requests, and fewer when the flusher runs, so a restart can let a client
/// exceed its ceiling by that many requests at most.
///
/// NOTE: replicas that share a data directory each keep their own counts
/// and overwrite each other's file, so they must be given separate data
/// directories (sharing only the token key file) and the effective daily
/// ceiling is then per replica.
pub(crate) struct DailyCounters {
    path: PathBuf,
    flush_every: u64,
    state: Mutex<DailyState>,
    /// Sequence number of the last snapshot written; also serializes writes.
    written: Mutex<u64>,
}

impl DailyCounters {
    fn open(path: &Path, flush_every: u64, now: DateTime<Utc>) -> Result<Self, AuthError> {
        let today = now.date_naive();
        let mut counts = HashMap::new();

        if let Some(bytes) = read_optional(path)? {
            let corrupt = |reason: String| AuthError::CorruptFile {
                path: path.to_path_buf(),
                reason,
            };
            let file: QuotaFile =
                serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
            if file.version != FILE_VERSION {
                return Err(corrupt(format!(
                    "unsupported version {}, expected {FILE_VERSION}",
                    file.version
                )));
            }
            if file.day == today {
                counts = file.counts.into_iter().collect();
            }
        }

        tracing::debug!(path = %path.display(), clients = counts.len(), %today, "loaded daily request counts");
        Ok(Self {
            path: path.to_path_buf(),
            flush_every,
            state: Mutex::new(DailyState {
                day: today,
                counts,
                unflushed: 0,
                sequence: 0,
            }),
            written: Mutex::new(0),
        })
    }

    /// Runs `admit` and counts the request if the client is below `limit` for the day of `now`.
    ///
    /// The check, `admit` and the increment happen under one lock, so
    /// concurrent requests can never push a count past `limit`.
    fn consume(
        &self,
        client_id: &str,
        limit: u64,
        now: DateTime<Utc>,
        admit: impl FnOnce() -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        let snapshot = {
            let mut state = lock(&self.state);
            state.roll_over(now.date_naive());

            let used = state.counts.get(client_id).copied().unwrap_or(0);
            if used >= limit {
                let resets_at = next_midnight(state.day);
                return Err(AuthError::DailyLimitExceeded {
                    client_id: client_id.to_owned(),
                    limit,
                    resets_at,
                    retry_after: (resets_at - now).to_std().unwrap_or_default(),
                });
            }
            admit()?;

            state.counts.insert(client_id.to_owned(), used + 1);
            state.unflushed += 1;
            (state.unflushed >= self.flush_every).then(|| state.snapshot())
        };

        if let Some(snapshot) = snapshot
            && let Err(error) = self.write(snapshot)
        {
            // The request stays admitted because its count is kept in memory
            // and written by the next flush.
            tracing::error!(%error, "failed to write daily request counts");
        }
        Ok(())
    }

    fn usage(&self, client_id: &str, now: DateTime<Utc>) -> u64 {
        let state = lock(&self.state);
        if state.day != now.date_naive() {
            return 0;
        }
        state.counts.get(client_id).copied().unwrap_or(0)
    }

    /// Writes the counts if they changed since the last write.
    pub(crate) fn flush(&self) -> Result<(), AuthError> {
        let snapshot = {
            let mut state = lock(&self.state);
            if state.unflushed == 0 {
                return Ok(());
            }
            state.snapshot()
        };
        self.write(snapshot)
    }

    fn write(&self, snapshot: Snapshot) -> Result<(), AuthError> {
        let mut written = lock(&self.written);
        if *written >= snapshot.sequence {
            // A newer snapshot is already on disk.
            return Ok(());
        }
        if let Err(error) = write_atomic(&self.path, &snapshot.bytes) {
            lock(&self.state).unflushed += snapshot.changes;
            return Err(error);
        }
        *written = snapshot.sequence;
        Ok(())
    }
}

impl Drop for DailyCounters {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::error!(%error, "failed to write daily request counts at shutdown");
        }
    }
}

impl DailyState {
    /// Starts a new day's counts when `today` differs from the stored day.
    fn roll_over(&mut self, today: NaiveDate) {
        if self.day != today {
            self.day = today;
            self.counts.clear();
            self.unflushed += 1;
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let file = QuotaFile {
            version: FILE_VERSION,
            day: self.day,
            counts: self
                .counts
                .iter()
                .map(|(id, count)| (id.clone(), *count))
                .collect(),
        };
        self.sequence += 1;
        let changes = std::mem::take(&mut self.unflushed);
        Snapshot {
            sequence: self.sequence,
            changes,
            bytes: serde_json::to_vec(&file).expect("quota counts serialize to JSON"),
        }
    }
}

fn next_midnight(day: NaiveDate) -> DateTime<Utc> {
    day.succ_opt()
        .and_then(|next| next.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Background thread that writes changed daily counters at a fixed interval.
///
/// Dropping it or calling [`QuotaFlusher::stop`] stops the thread after a final write.
#[derive(Debug)]
pub struct QuotaFlusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl QuotaFlusher {
    fn spawn(daily: Arc<DailyCounters>, interval: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("quota-flusher".to_owned())
            .spawn(move || run_flusher(&daily, interval, &stopped))
            .expect("failed to spawn the quota flusher thread");
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "started quota flusher"
        );
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the thread after a final write and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("quota flusher thread panicked");
        }
    }
}

impl Drop for QuotaFlusher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run_flusher(daily: &DailyCounters, interval: Duration, stopped: &mpsc::Receiver<()>) {
    let mut failures: u64 = 0;
    loop {
        let stopping = !matches!(
            stopped.recv_timeout(interval),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        match daily.flush() {
            Ok(()) if failures > 0 => {
                tracing::info!(
                    failures,
                    "daily request counts written again after failures"
                );
                failures = 0;
            }
            Ok(()) => {}
            Err(error) => {
                failures += 1;
                // Log the first failure and then every 60th, so a full disk does not flood the log.
                if failures % 60 == 1 {
                    tracing::error!(%error, failures, "failed to write daily request counts");
                }
            }
        }
        if stopping {
            tracing::info!("stopped quota flusher");
            return;
        }
    }
}
