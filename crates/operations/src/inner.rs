//! Shared store state: the operation table, paths, persistence and deadlines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::clock::Clock;
use crate::coder::BatchCoder;
use crate::config::StoreConfig;
use crate::error::{IoContext, OperationError};
use crate::fsutil;
use crate::state::{OperationRecord, OperationState, OperationStatus};

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const INPUT_FILE: &str = "input.jsonl";
pub(crate) const OUTPUT_FILE: &str = "output.jsonl";

/// In-memory copy of one operation plus flags that are never persisted.
pub(crate) struct Slot {
    /// Always equal to the operation's `state.json` once a write succeeded.
    pub record: OperationRecord,
    /// True while an [`Upload`](crate::Upload) for this operation is open.
    pub upload_active: bool,
}

pub(crate) type SlotRef = Arc<Mutex<Slot>>;

/// Locks a mutex, ignoring poisoning: every critical section leaves the
/// guarded value consistent before any call that can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A change applied by [`Inner::apply_deadlines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadlineChange {
    TimedOut,
    Expired,
}

pub(crate) struct Inner {
    pub operations_dir: PathBuf,
    pub config: StoreConfig,
    pub coder: Arc<dyn BatchCoder>,
    pub clock: Arc<dyn Clock>,
    pub slots: Mutex<HashMap<Uuid, SlotRef>>,
    /// Operation ids waiting for a worker; uploads reserve a slot in it.
    pub queue: mpsc::Sender<Uuid>,
    stopping: AtomicBool,
    stop_signal: watch::Sender<bool>,
}

impl Inner {
    pub fn new(
        operations_dir: PathBuf,
        config: StoreConfig,
        coder: Arc<dyn BatchCoder>,
        clock: Arc<dyn Clock>,
        queue: mpsc::Sender<Uuid>,
    ) -> Self {
        let (stop_signal, _) = watch::channel(false);
        Inner {
            operations_dir,
            config,
            coder,
            clock,
            slots: Mutex::new(HashMap::new()),
            queue,
            stopping: AtomicBool::new(false),
            stop_signal,
        }
    }

    pub fn operation_dir(&self, id: Uuid) -> PathBuf {
        self.operations_dir.join(id.to_string())
    }

    pub fn file_path(&self, id: Uuid, file: &str) -> PathBuf {
        self.operation_dir(id).join(file)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Tells workers to stop at the next chunk boundary and background tasks
    /// to exit.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_signal.send_replace(true);
    }

    pub fn stop_receiver(&self) -> watch::Receiver<bool> {
        self.stop_signal.subscribe()
    }

    pub fn lookup(&self, id: Uuid) -> Option<SlotRef> {
        lock(&self.slots).get(&id).cloned()
    }

    pub fn insert(&self, record: OperationRecord) {
        let slot = Slot {
            record,
            upload_active: false,
        };
        lock(&self.slots).insert(slot.record.id, Arc::new(Mutex::new(slot)));
    }

    pub fn all_slots(&self) -> Vec<SlotRef> {
        lock(&self.slots).values().cloned().collect()
    }

    /// Finds the operation and checks that `client_id` owns it under `topic`.
    ///
    /// An id that is not a GUID, is unknown, or belongs to another topic
    /// gives `NotFound`; another client's operation gives `NotOwner`.
    pub fn authorize(
        &self,
        client_id: &str,
        topic: &str,
        operation_id: &str,
    ) -> Result<(Uuid, SlotRef), OperationError> {
        let id = Uuid::parse_str(operation_id.trim()).map_err(|_| OperationError::NotFound)?;
        let slot = self.lookup(id).ok_or(OperationError::NotFound)?;
        {
            let guard = lock(&slot);
            if guard.record.owner != client_id {
                return Err(OperationError::NotOwner {
                    operation_id: id.to_string(),
                });
            }
            if guard.record.topic != topic {
                return Err(OperationError::NotFound);
            }
        }
        Ok((id, slot))
    }

    /// Writes `record` to `state.json` atomically, then to memory.
    ///
    /// On error the memory copy is unchanged, so it still matches the disk.
    pub fn persist(&self, slot: &mut Slot, record: OperationRecord) -> Result<(), OperationError> {
        let path = self.file_path(record.id, STATE_FILE);
        write_record(&path, &record)?;
        slot.record = record;
        Ok(())
    }

