//! `occoder batch`: submit a JSONL file to a running server as an
//! asynchronous operation, check its status and download its output, as a
//! gRPC client with a partner client's credentials.

use std::future::Future;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::proto::v1 as pb;
use crate::proto::v1::auth_client::AuthClient;
use crate::proto::v1::bulk_coder_client::BulkCoderClient;

/// Bytes per upload message; well under the server's default 4 MiB
/// message limit.
const UPLOAD_CHUNK_BYTES: usize = 1 << 20;
/// Maximum attempts of one call rejected by the per-second rate limit.
const RATE_LIMIT_ATTEMPTS: u32 = 10;
/// Time before token expiry at which the client requests a new token.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct BatchArgs {
    /// URL of the occoder server.
    #[arg(long, env = "OCCODER_SERVER", default_value = "http://127.0.0.1:50051", global = true)]
    server: String,
    /// Client id of a partner client, from `occoder clients add --role partner`.
    #[arg(long, env = "OCCODER_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// The client's secret. Prefer OCCODER_CLIENT_SECRET, because other
    /// users of the machine can read command lines.
    #[arg(long, env = "OCCODER_CLIENT_SECRET", hide_env_values = true, global = true)]
    secret: Option<String>,
    #[command(subcommand)]
    command: BatchCommand,
}

#[derive(clap::Subcommand)]
enum BatchCommand {
    /// Create an operation, upload a JSONL file to it and print its id.
    Submit {
        /// Topic to code to: osca or anzsco.
        #[arg(long)]
        topic: String,
        /// Model id (GUID) to code with; the topic's latest model by default.
        #[arg(long)]
        model: Option<String>,
        /// JSONL file with one {"recordId", "occp_text", "tasks_text"}
        /// object per line; `-` reads standard input.
        #[arg(long)]
        input: PathBuf,
        /// Wait until the operation is complete, then download its output.
        #[arg(long)]
        wait: bool,
        /// Output file with --wait; `-` (the default) is
        /// standard output.
        #[arg(long, default_value = "-", requires = "wait")]
        output: PathBuf,
        /// Seconds between status checks with --wait.
        #[arg(long, default_value_t = 2)]
        poll_secs: u64,
    },
    /// Print the status of an operation as JSON.
    Status {
        /// Topic of the operation.
        #[arg(long)]
        topic: String,
        /// Operation id printed by `submit`.
        #[arg(long)]
        operation: String,
    },
    /// Write the output of a complete operation, one JSON line per input line.
    Download {
        /// Topic of the operation.
        #[arg(long)]
        topic: String,
        /// Operation id printed by `submit`.
        #[arg(long)]
        operation: String,
        /// Output file; `-` (the default) is standard output.
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// Wait until the operation is complete first.
        #[arg(long)]
        wait: bool,
        /// Seconds between status checks with --wait.
        #[arg(long, default_value_t = 2)]
        poll_secs: u64,
    },
}

pub fn run(args: BatchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(run_command(args))
}

