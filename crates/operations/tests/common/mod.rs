//! Test coders and helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use occoder_operations::{
    BatchCoder, CoderError, OperationError, OperationState, OperationStatus, OperationStore,
    StoreConfig,
};
use serde_json::{Value, json};

pub const CLIENT: &str = "client-a";
pub const OTHER_CLIENT: &str = "client-b";
pub const TOPIC: &str = "occupation";
pub const MODEL: &str = "osca-2024-v1";

/// Codes `{"id":..,"text":..}` lines deterministically: a non-empty text
/// becomes a successful line with the upper-cased text as the code, an empty
/// text an unsuccessful line, and anything else an error line.
pub struct EchoCoder;

pub fn echo_line(line: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(line).ok();
    let Some(object) = parsed.as_ref().and_then(Value::as_object) else {
        return json!({"codeStatus": "error", "error": {"message": "line is not a JSON object"}})
            .to_string();
    };
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    match object.get("text").and_then(Value::as_str) {
        Some("") => json!({"id": id, "codeStatus": "unsuccessful"}).to_string(),
        Some(text) => {
            json!({"id": id, "codeStatus": "successful", "code": text.to_uppercase()}).to_string()
        }
        None => {
            json!({"id": id, "codeStatus": "error", "error": {"message": "missing text field"}})
                .to_string()
        }
    }
}

impl BatchCoder for EchoCoder {
    fn code_lines(&self, _model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError> {
        Ok(lines.iter().map(|line| echo_line(line)).collect())
    }
}

/// Returns what a clean run of [`EchoCoder`] outputs for `input`.
pub fn expected_output(input: &str) -> Vec<String> {
    input
        .lines()
        .map(|line| echo_line(line.strip_prefix('\u{feff}').unwrap_or(line)))
        .collect()
}

/// An [`EchoCoder`] that can block at one call until the test opens a gate,
/// and that records call statistics.
pub struct GatedCoder {
    block_at_call: Option<usize>,
    calls: AtomicUsize,
    max_chunk: AtomicUsize,
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    blocked: bool,
    open: bool,
}

impl GatedCoder {
    /// Blocks the call with 0-based index `call` until [`open_gate`].
    pub fn blocking_at(call: usize) -> Arc<Self> {
        Arc::new(GatedCoder {
            block_at_call: Some(call),
            calls: AtomicUsize::new(0),
            max_chunk: AtomicUsize::new(0),
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        })
    }

    pub fn never_blocking() -> Arc<Self> {
        Arc::new(GatedCoder {
            block_at_call: None,
            calls: AtomicUsize::new(0),
            max_chunk: AtomicUsize::new(0),
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        })
    }

    /// Waits until a call is blocked at the gate; panics after 30 s.
    pub fn wait_until_blocked(&self) {
        let guard = self.state.lock().unwrap();
        let (guard, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(30), |state| !state.blocked)
            .unwrap();
        assert!(!timeout.timed_out(), "the coder never reached its gate");
        drop(guard);
    }

    pub fn open_gate(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn max_chunk(&self) -> usize {
        self.max_chunk.load(Ordering::SeqCst)
    }
}

impl BatchCoder for GatedCoder {
    fn code_lines(&self, model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.max_chunk.fetch_max(lines.len(), Ordering::SeqCst);
        if self.block_at_call == Some(call) {
            let mut state = self.state.lock().unwrap();
            state.blocked = true;
            self.changed.notify_all();
            while !state.open {
                state = self.changed.wait(state).unwrap();
            }
        }
        EchoCoder.code_lines(model_id, lines)
    }
}

/// Config with small chunks and no background sweeper.
pub fn test_config(chunk_lines: usize) -> StoreConfig {
    StoreConfig {
        chunk_lines,
        sweep_interval: None,
        ..StoreConfig::default()
    }
}

/// Builds `count` input lines `{"id":"<n>","text":"job <n>"}` joined with
/// line breaks, with a final line break.
pub fn numbered_input(count: usize) -> String {
    let mut input = String::new();
    for n in 0..count {
        input.push_str(&format!("{{\"id\":\"{n}\",\"text\":\"job {n}\"}}\n"));
    }
    input
}

/// Uploads `input` in chunks of `chunk_bytes` and finishes the upload.
pub fn upload_in_chunks(
    store: &OperationStore,
    client_id: &str,
    operation_id: &str,
    input: &[u8],
    chunk_bytes: usize,
) -> Result<OperationStatus, OperationError> {
    let mut upload = store.begin_upload(client_id, TOPIC, operation_id)?;
    for chunk in input.chunks(chunk_bytes) {
        upload.write_chunk(chunk)?;
    }
    upload.finish()
}

/// Creates an operation for [`CLIENT`] and returns its id.
pub fn create_operation(store: &OperationStore) -> String {
    store
        .create(CLIENT, TOPIC, MODEL)
        .expect("create should succeed")
        .operation_id
        .to_string()
}

/// Polls the status until it reaches `state`; panics after 60 s or if the
/// operation reaches another terminal state first.
pub async fn wait_for_state(
    store: &OperationStore,
    operation_id: &str,
    state: OperationState,
) -> OperationStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = store
            .status(CLIENT, TOPIC, operation_id)
            .expect("status should succeed");
        if status.state == state {
            return status;
        }
        assert!(
            !status.state.is_terminal(),
            "operation reached {} ({:?}) while waiting for {state}",
            status.state,
            status.error_message
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {state}; last status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads all output lines of a complete operation.
pub fn download_lines(store: &OperationStore, operation_id: &str) -> Vec<String> {
    store
        .download(CLIENT, TOPIC, operation_id)
        .expect("download should succeed")
        .lines
        .collect::<Result<Vec<_>, _>>()
        .expect("reading the output should succeed")
}

pub fn operation_dir(data_dir: &Path, operation_id: &str) -> std::path::PathBuf {
    data_dir.join("operations").join(operation_id)
}

/// Copies a directory tree, as a stand-in for the disk state at a crash.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
