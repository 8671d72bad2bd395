//! The coding service's errors and the gRPC status each one maps to.
//!
//! Status messages start with the REST API's message for the case, so a
//! client ported from the REST API can match on it. Every status carries a
//! `google.rpc.ErrorInfo` (domain [`ERROR_DOMAIN`], a reason such as
//! `TOPIC_NOT_FOUND`) and a `google.rpc.RequestInfo` with the request id;
//! request errors also carry a `google.rpc.BadRequest` naming each bad field.
//! `docs/grpc.md` has the full table.

use std::collections::HashMap;

use occoder_classification::TopicId;
use occoder_model::RegistryError;
use tonic::Code;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Domain of the `google.rpc.ErrorInfo` detail of this module's statuses.
/// Access-control statuses use `occoder.auth` instead.
pub const ERROR_DOMAIN: &str = "occoder";

pub const INVALID_REQUEST_BODY: &str = "Invalid request body";
pub const MALFORMED_RECORD: &str = "Malformed record found in request";
pub const EMPTY_BATCH: &str = "Batch input contained no records";
pub const OUTSIDE_LENGTH_LIMITS: &str = "There are record(s) outside the min or max char limit:";
pub const TOPIC_NOT_FOUND: &str = "The specified topic does not exist";
pub const MODEL_NOT_FOUND: &str = "The specified model does not exist";
pub const MODEL_TOPIC_MISMATCH: &str = "Selected model does not match the input topic.";
pub const NO_MODELS: &str = "No models found for topic";
pub const INTERNAL: &str = "Error performing request";

/// Maximum bad records that one error status lists, in its message and in
/// its `BadRequest` detail.
///
/// The status message and details travel in the HTTP/2 trailers. Clients
/// built on gRPC's C core (Python, C++, Ruby) fail a call whose trailers
/// pass the core's metadata limits, a hard 16 KiB (seen with grpcio 1.85)
/// and a soft 8 KiB above which it may fail, and report RESOURCE_EXHAUSTED
/// in place of the server's status. All 300 records of a bad batch would
/// pass both, so the status lists the first records and the count of the rest.
pub const MAX_LISTED_RECORDS: usize = 10;

/// Maximum characters of a request's topic or model id quoted in an error,
/// for the same trailer size limit.
const MAX_QUOTED_CHARS: usize = 64;

/// A failed call of the coding service, before it becomes a `tonic::Status`.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// A request field is missing, out of range or has characters outside
    /// printable ASCII.
    InvalidRequestBody { detail: String, violations: Vec<Violation> },
    /// A record fills a field that the model does not read.
    MalformedRecord { violations: Vec<Violation> },
    /// Neither `record` nor any `records` were given.
    EmptyBatch,
    /// Records whose combined text is too short or too long; `lines` are
    /// the REST API's "Record with index ..." lines.
    OutsideLengthLimits { lines: Vec<String>, violations: Vec<Violation> },
    TopicNotFound { topic: String },
    ModelNotFound { model_id: String },
    ModelTopicMismatch { model_id: String, model_topic: TopicId, topic: TopicId },
    NoModels { topic: TopicId },
    /// The models are still loading after a start.
    ModelsLoading,
    /// GetSecurityContact on a server without `security.contact`.
    SecurityContactNotConfigured,
    /// A failure of the server itself. `context` is logged, never sent.
    Internal { context: String },
}

