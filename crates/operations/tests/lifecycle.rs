//! Create, upload, status and download through a real store on disk.

mod common;

use std::sync::Arc;

use common::*;
use occoder_operations::{
    BatchCoder, CoderError, ErrorKind, OperationError, OperationState, OperationStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_with_chunked_upload() {
    let data = tempfile::tempdir().unwrap();
    let coder = GatedCoder::blocking_at(1);
    let store = OperationStore::open(data.path(), test_config(3), coder.clone()).unwrap();

    let created = store.create(CLIENT, TOPIC, MODEL).unwrap();
    assert_eq!(created.state, OperationState::AwaitingInput);
    assert_eq!(created.total_lines, None);
    assert_eq!(created.model_id, MODEL);
    let id = created.operation_id.to_string();

    let input = numbered_input(10);
    let uploaded = upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 7).unwrap();
    assert_eq!(uploaded.state, OperationState::InProgress);
    assert_eq!(uploaded.total_lines, Some(10));
    assert!(uploaded.uploaded_at.is_some());

    // The second coder call blocks, so exactly one chunk is checkpointed.
    coder.wait_until_blocked();
    let running = store.status(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(running.state, OperationState::InProgress);
    assert_eq!(running.counts.processed, 3);
    assert!(running.started_at.is_some());
    assert!(
        running.message.contains("3 of 10"),
        "message: {}",
        running.message
    );
    let early = store.download(CLIENT, TOPIC, &id).err().unwrap();
    assert_eq!(early.code(), ErrorKind::FailedPrecondition);

    coder.open_gate();
    let done = wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(done.counts.processed, 10);
    assert_eq!(done.counts.successful, 10);
    assert!(done.completed_at.is_some());
    assert!(done.expires_at.is_some());
    assert!(!done.expired);

    let download = store.download(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(download.metadata.input_lines, 10);
    assert_eq!(download.metadata.successful_lines, 10);
    assert_eq!(download.metadata.model_id, MODEL);
    assert_eq!(download.metadata.topic, TOPIC);
    assert_eq!(download.metadata.resume_count, 0);
    let lines: Vec<String> = download.lines.map(Result::unwrap).collect();
    assert_eq!(lines, expected_output(&input));
    assert_eq!(coder.calls(), 4);
    assert_eq!(coder.max_chunk(), 3);

    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_lines_still_complete() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(2), Arc::new(EchoCoder)).unwrap();
    let id = create_operation(&store);

    // Successful, unsuccessful, not JSON, blank, missing field, CRLF, and a
    // last line without a line break.
    let input = concat!(
        "\u{feff}{\"id\":\"1\",\"text\":\"nurse\"}\n",
        "{\"id\":\"2\",\"text\":\"\"}\n",
        "this is not json\n",
        "\n",
        "{\"id\":\"5\"}\n",
        "{\"id\":\"6\",\"text\":\"chef\"}\r\n",
        "{\"id\":\"7\",\"text\":\"welder\"}",
    );
    let uploaded = upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 5).unwrap();
    assert_eq!(uploaded.total_lines, Some(7));

    let done = wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(done.counts.processed, 7);
    assert_eq!(done.counts.successful, 3);
    assert_eq!(done.counts.unsuccessful, 1);
    assert_eq!(done.counts.errors, 3);

    let lines = download_lines(&store, &id);
    assert_eq!(lines, expected_output(input));
    assert!(
        lines[0].contains("\"code\":\"NURSE\""),
        "line 0: {}",
        lines[0]
    );
    assert!(
        lines[6].contains("\"code\":\"WELDER\""),
        "line 6: {}",
        lines[6]
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_isolation_between_clients() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let id_a = create_operation(&store);
    let id_b = store
        .create(OTHER_CLIENT, TOPIC, MODEL)
        .unwrap()
        .operation_id
        .to_string();

    let expected_message = format!("User is not authorised to retrieve operation {id_a}");
    let status_error = store.status(OTHER_CLIENT, TOPIC, &id_a).unwrap_err();
    assert_eq!(status_error.code(), ErrorKind::PermissionDenied);
    assert_eq!(status_error.to_string(), expected_message);
    let upload_error = store
        .begin_upload(OTHER_CLIENT, TOPIC, &id_a)
        .err()
        .unwrap();
    assert_eq!(upload_error.code(), ErrorKind::PermissionDenied);
    let download_error = store.download(OTHER_CLIENT, TOPIC, &id_a).err().unwrap();
    assert_eq!(download_error.code(), ErrorKind::PermissionDenied);
    assert_eq!(download_error.to_string(), expected_message);

    let other_status = store.status(CLIENT, TOPIC, &id_b).unwrap_err();
    assert_eq!(other_status.code(), ErrorKind::PermissionDenied);

    let wrong_topic = store.status(CLIENT, "industry", &id_a).unwrap_err();
    assert_eq!(wrong_topic.code(), ErrorKind::NotFound);

    assert_eq!(
        store.status(CLIENT, TOPIC, &id_a).unwrap().state,
        OperationState::AwaitingInput
    );
    assert_eq!(
        store.status(OTHER_CLIENT, TOPIC, &id_b).unwrap().state,
        OperationState::AwaitingInput
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_is_not_found() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    create_operation(&store);

    for id in ["6f1c2a94-3d53-4f4e-9f43-0a6d2b8e7c11", "not-a-guid", ""] {
        let status_error = store.status(CLIENT, TOPIC, id).unwrap_err();
        assert_eq!(status_error.code(), ErrorKind::NotFound, "id {id:?}");
        assert_eq!(
            status_error.to_string(),
            "Unable to retrieve operation for given id"
        );
        let upload_error = store.begin_upload(CLIENT, TOPIC, id).err().unwrap();
        assert_eq!(upload_error.code(), ErrorKind::NotFound, "id {id:?}");
        let download_error = store.download(CLIENT, TOPIC, id).err().unwrap();
        assert_eq!(download_error.code(), ErrorKind::NotFound, "id {id:?}");
    }
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rejects_invalid_names() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let long_name = "m".repeat(257);
    let cases = [
        ("", TOPIC, MODEL),
        (CLIENT, "", MODEL),
        (CLIENT, TOPIC, ""),
        (CLIENT, TOPIC, long_name.as_str()),
        (CLIENT, "occu\npation", MODEL),
    ];
    for (client, topic, model) in cases {
        let error = store.create(client, topic, model).unwrap_err();
        assert_eq!(
            error.code(),
            ErrorKind::InvalidArgument,
            "case {client:?} {topic:?} {model:?}"
        );
    }
    let operation_dirs = std::fs::read_dir(data.path().join("operations"))
        .unwrap()
        .count();
    assert_eq!(operation_dirs, 0);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_leaves_no_input() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let id = create_operation(&store);
    let dir = operation_dir(data.path(), &id);
    let input = numbered_input(20);

    let mut upload = store.begin_upload(CLIENT, TOPIC, &id).unwrap();
    upload.write_chunk(&input.as_bytes()[..100]).unwrap();
    upload.write_chunk(&input.as_bytes()[100..150]).unwrap();
    let second = store.begin_upload(CLIENT, TOPIC, &id).err().unwrap();
    assert_eq!(second.code(), ErrorKind::FailedPrecondition);
    assert!(matches!(second, OperationError::UploadInProgress { .. }));
    drop(upload);

    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["state.json"]);
    let status = store.status(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(status.state, OperationState::AwaitingInput);
    assert_eq!(status.total_lines, None);

    upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 64).unwrap();
    wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(download_lines(&store, &id), expected_output(&input));
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_over_limit_is_rejected() {
    let data = tempfile::tempdir().unwrap();
    let config = occoder_operations::StoreConfig {
        max_upload_bytes: 20,
        ..test_config(4)
    };
    let store = OperationStore::open(data.path(), config, Arc::new(EchoCoder)).unwrap();
    let id = create_operation(&store);
    let temp_input = operation_dir(data.path(), &id).join("input.jsonl.tmp");

    let mut upload = store.begin_upload(CLIENT, TOPIC, &id).unwrap();
    upload.write_chunk(&[b'x'; 15]).unwrap();
    assert!(temp_input.exists());
    let error = upload.write_chunk(&[b'x'; 10]).unwrap_err();
    assert_eq!(error.code(), ErrorKind::ResourceExhausted);
    assert!(error.to_string().contains("20 bytes"), "message: {error}");
    assert!(!temp_input.exists());
    let later = upload.write_chunk(b"\n").unwrap_err();
    assert!(matches!(later, OperationError::UploadAborted));
    assert!(matches!(
        upload.finish(),
        Err(OperationError::UploadAborted)
    ));

    let status = store.status(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(status.state, OperationState::AwaitingInput);
    upload_in_chunks(&store, CLIENT, &id, b"{\"text\":\"a\"}\n", 4).unwrap();
    wait_for_state(&store, &id, OperationState::Complete).await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_rejects_long_line_and_empty() {
    let data = tempfile::tempdir().unwrap();
    let config = occoder_operations::StoreConfig {
        max_line_bytes: 8,
        ..test_config(4)
    };
    let store = OperationStore::open(data.path(), config, Arc::new(EchoCoder)).unwrap();
    let id = create_operation(&store);

    // The third line is 9 bytes, split across two chunks.
    let mut upload = store.begin_upload(CLIENT, TOPIC, &id).unwrap();
    upload.write_chunk(b"12345678\n1\n1234").unwrap();
    let error = upload.write_chunk(b"56789\n").unwrap_err();
    assert_eq!(error.code(), ErrorKind::InvalidArgument);
    match error {
        OperationError::LineTooLong {
            line_number,
            limit_bytes,
        } => {
            assert_eq!(line_number, 3);
            assert_eq!(limit_bytes, 8);
        }
        other => panic!("expected LineTooLong, got {other:?}"),
    }
    drop(upload);

    let empty = store
        .begin_upload(CLIENT, TOPIC, &id)
        .unwrap()
        .finish()
        .unwrap_err();
    assert_eq!(empty.code(), ErrorKind::InvalidArgument);
    assert!(matches!(empty, OperationError::EmptyUpload));
    let status = store.status(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(status.state, OperationState::AwaitingInput);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_rejects_upload() {
    let data = tempfile::tempdir().unwrap();
    let config = occoder_operations::StoreConfig {
        queue_capacity: 1,
        ..test_config(4)
    };
    let store = OperationStore::open(data.path(), config, Arc::new(EchoCoder)).unwrap();
    let first = create_operation(&store);
    let second = create_operation(&store);

    let open_upload = store.begin_upload(CLIENT, TOPIC, &first).unwrap();
    let error = store.begin_upload(CLIENT, TOPIC, &second).err().unwrap();
    assert_eq!(error.code(), ErrorKind::ResourceExhausted);
    assert!(matches!(error, OperationError::QueueFull { capacity: 1 }));
    drop(open_upload);

    upload_in_chunks(&store, CLIENT, &second, b"{\"text\":\"a\"}\n", 4).unwrap();
    wait_for_state(&store, &second, OperationState::Complete).await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_all_complete() {
    let data = tempfile::tempdir().unwrap();
    let config = occoder_operations::StoreConfig {
        max_concurrent_operations: 2,
        ..test_config(5)
    };
    let store = OperationStore::open(data.path(), config, Arc::new(EchoCoder)).unwrap();
    let mut operations = Vec::new();
    for count in [17, 40, 3, 25] {
        let id = create_operation(&store);
        let input = numbered_input(count);
        upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 33).unwrap();
        operations.push((id, input));
    }
    for (id, input) in &operations {
        wait_for_state(&store, id, OperationState::Complete).await;
        assert_eq!(
            download_lines(&store, id),
            expected_output(input),
            "operation {id}"
        );
    }
    store.shutdown().await;
}

/// Fails the chunk that contains the line with id 3.
struct FailingCoder;

impl BatchCoder for FailingCoder {
    fn code_lines(&self, model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError> {
        if lines.iter().any(|line| line.contains("\"id\":\"3\"")) {
            return Err(CoderError::new(format!(
                "model {model_id} is no longer loaded"
            )));
        }
        EchoCoder.code_lines(model_id, lines)
    }
}

/// Drops the last output line of every chunk.
struct ShortCoder;

impl BatchCoder for ShortCoder {
    fn code_lines(&self, model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError> {
        let mut coded = EchoCoder.code_lines(model_id, lines)?;
        coded.pop();
        Ok(coded)
    }
}

/// Panics on every call.
struct PanickingCoder;

impl BatchCoder for PanickingCoder {
    fn code_lines(&self, _model_id: &str, _lines: &[String]) -> Result<Vec<String>, CoderError> {
        panic!("test coder panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coder_failures_fail_operation() {
    let cases: [(Arc<dyn BatchCoder>, &str); 3] = [
        (
            Arc::new(FailingCoder),
            "model osca-2024-v1 is no longer loaded",
        ),
        (
            Arc::new(ShortCoder),
            "the coder returned 1 output lines for 2 input lines",
        ),
        (
            Arc::new(PanickingCoder),
            "the coder panicked while coding a chunk",
        ),
    ];
    for (coder, expected_message) in cases {
        let data = tempfile::tempdir().unwrap();
        let store = OperationStore::open(data.path(), test_config(2), coder).unwrap();
        let id = create_operation(&store);
        upload_in_chunks(&store, CLIENT, &id, numbered_input(6).as_bytes(), 16).unwrap();

        let status = loop {
            let status = store.status(CLIENT, TOPIC, &id).unwrap();
            if status.state.is_terminal() {
                break status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(
            status.state,
            OperationState::Failed,
            "case {expected_message}"
        );
        assert_eq!(status.error_message.as_deref(), Some(expected_message));
        assert!(
            status.message.contains(expected_message),
            "message: {}",
            status.message
        );

        let dir = operation_dir(data.path(), &id);
        assert!(!dir.join("input.jsonl").exists(), "case {expected_message}");
        assert!(
            !dir.join("output.jsonl").exists(),
            "case {expected_message}"
        );
        let download = store.download(CLIENT, TOPIC, &id).err().unwrap();
        assert_eq!(download.code(), ErrorKind::FailedPrecondition);
        store.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_streams_through_channel() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(7), Arc::new(EchoCoder)).unwrap();
    let id = create_operation(&store);
    let input = numbered_input(50);
    upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 100).unwrap();
    wait_for_state(&store, &id, OperationState::Complete).await;

    let mut receiver = store
        .download(CLIENT, TOPIC, &id)
        .unwrap()
        .lines
        .into_channel(4);
    let mut lines = Vec::new();
    while let Some(line) = receiver.recv().await {
        lines.push(line.unwrap());
    }
    assert_eq!(lines, expected_output(&input));
    store.shutdown().await;
}
