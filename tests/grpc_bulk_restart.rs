//! Bulk coding through the built `occoder` binary: an operation survives a
//! SIGKILL of the server with no lost or repeated output line, and the
//! `occoder batch` commands submit, check and download an operation.

mod grpc_bulk_support;
mod grpc_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grpc_bulk_support::*;
use grpc_support::{Endpoint, shared_server};
use occoder::proto::v1 as pb;
use occoder_auth::{ClientRegistry, Role};
use tonic::Code;

const OCCODER: &str = env!("CARGO_BIN_EXE_occoder");

/// Small chunks make many checkpoints, so the kill lands between two.
const SERVER_CONFIG: &str = r#"
listen = "127.0.0.1:0"
[auth]
requests_per_second = 10000.0
burst = 10000
token_requests_per_window = 1000
[bulk]
chunk_lines = 500
"#;

/// An `occoder serve` process and the address it listens on.
struct ServeProcess {
    child: Child,
    endpoint: Endpoint,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `occoder serve` on `data_dir` and reads its address from the
/// JSON "server listening" log line.
fn spawn_server(data_dir: &Path) -> ServeProcess {
    let config = data_dir.join("occoder.toml");
    std::fs::write(&config, SERVER_CONFIG).unwrap();
    let mut child = Command::new(OCCODER)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--models")
        .arg(grpc_support::shipped_models_dir())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("occoder serve starts");

    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if entry["fields"]["message"] == "server listening" {
                let address = entry["fields"]["address"].as_str().unwrap_or_default().to_owned();
                let _ = sender.send(address);
            }
        }
    });
    let address = receiver.recv_timeout(Duration::from_secs(60)).expect("the server logs its address");
    let addr: SocketAddr = address.parse().unwrap_or_else(|_| panic!("the logged address {address:?} is not a socket address"));
    ServeProcess { child, endpoint: Endpoint { addr, data_dir: data_dir.to_path_buf() } }
}

/// Returns a token once CreateToken succeeds, retrying while the server
/// starts.
async fn token_when_up(endpoint: &Endpoint, client_id: &str, secret: &str) -> String {
    let started = Instant::now();
    loop {
        if let Ok(channel) = tonic::transport::Channel::from_shared(endpoint.url()).unwrap().connect().await {
            let mut auth = occoder::proto::v1::auth_client::AuthClient::new(channel);
            if let Ok(response) = grpc_support::create_token(&mut auth, client_id, secret).await {
                return response.access_token;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not answer CreateToken within 60 seconds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates an operation, retrying while the server is still loading models.
async fn create_when_ready(endpoint: &Endpoint, token: &str) -> pb::OperationStatus {
    let started = Instant::now();
    let mut client = bulk_client(endpoint).await;
    loop {
        let request = pb::CreateOperationRequest { topic: "osca".into(), model_id: None };
        match client.create_operation(authorized(request, token)).await {
            Ok(response) => return response.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {}
            Err(status) => panic!("CreateOperation failed: {status:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the models did not load within 60 seconds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_operation_loses_nothing() {
    let data_dir = tempfile::tempdir().unwrap();
    let client = ClientRegistry::open(data_dir.path()).unwrap().add("restart test", Role::Partner).unwrap();
    let secret = client.secret.expose().to_owned();
    let lines: Vec<String> = records(30_000).iter().map(json_line).collect();
    let input = format!("{}\n", lines.join("\n")).into_bytes();

    let first = spawn_server(data_dir.path());
    let token = token_when_up(&first.endpoint, &client.client_id, &secret).await;
    let created = create_when_ready(&first.endpoint, &token).await;
    let id = created.operation_id.clone();
    let mut bulk = bulk_client(&first.endpoint).await;
    upload(&mut bulk, &token, &id, input, 1 << 20).await.expect("the upload succeeds");

    let started = Instant::now();
    let before_kill = loop {
        let current = status(&mut bulk, &token, &id).await.unwrap();
        if current.processed_lines > 0 {
            break current;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "coding did not start within 120 seconds");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    drop(first);
    assert_eq!(before_kill.operation_status(), pb::OperationState::InProgress, "the kill must land mid-run; use more lines");
    assert!(before_kill.processed_lines < 30_000);

    let second = spawn_server(data_dir.path());
    token_when_up(&second.endpoint, &client.client_id, &secret).await;
    let mut bulk = bulk_client(&second.endpoint).await;
    let done = loop {
        match status(&mut bulk, &token, &id).await {
            Ok(current) if current.operation_status() == pb::OperationState::InProgress => {}
            Ok(current) => break current,
            Err(status) if status.code() == Code::Unavailable => {}
            Err(status) => panic!("GetOperation failed after the restart: {status:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the operation did not complete after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.operation_status(), pb::OperationState::Complete, "{done:?}");

    let (metadata, output) = download(&mut bulk, &token, &id).await.expect("the download succeeds");
    assert!(metadata.resume_count >= 1, "the operation did not resume: {metadata:?}");
    assert_eq!(output.len(), lines.len(), "lines were lost or repeated");
    assert_eq!(output, offline_output(&lines), "the resumed output differs from a clean run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_commands_submit_and_download() {
    let server = shared_server();
    let (client_id, secret) = server.add_client(Role::Partner);
    let work = tempfile::tempdir().unwrap();
    let lines: Vec<String> = records(500).iter().map(json_line).collect();
    let input = work.path().join("records.jsonl");
    std::fs::write(&input, format!("{}\n", lines.join("\n"))).unwrap();
    let output = work.path().join("coded.jsonl");
    let cache = tempfile::tempdir().unwrap();
    let batch = |arguments: &[&str]| {
        let result = Command::new(OCCODER)
            .arg("batch")
            .args(arguments)
            .args(["--server", &server.url(), "--client-id", &client_id])
            .env("OCCODER_CLIENT_SECRET", &secret)
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .expect("occoder batch runs");
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(result.status.success(), "occoder batch {arguments:?} failed: {stderr}");
        String::from_utf8(result.stdout).unwrap()
    };

    let submitted = batch(&["submit", "--topic", "osca", "--input", input.to_str().unwrap()]);
    let operation_id = submitted.trim();
    assert!(uuid::Uuid::parse_str(operation_id).is_ok(), "submit printed {submitted:?}, not an operation id");

    batch(&["download", "--topic", "osca", "--operation", operation_id, "--wait", "--poll-secs", "1", "--output", output.to_str().unwrap()]);
    let coded = std::fs::read_to_string(&output).unwrap();
    let coded: Vec<String> = coded.lines().map(str::to_owned).collect();
    assert_eq!(coded, offline_output(&lines));

    let status: serde_json::Value = serde_json::from_str(&batch(&["status", "--topic", "osca", "--operation", operation_id])).unwrap();
    assert_eq!(status["operationStatus"], "complete");
    assert_eq!(status["processedLines"], 500);
}
