//! Durable asynchronous batch coding operations for the occoder service.
//!
//! The flow follows the asynchronous batch coding of the ABS occupation
//! coding service:
//!
//! 1. [`OperationStore::create`] makes an operation with a GUID id in state
//!    `awaiting_input`, owned by one client, for one topic and model.
//! 2. [`OperationStore::begin_upload`] returns an [`Upload`] that takes the
//!    JSONL input in chunks. [`Upload::finish`] makes it durable and queues
//!    the operation (`in_progress`).
//! 3. A background worker codes the input in chunks through the injected
//!    [`BatchCoder`], on a blocking thread, and checkpoints after each chunk.
//! 4. [`OperationStore::status`] reports the state, line counts and times.
//! 5. [`OperationStore::download`] returns the output lines in input order
//!    and an [`OutputMetadata`] record.
//!
//! An operation that gets no upload within `upload_timeout` becomes
//! `timed_out`. The input and output of a complete or failed operation are
//! deleted `retention` after completion, and the status then reports
//! `expired`. Every call takes the caller's client id and topic: an unknown
//! id gives NOT_FOUND, another client's operation gives PERMISSION_DENIED
//! (see [`OperationError::code`]).
//!
//! # On-disk layout
//!
//! ```text
//! <data>/operations/<operation id>/
//!     state.json     the OperationRecord, replaced atomically on every change
//!     input.jsonl    the uploaded input; written as input.jsonl.tmp first
//!     output.jsonl   one output line per input line, appended per chunk
//! ```
//!
//! # Crash safety
//!
//! Every `state.json` write and the upload's final rename go through a
//! temporary file, fsync, rename and directory fsync, so a crash leaves the
//! old or the new version. The worker appends a chunk to `output.jsonl` and
//! fsyncs it before it writes the checkpoint (processed lines, input and
//! output byte offsets) to `state.json`. So the output is always at least as
//! long as the checkpoint says. On [`OperationStore::open`] the output is
//! truncated to the checkpoint and coding resumes at the checkpoint's input
//! offset. No line is lost or written twice, provided the coder is
//! deterministic. Recovery also deletes temporary files, directories of
//! unfinished creates and inputs whose upload was never acknowledged.
//!
//! # Runtime
//!
//! The store needs a Tokio runtime for its dispatcher and sweeper tasks. Its
//! methods are synchronous and do short blocking file I/O, except
//! [`Upload::finish`], which fsyncs the whole input and belongs on a blocking
//! thread when called from async code.
//!
//! # Wiring into a gRPC server
//!
//! - Startup: implement [`BatchCoder`] over the loaded models, then call
//!   [`OperationStore::open`] inside the runtime and share the store as
//!   `Arc<OperationStore>`. The built-in sweeper runs every
//!   `sweep_interval`.
//! - Create: check that the model exists, then call
//!   [`OperationStore::create`] and return `operation_id`.
//! - Upload (client streaming): call [`OperationStore::begin_upload`], pass
//!   each message's bytes to [`Upload::write_chunk`], and at the end of the
//!   stream call [`Upload::finish`] through `spawn_blocking`. A stream
//!   error or client disconnect drops the `Upload`, which discards it.
//! - Status: [`OperationStore::status`].
//! - Download (server streaming): [`OperationStore::download`], then send
//!   the metadata and stream [`OutputLines::into_channel`] through
//!   `tokio_stream::wrappers::ReceiverStream`.
//! - Errors: map [`OperationError::code`] to `tonic::Code` and use the
//!   error's `Display` text as the status message.
//! - Shutdown: after the server stops serving, await
//!   [`OperationStore::shutdown`]; running operations stop at a checkpoint
//!   and resume on the next start.

mod clock;
mod coder;
mod config;
mod download;
mod error;
mod fsutil;
mod inner;
mod recovery;
mod state;
mod store;
mod upload;
mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use coder::{BatchCoder, CoderError, LineOutcome, classify_output_line};
pub use config::StoreConfig;
pub use download::{Download, OutputLines};
pub use error::{ErrorKind, OperationError};
pub use recovery::RecoveryReport;
pub use state::{LineCounts, OperationState, OperationStatus, OutputMetadata};
pub use store::{OperationStore, SweepReport};
pub use upload::Upload;

#[cfg(test)]
mod tests {
    /// The server shares the store across handlers and keeps uploads open across
    /// `.await` points.
    #[test]
    fn public_types_are_thread_safe() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<crate::OperationStore>();
        assert_send_sync::<crate::OperationError>();
        assert_send::<crate::Upload>();
        assert_send::<crate::Download>();
    }
}
