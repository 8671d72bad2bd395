//! `occoder batch`: submit a JSONL or CSV file to a running server as an
//! asynchronous operation, check its status and download its output, as a
//! gRPC client with a partner client's credentials. Access tokens are kept
//! between runs in the user's cache directory (see [`super::token_cache`]).

use std::future::Future;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use super::csv_input::{self, CsvColumns, CsvRow};
use super::token_cache::TokenCache;
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
    /// Address of the occoder server: host:port (plain text) or a URL such
    /// as http://127.0.0.1:50051.
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
    /// Create an operation, upload a JSONL or CSV file to it and print its id.
    Submit {
        /// Topic to code to: osca or anzsco.
        #[arg(long)]
        topic: String,
        /// Model id (GUID) to code with; the topic's latest model by default.
        #[arg(long)]
        model: Option<String>,
        /// JSONL file with one {"recordId", "occp_text", "tasks_text"}
        /// object per line. A name ending in .csv is read as CSV with a
        /// header row naming occp_text, tasks_text and optionally recordId.
        /// `-` reads JSONL from standard input.
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
        bail!(
            "missing credentials of a partner client: set OCCODER_CLIENT_ID and OCCODER_CLIENT_SECRET \
             (or --client-id and --secret)"
        );
    };
    // Checked before connecting, so that a bad file creates no operation.
    let upload = match &args.command {
        BatchCommand::Submit { input, .. } => Some(UploadInput::open(input)?),
        _ => None,
    };
    let mut session = Session::connect(&args.server, client_id, secret).await?;

    match args.command {
        BatchCommand::Submit { topic, model, input: _, wait, output, poll_secs } => {
            let upload = upload.expect("the input of submit was opened above");
            let created = session
                .call(|mut client, token| {
                    let request = pb::CreateOperationRequest { topic: topic.clone(), model_id: model.clone() };
                    async move { client.create_operation(bearer(request, &token)).await.map(tonic::Response::into_inner) }
                })
                .await
                .context("failed to create the operation")?;
            let id = created.operation_id;
            eprintln!("created operation {id} with model {}", created.model_id);
            let uploaded = upload_input(&mut session, &topic, &id, &upload).await?;
            eprintln!(
                "uploaded {}; the operation is in progress",
                super::count(uploaded.total_lines.unwrap_or_default(), "line")
            );
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
    url: String,
    client_id: String,
    secret: String,
    token: String,
    token_expires: SystemTime,
    cache: Option<TokenCache>,
}

impl Session {
    /// Connects to the server and takes a token from the cache, or requests
    /// one when the cache has none that is valid for another minute.
    async fn connect(server: &str, client_id: String, secret: String) -> anyhow::Result<Session> {
        let url = server_url(server);
        let endpoint = Endpoint::from_shared(url.clone()).map_err(|error| {
            anyhow::anyhow!(
                "invalid --server address {server:?}: {}; give host:port such as 127.0.0.1:50051 \
                 or a URL such as http://127.0.0.1:50051",
                super::error_report(&error.into())
            )
        })?;
        let channel = endpoint.connect().await.map_err(|error| {
            anyhow::anyhow!(
                "failed to connect to {url}: {}; check that `occoder serve` is running and listening there",
                super::error_report(&error.into())
            )
        })?;

        let cache = TokenCache::for_client(&url, &client_id, &secret);
        if cache.is_none() {
            eprintln!("warning: neither XDG_CACHE_HOME nor HOME is set, so the access token is not kept for the next run");
        }
        let mut session =
            Session { channel, url, client_id, secret, token: String::new(), token_expires: SystemTime::UNIX_EPOCH, cache };
        match session.cache.as_ref().and_then(TokenCache::load) {
            Some((token, expires)) if remaining(expires) > TOKEN_REFRESH_MARGIN => {
                session.token = token;
                session.token_expires = expires;
            }
            _ => session.refresh_token().await?,
        }
        Ok(session)
    }

    /// Requests a new token and stores it in the cache.
    async fn refresh_token(&mut self) -> anyhow::Result<()> {
        let request = pb::CreateTokenRequest { client_id: self.client_id.clone(), client_secret: self.secret.clone() };
        let issued = AuthClient::new(self.channel.clone())
            .create_token(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!("failed to get an access token from {}: {} ({:?})", self.url, status.message(), status.code())
            })?
            .into_inner();
        self.token = issued.access_token;
        self.token_expires = SystemTime::now() + Duration::from_secs(issued.expires_in.max(0) as u64);
        if let Some(cache) = &self.cache
            && let Err(error) = cache.store(&self.token, self.token_expires)
        {
            eprintln!("warning: failed to write the token cache {}: {error}", cache.path().display());
        }
        Ok(())
    }

    /// Runs one call with the current token, renewing a token that is about
    /// to expire first. When the server rejects the token as UNAUTHENTICATED
    /// (for example after a secret rotation), it renews the token once and
    /// repeats the call. A call rejected by the per-second rate limit is
    /// repeated after the delay that the server gives.
    async fn call<T, F, Fut>(&mut self, call: F) -> anyhow::Result<T>
    where
        F: Fn(BulkCoderClient<Channel>, String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            if remaining(self.token_expires) < TOKEN_REFRESH_MARGIN {
                self.refresh_token().await?;
                renewed = true;
            }
            let client = BulkCoderClient::new(self.channel.clone()).max_decoding_message_size(64 << 20);
            match call(client, self.token.clone()).await {
                Ok(response) => return Ok(response),
                Err(status) if status.code() == Code::Unauthenticated && !renewed => {
                    if let Some(cache) = &self.cache {
                        cache.remove();
                    }
                    self.refresh_token().await?;
                    renewed = true;
                }
                Err(status) if is_rate_limited(&status) && attempt < RATE_LIMIT_ATTEMPTS => {
                    let delay =
                        status.get_details_retry_info().and_then(|info| info.retry_delay).unwrap_or(Duration::from_secs(1));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(status) if status.code() == Code::NotFound && status.message().starts_with(UNKNOWN_OPERATION) => bail!(
                    "{} ({:?}); check the operation id, and that --topic is the topic the operation was submitted with",
                    status.message(),
                    status.code()
                ),
                Err(status) => bail!("{} ({:?})", status.message(), status.code()),
            }
        }
    }
}

