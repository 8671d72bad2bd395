//! Restart after a shutdown, a simulated crash and a real SIGKILL.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use occoder_operations::{OperationState, OperationStore};
use serde_json::json;

fn read_state(data: &Path, operation_id: &str) -> serde_json::Value {
    let path = operation_dir(data, operation_id).join("state.json");
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_operation_resumes() {
    let data = tempfile::tempdir().unwrap();
    let input = numbered_input(40);
    let coder = GatedCoder::blocking_at(2);
    let store = OperationStore::open(data.path(), test_config(4), coder.clone()).unwrap();
    let id = create_operation(&store);
    upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 100).unwrap();
    coder.wait_until_blocked();

    // Shutdown waits for the blocked chunk, which then checkpoints and stops.
    let shutdown = tokio::spawn(store.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    coder.open_gate();
    shutdown.await.unwrap();
    assert_eq!(coder.calls(), 3);

    let state = read_state(data.path(), &id);
    assert_eq!(state["state"], "in_progress");
    assert_eq!(state["counts"]["processed"], 12);

    let resumed_coder = GatedCoder::never_blocking();
    let store = OperationStore::open(data.path(), test_config(4), resumed_coder.clone()).unwrap();
    assert_eq!(store.recovery_report().resumed, 1);
    wait_for_state(&store, &id, OperationState::Complete).await;
    let download = store.download(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(download.metadata.resume_count, 1);
    assert_eq!(download.metadata.input_lines, 40);
    let lines: Vec<String> = download.lines.map(Result::unwrap).collect();
    assert_eq!(lines, expected_output(&input));
    // 28 remaining lines in chunks of 4.
    assert_eq!(resumed_coder.calls(), 7);
    store.shutdown().await;
}

/// Copies the data directory while the worker is blocked inside the coder,
/// which is the disk state a kill at that moment leaves, and adds the debris
/// a crash can leave: output past the checkpoint and temporary files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_snapshot_resumes_to_clean_output() {
    let data = tempfile::tempdir().unwrap();
    let input = numbered_input(50);
    let coder = GatedCoder::blocking_at(3);
    let store = OperationStore::open(data.path(), test_config(5), coder.clone()).unwrap();
    let id = create_operation(&store);
    upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 64).unwrap();
    coder.wait_until_blocked();

    let crashed = tempfile::tempdir().unwrap();
    copy_tree(data.path(), crashed.path());
    coder.open_gate();
    store.shutdown().await;

    let dir = operation_dir(crashed.path(), &id);
    let state = read_state(crashed.path(), &id);
    assert_eq!(state["counts"]["processed"], 15);
    let checkpoint = state["checkpoint"]["output_offset"].as_u64().unwrap();
    assert_eq!(
        fs::metadata(dir.join("output.jsonl")).unwrap().len(),
        checkpoint
    );

    // Output written after the checkpoint: two whole lines and half a line.
    let expected = expected_output(&input);
    let mut output = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("output.jsonl"))
        .unwrap();
    writeln!(output, "{}", expected[15]).unwrap();
    writeln!(output, "{}", expected[16]).unwrap();
    output.write_all(&expected[17].as_bytes()[..10]).unwrap();
    drop(output);
    fs::write(dir.join("state.json.tmp"), b"{\"half\":").unwrap();

    let store = OperationStore::open(crashed.path(), test_config(5), Arc::new(EchoCoder)).unwrap();
    assert_eq!(store.recovery_report().resumed, 1);
    assert_eq!(store.recovery_report().removed_temp_files, 1);
    wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(download_lines(&store, &id), expected);
    assert!(!dir.join("state.json.tmp").exists());
    store.shutdown().await;
}

