//! Helpers shared by the gRPC integration tests: a real server on
//! 127.0.0.1 with an ephemeral port, a temporary data directory, the
//! shipped models and tonic clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use occoder::proto::v1 as pb;
use occoder::proto::v1::auth_client::AuthClient;
use occoder::proto::v1::coder_client::CoderClient;
use occoder::server::{self, ServerConfig, ServerHandle};
use occoder_auth::{ClientRegistry, Role};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

pub const OSCA_MODEL: &str = "osca-2024-v1.occm";
pub const ANZSCO_MODEL: &str = "anzsco-2022-v1.occm";

/// Returns the repository's `models/` directory with the shipped models, or
/// `OCCODER_TEST_MODELS` when set (for trying other models of the same names).
pub fn shipped_models_dir() -> PathBuf {
    match std::env::var_os("OCCODER_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// Settings for tests: an ephemeral port, the given data directory, the
/// shipped models and limits high enough that no test hits them by accident.
pub fn test_config(data_dir: &Path) -> ServerConfig {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        models_dir: shipped_models_dir(),
        ..ServerConfig::default()
    };
    config.auth.requests_per_second = 10_000.0;
    config.auth.burst = 10_000;
    config.auth.token_requests_per_window = 1_000;
    config.limits.drain_timeout_secs = 5;
    config
}

/// A server started for one test, with its own data directory.
pub struct TestServer {
    pub handle: ServerHandle,
    pub config: ServerConfig,
    pub data_dir: TempDir,
}

impl TestServer {
    /// Starts a server with [`test_config`] changed by `configure`, and waits
    /// until its models are loaded.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        configure(&mut config);
        TestServer::start_with(config, data_dir).await
    }

    /// Starts a server with `config`, whose data directory is `data_dir`.
    pub async fn start_with(config: ServerConfig, data_dir: TempDir) -> TestServer {
        let handle = server::start(config.clone()).await.expect("the server starts");
        handle.ready().await.expect("the models load");
        TestServer { handle, config, data_dir }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint { addr: self.handle.local_addr(), data_dir: self.data_dir.path().to_path_buf() }
    }
}

/// Starts one server with [`test_config`] for the whole test binary, on a
/// thread of its own so that it outlives each test's runtime. Its data
/// directory is kept under Cargo's temporary directory for integration tests.
pub fn shared_server() -> &'static Endpoint {
    static SERVER: OnceLock<Endpoint> = OnceLock::new();
    SERVER.get_or_init(|| {
        let data_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
        let config = test_config(&data_dir);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let handle = server::start(config).await.expect("the shared server starts");
                handle.ready().await.expect("the models load");
                sender.send(handle.local_addr()).unwrap();
                handle.join().await.unwrap();
            });
        });
        let addr = receiver.recv().expect("the shared server reports its address");
        Endpoint { addr, data_dir }
    })
}

/// Where a test server listens and keeps its data.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.expect("the client connects")
    }

    pub async fn coder(&self) -> CoderClient<Channel> {
        CoderClient::new(self.channel().await)
    }

    pub async fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel().await)
    }

    /// Registers a client as `occoder clients add` does, through the
    /// registry file that the running server reads.
    pub fn add_client(&self, role: Role) -> (String, String) {
        let registry = ClientRegistry::open(&self.data_dir).unwrap();
        let client = registry.add("integration test", role).unwrap();
        (client.client_id, client.secret.expose().to_owned())
    }

    /// Registers a client and returns an access token for it from CreateToken.
    pub async fn token_for(&self, role: Role) -> String {
        let (client_id, secret) = self.add_client(role);
        create_token(&mut self.auth().await, &client_id, &secret).await.expect("CreateToken succeeds").access_token
    }
}

pub async fn create_token(
    auth: &mut AuthClient<Channel>,
    client_id: &str,
    secret: &str,
) -> Result<pb::CreateTokenResponse, Status> {
    let request = pb::CreateTokenRequest { client_id: client_id.to_owned(), client_secret: secret.to_owned() };
    auth.create_token(request).await.map(tonic::Response::into_inner)
}

/// Wraps `message` in a request with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn record(occp_text: &str, tasks_text: &str) -> pb::Record {
    pb::Record { record_id: None, occp_text: occp_text.to_owned(), tasks_text: tasks_text.to_owned() }
}

pub fn record_with_id(record_id: &str, occp_text: &str, tasks_text: &str) -> pb::Record {
    pb::Record { record_id: Some(record_id.to_owned()), ..record(occp_text, tasks_text) }
}

/// Builds a Code request for one record against the topic's latest model.
pub fn code_one(topic: &str, record: pb::Record) -> pb::CodeRequest {
    pb::CodeRequest { topic: topic.to_owned(), record: Some(record), ..Default::default() }
}

/// Builds a Code request for a batch against the topic's latest model.
pub fn code_batch(topic: &str, records: Vec<pb::Record>) -> pb::CodeRequest {
    pb::CodeRequest { topic: topic.to_owned(), records, ..Default::default() }
}

/// Checks a status's code, message prefix and `ErrorInfo` detail.
pub fn assert_status(status: &Status, code: Code, message_prefix: &str, reason: &str, domain: &str) {
    assert_eq!(status.code(), code, "unexpected status {status:?}");
    assert!(
        status.message().starts_with(message_prefix),
        "message {:?} does not start with {message_prefix:?}",
        status.message()
    );
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason);
    assert_eq!(info.domain, domain);
}

/// Returns the field names of a status's `BadRequest` detail.
pub fn violation_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"))
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}
