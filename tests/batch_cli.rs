//! The `occoder batch` command against a real server on 127.0.0.1: token
//! reuse between runs, CSV input, input checks before an operation exists,
//! bare host:port addresses and its error messages.

mod grpc_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use grpc_support::*;
use occoder_auth::{ClientRegistry, Role};

const OCCODER: &str = env!("CARGO_BIN_EXE_occoder");
const DENY: &str = "User is not authorized to access this resource with an explicit deny";

/// Exit status and output of one `occoder batch` run.
struct BatchRun {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `occoder batch ARGS --server SERVER` on a blocking thread with the
/// client's credentials in the environment and `cache` as XDG_CACHE_HOME.
async fn batch(server: &str, credentials: Option<(&str, &str)>, cache: &Path, args: &[&str]) -> BatchRun {
    let mut command = Command::new(OCCODER);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("batch")
        .args(args)
        .args(["--server", server])
        .env("XDG_CACHE_HOME", cache)
        .env_remove("OCCODER_CLIENT_ID")
        .env_remove("OCCODER_CLIENT_SECRET")
        .env_remove("OCCODER_SERVER");
    if let Some((client_id, secret)) = credentials {
        command.env("OCCODER_CLIENT_ID", client_id).env("OCCODER_CLIENT_SECRET", secret);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("occoder batch runs")).await.unwrap();
    BatchRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("records.jsonl");
    std::fs::write(
        &path,
        "{\"recordId\": \"1\", \"occp_text\": \"chef\", \"tasks_text\": \"cooking meals\"}\n\
         {\"recordId\": \"2\", \"occp_text\": \"nurse\", \"tasks_text\": \"caring for patients\"}\n",
    )
    .unwrap();
    path
}

/// Lists the operations in a server's data directory.
fn operations(data_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data_dir.join("operations")) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_reused_between_runs() {
    // Three runs that each requested a token would start the cool-down.
    let server = TestServer::start(|config| config.auth.token_requests_per_window = 2).await;
    let endpoint = server.endpoint();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let input = write_jsonl(work.path());

    for run in 1..=3 {
        let submitted =
            batch(&endpoint.url(), Some((&client_id, &secret)), cache.path(), &["submit", "--topic", "osca", "--input", input.to_str().unwrap()])
                .await;
        assert!(submitted.success, "run {run} failed: {}", submitted.stderr);
        assert!(uuid::Uuid::parse_str(submitted.stdout.trim()).is_ok(), "run {run} printed {:?}", submitted.stdout);
    }

    let files: Vec<PathBuf> =
        std::fs::read_dir(cache.path().join("occoder")).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token cache is readable by others");
    }

