//! Bulk coding state of a server: the thread pool that codes bulk records,
//! the durable operation store, and the conversions between the store's
//! types and the `occoder.v1` messages.
//!
//! The store opens once the models are loaded (see [`BulkState::open`]), so
//! operations that recovery resumes are coded with the loaded models and
//! never fail because a model was still loading. The pool is separate from
//! rayon's global pool, which synchronous Code calls use, so a large
//! operation or stream never makes a synchronous call wait for a free
//! thread; the operating system shares the cores between the two pools.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use occoder_model::ModelRegistry;
use occoder_operations::{
    BatchCoder, CoderError, OperationError, OperationState, OperationStatus, OperationStore, OutputMetadata,
    StoreConfig, SystemClock,
};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use super::coder::{coded_record, timestamp};
use super::config::BulkConfig;
use super::errors::{ERROR_DOMAIN, INTERNAL};
use crate::proto::v1 as pb;

/// Bulk coding resources, available once [`BulkState::open`] has run.
#[derive(Default)]
pub struct BulkState {
    opened: RwLock<Option<OpenedBulk>>,
}

#[derive(Clone)]
struct OpenedBulk {
    pool: Arc<rayon::ThreadPool>,
    store: Arc<OperationStore>,
}

impl BulkState {
    /// Builds the bulk thread pool and opens the operation store under
    /// `<data_dir>/operations` over `models`. Recovery runs here, and
    /// operations interrupted by a stop or a crash resume in the background.
    pub async fn open(&self, config: &BulkConfig, data_dir: &std::path::Path, models: &ModelRegistry) -> anyhow::Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.thread_count())
            .thread_name(|index| format!("occoder-bulk-{index}"))
            .build()
            .context("failed to start the bulk coding threads")?;
        let pool = Arc::new(pool);
        let coder = Arc::new(ModelCoder { models: models.clone(), pool: Arc::clone(&pool) });
        let store_config = store_config(config);
        let clock = config.clock.as_ref().map_or_else(|| Arc::new(SystemClock) as _, |clock| Arc::clone(&clock.0));
        let data_dir = data_dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || OperationStore::open_with_clock(&data_dir, store_config, coder, clock))
            .await
            .context("opening the operation store panicked")??;
        *self.opened.write().unwrap_or_else(PoisonError::into_inner) = Some(OpenedBulk { pool, store: Arc::new(store) });
        Ok(())
    }

    /// Returns the pool that codes bulk records, or `None` before the models
    /// are loaded and after shutdown.
    pub fn pool(&self) -> Option<Arc<rayon::ThreadPool>> {
        self.opened.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|opened| Arc::clone(&opened.pool))
    }

    /// Returns the operation store, or `None` before the models are loaded
    /// and after shutdown.
    pub fn store(&self) -> Option<Arc<OperationStore>> {
        self.opened.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|opened| Arc::clone(&opened.store))
    }

    /// Stops the operation store: running operations stop at their next
    /// checkpoint and resume on the next start. Call after the server has
    /// stopped serving, so that no handler still has a reference to the store.
    pub async fn shutdown(&self) {
        let Some(opened) = self.opened.write().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let mut store = opened.store;
        // Handlers hold a clone of the store only for the length of one
        // synchronous store call, so the clones are gone almost at once.
        for _ in 0..100 {
            match Arc::try_unwrap(store) {
                Ok(owned) => {
                    owned.shutdown().await;
                    return;
                }
                Err(shared) => {
                    store = shared;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // NOTE: dropping the store tells its workers to stop at the next
        // checkpoint but does not wait for them. The output stays consistent
        // because recovery truncates it to the last checkpoint.
        tracing::warn!("the operation store is still in use after 2 seconds; stopping it without waiting for its workers");
    }
}

fn store_config(config: &BulkConfig) -> StoreConfig {
    StoreConfig {
        max_upload_bytes: config.max_upload_bytes,
        max_line_bytes: config.max_line_bytes,
        upload_timeout: Duration::from_secs(config.upload_timeout_secs),
        retention: Duration::from_secs(config.retention_secs),
        max_concurrent_operations: config.max_concurrent_operations,
        chunk_lines: config.chunk_lines,
        queue_capacity: config.queue_capacity,
        sweep_interval: Some(Duration::from_secs(config.sweep_interval_secs)),
    }
}

/// Codes operation chunks with the loaded models, on the bulk pool, with
/// the same function as `occoder code --input`, so an operation's output
/// equals the offline command's output for the same lines.
struct ModelCoder {
    models: ModelRegistry,
    pool: Arc<rayon::ThreadPool>,
}

impl BatchCoder for ModelCoder {
    fn code_lines(&self, model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError> {
        let model = self
            .models
            .all()
            .iter()
            .find(|model| model.metadata().model_id.to_string().eq_ignore_ascii_case(model_id))
            .ok_or_else(|| {
                CoderError::new(format!(
                    "The specified model does not exist: model {model_id} is no longer loaded; \
                     create a new operation to code with a current model"
                ))
            })?;
        Ok(self.pool.install(|| occoder_model::bulk::code_lines(model, lines)))
    }
}

/// Converts a store error into the status sent to the client. Server-side
/// failures are logged with their context and sent as "Error performing
/// request", because their messages name files of the server.
pub fn operation_error_status(error: &OperationError, request_id: &str, client_id: &str, method: &str) -> tonic::Status {
    let (code, reason) = match error {
        OperationError::NotFound => (Code::NotFound, "OPERATION_NOT_FOUND"),
        OperationError::NotOwner { .. } => (Code::PermissionDenied, "OPERATION_NOT_OWNED"),
        OperationError::InvalidRequest(_) => (Code::InvalidArgument, "INVALID_REQUEST_BODY"),
        OperationError::WrongState { .. } => (Code::FailedPrecondition, "OPERATION_WRONG_STATE"),
        OperationError::Expired { .. } => (Code::FailedPrecondition, "OPERATION_EXPIRED"),
        OperationError::UploadInProgress { .. } => (Code::FailedPrecondition, "UPLOAD_IN_PROGRESS"),
        OperationError::UploadAborted => (Code::FailedPrecondition, "UPLOAD_ABORTED"),
        OperationError::UploadTooLarge { .. } => (Code::ResourceExhausted, "UPLOAD_TOO_LARGE"),
        OperationError::LineTooLong { .. } => (Code::InvalidArgument, "LINE_TOO_LONG"),
        OperationError::EmptyUpload => (Code::InvalidArgument, "EMPTY_UPLOAD"),
        OperationError::QueueFull { .. } => (Code::ResourceExhausted, "OPERATION_QUEUE_FULL"),
        OperationError::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
        OperationError::Io { .. } | OperationError::StateFormat { .. } | OperationError::Internal(_) => {
            (Code::Internal, "INTERNAL")
        }
    };
    let message = if code == Code::Internal {
        tracing::error!(request_id, client_id, method, %error, "operation store error");
        INTERNAL.to_owned()
    } else {
        tracing::debug!(request_id, client_id, method, reason, "request rejected");
        error.to_string()
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    details.set_request_info(request_id, "");
    match error {
        OperationError::QueueFull { .. } | OperationError::ShuttingDown => {
            details.set_retry_info(Some(Duration::from_secs(5)));
        }
        _ => {}
    }
    tonic::Status::with_error_details(code, message, details)
}

fn optional_timestamp(time: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    time.map(timestamp)
}

pub fn state_message(state: OperationState) -> pb::OperationState {
    match state {
        OperationState::AwaitingInput => pb::OperationState::AwaitingInput,
        OperationState::InProgress => pb::OperationState::InProgress,
        OperationState::Complete => pb::OperationState::Complete,
        OperationState::TimedOut => pb::OperationState::TimedOut,
        OperationState::Failed => pb::OperationState::Failed,
    }
}

pub fn status_message(status: OperationStatus) -> pb::OperationStatus {
    pb::OperationStatus {
        operation_id: status.operation_id.to_string(),
        topic: status.topic,
        model_id: status.model_id,
        operation_status: state_message(status.state).into(),
        total_lines: status.total_lines,
        processed_lines: status.counts.processed,
        successful_lines: status.counts.successful,
        unsuccessful_lines: status.counts.unsuccessful,
        error_lines: status.counts.errors,
        error: status.error_message,
        expired: status.expired,
        created_at: Some(timestamp(status.created_at)),
        upload_deadline: Some(timestamp(status.upload_deadline)),
        uploaded_at: optional_timestamp(status.uploaded_at),
        started_at: optional_timestamp(status.started_at),
        completed_at: optional_timestamp(status.completed_at),
        expires_at: optional_timestamp(status.expires_at),
        message: status.message,
    }
}

/// Converts the metadata of a complete operation into its message. `model`
/// describes the model when it is still loaded.
pub fn metadata_message(metadata: OutputMetadata, model: Option<pb::Model>) -> pb::OperationMetadata {
    let model = model.unwrap_or_else(|| pb::Model { model_id: metadata.model_id.clone(), ..Default::default() });
    pb::OperationMetadata {
        operation_id: metadata.operation_id.to_string(),
        topic: metadata.topic,
        model: Some(model),
        input_lines: metadata.input_lines,
        successful_lines: metadata.successful_lines,
        unsuccessful_lines: metadata.unsuccessful_lines,
        error_lines: metadata.error_lines,
        created_at: Some(timestamp(metadata.created_at)),
        uploaded_at: optional_timestamp(metadata.uploaded_at),
        started_at: optional_timestamp(metadata.started_at),
        completed_at: optional_timestamp(metadata.completed_at),
        processing_millis: metadata.processing_millis,
        resume_count: metadata.resume_count,
    }
}

/// Converts the engine's bulk response into its message.
pub fn response_message(response: occoder_model::bulk::AsynchronousCodeResponse) -> pb::AsynchronousCodeResponse {
    use occoder_model::bulk::EchoedInput;

    let code_status = match response.code_status {
        occoder_model::CodeStatus::Successful => pb::CodeStatus::Successful,
        occoder_model::CodeStatus::Unsuccessful => pb::CodeStatus::Unsuccessful,
    };
    let input = match response.input {
        EchoedInput::Fields { occp_text, tasks_text } => Some(pb::Record {
            record_id: None,
            occp_text: occp_text.unwrap_or_default(),
            tasks_text: tasks_text.unwrap_or_default(),
        }),
        // Only a JSON line that failed to parse is echoed raw, and streamed
        // records are never JSON lines.
        EchoedInput::Raw(_) => None,
    };
    pb::AsynchronousCodeResponse {
        record_id: response.record_id,
        code_status: code_status.into(),
        input,
        result: response.result.map(coded_record),
        suggestions: response.suggestions.unwrap_or_default().into_iter().map(coded_record).collect(),
        error: response.error,
    }
}