async fn run_command(args: BatchArgs) -> anyhow::Result<ExitCode> {
    let (Some(client_id), Some(secret)) = (args.client_id, args.secret) else {
        bail!("missing credentials: set --client-id and OCCODER_CLIENT_SECRET (or --secret) of a partner client");
    };
    let mut session = Session::connect(&args.server, client_id, secret).await?;

    match args.command {
        BatchCommand::Submit { topic, model, input, wait, output, poll_secs } => {
            let created = session
                .call(|mut client, token| {
                    let request = pb::CreateOperationRequest { topic: topic.clone(), model_id: model.clone() };
                    async move { client.create_operation(bearer(request, &token)).await.map(tonic::Response::into_inner) }
                })
                .await
                .context("failed to create the operation")?;
            let id = created.operation_id;
            eprintln!("created operation {id} with model {}", created.model_id);
            let uploaded = upload_file(&mut session, &topic, &id, &input).await?;
            eprintln!("uploaded {} lines; the operation is in progress", uploaded.total_lines.unwrap_or_default());
            if !wait {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            let done = wait_until_done(&mut session, &topic, &id, Duration::from_secs(poll_secs)).await?;
            finish_download(&mut session, &topic, &id, done, &output).await
        }
        BatchCommand::Status { topic, operation } => {
            let status = get_status(&mut session, &topic, &operation).await?;
            println!("{}", serde_json::to_string_pretty(&StatusSummary::from(&status))?);
            Ok(ExitCode::SUCCESS)
        }
        BatchCommand::Download { topic, operation, output, wait, poll_secs } => {
            let status = if wait {
                wait_until_done(&mut session, &topic, &operation, Duration::from_secs(poll_secs)).await?
            } else {
                get_status(&mut session, &topic, &operation).await?
            };
            finish_download(&mut session, &topic, &operation, status, &output).await
        }
    }
}

/// A connection with a current access token.
struct Session {
    channel: Channel,
    client_id: String,
    secret: String,
    token: String,
    token_expires: Instant,
}

impl Session {
    async fn connect(server: &str, client_id: String, secret: String) -> anyhow::Result<Session> {
        let channel = Endpoint::from_shared(server.to_owned())
            .with_context(|| format!("invalid --server URL {server:?}; use a URL such as http://127.0.0.1:50051"))?
            .connect()
            .await
            .with_context(|| format!("failed to connect to {server}"))?;
        let mut session = Session { channel, client_id, secret, token: String::new(), token_expires: Instant::now() };
        session.refresh_token().await?;
        Ok(session)
    }

    async fn refresh_token(&mut self) -> anyhow::Result<()> {
        let request = pb::CreateTokenRequest { client_id: self.client_id.clone(), client_secret: self.secret.clone() };
        let issued = AuthClient::new(self.channel.clone())
            .create_token(request)
            .await
            .map_err(|status| anyhow::anyhow!("{}", status.message()))
            .context("failed to get an access token; check the client id and secret")?
            .into_inner();
        self.token = issued.access_token;
        self.token_expires = Instant::now() + Duration::from_secs(issued.expires_in.max(0) as u64);
        Ok(())
    }

    /// Runs one call with the current token, first renewing a token that is
    /// about to expire, and repeats a call rejected by the per-second rate
    /// limit after the delay that the server gives.
    async fn call<T, F, Fut>(&mut self, call: F) -> anyhow::Result<T>
    where
        F: Fn(BulkCoderClient<Channel>, String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempt = 1;
        loop {
            if self.token_expires.saturating_duration_since(Instant::now()) < TOKEN_REFRESH_MARGIN {
                self.refresh_token().await?;
            }
            let client = BulkCoderClient::new(self.channel.clone()).max_decoding_message_size(64 << 20);
            match call(client, self.token.clone()).await {
                Ok(response) => return Ok(response),
                Err(status) if is_rate_limited(&status) && attempt < RATE_LIMIT_ATTEMPTS => {
                    let delay =
                        status.get_details_retry_info().and_then(|info| info.retry_delay).unwrap_or(Duration::from_secs(1));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(status) => bail!("{} ({:?})", status.message(), status.code()),
            }
        }
    }
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn is_rate_limited(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted && status.get_details_error_info().is_some_and(|info| info.reason == "RATE_LIMITED")
}

async fn get_status(session: &mut Session, topic: &str, operation_id: &str) -> anyhow::Result<pb::OperationStatus> {
    session
        .call(|mut client, token| {
            let request = pb::GetOperationRequest { topic: topic.to_owned(), operation_id: operation_id.to_owned() };
            async move { client.get_operation(bearer(request, &token)).await.map(tonic::Response::into_inner) }
        })
        .await
        .with_context(|| format!("failed to get the status of operation {operation_id}"))
}

/// Streams a file (or standard input) to an operation in 1 MiB messages.
/// A file is read again when a rate-limited upload is repeated; standard
/// input is read into memory first for the same reason.
async fn upload_file(session: &mut Session, topic: &str, operation_id: &str, input: &Path) -> anyhow::Result<pb::OperationStatus> {
    let from_stdin = input == Path::new("-");
    let stdin_data = if from_stdin {
        let mut data = Vec::new();
        io::stdin().read_to_end(&mut data).context("failed to read standard input")?;
        Some(std::sync::Arc::new(data))
    } else {
        std::fs::metadata(input).with_context(|| format!("failed to read the input file {}", input.display()))?;
        None
    };

    session
        .call(|mut client, token| {
            let (sender, receiver) = mpsc::channel(4);
            let first = pb::UploadOperationInputRequest {
                operation_id: operation_id.to_owned(),
                topic: topic.to_owned(),
                data: Vec::new(),
            };
            let path = input.to_path_buf();
            let stdin_data = stdin_data.clone();
            tokio::task::spawn_blocking(move || send_chunks(first, path, stdin_data, sender));
            async move { client.upload_operation_input(bearer(ReceiverStream::new(receiver), &token)).await.map(tonic::Response::into_inner) }
        })
        .await
        .with_context(|| format!("failed to upload {} to operation {operation_id}", input.display()))
}

/// Reads the input on a blocking thread and sends it as upload messages;
/// the first message names the operation. A read error ends the stream
/// early, which makes the server discard the upload.
fn send_chunks(
    first: pb::UploadOperationInputRequest,
    path: PathBuf,
    stdin_data: Option<std::sync::Arc<Vec<u8>>>,
    sender: mpsc::Sender<pb::UploadOperationInputRequest>,
) {
    let mut message = Some(first);
    let mut send = |data: Vec<u8>| {
        let next = match message.take() {
            Some(first) => pb::UploadOperationInputRequest { data, ..first },
            None => pb::UploadOperationInputRequest { data, ..Default::default() },
        };
        sender.blocking_send(next).is_ok()
    };
    if let Some(data) = stdin_data {
        for chunk in data.chunks(UPLOAD_CHUNK_BYTES) {
            if !send(chunk.to_vec()) {
                return;
            }
        }
        if data.is_empty() {
            send(Vec::new());
        }
        return;
    }
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: failed to open {}: {error}", path.display());
            return;
        }
    };
    let mut sent_any = false;
    loop {
        let mut buffer = vec![0; UPLOAD_CHUNK_BYTES];
        let read = match read_full(&mut file, &mut buffer) {
            Ok(read) => read,
            Err(error) => {
                eprintln!("error: failed to read {}: {error}", path.display());
                return;
            }
        };
        if read == 0 {
            if !sent_any {
                send(Vec::new());
            }
            return;
        }
        buffer.truncate(read);
        sent_any = true;
        if !send(buffer) {
            return;
        }
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Polls an operation until it leaves awaiting_input and in_progress,
/// printing progress to standard error.
async fn wait_until_done(session: &mut Session, topic: &str, operation_id: &str, poll: Duration) -> anyhow::Result<pb::OperationStatus> {
    loop {
        let status = get_status(session, topic, operation_id).await?;
        match status.operation_status() {
            pb::OperationState::AwaitingInput | pb::OperationState::InProgress => {
                eprintln!("{}", status.message);
                tokio::time::sleep(poll.max(Duration::from_millis(100))).await;
            }
            _ => return Ok(status),
        }
    }
}

/// Downloads the output of a complete operation, or fails with the reason
/// why the operation has no output.
async fn finish_download(
    session: &mut Session,
    topic: &str,
    operation_id: &str,
    status: pb::OperationStatus,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    if status.operation_status() != pb::OperationState::Complete || status.expired {
        bail!("operation {operation_id} has no output to download: {}", status.message);
    }
    let mut writer: Box<dyn Write> = if output == Path::new("-") {
        Box::new(BufWriter::new(io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(
            std::fs::File::create(output).with_context(|| format!("failed to create the output file {}", output.display()))?,
        ))
    };

    let mut stream = session
        .call(|mut client, token| {
            let request = pb::DownloadOperationOutputRequest { topic: topic.to_owned(), operation_id: operation_id.to_owned() };
            async move { client.download_operation_output(bearer(request, &token)).await.map(tonic::Response::into_inner) }
        })
        .await
        .with_context(|| format!("failed to download the output of operation {operation_id}"))?;
    let mut lines = 0u64;
    let mut metadata = None;
    while let Some(message) =
        stream.message().await.map_err(|status| anyhow::anyhow!("{} ({:?})", status.message(), status.code())).context("the download failed")?
    {
        if message.metadata.is_some() {
            metadata = message.metadata;
        }
        for line in message.lines {
            writer.write_all(line.as_bytes()).and_then(|()| writer.write_all(b"\n")).context("failed to write the output")?;
            lines += 1;
        }
    }
    writer.flush().context("failed to write the output")?;

    let metadata = metadata.context("the server sent no metadata with the output")?;
    if lines != metadata.input_lines {
        bail!("the download ended after {lines} of {} lines; download it again", metadata.input_lines);
    }
    eprintln!(
        "downloaded {lines} lines of operation {operation_id}: {} successful, {} unsuccessful, {} errors",
        metadata.successful_lines, metadata.unsuccessful_lines, metadata.error_lines
    );
    Ok(ExitCode::SUCCESS)
}

/// The fields of an operation's status printed by `occoder batch status`,
/// with the REST API's names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusSummary {
    operation_id: String,
    operation_status: &'static str,
    model_id: String,
    total_lines: Option<u64>,
    processed_lines: u64,
    successful_lines: u64,
    unsuccessful_lines: u64,
    error_lines: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    expired: bool,
    message: String,
}

impl From<&pb::OperationStatus> for StatusSummary {
    fn from(status: &pb::OperationStatus) -> StatusSummary {
        let operation_status = match status.operation_status() {
            pb::OperationState::AwaitingInput => "awaiting_input",
            pb::OperationState::InProgress => "in_progress",
            pb::OperationState::Complete => "complete",
            pb::OperationState::TimedOut => "timed_out",
            pb::OperationState::Failed => "failed",
            pb::OperationState::Unspecified => "unspecified",
        };
        StatusSummary {
            operation_id: status.operation_id.clone(),
            operation_status,
            model_id: status.model_id.clone(),
            total_lines: status.total_lines,
            processed_lines: status.processed_lines,
            successful_lines: status.successful_lines,
            unsuccessful_lines: status.unsuccessful_lines,
            error_lines: status.error_lines,
            error: status.error.clone(),
            expired: status.expired,
            message: status.message.clone(),
        }
    }
}
