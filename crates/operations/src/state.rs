//! The persisted operation record and the views returned to callers.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::coder::LineOutcome;

/// Version of the `state.json` format; bump it when a field changes meaning.
pub(crate) const STATE_FORMAT_VERSION: u32 = 1;

/// Lifecycle state of an operation.
///
/// `AwaitingInput` → `InProgress` → `Complete` or `Failed`, or
/// `AwaitingInput` → `TimedOut`. The last three are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    AwaitingInput,
    InProgress,
    Complete,
    TimedOut,
    Failed,
}

impl OperationState {
    /// Returns the snake_case name used in `state.json` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::AwaitingInput => "awaiting_input",
            OperationState::InProgress => "in_progress",
            OperationState::Complete => "complete",
            OperationState::TimedOut => "timed_out",
            OperationState::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::Complete | OperationState::TimedOut | OperationState::Failed
        )
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Line counts of an operation's output so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCounts {
    /// Input lines coded and durably written to the output.
    pub processed: u64,
    /// Output lines with `"codeStatus":"successful"`.
    pub successful: u64,
    /// Output lines with another `codeStatus` and no `"error"` field.
    pub unsuccessful: u64,
    /// Output lines with an `"error"` field or that are not JSON objects.
    pub errors: u64,
}

impl LineCounts {
    pub(crate) fn add(&mut self, outcome: LineOutcome) {
        self.processed += 1;
        match outcome {
            LineOutcome::Successful => self.successful += 1,
            LineOutcome::Unsuccessful => self.unsuccessful += 1,
            LineOutcome::Error => self.errors += 1,
        }
    }
}

/// Position up to which the output is durable.
///
/// `output.jsonl` is fsynced up to `output_offset` before the checkpoint is
/// written, and its first `counts.processed` lines are the coded form of the
/// input bytes before `input_offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub input_offset: u64,
    pub output_offset: u64,
}

/// The content of `state.json`; the store keeps a copy in memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    pub format_version: u32,
    pub id: Uuid,
    pub owner: String,
    pub topic: String,
    pub model_id: String,
    pub state: OperationState,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    /// When the operation became terminal (complete, failed or timed out).
    pub completed_at: Option<DateTime<Utc>>,
    /// When the input and output files were deleted after retention.
    pub expired_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub input_lines: Option<u64>,
    pub input_bytes: Option<u64>,
    pub counts: LineCounts,
    pub checkpoint: Checkpoint,
    /// Number of times processing resumed after a restart or shutdown.
    pub resume_count: u32,
}

impl OperationRecord {
    pub fn new(
        id: Uuid,
        owner: &str,
        topic: &str,
        model_id: &str,
        created_at: DateTime<Utc>,
    ) -> Self {
        OperationRecord {
            format_version: STATE_FORMAT_VERSION,
            id,
            owner: owner.to_owned(),
            topic: topic.to_owned(),
            model_id: model_id.to_owned(),
            state: OperationState::AwaitingInput,
            created_at,
            uploaded_at: None,
            started_at: None,
            completed_at: None,
            expired_at: None,
            error: None,
            input_lines: None,
            input_bytes: None,
            counts: LineCounts::default(),
            checkpoint: Checkpoint::default(),
            resume_count: 0,
        }
    }
}

/// A snapshot of an operation's status, returned by the status call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationStatus {
    pub operation_id: Uuid,
    pub topic: String,
    pub model_id: String,
    pub state: OperationState,
    /// Number of input lines; known once the upload has finished.
    pub total_lines: Option<u64>,
    pub counts: LineCounts,
    /// Reason for `Failed`, or `None`.
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Time by which an upload must start; after it the operation times out.
    pub upload_deadline: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Time at which the results are (or were) deleted; set once terminal.
    pub expires_at: Option<DateTime<Utc>>,
    /// True once the input and output files were deleted after retention.
    pub expired: bool,
    /// Human-readable summary for the client, in English.
    pub message: String,
}

impl OperationStatus {
    pub(crate) fn from_record(
        record: &OperationRecord,
        upload_timeout: chrono::Duration,
        retention: chrono::Duration,
    ) -> Self {
        let upload_deadline = record.created_at + upload_timeout;
        let expires_at = record.completed_at.map(|completed| completed + retention);
        OperationStatus {
            operation_id: record.id,
            topic: record.topic.clone(),
            model_id: record.model_id.clone(),
            state: record.state,
            total_lines: record.input_lines,
            counts: record.counts,
            error_message: record.error.clone(),
            created_at: record.created_at,
            upload_deadline,
            uploaded_at: record.uploaded_at,
            started_at: record.started_at,
            completed_at: record.completed_at,
            expires_at,
            expired: record.expired_at.is_some(),
            message: status_message(record, upload_deadline, expires_at),
        }
    }
}

fn status_message(
    record: &OperationRecord,
    upload_deadline: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> String {
    if let Some(expired_at) = record.expired_at
        && record.state == OperationState::Complete
    {
        return format!("The results expired and were deleted at {expired_at}.");
    }
    let expiry = match expires_at {
        Some(time) => format!(" Results are kept until {time}."),
        None => String::new(),
    };
    match record.state {
        OperationState::AwaitingInput => {
            format!("Awaiting input; the upload must start before {upload_deadline}.")
        }
        OperationState::InProgress => match record.input_lines {
            Some(total) => format!(
                "In progress: {} of {total} lines coded.",
                record.counts.processed
            ),
            None => format!("In progress: {} lines coded.", record.counts.processed),
        },
        OperationState::Complete => format!(
            "Complete: {} lines coded ({} successful, {} unsuccessful, {} errors).{expiry}",
            record.counts.processed,
            record.counts.successful,
            record.counts.unsuccessful,
            record.counts.errors
        ),
        OperationState::TimedOut => {
            format!("Timed out: no upload started before {upload_deadline}.")
        }
        OperationState::Failed => format!(
            "Failed: {}",
            record.error.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// Summary of a completed operation, returned with the output lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputMetadata {
    pub operation_id: Uuid,
    pub topic: String,
    pub model_id: String,
    pub input_lines: u64,
    pub successful_lines: u64,
    pub unsuccessful_lines: u64,
    pub error_lines: u64,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Milliseconds from the first start of processing to completion,
    /// including any time the server was down in between.
    pub processing_millis: Option<i64>,
    /// Number of times processing resumed after a restart or shutdown.
    pub resume_count: u32,
}

impl OutputMetadata {
    pub(crate) fn from_record(record: &OperationRecord) -> Self {
        let processing_millis = match (record.started_at, record.completed_at) {
            (Some(started), Some(completed)) => Some((completed - started).num_milliseconds()),
            _ => None,
        };
        OutputMetadata {
            operation_id: record.id,
            topic: record.topic.clone(),
            model_id: record.model_id.clone(),
            input_lines: record.counts.processed,
            successful_lines: record.counts.successful,
            unsuccessful_lines: record.counts.unsuccessful,
            error_lines: record.counts.errors,
            created_at: record.created_at,
            uploaded_at: record.uploaded_at,
            started_at: record.started_at,
            completed_at: record.completed_at,
            processing_millis,
            resume_count: record.resume_count,
        }
    }
}
