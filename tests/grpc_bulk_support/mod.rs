//! Helpers shared by the bulk coding tests: generated records, the offline
//! reference output, and BulkCoder calls that upload, wait and download.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use occoder::proto::v1 as pb;
use occoder::proto::v1::bulk_coder_client::BulkCoderClient;
use occoder_classification::TopicId;
use occoder_model::bulk::{AsynchronousCodeResponse, EchoedInput};
use occoder_model::{CodeStatus, CodedRecord, Model, ModelRegistry};
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Occupation and tasks texts that the shipped OSCA model codes, some with
/// an empty field as the service allows.
const TEXTS: &[(&str, &str)] = &[
    ("software developer", "writing code and unit tests"),
    ("Paramedic", "responding to medical emergencies"),
    ("Brickie", ""),
    ("registered nurse", "caring for patients in the emergency department"),
    ("chef", "cooking meals in a restaurant kitchen"),
    ("truck driver", "delivering freight interstate"),
    ("primary school teacher", "teaching year 3 students"),
    ("", "preparing tax returns for clients"),
    ("retired", ""),
    ("sales assistant", "serving customers and stocking shelves"),
    ("electrician", "installing wiring in new houses"),
    ("student", ""),
];

/// A streamed or uploaded record: id, occupation text, tasks text.
pub type TestRecord = (Option<String>, String, String);

/// Returns `count` records, mostly valid, with a record that breaks the
/// bulk rules every 97 records: too short, too long, or not printable ASCII.
pub fn records(count: usize) -> Vec<TestRecord> {
    (0..count)
        .map(|index| {
            let record_id = if index % 5 == 0 { None } else { Some(format!("r{index}")) };
            let (occp_text, tasks_text) = match index % 97 {
                13 => ("ab".to_owned(), String::new()),
                29 => ("x".repeat(200), "y".repeat(101)),
                61 => ("caf\u{e9} owner".to_owned(), "making coffee".to_owned()),
                _ => {
                    let (occp, tasks) = TEXTS[index % TEXTS.len()];
                    (occp.to_owned(), tasks.to_owned())
                }
            };
            (record_id, occp_text, tasks_text)
        })
        .collect()
}

/// Formats a record as the JSON line a client uploads.
pub fn json_line(record: &TestRecord) -> String {
    let (record_id, occp_text, tasks_text) = record;
    let mut object = json!({ "occp_text": occp_text, "tasks_text": tasks_text });
    if let Some(id) = record_id {
        object["recordId"] = json!(id);
    }
    object.to_string()
}

pub fn stream_record(record: &TestRecord) -> pb::CodeStreamRequest {
    let (record_id, occp_text, tasks_text) = record.clone();
    pb::CodeStreamRequest {
        message: Some(pb::code_stream_request::Message::Record(pb::Record { record_id, occp_text, tasks_text })),
    }
}

pub fn stream_setup(topic: &str) -> pb::CodeStreamRequest {
    pb::CodeStreamRequest {
        message: Some(pb::code_stream_request::Message::Setup(pb::CodeStreamSetup { topic: topic.to_owned(), model_id: None })),
    }
}

/// Loads the latest OSCA model of the shipped models, once per test binary.
pub fn osca_model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| {
        let (registry, failures) = ModelRegistry::load_dir(&crate::grpc_support::shipped_models_dir()).unwrap();
        assert!(failures.is_empty(), "model files failed to load: {failures:?}");
        Arc::clone(registry.latest(TopicId::Osca).unwrap())
    }))
}

/// Codes `lines` as `occoder code --topic osca --input FILE` does.
pub fn offline_output(lines: &[String]) -> Vec<String> {
    occoder_model::bulk::code_lines(&osca_model(), lines)
}

