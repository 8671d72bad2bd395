//! Upload timeout and result retention under a manual clock.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::*;
use occoder_operations::{ErrorKind, ManualClock, OperationError, OperationState, OperationStore};

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn open_store(data: &std::path::Path, clock: &ManualClock) -> OperationStore {
    OperationStore::open_with_clock(
        data,
        test_config(4),
        Arc::new(EchoCoder),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_timeout_times_out_operation() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let store = open_store(data.path(), &clock);
    let lazy = create_operation(&store);
    let swept = create_operation(&store);

    let created = store.status(CLIENT, TOPIC, &lazy).unwrap();
    assert_eq!(created.created_at, start_time());
    assert_eq!(created.upload_deadline, start_time() + Duration::hours(1));

    clock.advance(Duration::minutes(59));
    assert_eq!(store.sweep().timed_out, 0);
    assert_eq!(
        store.status(CLIENT, TOPIC, &lazy).unwrap().state,
        OperationState::AwaitingInput
    );

    clock.advance(Duration::minutes(1));
    let report = store.sweep();
    assert_eq!(report.timed_out, 2);
    assert_eq!(report.errors, 0);
    let status = store.status(CLIENT, TOPIC, &swept).unwrap();
    assert_eq!(status.state, OperationState::TimedOut);
    assert_eq!(status.completed_at, Some(start_time() + Duration::hours(1)));
    assert!(
        status.message.contains("Timed out"),
        "message: {}",
        status.message
    );

    let error = store.begin_upload(CLIENT, TOPIC, &lazy).err().unwrap();
    assert_eq!(error.code(), ErrorKind::FailedPrecondition);
    assert!(
        matches!(
            error,
            OperationError::WrongState {
                state: OperationState::TimedOut,
                ..
            }
        ),
        "error: {error:?}"
    );
    store.shutdown().await;

    // The timeout is persisted.
    let reopened = open_store(data.path(), &clock);
    assert_eq!(
        reopened.status(CLIENT, TOPIC, &lazy).unwrap().state,
        OperationState::TimedOut
    );
    reopened.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_applies_timeout_without_sweep() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let store = open_store(data.path(), &clock);
    let id = create_operation(&store);

    clock.advance(Duration::minutes(61));
    let status = store.status(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(status.state, OperationState::TimedOut);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_started_in_time_may_finish_late() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let store = open_store(data.path(), &clock);
    let id = create_operation(&store);
    let input = numbered_input(9);

    clock.advance(Duration::minutes(59));
    let mut upload = store.begin_upload(CLIENT, TOPIC, &id).unwrap();
    upload.write_chunk(&input.as_bytes()[..40]).unwrap();
    clock.advance(Duration::minutes(5));
    assert_eq!(store.sweep().timed_out, 0);
    upload.write_chunk(&input.as_bytes()[40..]).unwrap();
    let status = upload.finish().unwrap();
    assert_eq!(status.state, OperationState::InProgress);

    wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(download_lines(&store, &id), expected_output(&input));
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_results() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let store = open_store(data.path(), &clock);
    let id = create_operation(&store);
    let input = numbered_input(12);
    upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 50).unwrap();
    let done = wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(done.completed_at, Some(start_time()));
    assert_eq!(done.expires_at, Some(start_time() + Duration::hours(24)));

    let dir = operation_dir(data.path(), &id);
    assert!(dir.join("input.jsonl").exists());
    assert!(dir.join("output.jsonl").exists());

    clock.advance(Duration::hours(23));
    assert_eq!(store.sweep().expired, 0);
    assert_eq!(download_lines(&store, &id), expected_output(&input));

    clock.advance(Duration::hours(1));
    let report = store.sweep();
    assert_eq!(report.expired, 1);
    assert!(!dir.join("input.jsonl").exists());
    assert!(!dir.join("output.jsonl").exists());

    let status = store.status(CLIENT, TOPIC, &id).unwrap();
    assert!(status.expired);
    assert_eq!(status.state, OperationState::Complete);
    assert!(
        status.message.contains("expired"),
        "message: {}",
        status.message
    );
    let error = store.download(CLIENT, TOPIC, &id).err().unwrap();
    assert_eq!(error.code(), ErrorKind::FailedPrecondition);
    assert!(
        matches!(error, OperationError::Expired { .. }),
        "error: {error:?}"
    );
    assert!(error.to_string().contains("expired"), "message: {error}");
    assert_eq!(store.sweep().expired, 0);
    store.shutdown().await;

    let reopened = open_store(data.path(), &clock);
    assert!(reopened.status(CLIENT, TOPIC, &id).unwrap().expired);
    reopened.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_applies_retention_without_sweep() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let store = open_store(data.path(), &clock);
    let id = create_operation(&store);
    upload_in_chunks(&store, CLIENT, &id, numbered_input(3).as_bytes(), 50).unwrap();
    wait_for_state(&store, &id, OperationState::Complete).await;

    clock.advance(Duration::hours(25));
    let error = store.download(CLIENT, TOPIC, &id).err().unwrap();
    assert!(
        matches!(error, OperationError::Expired { .. }),
        "error: {error:?}"
    );
    assert!(
        !operation_dir(data.path(), &id)
            .join("output.jsonl")
            .exists()
    );
    store.shutdown().await;
}

/// Fails every chunk.
struct RejectingCoder;

impl occoder_operations::BatchCoder for RejectingCoder {
    fn code_lines(
        &self,
        _model_id: &str,
        _lines: &[String],
    ) -> Result<Vec<String>, occoder_operations::CoderError> {
        Err(occoder_operations::CoderError::new("model not loaded"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_operation_expires_keeping_reason() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let store = OperationStore::open_with_clock(
        data.path(),
        test_config(4),
        Arc::new(RejectingCoder),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let id = create_operation(&store);
    upload_in_chunks(&store, CLIENT, &id, numbered_input(5).as_bytes(), 50).unwrap();
    let failed = loop {
        let status = store.status(CLIENT, TOPIC, &id).unwrap();
        if status.state.is_terminal() {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(failed.state, OperationState::Failed);
    assert_eq!(failed.expires_at, Some(start_time() + Duration::hours(24)));

    clock.advance(Duration::hours(24));
    assert_eq!(store.sweep().expired, 1);
    let status = store.status(CLIENT, TOPIC, &id).unwrap();
    assert!(status.expired);
    assert_eq!(status.state, OperationState::Failed);
    assert_eq!(status.message, "Failed: model not loaded");
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_sweeper_applies_timeout() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let config = occoder_operations::StoreConfig {
        sweep_interval: Some(std::time::Duration::from_millis(10)),
        ..test_config(4)
    };
    let store = OperationStore::open_with_clock(
        data.path(),
        config,
        Arc::new(EchoCoder),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let id = create_operation(&store);
    clock.advance(Duration::hours(2));

    // Reads state.json directly, because the status call would apply the
    // timeout itself.
    let state_path = operation_dir(data.path(), &id).join("state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        if state["state"] == "timed_out" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    store.shutdown().await;
}
