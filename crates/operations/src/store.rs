//! The public store handle: create, upload, status, download, sweep, shutdown.

use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::coder::BatchCoder;
use crate::config::StoreConfig;
use crate::download::{Download, OutputLines};
use crate::error::{IoContext, OperationError};
use crate::fsutil;
use crate::inner::{DeadlineChange, Inner, OUTPUT_FILE, lock};
use crate::recovery::{self, RecoveryReport};
use crate::state::{OperationRecord, OperationState, OperationStatus, OutputMetadata};
use crate::upload::Upload;
use crate::worker;

/// Maximum length in bytes of a client id, topic or model id.
const MAX_NAME_BYTES: usize = 256;

/// Counts from one [`OperationStore::sweep`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub timed_out: usize,
    pub expired: usize,
    /// Operations whose deadline could not be applied; each is logged.
    pub errors: usize,
}

/// Durable store of asynchronous batch coding operations.
///
/// Dropping the store stops the workers at their next chunk boundary
/// without waiting; [`shutdown`](OperationStore::shutdown) also waits.
pub struct OperationStore {
    inner: Arc<Inner>,
    recovery: RecoveryReport,
    dispatcher: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl OperationStore {
    /// Opens (or creates) the store under `<data_dir>/operations` with the
    /// system clock. See [`open_with_clock`](Self::open_with_clock).
    pub fn open(
        data_dir: impl AsRef<Path>,
        config: StoreConfig,
        coder: Arc<dyn BatchCoder>,
    ) -> Result<Self, OperationError> {
        Self::open_with_clock(data_dir, config, coder, Arc::new(SystemClock))
    }

    /// Opens the store, recovers every operation on disk, and starts the
    /// dispatcher and, if `config.sweep_interval` is set, the sweeper.
    ///
    /// Recovery deletes temporary files and directories of unfinished
    /// creates, and queues in-progress operations to resume from their last
    /// checkpoint (see [`RecoveryReport`]).
    ///
    /// Must be called inside a Tokio runtime with the blocking pool
    /// available. Only one store may use a directory at a time.
    // NOTE: a second process opening the same directory is not detected;
    // both would resume the same operations and corrupt their output.
    pub fn open_with_clock(
        data_dir: impl AsRef<Path>,
        config: StoreConfig,
        coder: Arc<dyn BatchCoder>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OperationError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            OperationError::Internal(
                "OperationStore::open must be called inside a Tokio runtime".to_owned(),
            )
        })?;

        let operations_dir = data_dir.as_ref().join("operations");
        fs::create_dir_all(&operations_dir)
            .context(|| format!("failed to create {}", operations_dir.display()))?;

        let (queue_sender, queue_receiver) = mpsc::channel(config.queue_capacity);
        let sweep_interval = config.sweep_interval;
        let inner = Arc::new(Inner::new(
            operations_dir,
            config,
            coder,
            clock,
            queue_sender,
        ));
        let (report, to_resume) = recovery::recover(&inner)?;
        tracing::info!(
            dir = %inner.operations_dir.display(),
            loaded = report.loaded,
            resumed = report.resumed,
            failed = report.failed,
            removed_temp_files = report.removed_temp_files,
            removed_incomplete_dirs = report.removed_incomplete_dirs,
            unreadable = report.unreadable,
            "operation store opened"
        );

