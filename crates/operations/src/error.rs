//! Typed errors with the gRPC status code each one maps to.

use std::io;

use chrono::{DateTime, Utc};

use crate::state::OperationState;

/// The gRPC status code that an [`OperationError`] maps to.
///
/// The crate does not depend on tonic, so the server converts this enum to
/// `tonic::Code` with a plain `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// Returns the canonical gRPC code name, for example `NOT_FOUND`.
    pub fn grpc_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

/// An error returned by the operation store.
///
/// `Display` is the message to send to the client. [`OperationError::code`]
/// gives the gRPC code. No message contains occupation text from the input.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The operation id is unknown, is not a GUID, or belongs to another topic.
    #[error("Unable to retrieve operation for given id")]
    NotFound,

    /// The operation exists but belongs to another client.
    #[error("User is not authorised to retrieve operation {operation_id}")]
    NotOwner { operation_id: String },

    /// A request field is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The operation is not in a state that allows the requested action.
    #[error("operation {operation_id} is {state}, so {action} is not allowed")]
    WrongState {
        operation_id: String,
        state: OperationState,
        action: &'static str,
    },

    /// The results were deleted after the retention period.
    #[error(
        "the results of operation {operation_id} expired and were deleted at {expired_at}; \
         create a new operation and upload the input again"
    )]
    Expired {
        operation_id: String,
        expired_at: DateTime<Utc>,
    },

    /// Another upload to the same operation has not finished yet.
    #[error("an upload to operation {operation_id} is already in progress")]
    UploadInProgress { operation_id: String },

    /// The upload is larger than `max_upload_bytes`.
    #[error(
        "the upload exceeds the maximum size of {limit_bytes} bytes; \
         the operation is still awaiting input"
    )]
    UploadTooLarge { limit_bytes: u64 },

    /// One input line is longer than `max_line_bytes`.
    #[error(
        "input line {line_number} exceeds the maximum line length of {limit_bytes} bytes; \
         the operation is still awaiting input"
    )]
    LineTooLong { line_number: u64, limit_bytes: u64 },

    /// The upload contained no bytes.
    #[error("the upload is empty; the operation is still awaiting input")]
    EmptyUpload,

    /// An earlier chunk of this upload failed, so the upload cannot continue.
    #[error("the upload was aborted by an earlier error; start a new upload")]
    UploadAborted,

    /// The work queue has no free slot for another operation.
    #[error("the work queue is full ({capacity} operations uploading or queued); retry later")]
    QueueFull { capacity: usize },

    /// The store is shutting down and accepts no new work.
    #[error("the operation store is shutting down; retry later")]
    ShuttingDown,

    /// A file-system operation failed.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: io::Error,
    },

    /// A state file could not be encoded or decoded.
    #[error("{context}: {cause}")]
    StateFormat {
        context: String,
        cause: serde_json::Error,
    },

    /// An internal invariant failed, for example a missing background runtime.
    #[error("{0}")]
    Internal(String),
}

impl OperationError {
    /// Returns the gRPC status code for this error.
    pub fn code(&self) -> ErrorKind {
        match self {
            OperationError::NotFound => ErrorKind::NotFound,
            OperationError::NotOwner { .. } => ErrorKind::PermissionDenied,
            OperationError::InvalidRequest(_)
            | OperationError::LineTooLong { .. }
            | OperationError::EmptyUpload => ErrorKind::InvalidArgument,
            OperationError::WrongState { .. }
            | OperationError::Expired { .. }
            | OperationError::UploadInProgress { .. }
            | OperationError::UploadAborted => ErrorKind::FailedPrecondition,
            OperationError::UploadTooLarge { .. } | OperationError::QueueFull { .. } => {
                ErrorKind::ResourceExhausted
            }
            OperationError::ShuttingDown => ErrorKind::Unavailable,
            OperationError::Io { .. }
            | OperationError::StateFormat { .. }
            | OperationError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, cause: io::Error) -> Self {
        OperationError::Io {
            context: context.into(),
            cause,
        }
    }
}

/// Adds a context message to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, OperationError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, OperationError> {
        self.map_err(|source| OperationError::io(context(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_matches_service() {
        let error = OperationError::NotFound;
        assert_eq!(error.code(), ErrorKind::NotFound);
        assert_eq!(
            error.to_string(),
            "Unable to retrieve operation for given id"
        );
    }

    #[test]
    fn not_owner_message_names_operation() {
        let error = OperationError::NotOwner {
            operation_id: "0b8e0c2e-0000-4000-8000-000000000000".to_owned(),
        };
        assert_eq!(error.code(), ErrorKind::PermissionDenied);
        assert_eq!(error.code().grpc_name(), "PERMISSION_DENIED");
        assert_eq!(
            error.to_string(),
            "User is not authorised to retrieve operation 0b8e0c2e-0000-4000-8000-000000000000"
        );
    }

    #[test]
    fn resource_errors_map_to_resource_exhausted() {
        let too_large = OperationError::UploadTooLarge { limit_bytes: 10 };
        let queue_full = OperationError::QueueFull { capacity: 2 };
        assert_eq!(too_large.code(), ErrorKind::ResourceExhausted);
        assert_eq!(queue_full.code(), ErrorKind::ResourceExhausted);
    }
}