    // The rotation revokes the cached token: the next run gets
    // UNAUTHENTICATED, requests a new token with the new secret and succeeds.
    let new_secret = ClientRegistry::open(&endpoint.data_dir).unwrap().rotate_secret(&client_id).unwrap();
    let after_rotation = batch(
        &endpoint.url(),
        Some((&client_id, new_secret.expose())),
        cache.path(),
        &["submit", "--topic", "osca", "--input", input.to_str().unwrap()],
    )
    .await;
    assert!(after_rotation.success, "the revoked cached token was not replaced: {}", after_rotation.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_token_needs_its_secret() {
    let server = TestServer::start(|_| {}).await;
    let endpoint = server.endpoint();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let input = write_jsonl(work.path());
    let submit = ["submit", "--topic", "osca", "--input", input.to_str().unwrap()];

    let first = batch(&endpoint.url(), Some((&client_id, &secret)), cache.path(), &submit).await;
    let wrong = batch(&endpoint.url(), Some((&client_id, "not-the-secret")), cache.path(), &submit).await;

    assert!(first.success, "{}", first.stderr);
    assert!(!wrong.success, "a wrong secret was accepted through the cached token: {}", wrong.stdout);
    assert!(wrong.stderr.contains("UNAUTHENTICATED") || wrong.stderr.contains("Unauthenticated"), "{}", wrong.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_other_topic_gives_hint() {
    let server = TestServer::start(|_| {}).await;
    let endpoint = server.endpoint();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let input = write_jsonl(work.path());
    let credentials = Some((client_id.as_str(), secret.as_str()));

    let submitted =
        batch(&endpoint.url(), credentials, cache.path(), &["submit", "--topic", "osca", "--input", input.to_str().unwrap()]).await;
    assert!(submitted.success, "{}", submitted.stderr);
    let operation_id = submitted.stdout.trim();
    let status = batch(&endpoint.url(), credentials, cache.path(), &["status", "--topic", "anzsco", "--operation", operation_id]).await;

    assert!(!status.success, "{}", status.stdout);
    assert!(status.stderr.contains("Unable to retrieve operation for given id"), "{}", status.stderr);
    assert!(status.stderr.contains("that --topic is the topic the operation was submitted with"), "{}", status.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_cooldown_error_says_until_when() {
    let server = TestServer::start(|config| config.auth.token_requests_per_window = 1).await;
    let endpoint = server.endpoint();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let work = tempfile::tempdir().unwrap();
    let input = write_jsonl(work.path());
    let args = ["submit", "--topic", "osca", "--input", input.to_str().unwrap()];

    // Separate caches, so that each run requests a token.
    let first_cache = tempfile::tempdir().unwrap();
    let second_cache = tempfile::tempdir().unwrap();
    let first = batch(&endpoint.url(), Some((&client_id, &secret)), first_cache.path(), &args).await;
    let second = batch(&endpoint.url(), Some((&client_id, &secret)), second_cache.path(), &args).await;

    assert!(first.success, "{}", first.stderr);
    assert!(!second.success, "the second token request was accepted");
    assert!(second.stderr.contains(DENY), "{}", second.stderr);
    assert!(second.stderr.contains("more than 1 token requests within 3600 s"), "{}", second.stderr);
    assert!(second.stderr.contains("rejected until "), "{}", second.stderr);
    assert!(second.stderr.contains("retry in "), "{}", second.stderr);
    assert!(second.stderr.contains("PermissionDenied"), "{}", second.stderr);
}

/// CSV input is uploaded as JSON Lines, so the output equals `occoder code`
/// on the same file. The bare host:port address gets http://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_input_codes_like_offline() {
    let endpoint = shared_server();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let output = work.path().join("coded.jsonl");
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/records.csv");

    let submitted = batch(
        &endpoint.addr.to_string(),
        Some((&client_id, &secret)),
        cache.path(),
        &["submit", "--topic", "osca", "--input", csv.to_str().unwrap(), "--wait", "--poll-secs", "1", "--output", output.to_str().unwrap()],
    )
    .await;
    assert!(submitted.success, "{}", submitted.stderr);

    let offline = Command::new(OCCODER)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["code", "--topic", "osca", "--input", csv.to_str().unwrap()])
        .env_remove("OCCODER_MODELS")
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    let coded = std::fs::read_to_string(&output).unwrap();
    assert_eq!(coded.lines().count(), 3, "{coded}");
    assert!(!coded.contains("Invalid JSON data format"), "{coded}");
    assert_eq!(coded, String::from_utf8_lossy(&offline.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_creates_no_operation() {
    let server = TestServer::start(|_| {}).await;
    let endpoint = server.endpoint();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let header_only = work.path().join("header.csv");
    std::fs::write(&header_only, "recordId,occp_text,tasks_text\n").unwrap();
    let wrong_header = work.path().join("wrong.csv");
    std::fs::write(&wrong_header, "title,duties\nchef,cooking\n").unwrap();
    let missing = work.path().join("missing.jsonl");

    let cases = [
        (&missing, "failed to open the input file"),
        (&empty, "is empty"),
        (&header_only, "has a header row but no records"),
        (&wrong_header, "must name occp_text and tasks_text"),
    ];
    for (input, message) in cases {
        let run =
            batch(&endpoint.url(), Some((&client_id, &secret)), cache.path(), &["submit", "--topic", "osca", "--input", input.to_str().unwrap()])
                .await;

        assert!(!run.success, "{} was accepted", input.display());
        assert!(run.stderr.contains(message), "{}: {}", input.display(), run.stderr);
    }
    assert_eq!(operations(&endpoint.data_dir), Vec::<PathBuf>::new(), "a rejected input left an operation behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_name_variables_and_flags() {
    let cache = tempfile::tempdir().unwrap();

    let run = batch("127.0.0.1:50051", None, cache.path(), &["status", "--topic", "osca", "--operation", "x"]).await;

    assert!(!run.success);
    assert!(
        run.stderr.contains("set OCCODER_CLIENT_ID and OCCODER_CLIENT_SECRET (or --client-id and --secret)"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_cause_appears_once() {
    // A port that was just free on loopback, with nothing listening on it.
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cache = tempfile::tempdir().unwrap();

    let run = batch(&address.to_string(), Some(("occ-1", "secret")), cache.path(), &["status", "--topic", "osca", "--operation", "x"]).await;

    assert!(!run.success);
    assert!(run.stderr.contains(&format!("failed to connect to http://{address}")), "{}", run.stderr);
    assert!(run.stderr.contains("check that `occoder serve` is running"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("tcp connect error").count(), 1, "{}", run.stderr);
}
