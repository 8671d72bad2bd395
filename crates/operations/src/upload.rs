//! Chunked upload of an operation's JSONL input.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::OwnedPermit;
use uuid::Uuid;

use crate::error::{IoContext, OperationError};
use crate::fsutil;
use crate::inner::{INPUT_FILE, Inner, SlotRef, lock};
use crate::state::{OperationState, OperationStatus};

/// An open upload, returned by
/// [`OperationStore::begin_upload`](crate::OperationStore::begin_upload).
///
/// Bytes go to `input.jsonl.tmp` in the operation's directory.
/// [`finish`](Upload::finish) fsyncs and renames it to `input.jsonl` and
/// queues the operation. Dropping the upload without finishing it, or any
/// error from [`write_chunk`](Upload::write_chunk), deletes the temporary
/// file and leaves the operation awaiting input, so the client can upload
/// again until the upload timeout.
///
/// Calls do blocking file I/O. `write_chunk` goes through a 1 MiB buffer, so
/// most calls only copy memory. `finish` fsyncs the whole file, so async
/// callers should run it with `tokio::task::spawn_blocking` for large inputs.
pub struct Upload {
    inner: Arc<Inner>,
    id: Uuid,
    slot: SlotRef,
    temp_path: PathBuf,
    writer: Option<BufWriter<File>>,
    queue_slot: Option<OwnedPermit<Uuid>>,
    bytes: u64,
    complete_lines: u64,
    current_line_bytes: u64,
    aborted: bool,
    finished: bool,
}

impl Upload {
    /// Opens the temporary file; the caller has checked access and state and
    /// set `upload_active`.
    pub(crate) fn start(
        inner: Arc<Inner>,
        id: Uuid,
        slot: SlotRef,
        queue_slot: OwnedPermit<Uuid>,
    ) -> Result<Self, OperationError> {
        let temp_path = fsutil::temp_path(&inner.file_path(id, INPUT_FILE));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .context(|| format!("failed to create {}", temp_path.display()))?;
        Ok(Upload {
            inner,
            id,
            slot,
            temp_path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            queue_slot: Some(queue_slot),
            bytes: 0,
            complete_lines: 0,
            current_line_bytes: 0,
            aborted: false,
            finished: false,
        })
    }

    pub fn operation_id(&self) -> Uuid {
        self.id
    }

    /// Number of bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Appends the next chunk of the JSONL input. Chunks may split lines
    /// anywhere.
    ///
    /// # Errors
    ///
    /// `UploadTooLarge` past `max_upload_bytes`, `LineTooLong` when a line
    /// exceeds `max_line_bytes`, or `Io`. Each error aborts the upload: the
    /// temporary file is deleted, later calls return `UploadAborted`, and the
    /// operation stays awaiting input.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), OperationError> {
        if self.aborted {
            return Err(OperationError::UploadAborted);
        }
        let result = self.check_and_write(chunk);
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn check_and_write(&mut self, chunk: &[u8]) -> Result<(), OperationError> {
        let config = &self.inner.config;
        let new_total = self.bytes.saturating_add(chunk.len() as u64);
        if new_total > config.max_upload_bytes {
            return Err(OperationError::UploadTooLarge {
                limit_bytes: config.max_upload_bytes,
            });
        }

        let mut segments = chunk.split(|byte| *byte == b'\n').peekable();
        while let Some(segment) = segments.next() {
            self.current_line_bytes += segment.len() as u64;
            if self.current_line_bytes > config.max_line_bytes {
                return Err(OperationError::LineTooLong {
                    line_number: self.complete_lines + 1,
                    limit_bytes: config.max_line_bytes,
                });
            }
            // Every segment but the last ended at a line break.
            if segments.peek().is_some() {
                self.complete_lines += 1;
                self.current_line_bytes = 0;
            }
        }

        let writer = self.writer.as_mut().ok_or(OperationError::UploadAborted)?;
        writer
            .write_all(chunk)
            .context(|| format!("failed to write {}", self.temp_path.display()))?;
        self.bytes = new_total;
        Ok(())
    }