/// Formats a streamed response as the offline command's JSON line, so that
/// the two can be compared as strings, confidences included.
pub fn response_line(response: &pb::AsynchronousCodeResponse) -> String {
    let coded = |record: &pb::CodedRecord| CodedRecord {
        code_category: record.code_category.clone(),
        code_label: record.code_label.clone(),
        code_confidence: record.code_confidence,
    };
    let input = response.input.as_ref().expect("every streamed response echoes its input");
    let code_status = match pb::CodeStatus::try_from(response.code_status).unwrap() {
        pb::CodeStatus::Successful => CodeStatus::Successful,
        pb::CodeStatus::Unsuccessful => CodeStatus::Unsuccessful,
        pb::CodeStatus::Unspecified => panic!("code_status is unspecified in {response:?}"),
    };
    let suggestions = (response.error.is_none() && code_status == CodeStatus::Unsuccessful)
        .then(|| response.suggestions.iter().map(coded).collect());
    AsynchronousCodeResponse {
        record_id: response.record_id.clone(),
        code_status,
        input: EchoedInput::Fields { occp_text: Some(input.occp_text.clone()), tasks_text: Some(input.tasks_text.clone()) },
        result: response.result.as_ref().map(coded),
        suggestions,
        error: response.error.clone(),
    }
    .to_json_line()
}

pub async fn bulk_client(endpoint: &crate::grpc_support::Endpoint) -> BulkCoderClient<Channel> {
    BulkCoderClient::new(endpoint.channel().await).max_decoding_message_size(16 << 20)
}

pub fn authorized<T>(message: T, token: &str) -> Request<T> {
    crate::grpc_support::authorized(message, token)
}

pub async fn create_operation(client: &mut BulkCoderClient<Channel>, token: &str) -> pb::OperationStatus {
    let request = pb::CreateOperationRequest { topic: "osca".into(), model_id: None };
    client.create_operation(authorized(request, token)).await.expect("CreateOperation succeeds").into_inner()
}

/// Uploads `data` to an operation in messages of `chunk_bytes` bytes.
pub async fn upload(
    client: &mut BulkCoderClient<Channel>,
    token: &str,
    operation_id: &str,
    data: Vec<u8>,
    chunk_bytes: usize,
) -> Result<pb::OperationStatus, Status> {
    // An empty upload still sends one message, which names the operation.
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(chunk_bytes).collect() };
    let messages: Vec<pb::UploadOperationInputRequest> = chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| pb::UploadOperationInputRequest {
            operation_id: if index == 0 { operation_id.to_owned() } else { String::new() },
            topic: if index == 0 { "osca".to_owned() } else { String::new() },
            data: chunk.to_vec(),
        })
        .collect();
    client.upload_operation_input(authorized(tokio_stream::iter(messages), token)).await.map(tonic::Response::into_inner)
}

pub async fn status(client: &mut BulkCoderClient<Channel>, token: &str, operation_id: &str) -> Result<pb::OperationStatus, Status> {
    let request = pb::GetOperationRequest { topic: "osca".into(), operation_id: operation_id.to_owned() };
    client.get_operation(authorized(request, token)).await.map(tonic::Response::into_inner)
}

/// Polls an operation until it is no longer awaiting input or in progress.
pub async fn wait_until_done(
    client: &mut BulkCoderClient<Channel>,
    token: &str,
    operation_id: &str,
    timeout: Duration,
) -> pb::OperationStatus {
    let started = Instant::now();
    loop {
        let current = status(client, token, operation_id).await.expect("GetOperation succeeds");
        let state = current.operation_status();
        if state != pb::OperationState::InProgress && state != pb::OperationState::AwaitingInput {
            return current;
        }
        assert!(started.elapsed() < timeout, "operation {operation_id} is still {state:?} after {timeout:?}: {current:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Downloads an operation's output: the metadata of the first message and
/// every line.
pub async fn download(
    client: &mut BulkCoderClient<Channel>,
    token: &str,
    operation_id: &str,
) -> Result<(pb::OperationMetadata, Vec<String>), Status> {
    let request = pb::DownloadOperationOutputRequest { topic: "osca".into(), operation_id: operation_id.to_owned() };
    let mut stream = client.download_operation_output(authorized(request, token)).await?.into_inner();
    let mut metadata = None;
    let mut lines = Vec::new();
    while let Some(message) = stream.message().await? {
        if let Some(first) = message.metadata {
            assert!(metadata.is_none(), "metadata arrived in more than one message");
            metadata = Some(first);
        }
        lines.extend(message.lines);
    }
    Ok((metadata.expect("the first download message carries the metadata"), lines))
}