/// Builds an operation directory by hand, checkpointed after 4 of 10 lines,
/// with 2.5 more output lines and 20 KB of junk past the checkpoint. The junk
/// is longer than the rest of the output, so it survives unless truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handmade_state_truncates_extra_output() {
    let data = tempfile::tempdir().unwrap();
    let id = "0f6a3a52-9a43-4c55-b0a4-2f1f0f6b7d21";
    let dir = operation_dir(data.path(), id);
    fs::create_dir_all(&dir).unwrap();

    let input = numbered_input(10);
    let input_lines: Vec<&str> = input.lines().collect();
    let expected = expected_output(&input);
    let input_offset: usize = input_lines[..4].iter().map(|line| line.len() + 1).sum();
    let output_offset: usize = expected[..4].iter().map(|line| line.len() + 1).sum();

    fs::write(dir.join("input.jsonl"), &input).unwrap();
    let mut output = String::new();
    for line in &expected[..6] {
        output.push_str(line);
        output.push('\n');
    }
    output.push_str(&expected[6][..7]);
    output.push_str(&"x".repeat(20_000));
    fs::write(dir.join("output.jsonl"), output).unwrap();
    fs::write(dir.join("input.jsonl.tmp"), b"{\"partial upload").unwrap();

    let state = json!({
        "format_version": 1,
        "id": id,
        "owner": CLIENT,
        "topic": TOPIC,
        "model_id": MODEL,
        "state": "in_progress",
        "created_at": "2026-03-02T09:00:00Z",
        "uploaded_at": "2026-03-02T09:01:00Z",
        "started_at": "2026-03-02T09:01:01Z",
        "completed_at": null,
        "expired_at": null,
        "error": null,
        "input_lines": 10,
        "input_bytes": input.len(),
        "counts": {"processed": 4, "successful": 4, "unsuccessful": 0, "errors": 0},
        "checkpoint": {"input_offset": input_offset, "output_offset": output_offset},
        "resume_count": 0
    });
    fs::write(dir.join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();

    let coder = GatedCoder::never_blocking();
    let store = OperationStore::open(data.path(), test_config(3), coder.clone()).unwrap();
    assert_eq!(store.recovery_report().resumed, 1);
    assert_eq!(store.recovery_report().removed_temp_files, 1);
    let done = wait_for_state(&store, id, OperationState::Complete).await;
    assert_eq!(done.counts.processed, 10);
    assert_eq!(done.counts.successful, 10);
    assert_eq!(download_lines(&store, id), expected);
    let expected_bytes: usize = expected.iter().map(|line| line.len() + 1).sum();
    let output_bytes = fs::metadata(dir.join("output.jsonl")).unwrap().len();
    assert_eq!(output_bytes, expected_bytes as u64);
    // Lines 5 to 10 in chunks of 3.
    assert_eq!(coder.calls(), 2);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_shorter_than_checkpoint_fails() {
    let data = tempfile::tempdir().unwrap();
    let input = numbered_input(20);
    let coder = GatedCoder::blocking_at(2);
    let store = OperationStore::open(data.path(), test_config(4), coder.clone()).unwrap();
    let id = create_operation(&store);
    upload_in_chunks(&store, CLIENT, &id, input.as_bytes(), 64).unwrap();
    coder.wait_until_blocked();
    let crashed = tempfile::tempdir().unwrap();
    copy_tree(data.path(), crashed.path());
    coder.open_gate();
    store.shutdown().await;

    let output_path = operation_dir(crashed.path(), &id).join("output.jsonl");
    let length = fs::metadata(&output_path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&output_path)
        .unwrap()
        .set_len(length - 5)
        .unwrap();

    let store = OperationStore::open(crashed.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let status = loop {
        let status = store.status(CLIENT, TOPIC, &id).unwrap();
        if status.state.is_terminal() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status.state, OperationState::Failed);
    let message = status.error_message.unwrap();
    assert!(message.contains("checkpoint"), "message: {message}");
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_cleans_unfinished_writes() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let awaiting = create_operation(&store);
    store.shutdown().await;

    // A create that crashed before its state file, and an upload renamed
    // into place whose state change never happened.
    let orphan = operation_dir(data.path(), "3e0e6f0e-1a7c-4a59-8d1c-6f8d1e1f2a33");
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join("state.json.tmp"), b"{").unwrap();
    let awaiting_dir = operation_dir(data.path(), &awaiting);
    fs::write(awaiting_dir.join("input.jsonl"), numbered_input(3)).unwrap();
    fs::write(awaiting_dir.join("input.jsonl.tmp"), b"{\"id\"").unwrap();

    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.loaded, 1);
    assert_eq!(report.resumed, 0);
    assert_eq!(report.removed_incomplete_dirs, 1);
    assert_eq!(report.removed_unacknowledged_inputs, 1);
    assert_eq!(report.removed_temp_files, 2);
    assert!(!orphan.exists());
    let files: Vec<String> = fs::read_dir(&awaiting_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["state.json"]);
    let status = store.status(CLIENT, TOPIC, &awaiting).unwrap();
    assert_eq!(status.state, OperationState::AwaitingInput);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_state_is_skipped() {
    let data = tempfile::tempdir().unwrap();
    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    let good = create_operation(&store);
    let bad = create_operation(&store);
    store.shutdown().await;
    fs::write(
        operation_dir(data.path(), &bad).join("state.json"),
        b"not json",
    )
    .unwrap();

    let store = OperationStore::open(data.path(), test_config(4), Arc::new(EchoCoder)).unwrap();
    assert_eq!(store.recovery_report().loaded, 1);
    assert_eq!(store.recovery_report().unreadable, 1);
    assert!(store.status(CLIENT, TOPIC, &good).is_ok());
    let error = store.status(CLIENT, TOPIC, &bad).unwrap_err();
    assert_eq!(error.code(), occoder_operations::ErrorKind::NotFound);
    assert!(operation_dir(data.path(), &bad).join("state.json").exists());
    store.shutdown().await;
}

const CHILD_DIR_VARIABLE: &str = "OCCODER_OPERATIONS_KILL_TEST_DIR";
const KILL_TEST_LINES: usize = 3000;

/// Codes like [`EchoCoder`] but sleeps per chunk, so a kill lands mid-run.
struct SlowCoder;

impl occoder_operations::BatchCoder for SlowCoder {
    fn code_lines(
        &self,
        model_id: &str,
        lines: &[String],
    ) -> Result<Vec<String>, occoder_operations::CoderError> {
        std::thread::sleep(Duration::from_millis(3));
        EchoCoder.code_lines(model_id, lines)
    }
}

/// Runs the child half of `sigkill_mid_run_resumes`, and does nothing
/// unless started by it: creates and uploads an operation, then codes until
/// the parent kills the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by sigkill_mid_run_resumes"]
async fn sigkill_child_process() {
    let Ok(data) = std::env::var(CHILD_DIR_VARIABLE) else {
        return;
    };
    let data = Path::new(&data);
    let store = OperationStore::open(data, test_config(10), Arc::new(SlowCoder)).unwrap();
    let id = create_operation(&store);
    upload_in_chunks(
        &store,
        CLIENT,
        &id,
        numbered_input(KILL_TEST_LINES).as_bytes(),
        4096,
    )
    .unwrap();
    fs::write(data.join("operation-id"), &id).unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    panic!("the parent test did not kill this process within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_resumes() {
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_VARIABLE, data.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the child has checkpointed some, but not all, lines.
    let id_path = data.path().join("operation-id");
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        assert!(
            Instant::now() < deadline,
            "the child never uploaded its input"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        if let Ok(id) = fs::read_to_string(&id_path) {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "the child never reached line 500"
        );
        let processed = read_state(data.path(), &id)["counts"]["processed"]
            .as_u64()
            .unwrap();
        if processed >= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let state = read_state(data.path(), &id);
    assert_eq!(
        state["state"], "in_progress",
        "the child finished before the kill"
    );
    let processed_at_kill = state["counts"]["processed"].as_u64().unwrap();
    assert!(processed_at_kill < KILL_TEST_LINES as u64);

    let store = OperationStore::open(data.path(), test_config(10), Arc::new(EchoCoder)).unwrap();
    assert_eq!(store.recovery_report().resumed, 1);
    let done = wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(done.counts.processed, KILL_TEST_LINES as u64);
    let lines = download_lines(&store, &id);
    assert_eq!(lines.len(), KILL_TEST_LINES);
    assert_eq!(lines, expected_output(&numbered_input(KILL_TEST_LINES)));
    store.shutdown().await;
}