/// Start of the server's message for an operation id that it does not
/// know under the given topic.
const UNKNOWN_OPERATION: &str = "Unable to retrieve operation for given id";

/// Returns `server` as a URL. A bare host:port gets `http://`, because
/// `occoder batch` has no TLS options.
fn server_url(server: &str) -> String {
    if server.contains("://") { server.to_owned() } else { format!("http://{server}") }
}

/// Time left until `expires`, zero once it has passed.
fn remaining(expires: SystemTime) -> Duration {
    expires.duration_since(SystemTime::now()).unwrap_or_default()
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

/// The input of `batch submit`, checked before the operation is created.
#[derive(Clone)]
enum UploadInput {
    /// Standard input, read into memory so that a rate-limited upload can be
    /// repeated.
    Stdin(Arc<Vec<u8>>),
    /// A JSON Lines file, sent as it is.
    Jsonl(PathBuf),
    /// A CSV file, sent as one JSON line per CSV record.
    Csv(PathBuf),
}

impl UploadInput {
    /// Checks that the input exists, is a readable non-empty file and, for
    /// CSV, has the required header and at least one record.
    fn open(input: &Path) -> anyhow::Result<UploadInput> {
        if input == Path::new("-") {
            let mut data = Vec::new();
            io::stdin().read_to_end(&mut data).context("failed to read standard input")?;
            if data.is_empty() {
                bail!("standard input is empty; give one JSON record per line");
            }
            return Ok(UploadInput::Stdin(Arc::new(data)));
        }

        let mut file =
            std::fs::File::open(input).with_context(|| format!("failed to open the input file {}", input.display()))?;
        let metadata = file.metadata().with_context(|| format!("failed to read the input file {}", input.display()))?;
        if !metadata.is_file() {
            bail!("the input {} is not a file", input.display());
        }
        if metadata.len() == 0 {
            bail!("the input file {} is empty; give one record per line", input.display());
        }
        file.read_exact(&mut [0]).with_context(|| format!("failed to read the input file {}", input.display()))?;

        if !is_csv(input) {
            return Ok(UploadInput::Jsonl(input.to_path_buf()));
        }
        let file =
            std::fs::File::open(input).with_context(|| format!("failed to open the input file {}", input.display()))?;
        let mut csv = csv_input::reader(file);
        let header = CsvColumns::read_header(&mut csv).with_context(|| format!("failed to read the CSV file {}", input.display()))?;
        if header.is_none() || csv.byte_records().next().is_none() {
            bail!("the CSV file {} has a header row but no records", input.display());
        }
        Ok(UploadInput::Csv(input.to_path_buf()))
    }

    fn name(&self) -> String {
        match self {
            UploadInput::Stdin(_) => "standard input".to_owned(),
            UploadInput::Jsonl(path) | UploadInput::Csv(path) => path.display().to_string(),
        }
    }
}

fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
}