        let dispatcher = runtime.spawn(worker::dispatch(
            Arc::clone(&inner),
            queue_receiver,
            to_resume,
            inner.stop_receiver(),
        ));
        let sweeper = sweep_interval.map(|interval| {
            runtime.spawn(run_sweeper(
                Arc::downgrade(&inner),
                interval,
                inner.stop_receiver(),
            ))
        });
        Ok(OperationStore {
            inner,
            recovery: report,
            dispatcher: Some(dispatcher),
            sweeper,
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Counts from the startup scan.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Creates an operation owned by `client_id` in state `awaiting_input`.
    ///
    /// The store does not check that the model exists; the server does that
    /// before calling. Each name must be 1 to 256 bytes without control
    /// characters.
    pub fn create(
        &self,
        client_id: &str,
        topic: &str,
        model_id: &str,
    ) -> Result<OperationStatus, OperationError> {
        if self.inner.is_stopping() {
            return Err(OperationError::ShuttingDown);
        }
        validate_name("client id", client_id)?;
        validate_name("topic", topic)?;
        validate_name("model id", model_id)?;

        let id = Uuid::new_v4();
        let record = OperationRecord::new(id, client_id, topic, model_id, self.inner.clock.now());
        let dir = self.inner.operation_dir(id);
        fs::create_dir(&dir).context(|| format!("failed to create {}", dir.display()))?;
        let state_path = dir.join(crate::inner::STATE_FILE);
        // A crash before the state file exists leaves an empty directory,
        // which recovery deletes.
        crate::inner::write_record(&state_path, &record)?;
        fsutil::sync_parent(&dir)
            .context(|| format!("failed to fsync the parent of {}", dir.display()))?;

        let status = self.inner.status_of(&record);
        self.inner.insert(record);
        tracing::info!(operation_id = %id, %client_id, %topic, %model_id, "operation created");
        Ok(status)
    }

    /// Starts the upload of an operation's input.
    ///
    /// # Errors
    ///
    /// `NotFound`, `NotOwner`, `WrongState` unless the operation is awaiting
    /// input (including after a timeout), `UploadInProgress` while another
    /// upload is open, `QueueFull` when `queue_capacity` operations are
    /// already uploading or queued, `ShuttingDown`, or `Io`.
    pub fn begin_upload(
        &self,
        client_id: &str,
        topic: &str,
        operation_id: &str,
    ) -> Result<Upload, OperationError> {
        if self.inner.is_stopping() {
            return Err(OperationError::ShuttingDown);
        }
        let (id, slot) = self.inner.authorize(client_id, topic, operation_id)?;
        let queue_slot;
        {
            let mut guard = lock(&slot);
            self.inner
                .apply_deadlines(&mut guard, self.inner.clock.now())?;
            if guard.record.state != OperationState::AwaitingInput {
                return Err(OperationError::WrongState {
                    operation_id: id.to_string(),
                    state: guard.record.state,
                    action: "an upload",
                });
            }
            if guard.upload_active {
                return Err(OperationError::UploadInProgress {
                    operation_id: id.to_string(),
                });
            }
            queue_slot =
                self.inner
                    .queue
                    .clone()
                    .try_reserve_owned()
                    .map_err(|error| match error {
                        mpsc::error::TrySendError::Full(_) => OperationError::QueueFull {
                            capacity: self.inner.config.queue_capacity,
                        },
                        mpsc::error::TrySendError::Closed(_) => OperationError::ShuttingDown,
                    })?;
            guard.upload_active = true;
        }
        match Upload::start(Arc::clone(&self.inner), id, Arc::clone(&slot), queue_slot) {
            Ok(upload) => {
                tracing::info!(operation_id = %id, %client_id, "upload started");
                Ok(upload)
            }
            Err(error) => {
                lock(&slot).upload_active = false;
                tracing::error!(operation_id = %id, %client_id, %error, "failed to start an upload");
                Err(error)
            }
        }
    }

    /// Returns the status of an operation, first applying its timeout or
    /// retention if the deadline has passed.
    pub fn status(
        &self,
        client_id: &str,
        topic: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, OperationError> {
        let (_, slot) = self.inner.authorize(client_id, topic, operation_id)?;
        let mut guard = lock(&slot);
        self.inner
            .apply_deadlines(&mut guard, self.inner.clock.now())?;
        Ok(self.inner.status_of(&guard.record))
    }

    /// Opens the output of a complete operation for reading.
    ///
    /// # Errors
    ///
    /// `NotFound`, `NotOwner`, `Expired` after retention, `WrongState` unless
    /// the operation is complete, or `Io`.
    pub fn download(
        &self,
        client_id: &str,
        topic: &str,
        operation_id: &str,
    ) -> Result<Download, OperationError> {
        let (id, slot) = self.inner.authorize(client_id, topic, operation_id)?;
        let mut guard = lock(&slot);
        self.inner
            .apply_deadlines(&mut guard, self.inner.clock.now())?;
        let record = &guard.record;
        if let Some(expired_at) = record.expired_at {
            return Err(OperationError::Expired {
                operation_id: id.to_string(),
                expired_at,
            });
        }
        if record.state != OperationState::Complete {
            return Err(OperationError::WrongState {
                operation_id: id.to_string(),
                state: record.state,
                action: "a download",
            });
        }
        let path = self.inner.file_path(id, OUTPUT_FILE);
        let file = File::open(&path).context(|| format!("failed to open {}", path.display()))?;
        let lines = OutputLines::new(id, file, record.checkpoint.output_offset);
        let metadata = OutputMetadata::from_record(record);
        drop(guard);
        tracing::info!(operation_id = %id, %client_id, lines = metadata.input_lines, "download started");
        Ok(Download { metadata, lines })
    }

    /// Applies upload timeouts and result retention to every operation at
    /// the clock's current time. Does blocking file I/O; the built-in
    /// sweeper calls it on a blocking thread.
    pub fn sweep(&self) -> SweepReport {
        sweep(&self.inner)
    }

    /// Stops accepting creates and uploads, lets running operations stop at
    /// their next chunk boundary, and waits for them.
    ///
    /// Stopped operations stay `in_progress` on disk and resume on the next
    /// open. An upload that is still open can finish, and its operation is
    /// coded after the next open.
    pub async fn shutdown(mut self) {
        self.inner.request_stop();
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.abort();
        }
        if let Some(dispatcher) = self.dispatcher.take()
            && let Err(error) = dispatcher.await
        {
            tracing::error!(%error, "operation dispatcher ended abnormally");
        }
        tracing::info!("operation store stopped");
    }
}

impl Drop for OperationStore {
    fn drop(&mut self) {
        self.inner.request_stop();
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.abort();
        }
    }
}

fn validate_name(field: &str, value: &str) -> Result<(), OperationError> {
    if value.is_empty() {
        return Err(OperationError::InvalidRequest(format!(
            "the {field} is missing"
        )));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(OperationError::InvalidRequest(format!(
            "the {field} is {} bytes long; the maximum is {MAX_NAME_BYTES}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(OperationError::InvalidRequest(format!(
            "the {field} contains a control character"
        )));
    }
    Ok(())
}

fn sweep(inner: &Inner) -> SweepReport {
    let now = inner.clock.now();
    let mut report = SweepReport::default();
    for slot in inner.all_slots() {
        let mut guard = lock(&slot);
        match inner.apply_deadlines(&mut guard, now) {
            Ok(Some(DeadlineChange::TimedOut)) => report.timed_out += 1,
            Ok(Some(DeadlineChange::Expired)) => report.expired += 1,
            Ok(None) => {}
            Err(error) => {
                report.errors += 1;
                tracing::error!(operation_id = %guard.record.id, %error, "failed to apply an operation deadline");
            }
        }
    }
    if report != SweepReport::default() {
        tracing::info!(
            timed_out = report.timed_out,
            expired = report.expired,
            errors = report.errors,
            "sweep finished"
        );
    }
    report
}

/// Calls [`sweep`] every `interval` until the store stops or is dropped.
async fn run_sweeper(inner: Weak<Inner>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            _ = ticker.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { break };
        if let Err(error) = tokio::task::spawn_blocking(move || sweep(&inner)).await {
            tracing::error!(%error, "operation sweep task ended abnormally");
        }
    }
}
