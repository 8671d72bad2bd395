//! Store limits, deadlines and worker settings.

use std::time::Duration;

use crate::error::OperationError;

/// Settings for an [`OperationStore`](crate::OperationStore).
///
/// `Default` gives the service defaults listed on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Maximum size of one upload in bytes. Default 5 GB (5 × 10⁹ bytes).
    pub max_upload_bytes: u64,
    /// Maximum length of one input line in bytes, without the line break.
    /// Default 1 MiB. The store reads one line into memory at a time, so
    /// this bounds the memory a single line can take.
    pub max_line_bytes: u64,
    /// Time from creation within which an upload must start. Default 1 hour.
    pub upload_timeout: Duration,
    /// Time after completion (or failure) after which the input and output
    /// files are deleted. Default 24 hours.
    pub retention: Duration,
    /// Number of operations coded at the same time. Default 1.
    pub max_concurrent_operations: usize,
    /// Number of input lines passed to one `BatchCoder::code_lines` call.
    /// The output is fsynced and a checkpoint written after each chunk.
    /// Default 4,096.
    pub chunk_lines: usize,
    /// Maximum number of operations that are uploading or waiting to run,
    /// not counting running ones. Default 64.
    pub queue_capacity: usize,
    /// Period of the background sweeper that applies timeouts and deletes
    /// expired results. `None` starts no sweeper, and the server then calls
    /// [`OperationStore::sweep`](crate::OperationStore::sweep) itself.
    /// Default 60 seconds.
    pub sweep_interval: Option<Duration>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_upload_bytes: 5_000_000_000,
            max_line_bytes: 1 << 20,
            upload_timeout: Duration::from_secs(60 * 60),
            retention: Duration::from_secs(24 * 60 * 60),
            max_concurrent_operations: 1,
            chunk_lines: 4096,
            queue_capacity: 64,
            sweep_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl StoreConfig {
    /// Rejects zero counts and durations that chrono cannot represent.
    pub(crate) fn validate(&self) -> Result<(), OperationError> {
        let invalid = |message: &str| Err(OperationError::InvalidRequest(message.to_owned()));
        if self.max_upload_bytes == 0 {
            return invalid("max_upload_bytes must be at least 1");
        }
        if self.max_line_bytes == 0 {
            return invalid("max_line_bytes must be at least 1");
        }
        if self.max_concurrent_operations == 0 {
            return invalid("max_concurrent_operations must be at least 1");
        }
        if self.chunk_lines == 0 {
            return invalid("chunk_lines must be at least 1");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity must be at least 1");
        }
        if self.sweep_interval == Some(Duration::ZERO) {
            return invalid("sweep_interval must be positive; use None to disable the sweeper");
        }
        for (name, value) in [
            ("upload_timeout", self.upload_timeout),
            ("retention", self.retention),
        ] {
            if chrono::Duration::from_std(value).is_err() {
                return Err(OperationError::InvalidRequest(format!(
                    "{name} of {value:?} is too large"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn upload_timeout_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.upload_timeout).unwrap_or(chrono::Duration::MAX)
    }

    pub(crate) fn retention_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX)
    }
}
