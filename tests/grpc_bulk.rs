//! The BulkCoder service over a real tonic connection: CodeStream against
//! the offline coder's output, asynchronous operations from creation to
//! download, upload timeouts and retention under a manual clock, client
//! isolation and the partner-only rule.

mod grpc_bulk_support;
mod grpc_support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use grpc_bulk_support::*;
use grpc_support::{TestServer, shared_server};
use occoder::proto::v1 as pb;
use occoder::server::config::StoreClock;
use occoder_auth::Role;
use occoder_operations::ManualClock;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_of_100000_matches_offline() {
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;
    let records = records(100_000);

    let messages: Vec<pb::CodeStreamRequest> =
        std::iter::once(stream_setup("osca")).chain(records.iter().map(stream_record)).collect();
    let mut responses = client
        .code_stream(authorized(tokio_stream::iter(messages), &token))
        .await
        .expect("CodeStream starts")
        .into_inner();
    let mut streamed = Vec::with_capacity(records.len());
    while let Some(response) = responses.message().await.expect("the stream ends without an error") {
        streamed.push(response);
    }

    let lines: Vec<String> = records.iter().map(json_line).collect();
    let expected = offline_output(&lines);
    assert_eq!(streamed.len(), expected.len());
    for (index, (response, offline)) in streamed.iter().zip(&expected).enumerate() {
        assert_eq!(&response_line(response), offline, "record {index} differs from the offline output");
    }
    let errors = streamed.iter().filter(|response| response.error.is_some()).count();
    let invalid = (0..records.len()).filter(|index| [13, 29, 61].contains(&(index % 97))).count();
    assert_eq!(errors, invalid, "every invalid record, and only those, has an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_answers_each_record_in_turn() {
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;
    let (sender, receiver) = mpsc::channel(4);
    sender.send(stream_setup("osca")).await.unwrap();
    let mut responses = client
        .code_stream(authorized(ReceiverStream::new(receiver), &token))
        .await
        .expect("CodeStream starts")
        .into_inner();

    let cases = [
        ("1", "software developer", "writing code and unit tests", None),
        ("2", "ab", "", Some("under 3 min")),
        ("3", "caf\u{e9} owner", "", Some("printable ASCII")),
        ("4", &"x".repeat(301) as &str, "", Some("over 300 max")),
        ("5", "software developer", "writing code and unit tests", None),
    ];
    for (record_id, occp_text, tasks_text, error) in cases {
        let record = (Some(record_id.to_owned()), occp_text.to_owned(), tasks_text.to_owned());
        sender.send(stream_record(&record)).await.unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), responses.message())
            .await
            .expect("the response arrives while the stream stays open")
            .unwrap()
            .unwrap();
        assert_eq!(response.record_id.as_deref(), Some(record_id));
        match error {
            Some(fragment) => {
                let message = response.error.as_deref().unwrap_or_else(|| panic!("record {record_id} has no error"));
                assert!(message.contains(fragment), "error {message:?} of record {record_id} lacks {fragment:?}");
                assert_eq!(response.code_status(), pb::CodeStatus::Unsuccessful);
            }
            None => {
                assert_eq!(response.code_status(), pb::CodeStatus::Successful);
                assert_eq!(response.result.as_ref().unwrap().code_category, "273333");
            }
        }
    }
    drop(sender);
    assert!(responses.message().await.unwrap().is_none(), "the stream ends after the client's last record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stops_reading_unread_client() {
    const LIMIT: usize = 200_000;
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;
    let (sender, receiver) = mpsc::channel(64);
    sender.send(stream_setup("osca")).await.unwrap();
    let responses = client
        .code_stream(authorized(ReceiverStream::new(receiver), &token))
        .await
        .expect("CodeStream starts")
        .into_inner();

    // Nothing reads the responses, so the server must stop reading records
    // once its read-ahead and the transport's buffers are full.
    let record = stream_record(&(None, "software developer".into(), "writing code and unit tests".into()));
    let mut accepted = 0;
    while accepted < LIMIT {
        match tokio::time::timeout(Duration::from_secs(3), sender.send(record.clone())).await {
            Ok(Ok(())) => accepted += 1,
            Ok(Err(_)) => panic!("the request stream closed after {accepted} records"),
            Err(_) => break,
        }
    }
    assert!(accepted < LIMIT, "the server read all {accepted} records although no response was read");

    // The abandoned stream keeps its connection's flow-control window, as
    // HTTP/2 requires, so the next stream uses a connection of its own.
    drop(responses);
    drop(sender);
    let mut client = bulk_client(server).await;
    let messages = vec![stream_setup("osca"), record.clone(), record];
    let mut again = client.code_stream(authorized(tokio_stream::iter(messages), &token)).await.expect("CodeStream starts").into_inner();
    let mut answered = 0;
    while again.message().await.expect("the new stream succeeds").is_some() {
        answered += 1;
    }
    assert_eq!(answered, 2, "a new stream works while another one is blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rejects_bad_setup() {
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;

    let no_setup = vec![stream_record(&(None, "chef".into(), String::new()))];
    let error = client.code_stream(authorized(tokio_stream::iter(no_setup), &token)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().starts_with("Invalid request body"), "{error:?}");

    let unknown_topic = vec![stream_setup("isco")];
    let error = client.code_stream(authorized(tokio_stream::iter(unknown_topic), &token)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().starts_with("The specified topic does not exist"), "{error:?}");

    let second_setup = vec![stream_setup("osca"), stream_record(&(None, "chef".into(), String::new())), stream_setup("osca")];
    let mut responses =
        client.code_stream(authorized(tokio_stream::iter(second_setup), &token)).await.expect("CodeStream starts").into_inner();
    let first = responses.message().await.expect("the record before the bad message is answered").unwrap();
    assert!(first.error.is_none());
    let error = responses.message().await.unwrap_err();
    grpc_support::assert_status(&error, Code::InvalidArgument, "Invalid request body", "INVALID_REQUEST_BODY", "occoder");
    assert!(error.message().contains("message 3"), "{error:?}");
    assert_eq!(grpc_support::violation_fields(&error), ["record"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_with_bad_lines_completes() {
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;

    let created = create_operation(&mut client, &token).await;
    assert_eq!(created.operation_status(), pb::OperationState::AwaitingInput);
    assert!(uuid::Uuid::parse_str(&created.operation_id).is_ok(), "operation id {:?} is not a GUID", created.operation_id);

    let mut lines: Vec<String> = records(3000).iter().map(json_line).collect();
    lines[7] = "this is not a json string".to_owned();
    lines[8] = r#"{"recordId": "8", "occp_text": "software developer"}"#.to_owned();
    lines[9] = r#"{"recordId": 9, "occp_text": "software developer", "tasks_text": "writing code and unit tests"}"#.to_owned();
    lines[10] = r#"{"recordId": "10", "occp_text": 5, "tasks_text": ""}"#.to_owned();
    let mut input = lines.join("\n").into_bytes();
    input.push(b'\n');
    let uploaded = upload(&mut client, &token, &created.operation_id, input, 7_777).await.expect("the upload succeeds");
    assert_eq!(uploaded.operation_status(), pb::OperationState::InProgress);
    assert_eq!(uploaded.total_lines, Some(3000));

    let done = wait_until_done(&mut client, &token, &created.operation_id, OPERATION_TIMEOUT).await;
    assert_eq!(done.operation_status(), pb::OperationState::Complete, "{done:?}");
    assert_eq!(done.processed_lines, 3000);
    assert!(!done.expired);
    assert!(done.expires_at.is_some());

    let (metadata, output) = download(&mut client, &token, &created.operation_id).await.expect("the download succeeds");
    assert_eq!(output, offline_output(&lines), "the operation's output differs from the offline output");
    assert!(output[7].contains(r#""error":"Invalid JSON data format. The line is not valid JSON"#), "{}", output[7]);
    assert!(output[7].contains(r#""recordId":"unknown""#), "{}", output[7]);
    assert!(output[8].contains("tasks_text is missing"), "{}", output[8]);
    assert!(output[9].contains(r#""recordId":"9""#), "{}", output[9]);
    assert!(output[9].contains("273333"), "{}", output[9]);
    assert!(output[10].contains("occp_text must be a string"), "{}", output[10]);

    let error_lines = output.iter().filter(|line| line.contains(r#""error":"#)).count() as u64;
    assert_eq!(metadata.input_lines, 3000);
    assert_eq!(metadata.error_lines, error_lines);
    assert_eq!(metadata.successful_lines + metadata.unsuccessful_lines + metadata.error_lines, 3000);
    assert_eq!(metadata.model.as_ref().unwrap().model_id, created.model_id);
    assert_eq!(metadata.model.as_ref().unwrap().topic, "osca");
    assert!(metadata.processing_millis.is_some());

    let request = pb::GetOperationMetadataRequest { topic: "osca".into(), operation_id: created.operation_id.clone() };
    let alone = client.get_operation_metadata(authorized(request, &token)).await.unwrap().into_inner();
    assert_eq!(alone, metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_rejects_bad_uploads() {
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;
    let created = create_operation(&mut client, &token).await;

    let error = upload(&mut client, &token, &created.operation_id, Vec::new(), 1).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("the upload is empty"), "{error:?}");

    let long_line = format!(r#"{{"occp_text": "{}", "tasks_text": ""}}"#, "a".repeat(70_000)).into_bytes();
    let error = upload(&mut client, &token, &created.operation_id, long_line, 1 << 20).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("maximum line length"), "{error:?}");

    let still = status(&mut client, &token, &created.operation_id).await.unwrap();
    assert_eq!(still.operation_status(), pb::OperationState::AwaitingInput, "a rejected upload leaves the operation awaiting input");

    let request = pb::DownloadOperationOutputRequest { topic: "osca".into(), operation_id: created.operation_id.clone() };
    let error = client.download_operation_output(authorized(request, &token)).await.expect_err("download before completion fails");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");

    let request = pb::CreateOperationRequest { topic: "osca".into(), model_id: Some("00000000-0000-0000-0000-000000000000".into()) };
    let error = client.create_operation(authorized(request, &token)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().starts_with("The specified model does not exist"), "{error:?}");

    let request = pb::CreateOperationRequest { topic: "isco".into(), model_id: None };
    let error = client.create_operation(authorized(request, &token)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().starts_with("The specified topic does not exist"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_upload_is_discarded() {
    let server = shared_server();
    let token = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;
    let created = create_operation(&mut client, &token).await;
    let line = json_line(&records(1)[0]) + "\n";

    // The sender stays open, so the request stream never ends cleanly.
    // Aborting the call makes the client reset the stream with CANCEL, as a
    // cancelled call or an expired deadline does.
    let (sender, receiver) = mpsc::channel(4);
    let first = pb::UploadOperationInputRequest {
        operation_id: created.operation_id.clone(),
        topic: "osca".into(),
        data: line.clone().into_bytes(),
    };
    sender.send(first).await.unwrap();
    let mut upload_client = client.clone();
    let request = authorized(ReceiverStream::new(receiver), &token);
    let call = tokio::spawn(async move { upload_client.upload_operation_input(request).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.abort();
    let _ = call.await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let still = status(&mut client, &token, &created.operation_id).await.unwrap();
    assert_eq!(still.operation_status(), pb::OperationState::AwaitingInput, "a cancelled upload is not coded: {still:?}");
    drop(sender);

    let uploaded = upload(&mut client, &token, &created.operation_id, format!("{line}{line}").into_bytes(), 1 << 20).await.unwrap();
    assert_eq!(uploaded.total_lines, Some(2), "a new upload replaces the cancelled one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_isolated_by_client() {
    let server = shared_server();
    let owner = server.token_for(Role::Partner).await;
    let other = server.token_for(Role::Partner).await;
    let mut client = bulk_client(server).await;
    let created = create_operation(&mut client, &owner).await;
    let id = created.operation_id.clone();

    let denied = format!("User is not authorised to retrieve operation {id}");
    let error = status(&mut client, &other, &id).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_eq!(error.message(), denied);
    let error = upload(&mut client, &other, &id, b"{}\n".to_vec(), 1024).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = download(&mut client, &other, &id).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    let unknown = uuid::Uuid::new_v4().to_string();
    for operation_id in [unknown.as_str(), "not-a-guid"] {
        let error = status(&mut client, &owner, operation_id).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound);
        assert_eq!(error.message(), "Unable to retrieve operation for given id");
    }

    let mine = status(&mut client, &owner, &id).await.expect("the owner reads its operation");
    assert_eq!(mine.operation_status(), pb::OperationState::AwaitingInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_cannot_call_bulk() {
    let server = shared_server();
    let token = server.token_for(Role::Public).await;
    let mut client = bulk_client(server).await;

    let error = client.code_stream(authorized(tokio_stream::iter(vec![stream_setup("osca")]), &token)).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let request = pb::CreateOperationRequest { topic: "osca".into(), model_id: None };
    let error = client.create_operation(authorized(request, &token)).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = status(&mut client, &token, &uuid::Uuid::new_v4().to_string()).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_fits_small_response_limit() {
    let server = TestServer::start(|config| {
        config.limits.max_response_bytes = 1 << 20;
        config.bulk.max_line_bytes = 1000;
    })
    .await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Partner).await;
    let mut client = bulk_client(&endpoint).await;
    let created = create_operation(&mut client, &token).await;

    // Each line is too long to code, so its output line echoes it. 3,000
    // lines of about 1 KB give about 3 MB of output.
    let line = format!(r#"{{"occp_text": "{}", "tasks_text": ""}}"#, "a".repeat(900)) + "\n";
    upload(&mut client, &token, &created.operation_id, line.repeat(3000).into_bytes(), 1 << 19).await.unwrap();
    let done = wait_until_done(&mut client, &token, &created.operation_id, OPERATION_TIMEOUT).await;
    assert_eq!(done.operation_status(), pb::OperationState::Complete, "{done:?}");

    let (_, lines) = download(&mut client, &token, &created.operation_id).await.expect("every message fits max_response_bytes");
    assert_eq!(lines.len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_retention_follow_clock() {
    let clock = ManualClock::new(Utc::now());
    let server = TestServer::start(|config| config.bulk.clock = Some(StoreClock(Arc::new(clock.clone())))).await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Partner).await;
    let mut client = bulk_client(&endpoint).await;

    let idle = create_operation(&mut client, &token).await;
    clock.advance(chrono::Duration::minutes(59));
    let waiting = status(&mut client, &token, &idle.operation_id).await.unwrap();
    assert_eq!(waiting.operation_status(), pb::OperationState::AwaitingInput);
    clock.advance(chrono::Duration::minutes(2));
    let timed_out = status(&mut client, &token, &idle.operation_id).await.unwrap();
    assert_eq!(timed_out.operation_status(), pb::OperationState::TimedOut);
    let error = upload(&mut client, &token, &idle.operation_id, b"{}\n".to_vec(), 1024).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");

    let coded = create_operation(&mut client, &token).await;
    let line = r#"{"recordId": "1", "occp_text": "software developer", "tasks_text": "writing code and unit tests"}"#;
    upload(&mut client, &token, &coded.operation_id, format!("{line}\n").into_bytes(), 1024).await.unwrap();
    let done = wait_until_done(&mut client, &token, &coded.operation_id, OPERATION_TIMEOUT).await;
    assert_eq!(done.operation_status(), pb::OperationState::Complete);

    clock.advance(chrono::Duration::hours(23));
    let (_, output) = download(&mut client, &token, &coded.operation_id).await.expect("the output is kept for 24 hours");
    assert!(output[0].contains("273333"), "{}", output[0]);
    clock.advance(chrono::Duration::hours(2));
    let expired = status(&mut client, &token, &coded.operation_id).await.unwrap();
    assert_eq!(expired.operation_status(), pb::OperationState::Complete);
    assert!(expired.expired);
    assert!(expired.message.contains("expired"), "{}", expired.message);
    let error = download(&mut client, &token, &coded.operation_id).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("expired"), "{error:?}");

    server.handle.shutdown().await.expect("the server stops cleanly");
}