    /// Makes the input durable and queues the operation; returns its status,
    /// now `InProgress`.
    ///
    /// The temporary file is flushed, fsynced and renamed to `input.jsonl`
    /// before the state changes, so a crash at any point leaves either no
    /// input (the operation awaits input) or the whole input with the state
    /// `in_progress`.
    ///
    /// # Errors
    ///
    /// `EmptyUpload` for zero bytes, `UploadAborted` after an earlier error,
    /// or `Io`; each leaves the operation awaiting input.
    pub fn finish(mut self) -> Result<OperationStatus, OperationError> {
        if self.aborted {
            return Err(OperationError::UploadAborted);
        }
        if self.bytes == 0 {
            self.abort();
            return Err(OperationError::EmptyUpload);
        }
        let result = self.commit();
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn commit(&mut self) -> Result<OperationStatus, OperationError> {
        let writer = self.writer.take().ok_or(OperationError::UploadAborted)?;
        let file = writer.into_inner().map_err(|error| {
            OperationError::io(
                format!("failed to write {}", self.temp_path.display()),
                error.into_error(),
            )
        })?;
        file.sync_all()
            .context(|| format!("failed to fsync {}", self.temp_path.display()))?;
        drop(file);

        let total_lines = self.complete_lines + u64::from(self.current_line_bytes > 0);
        let input_path = self.inner.file_path(self.id, INPUT_FILE);
        let now = self.inner.clock.now();

        let mut slot = lock(&self.slot);
        if slot.record.state != OperationState::AwaitingInput {
            return Err(OperationError::Internal(format!(
                "operation {} changed to {} during its upload",
                self.id, slot.record.state
            )));
        }
        std::fs::rename(&self.temp_path, &input_path)
            .and_then(|()| fsutil::sync_parent(&input_path))
            .context(|| format!("failed to move the upload to {}", input_path.display()))?;

        let mut record = slot.record.clone();
        record.state = OperationState::InProgress;
        record.uploaded_at = Some(now);
        record.input_lines = Some(total_lines);
        record.input_bytes = Some(self.bytes);
        if let Err(error) = self.inner.persist(&mut slot, record) {
            if let Err(remove_error) = fsutil::remove_if_exists(&input_path) {
                tracing::error!(operation_id = %self.id, error = %remove_error, "failed to delete input after a failed state write");
            }
            return Err(error);
        }
        slot.upload_active = false;
        self.finished = true;
        let status = self.inner.status_of(&slot.record);
        let client_id = slot.record.owner.clone();
        drop(slot);

        if let Some(queue_slot) = self.queue_slot.take() {
            queue_slot.send(self.id);
        }
        tracing::info!(
            operation_id = %self.id,
            %client_id,
            bytes = self.bytes,
            lines = total_lines,
            "upload finished; operation queued"
        );
        Ok(status)
    }

    /// Deletes the temporary file (and an `input.jsonl` that a failed
    /// commit left behind) and releases the operation for a new upload.
    /// Calls after the first do nothing.
    fn abort(&mut self) {
        if self.aborted {
            return;
        }
        self.aborted = true;
        self.writer = None;
        self.queue_slot = None;
        let mut slot = lock(&self.slot);
        let mut stale_files = vec![self.temp_path.clone()];
        if slot.record.state == OperationState::AwaitingInput {
            stale_files.push(self.inner.file_path(self.id, INPUT_FILE));
        }
        for path in stale_files {
            if let Err(error) = fsutil::remove_if_exists(&path) {
                tracing::error!(operation_id = %self.id, %error, "failed to delete an abandoned upload file");
            }
        }
        slot.upload_active = false;
        drop(slot);
        tracing::info!(operation_id = %self.id, bytes = self.bytes, "upload abandoned");
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            self.abort();
        }
    }
}