/// Streams the input to an operation in 1 MiB messages. A file is read
/// again when a rate-limited upload is repeated.
async fn upload_input(
    session: &mut Session,
    topic: &str,
    operation_id: &str,
    input: &UploadInput,
) -> anyhow::Result<pb::OperationStatus> {
    session
        .call(|mut client, token| {
            let (sender, receiver) = mpsc::channel(4);
            let first = pb::UploadOperationInputRequest {
                operation_id: operation_id.to_owned(),
                topic: topic.to_owned(),
                data: Vec::new(),
            };
            let input = input.clone();
            tokio::task::spawn_blocking(move || send_chunks(first, input, sender));
            async move { client.upload_operation_input(bearer(ReceiverStream::new(receiver), &token)).await.map(tonic::Response::into_inner) }
        })
        .await
        .with_context(|| format!("failed to upload {} to operation {operation_id}", input.name()))
}

/// Reads the input on a blocking thread and sends it as upload messages;
/// the first message names the operation. A read error ends the stream
/// early, which makes the server discard the upload.
fn send_chunks(first: pb::UploadOperationInputRequest, input: UploadInput, sender: mpsc::Sender<pb::UploadOperationInputRequest>) {
    let mut message = Some(first);
    let mut send = |data: Vec<u8>| {
        let next = match message.take() {
            Some(first) => pb::UploadOperationInputRequest { data, ..first },
            None => pb::UploadOperationInputRequest { data, ..Default::default() },
        };
        sender.blocking_send(next).is_ok()
    };
    match input {
        UploadInput::Stdin(data) => {
            for chunk in data.chunks(UPLOAD_CHUNK_BYTES) {
                if !send(chunk.to_vec()) {
                    return;
                }
            }
        }
        UploadInput::Jsonl(path) => send_file(&path, &mut send),
        UploadInput::Csv(path) => send_csv_as_jsonl(&path, &mut send),
    }
}

fn send_file(path: &Path, send: &mut impl FnMut(Vec<u8>) -> bool) {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: failed to open {}: {error}", path.display());
            return;
        }
    };
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
            return;
        }
        buffer.truncate(read);
        if !send(buffer) {
            return;
        }
    }
}

/// Sends each CSV record as a JSON line with `recordId` (when the CSV has
/// that column), `occp_text` and `tasks_text`, read as `occoder code` reads
/// them, so the output has one line per CSV record. A row that does not fit
/// the header, or is not valid CSV, is sent as a line of plain text naming
/// the problem, for which the server writes an error line that starts with
/// "Invalid JSON data format." and echoes it.
fn send_csv_as_jsonl(path: &Path, send: &mut impl FnMut(Vec<u8>) -> bool) {
    let mut csv = match std::fs::File::open(path) {
        Ok(file) => csv_input::reader(file),
        Err(error) => {
            eprintln!("error: failed to open {}: {error}", path.display());
            return;
        }
    };
    let columns = match CsvColumns::read_header(&mut csv) {
        Ok(Some(columns)) => columns,
        Ok(None) => return,
        Err(error) => {
            eprintln!("error: failed to read {}: {}", path.display(), super::error_report(&error));
            return;
        }
    };
    let mut buffer = Vec::with_capacity(UPLOAD_CHUNK_BYTES);
    for row in csv.byte_records() {
        let problem = match row {
            Ok(row) => match columns.read(&row) {
                CsvRow { record_id, occp_text: Some(occp_text), tasks_text: Some(tasks_text), problem: None } => {
                    let mut object = serde_json::Map::new();
                    if let Some(record_id) = record_id {
                        object.insert("recordId".to_owned(), record_id.into());
                    }
                    object.insert("occp_text".to_owned(), occp_text.into());
                    object.insert("tasks_text".to_owned(), tasks_text.into());
                    Ok(serde_json::Value::Object(object).to_string())
                }
                CsvRow { problem, .. } => Err(problem.unwrap_or_else(|| "a text column is missing".to_owned())),
            },
            Err(error) => Err(format!("invalid CSV row: {error}")),
        };
        let line = problem.unwrap_or_else(|problem| {
            eprintln!("warning: {}: {problem}; its output line will be an error", path.display());
            format!("CSV row not sent: {problem}").replace(['\r', '\n'], " ")
        });
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        if buffer.len() >= UPLOAD_CHUNK_BYTES {
            if !send(std::mem::take(&mut buffer)) {
                return;
            }
            buffer.reserve(UPLOAD_CHUNK_BYTES);
        }
    }
    if !buffer.is_empty() {
        send(buffer);
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
        "downloaded {} of operation {operation_id}: {} successful, {} unsuccessful with suggestions, {} (unsuccessful with an error field)",
        super::count(lines, "line"),
        metadata.successful_lines,
        metadata.unsuccessful_lines,
        super::count(metadata.error_lines, "error")
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