/// One bad field of a request, such as `records[2].occp_text`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Violation {
        Violation { field: field.into(), description: description.into() }
    }
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidRequestBody { .. }
            | ApiError::MalformedRecord { .. }
            | ApiError::EmptyBatch
            | ApiError::OutsideLengthLimits { .. } => Code::InvalidArgument,
            ApiError::TopicNotFound { .. } | ApiError::ModelNotFound { .. } | ApiError::SecurityContactNotConfigured => {
                Code::NotFound
            }
            ApiError::ModelTopicMismatch { .. } => Code::FailedPrecondition,
            ApiError::ModelsLoading => Code::Unavailable,
            ApiError::NoModels { .. } | ApiError::Internal { .. } => Code::Internal,
        }
    }

    /// Machine-readable reason of the `ErrorInfo` detail.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::InvalidRequestBody { .. } => "INVALID_REQUEST_BODY",
            ApiError::MalformedRecord { .. } => "MALFORMED_RECORD",
            ApiError::EmptyBatch => "EMPTY_BATCH",
            ApiError::OutsideLengthLimits { .. } => "RECORD_LENGTH_OUT_OF_RANGE",
            ApiError::TopicNotFound { .. } => "TOPIC_NOT_FOUND",
            ApiError::ModelNotFound { .. } => "MODEL_NOT_FOUND",
            ApiError::ModelTopicMismatch { .. } => "MODEL_TOPIC_MISMATCH",
            ApiError::NoModels { .. } => "NO_MODELS_FOR_TOPIC",
            ApiError::ModelsLoading => "MODELS_LOADING",
            ApiError::SecurityContactNotConfigured => "SECURITY_CONTACT_NOT_CONFIGURED",
            ApiError::Internal { .. } => "INTERNAL",
        }
    }

    /// The status message sent to the client.
    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidRequestBody { detail, .. } => format!("{INVALID_REQUEST_BODY}: {detail}"),
            ApiError::MalformedRecord { violations } => {
                let mut message = format!("{MALFORMED_RECORD}:");
                for violation in violations.iter().take(MAX_LISTED_RECORDS) {
                    message.push_str(&format!("\n{}: {}", violation.field, violation.description));
                }
                push_unlisted(&mut message, violations.len());
                message
            }
            ApiError::EmptyBatch => {
                format!("{EMPTY_BATCH}: give one record in `record` or 1 to 300 records in `records`")
            }
            ApiError::OutsideLengthLimits { lines, .. } => {
                let mut message = OUTSIDE_LENGTH_LIMITS.to_owned();
                for line in lines.iter().take(MAX_LISTED_RECORDS) {
                    message.push('\n');
                    message.push_str(line);
                }
                push_unlisted(&mut message, lines.len());
                message
            }
            ApiError::TopicNotFound { topic } => {
                format!("{TOPIC_NOT_FOUND}: {:?}; valid topics are \"osca\" and \"anzsco\"", quoted(topic))
            }
            ApiError::ModelNotFound { model_id } => {
                format!("{MODEL_NOT_FOUND}: no loaded model has the id {:?}; call ListModels for valid ids", quoted(model_id))
            }
            ApiError::ModelTopicMismatch { model_id, model_topic, topic } => {
                format!("{MODEL_TOPIC_MISMATCH} Model {model_id} codes to {model_topic}, not {topic}.")
            }
            ApiError::NoModels { topic } => {
                format!("{NO_MODELS} {topic}: the server has no model of this topic; ask its operator to add one")
            }
            ApiError::ModelsLoading => "the server is still loading its models; retry in a few seconds".to_owned(),
            ApiError::SecurityContactNotConfigured => {
                "no security contact is configured on this server; ask its operator".to_owned()
            }
            ApiError::Internal { .. } => INTERNAL.to_owned(),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        match self {
            ApiError::TopicNotFound { topic } => {
                metadata.insert("topic".to_owned(), quoted(topic));
            }
            ApiError::ModelNotFound { model_id } => {
                metadata.insert("model_id".to_owned(), quoted(model_id));
            }
            ApiError::ModelTopicMismatch { model_id, model_topic, topic } => {
                metadata.insert("model_id".to_owned(), model_id.clone());
                metadata.insert("model_topic".to_owned(), model_topic.to_string());
                metadata.insert("topic".to_owned(), topic.to_string());
            }
            ApiError::NoModels { topic } => {
                metadata.insert("topic".to_owned(), topic.to_string());
            }
            _ => {}
        }
        metadata
    }

    fn violations(&self) -> &[Violation] {
        match self {
            ApiError::InvalidRequestBody { violations, .. }
            | ApiError::MalformedRecord { violations }
            | ApiError::OutsideLengthLimits { violations, .. } => violations,
            _ => &[],
        }
    }

    /// Converts the error into the status sent to the client, with its
    /// details.
    pub fn to_status(&self, request_id: &str) -> tonic::Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(self.reason(), ERROR_DOMAIN, self.metadata());
        details.set_request_info(request_id, "");
        let all_violations = self.violations();
        let mut violations: Vec<FieldViolation> = all_violations
            .iter()
            .take(MAX_LISTED_RECORDS)
            .map(|violation| FieldViolation::new(violation.field.clone(), violation.description.clone()))
            .collect();
        if all_violations.len() > MAX_LISTED_RECORDS {
            violations.push(FieldViolation::new("records", unlisted_note(all_violations.len())));
        }
        if !violations.is_empty() {
            details.set_bad_request(violations);
        } else if *self == ApiError::EmptyBatch {
            details.add_bad_request_violation("records", "give one record in `record` or 1 to 300 records in `records`");
        }
        if *self == ApiError::ModelsLoading {
            details.set_retry_info(Some(std::time::Duration::from_secs(1)));
        }
        tonic::Status::with_error_details(self.code(), self.message(), details)
    }
}