    /// Applies `change` to a copy of the record of operation `id` and
    /// persists it, unless `change` returns an error.
    pub fn update_record(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut OperationRecord) -> Result<(), OperationError>,
    ) -> Result<OperationRecord, OperationError> {
        let slot = self
            .lookup(id)
            .ok_or_else(|| OperationError::Internal(format!("operation {id} vanished")))?;
        let mut guard = lock(&slot);
        let mut record = guard.record.clone();
        change(&mut record)?;
        self.persist(&mut guard, record.clone())?;
        Ok(record)
    }

    pub fn status_of(&self, record: &OperationRecord) -> OperationStatus {
        OperationStatus::from_record(
            record,
            self.config.upload_timeout_chrono(),
            self.config.retention_chrono(),
        )
    }

    /// Times out or expires the operation if its deadline has passed at `now`.
    ///
    /// An operation awaiting input times out once `created_at +
    /// upload_timeout` has passed, unless an upload is open (an upload that
    /// started in time may finish late). A complete or failed operation
    /// expires at `completed_at + retention`: the state records the expiry
    /// first, then its input and output files are deleted.
    // NOTE: the directory and `state.json` of every operation are kept
    // forever, so the data directory grows by about 1 KB per operation.
    pub fn apply_deadlines(
        &self,
        slot: &mut Slot,
        now: DateTime<Utc>,
    ) -> Result<Option<DeadlineChange>, OperationError> {
        let record = &slot.record;
        match record.state {
            OperationState::AwaitingInput if !slot.upload_active => {
                let deadline = record.created_at + self.config.upload_timeout_chrono();
                if now < deadline {
                    return Ok(None);
                }
                let mut updated = record.clone();
                updated.state = OperationState::TimedOut;
                updated.completed_at = Some(deadline);
                self.persist(slot, updated)?;
                tracing::info!(operation_id = %slot.record.id, "operation timed out awaiting input");
                Ok(Some(DeadlineChange::TimedOut))
            }
            OperationState::Complete | OperationState::Failed if record.expired_at.is_none() => {
                let Some(completed_at) = record.completed_at else {
                    return Ok(None);
                };
                if now < completed_at + self.config.retention_chrono() {
                    return Ok(None);
                }
                let mut updated = record.clone();
                updated.expired_at = Some(now);
                self.persist(slot, updated)?;
                self.delete_data_files(slot.record.id)?;
                tracing::info!(operation_id = %slot.record.id, "operation results expired and were deleted");
                Ok(Some(DeadlineChange::Expired))
            }
            _ => Ok(None),
        }
    }

    /// Deletes the input and output files of an operation and fsyncs its
    /// directory. Missing files are not an error.
    pub fn delete_data_files(&self, id: Uuid) -> Result<(), OperationError> {
        let mut removed = false;
        for file in [INPUT_FILE, OUTPUT_FILE] {
            let path = self.file_path(id, file);
            removed |= fsutil::remove_if_exists(&path)
                .context(|| format!("failed to delete {}", path.display()))?;
        }
        if removed {
            let dir = self.operation_dir(id);
            fsutil::sync_dir(&dir).context(|| format!("failed to fsync {}", dir.display()))?;
        }
        Ok(())
    }

    /// Marks an operation failed with `message` and deletes its data files,
    /// which a failed operation can never return.
    ///
    /// Errors are logged, not returned: this is the last step of a worker
    /// that has no caller to return to. If the state write fails, the operation
    /// stays in progress on disk and resumes from its checkpoint on restart.
    pub fn fail_operation(&self, id: Uuid, message: String) {
        let Some(slot) = self.lookup(id) else {
            tracing::error!(operation_id = %id, error = %message, "unknown operation failed");
            return;
        };
        // The files are deleted under the slot lock, so no caller sees a
        // failed operation that still has its files.
        let mut guard = lock(&slot);
        let mut record = guard.record.clone();
        record.state = OperationState::Failed;
        record.error = Some(message.clone());
        record.completed_at = Some(self.clock.now());
        if let Err(error) = self.persist(&mut guard, record) {
            tracing::error!(
                operation_id = %id,
                error = %message,
                state_error = %error,
                "operation failed and its failure could not be recorded"
            );
            return;
        }
        tracing::error!(operation_id = %id, error = %message, "operation failed");
        if let Err(error) = self.delete_data_files(id) {
            tracing::error!(operation_id = %id, %error, "failed to delete files of failed operation");
        }
    }
}

/// Serializes a record and writes it atomically to `path`.
pub(crate) fn write_record(path: &Path, record: &OperationRecord) -> Result<(), OperationError> {
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|source| OperationError::StateFormat {
            context: format!("failed to encode the state of operation {}", record.id),
            cause: source,
        })?;
    fsutil::write_atomic(path, &bytes).context(|| format!("failed to write {}", path.display()))
}
