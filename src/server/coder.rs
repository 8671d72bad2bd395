//! The `occoder.v1.Coder` service: topics, models and synchronous coding.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use occoder_classification::TopicId;
use occoder_model::{CodeOptions, CodeStatus, CodedRecord, Coding, MAX_SUGGESTIONS, Model, ModelMetadata, Scratch};
use occoder_text::{LengthLimit, RecordError, validate};
use tonic::{Request, Response, Status};

use super::errors::{ApiError, Violation};
use super::request_id::RequestId;
use super::state::{ServerState, client_id_of};
use crate::proto::v1 as pb;
use crate::proto::v1::coder_server::Coder;

/// Maximum number of records in one Code call, as in the REST API.
pub const MAX_BATCH_RECORDS: usize = 300;

/// Calls with at most this many valid records are coded on the async
/// worker that received them, because a record takes about 15 µs, less
/// than handing it to another thread and waking the caller again. Larger
/// batches go to the coding pool, which codes their records in parallel.
const INLINE_RECORDS: usize = 2;

thread_local! {
    /// Coding buffers of this async worker, for calls coded inline.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

pub struct CoderService {
    state: Arc<ServerState>,
}

impl CoderService {
    pub fn new(state: Arc<ServerState>) -> CoderService {
        CoderService { state }
    }
}

/// Ids of a call for logs and error details.
struct CallIds {
    request_id: String,
    client_id: String,
}

impl CallIds {
    fn of<T>(request: &Request<T>) -> CallIds {
        CallIds { request_id: RequestId::of(request), client_id: client_id_of(request) }
    }

    /// Converts a handler result into the tonic result, logging internal
    /// errors with their context, which the client never sees.
    fn finish<T>(&self, method: &str, result: Result<T, ApiError>) -> Result<Response<T>, Status> {
        match result {
            Ok(message) => Ok(Response::new(message)),
            Err(error) => {
                if let ApiError::Internal { context } = &error {
                    tracing::error!(request_id = %self.request_id, client_id = %self.client_id, method, %context, "internal error");
                } else {
                    tracing::debug!(request_id = %self.request_id, client_id = %self.client_id, method, reason = error.reason(), "request rejected");
                }
                Err(error.to_status(&self.request_id))
            }
        }
    }
}

#[tonic::async_trait]
impl Coder for CoderService {
    async fn list_topics(&self, request: Request<pb::ListTopicsRequest>) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let ids = CallIds::of(&request);
        let topics = TopicId::ALL
            .iter()
            .map(|topic| {
                let description = topic.topic();
                pb::Topic { uri_name: description.uri_name, full_name: description.full_name }
            })
            .collect();
        ids.finish("ListTopics", Ok(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(&self, request: Request<pb::DescribeTopicRequest>) -> Result<Response<pb::TopicDescription>, Status> {
        let ids = CallIds::of(&request);
        let result = self.describe_topic(&request.into_inner().topic);
        ids.finish("DescribeTopic", result)
    }

    async fn list_models(&self, request: Request<pb::ListModelsRequest>) -> Result<Response<pb::ListModelsResponse>, Status> {
        let ids = CallIds::of(&request);
        let result = self.list_models(&request.into_inner().topic);
        ids.finish("ListModels", result)
    }

    async fn get_latest_model(&self, request: Request<pb::GetLatestModelRequest>) -> Result<Response<pb::Model>, Status> {
        let ids = CallIds::of(&request);
        let result = self.latest_model(&request.into_inner().topic);
        ids.finish("GetLatestModel", result)
    }

    async fn code(&self, request: Request<pb::CodeRequest>) -> Result<Response<pb::CodeResponse>, Status> {
        let ids = CallIds::of(&request);
        let started = Instant::now();
        let result = self.code(request.into_inner()).await;
        if let Ok(response) = &result {
            tracing::debug!(
                request_id = %ids.request_id,
                client_id = %ids.client_id,
                model_id = %response.model_id,
                records = response.responses.len(),
                micros = started.elapsed().as_micros() as u64,
                "coded records"
            );
        }
        ids.finish("Code", result)
    }

    async fn get_security_contact(
        &self,
        request: Request<pb::GetSecurityContactRequest>,
    ) -> Result<Response<pb::SecurityContact>, Status> {
        let ids = CallIds::of(&request);
        let security = &self.state.config.security;
        let result = match security.expires {
            Some(expires) if !security.contact.is_empty() => {
                let mut text = String::new();
                for contact in &security.contact {
                    text.push_str(&format!("Contact: {contact}\n"));
                }
                text.push_str(&format!("Expires: {}\n", expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
                Ok(pb::SecurityContact { contact: security.contact.clone(), expires: Some(timestamp(expires)), text })
            }
            _ => Err(ApiError::SecurityContactNotConfigured),
        };
        ids.finish("GetSecurityContact", result)
    }
}

impl CoderService {
    fn describe_topic(&self, topic: &str) -> Result<pb::TopicDescription, ApiError> {
        let topic = parse_topic(topic)?;
        let latest = self.state.models()?.latest(topic)?;
        let description = topic.topic();
        Ok(pb::TopicDescription {
            uri_name: description.uri_name,
            full_name: description.full_name,
            topic_version: description.version,
            input_format: latest.metadata().input_format.clone(),
            latest_model_id: latest.metadata().model_id.to_string(),
        })
    }

    fn list_models(&self, topic: &str) -> Result<pb::ListModelsResponse, ApiError> {
        let topic = parse_topic(topic)?;
        let models = self.state.models()?.models(topic).map(|model| model_message(model.metadata())).collect();
        Ok(pb::ListModelsResponse { models })
    }

    fn latest_model(&self, topic: &str) -> Result<pb::Model, ApiError> {
        let topic = parse_topic(topic)?;
        Ok(model_message(self.state.models()?.latest(topic)?.metadata()))
    }

    async fn code(&self, request: pb::CodeRequest) -> Result<pb::CodeResponse, ApiError> {
        let topic = parse_topic(&request.topic)?;
        let options = parse_suggestions(request.number_of_suggestions)?;
        let (records, batch) = take_records(request.record, request.records)?;
        let model = Arc::clone(self.state.models()?.select(topic, request.model_id.as_deref())?);

        let checked = check_records(&records, batch, &model.metadata().input_format);
        if !request.per_record_errors {
            reject_bad_records(&checked)?;
        }

        let valid: Vec<occoder_text::Record> = checked.iter().filter_map(|check| check.as_ref().ok().cloned()).collect();
        let codings = if valid.len() <= INLINE_RECORDS {
            code_inline(&model, &valid, &options)
        } else {
            let permit = self.state.coding_slot().await?;
            let coding_model = Arc::clone(&model);
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                coding_model.code_batch(&valid, &options)
            })
            .await
            .map_err(|error| ApiError::Internal { context: format!("coding task failed: {error}") })?
        };

        let mut codings = codings.into_iter();
        let mut responses = Vec::with_capacity(records.len());
        for (record, check) in records.into_iter().zip(checked) {
            let response = match check {
                Ok(_) => {
                    let coding = codings
                        .next()
                        .ok_or_else(|| ApiError::Internal { context: "the model returned fewer codings than records".into() })?;
                    coded_response(record, coding)
                }
                Err(problem) => failed_response(record, problem.message),
            };
            responses.push(response);
        }
        Ok(pb::CodeResponse {
            responses,
            model_id: model.metadata().model_id.to_string(),
            model_version: model.metadata().model_version,
        })
    }
}

/// Codes `records` on this thread with its reusable buffers.
fn code_inline(model: &Model, records: &[occoder_text::Record], options: &CodeOptions) -> Vec<Coding> {
    SCRATCH.with_borrow_mut(|scratch| records.iter().map(|record| model.code_with(record, options, scratch)).collect())
}

fn parse_topic(topic: &str) -> Result<TopicId, ApiError> {
    topic.parse().map_err(|_| ApiError::TopicNotFound { topic: topic.to_owned() })
}

fn parse_suggestions(requested: Option<i32>) -> Result<CodeOptions, ApiError> {
    CodeOptions::with_suggestions(requested.map(i64::from)).map_err(|error| {
        let description = format!("number_of_suggestions is {}; give 1 to {MAX_SUGGESTIONS}, or leave it out for 3", error.0);
        ApiError::InvalidRequestBody {
            detail: description.clone(),
            violations: vec![Violation::new("number_of_suggestions", description)],
        }
    })
}

/// Returns the records to code and whether the request was a batch.
fn take_records(record: Option<pb::Record>, records: Vec<pb::Record>) -> Result<(Vec<pb::Record>, bool), ApiError> {
    match (record, records.len()) {
        (Some(_), 1..) => {
            let description = "give either `record` or `records`, not both";
            Err(ApiError::InvalidRequestBody {
                detail: description.to_owned(),
                violations: vec![Violation::new("record", description)],
            })
        }
        (Some(record), 0) => Ok((vec![record], false)),
        (None, 0) => Err(ApiError::EmptyBatch),
        (None, count) if count > MAX_BATCH_RECORDS => {
            let description = format!(
                "records has {count} records, more than the maximum of {MAX_BATCH_RECORDS}; \
                 split the batch or use bulk coding"
            );
            Err(ApiError::InvalidRequestBody {
                detail: description.clone(),
                violations: vec![Violation::new("records", description)],
            })
        }
        (None, _) => Ok((records, true)),
    }
}

/// Why one record cannot be coded.
#[derive(Debug, Clone, PartialEq)]
struct RecordProblem {
    kind: ProblemKind,
    /// Field path such as `records[2].occp_text`.
    field: String,
    /// Error for the BadRequest detail and for the per-record `error`.
    message: String,
    /// The REST API's "Record with index ..." line, for length errors.
    batch_line: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ProblemKind {
    Malformed,
    InvalidCharacters,
    Length,
}

/// Checks every record against the model's input format, the character
/// set and the synchronous length limit.
fn check_records(
    records: &[pb::Record],
    batch: bool,
    input_format: &[String],
) -> Vec<Result<occoder_text::Record, RecordProblem>> {
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let path = |field: &str| if batch { format!("records[{index}].{field}") } else { format!("record.{field}") };
            let text = occoder_text::Record::new(record.occp_text.clone(), record.tasks_text.clone());

            for (field, value) in [("occp_text", &text.occp_text), ("tasks_text", &text.tasks_text)] {
                if !value.is_empty() && !input_format.iter().any(|name| name == field) {
                    return Err(RecordProblem {
                        kind: ProblemKind::Malformed,
                        field: path(field),
                        message: format!(
                            "{}: record with index {index} fills {field}, which the model does not read; \
                             the model's input format is [{}]",
                            super::errors::MALFORMED_RECORD,
                            input_format.join(", ")
                        ),
                        batch_line: None,
                    });
                }
            }

            match validate(&text, LengthLimit::Synchronous) {
                Ok(()) => Ok(text),
                Err(error) => Err(record_problem(&error, index, &path(error.field().name()))),
            }
        })
        .collect()
}

fn record_problem(error: &RecordError, index: usize, field: &str) -> RecordProblem {
    match error {
        RecordError::NotPrintableAscii { .. } => RecordProblem {
            kind: ProblemKind::InvalidCharacters,
            field: field.to_owned(),
            message: error.to_string(),
            batch_line: None,
        },
        RecordError::TooShort { .. } | RecordError::TooLong { .. } => {
            let line = format!("{}: {}", error.batch_line(index), fix_text(error));
            RecordProblem { kind: ProblemKind::Length, field: field.to_owned(), message: line.clone(), batch_line: Some(line) }
        }
    }
}

/// Returns the part of a record error's message after the service's
/// wording: the cause and the fix, as `occoder code` prints them.
fn fix_text(error: &RecordError) -> String {
    let message = error.to_string();
    match message.split_once(": ") {
        Some((_, fix)) => fix.to_owned(),
        None => message,
    }
}

/// Fails the call when any record is bad, as the REST API does. The error
/// reports the most basic problem found (malformed record, then invalid
/// characters, then length) and names the first bad records in its
/// BadRequest (see [`super::errors::MAX_LISTED_RECORDS`]).
fn reject_bad_records(checked: &[Result<occoder_text::Record, RecordProblem>]) -> Result<(), ApiError> {
    let problems: Vec<&RecordProblem> = checked.iter().filter_map(|check| check.as_ref().err()).collect();
    let Some(kind) = problems.iter().map(|problem| problem.kind).min() else {
        return Ok(());
    };
    let violations: Vec<Violation> =
        problems.iter().map(|problem| Violation::new(problem.field.clone(), problem.message.clone())).collect();
    Err(match kind {
        ProblemKind::Malformed => ApiError::MalformedRecord { violations },
        ProblemKind::InvalidCharacters => {
            let count = problems.iter().filter(|problem| problem.kind == ProblemKind::InvalidCharacters).count();
            ApiError::InvalidRequestBody {
                detail: format!(
                    "{count} record(s) contain characters outside printable ASCII (space to ~); \
                     the BadRequest details name the fields"
                ),
                violations,
            }
        }
        ProblemKind::Length => ApiError::OutsideLengthLimits {
            lines: problems.iter().filter_map(|problem| problem.batch_line.clone()).collect(),
            violations,
        },
    })
}

fn echo(record: &pb::Record) -> pb::Record {
    pb::Record { record_id: None, occp_text: record.occp_text.clone(), tasks_text: record.tasks_text.clone() }
}

fn coded_response(record: pb::Record, coding: Coding) -> pb::SynchronousCodeResponse {
    let code_status = match coding.status {
        CodeStatus::Successful => pb::CodeStatus::Successful,
        CodeStatus::Unsuccessful => pb::CodeStatus::Unsuccessful,
    };
    pb::SynchronousCodeResponse {
        input: Some(echo(&record)),
        record_id: record.record_id,
        code_status: code_status.into(),
        result: coding.result.into_iter().map(coded_record).collect(),
        suggestions: coding.suggestions.into_iter().map(coded_record).collect(),
        error: None,
    }
}

fn failed_response(record: pb::Record, error: String) -> pb::SynchronousCodeResponse {
    pb::SynchronousCodeResponse {
        input: Some(echo(&record)),
        record_id: record.record_id,
        code_status: pb::CodeStatus::Unsuccessful.into(),
        result: Vec::new(),
        suggestions: Vec::new(),
        error: Some(error),
    }
}

pub(crate) fn coded_record(record: CodedRecord) -> pb::CodedRecord {
    pb::CodedRecord {
        code_category: record.code_category,
        code_label: record.code_label,
        code_confidence: record.code_confidence,
    }
}

pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }
}