/// Returns the note for the bad records beyond [`MAX_LISTED_RECORDS`].
fn unlisted_note(total: usize) -> String {
    format!(
        "{} more bad records are not listed; set per_record_errors to get an error for each record",
        total - MAX_LISTED_RECORDS
    )
}

fn push_unlisted(message: &mut String, total: usize) {
    if total > MAX_LISTED_RECORDS {
        message.push('\n');
        message.push_str(&unlisted_note(total));
    }
}

/// Returns `value`, cut to [`MAX_QUOTED_CHARS`] characters with `...`
/// appended when it is longer.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> ApiError {
        match error {
            RegistryError::ModelNotFound { model_id } => ApiError::ModelNotFound { model_id },
            RegistryError::ModelTopicMismatch { model_id, model_topic, topic } => {
                ApiError::ModelTopicMismatch { model_id, model_topic, topic }
            }
            RegistryError::NoModels { topic } => ApiError::NoModels { topic },
            other @ (RegistryError::Directory { .. } | RegistryError::DuplicateModelId { .. }) => {
                ApiError::Internal { context: other.to_string() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_message_lists_each_record() {
        let error = ApiError::OutsideLengthLimits {
            lines: vec![
                "Record with index 0 has a total text length under 3 min".into(),
                "Record with index 2 has a total text length over 100 max".into(),
            ],
            violations: vec![],
        };

        assert_eq!(
            error.message(),
            "There are record(s) outside the min or max char limit:\n\
             Record with index 0 has a total text length under 3 min\n\
             Record with index 2 has a total text length over 100 max"
        );
    }

    #[test]
    fn internal_message_hides_context() {
        let error = ApiError::Internal { context: "worker thread panicked".into() };
        let status = error.to_status("req-1");

        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), INTERNAL);
        assert_eq!(status.get_details_request_info().unwrap().request_id, "req-1");
    }

    /// Returns the bytes that the status takes in the trailers: the message
    /// and the base64 `grpc-status-details-bin` value, which repeats the
    /// message.
    fn trailer_bytes(status: &tonic::Status) -> usize {
        status.message().len() + status.details().len().div_ceil(3) * 4
    }

    #[test]
    fn full_bad_batch_fits_trailer_limit() {
        let lines: Vec<String> =
            (0..300).map(|index| format!("Record with index {index} has a total text length under 3 min")).collect();
        let violations = (0..300).map(|index| Violation::new(format!("records[{index}].occp_text"), lines[index].clone())).collect();
        let status = ApiError::OutsideLengthLimits { lines, violations }.to_status("req-1");

        assert!(trailer_bytes(&status) < 8 * 1024, "{} bytes", trailer_bytes(&status));
        assert!(status.message().contains("Record with index 9 has"), "{}", status.message());
        assert!(!status.message().contains("Record with index 10 has"), "{}", status.message());
        assert!(status.message().ends_with("290 more bad records are not listed; set per_record_errors to get an error for each record"));
        let listed = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), MAX_LISTED_RECORDS + 1);
        assert!(listed[MAX_LISTED_RECORDS].description.starts_with("290 more"));
    }

    #[test]
    fn malformed_batch_fits_trailer_limit() {
        // Longer than the longest real description, which names the field and
        // the model's input format in about 150 characters.
        let violations =
            (0..300).map(|index| Violation::new(format!("records[{index}].tasks_text"), "x".repeat(160))).collect();
        let status = ApiError::MalformedRecord { violations }.to_status("req-1");

        assert!(trailer_bytes(&status) < 8 * 1024, "{} bytes", trailer_bytes(&status));
        assert!(status.message().ends_with("290 more bad records are not listed; set per_record_errors to get an error for each record"));
    }

    #[test]
    fn long_topic_and_model_id_are_cut() {
        let topic = ApiError::TopicNotFound { topic: "t".repeat(20_000) }.to_status("req-1");
        let model = ApiError::ModelNotFound { model_id: "m".repeat(20_000) }.to_status("req-1");

        for status in [&topic, &model] {
            assert!(trailer_bytes(status) < 1024, "{} bytes", trailer_bytes(status));
        }
        assert!(topic.message().contains(&format!("\"{}...\"", "t".repeat(MAX_QUOTED_CHARS))), "{}", topic.message());
        assert_eq!(topic.get_details_error_info().unwrap().metadata["topic"].len(), MAX_QUOTED_CHARS + 3);
        assert_eq!(quoted("osca"), "osca");
    }

    #[test]
    fn registry_errors_keep_their_case() {
        let error = ApiError::from(RegistryError::NoModels { topic: TopicId::Anzsco });

        assert_eq!(error.code(), Code::Internal);
        assert!(error.message().starts_with(NO_MODELS));
    }
}