pub(crate) fn model_message(metadata: &ModelMetadata) -> pb::Model {
    pb::Model {
        model_id: metadata.model_id.to_string(),
        model_version: metadata.model_version,
        model_release_date: Some(timestamp(metadata.model_release_date)),
        model_type: metadata.model_type.clone(),
        input_format: metadata.input_format.clone(),
        topic_standard: metadata.topic_standard.clone(),
        topic_version: metadata.topic_version.clone(),
        topic: metadata.topic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(occp_text: &str, tasks_text: &str) -> pb::Record {
        pb::Record { record_id: None, occp_text: occp_text.into(), tasks_text: tasks_text.into() }
    }

    fn both_fields() -> Vec<String> {
        vec!["occp_text".into(), "tasks_text".into()]
    }

    #[test]
    fn neither_record_nor_records_is_empty_batch() {
        assert_eq!(take_records(None, vec![]).unwrap_err(), ApiError::EmptyBatch);
    }

    #[test]
    fn both_record_and_records_is_invalid() {
        let error = take_records(Some(record("nurse", "")), vec![record("chef", "")]).unwrap_err();

        assert!(matches!(error, ApiError::InvalidRequestBody { .. }), "{error:?}");
    }

    #[test]
    fn batch_of_301_is_invalid() {
        let error = take_records(None, vec![record("nurse", ""); 301]).unwrap_err();

        assert!(matches!(error, ApiError::InvalidRequestBody { ref violations, .. } if violations[0].field == "records"));
        assert!(take_records(None, vec![record("nurse", ""); 300]).is_ok());
    }

    #[test]
    fn suggestion_count_is_checked() {
        assert!(parse_suggestions(None).is_ok());
        assert!(parse_suggestions(Some(16)).is_ok());
        assert!(parse_suggestions(Some(0)).is_err());
        assert!(parse_suggestions(Some(17)).is_err());
    }

    #[test]
    fn length_problems_use_batch_lines() {
        let records = [record("software developer", ""), record("ab", ""), record(&"x".repeat(101), "")];
        let checked = check_records(&records, true, &both_fields());
        let error = reject_bad_records(&checked).unwrap_err();

        let ApiError::OutsideLengthLimits { lines, violations } = error else { panic!("{error:?}") };
        assert_eq!(
            lines,
            [
                "Record with index 1 has a total text length under 3 min: occp_text and tasks_text together have 2 \
                 characters; give a job title or tasks of at least 3 characters",
                "Record with index 2 has a total text length over 100 max: occp_text and tasks_text together have 101 \
                 characters; shorten the text to at most 100 characters"
            ]
        );
        assert_eq!(violations[0].field, "records[1].occp_text");
    }

    #[test]
    fn malformed_wins_over_length() {
        let records = [record("ab", ""), record("nurse", "caring for patients")];
        let checked = check_records(&records, true, &["occp_text".to_owned()]);
        let error = reject_bad_records(&checked).unwrap_err();

        let ApiError::MalformedRecord { violations } = error else { panic!("{error:?}") };
        assert_eq!(violations.len(), 2);
        assert_eq!(violations[1].field, "records[1].tasks_text");
    }

    #[test]
    fn single_record_fields_are_named_record() {
        let checked = check_records(&[record("caf\u{e9}", "")], false, &both_fields());

        assert_eq!(checked[0].as_ref().unwrap_err().field, "record.occp_text");
        assert!(matches!(reject_bad_records(&checked), Err(ApiError::InvalidRequestBody { .. })));
    }
}
