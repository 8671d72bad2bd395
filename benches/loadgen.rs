//! Load generator: starts `occoder serve` with the shipped models on a free
//! port of 127.0.0.1, in a temporary data directory with rate limits and
//! daily ceilings far above the load, and measures
//!
//! - unary `Coder.Code` with one record, at concurrency 1 and 64: requests
//!   per second and p50, p95 and p99 latency;
//! - `Coder.Code` with batches of 300 records;
//! - `BulkCoder.CodeStream` with 1,000,000 records: records per second
//!   from the first request message to the last response;
//! - the server's resident memory after loading and at its peak
//!   (`VmRSS` and `VmHWM` of `/proc/<pid>/status`).
//!
//! The client runs on the same machine, so it takes CPU time from the
//! server. Run with `cargo bench --bench loadgen -- [--seconds S]
//! [--stream-records N] [--topic osca|anzsco]`.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use occoder::proto::v1 as pb;
use occoder::proto::v1::auth_client::AuthClient;
use occoder::proto::v1::bulk_coder_client::BulkCoderClient;
use occoder::proto::v1::coder_client::CoderClient;
use occoder_auth::{ClientRegistry, Role};
use occoder_classification::TopicId;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Connections shared by the workers of the concurrency-64 run, so that
/// one HTTP/2 connection's task does not limit the client.
const CONNECTIONS: usize = 8;
/// Records per request of the batch run, the API's maximum.
const BATCH_RECORDS: usize = 300;
/// Batch requests in flight at once.
const BATCH_CONCURRENCY: usize = 2;

struct Options {
    /// Length of each unary and batch run.
    duration: Duration,
    stream_records: usize,
    topic: TopicId,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options { duration: Duration::from_secs(10), stream_records: 1_000_000, topic: TopicId::Osca };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let seconds: f64 = args.next().context("--seconds needs a value")?.parse().context("invalid --seconds")?;
                options.duration = Duration::from_secs_f64(seconds);
            }
            "--stream-records" => {
                options.stream_records =
                    args.next().context("--stream-records needs a value")?.parse().context("invalid --stream-records")?;
            }
            "--topic" => {
                options.topic = args.next().context("--topic needs a value")?.parse().context("invalid --topic")?;
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => bail!("unknown argument {other:?}; expected --seconds, --stream-records or --topic"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let records: Vec<pb::Record> = common::records(options.topic)
        .into_iter()
        .map(|record| pb::Record { record_id: None, occp_text: record.occp_text, tasks_text: record.tasks_text })
        .collect();
    let workdir = tempfile::tempdir().context("failed to create a temporary directory")?;
    let (client_id, secret) = register_client(&workdir.path().join("data"))?;

    let started = Instant::now();
    let server = ServerProcess::spawn(workdir.path())?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the client runtime")?;
    let outcome = runtime.block_on(async {
        let url = format!("http://{}", server.addr);
        let token = wait_for_token(&url, &client_id, &secret).await?;
        let bench = Bench::connect(&url, &token, options.topic, records).await?;
        bench.wait_until_ready().await?;
        println!(
            "server pid {} ready in {:.0} ms; RSS after loading {:.1} MB",
            server.child.id(),
            started.elapsed().as_secs_f64() * 1e3,
            server.memory_kb("VmRSS:")? as f64 / 1024.0
        );

        bench.unary(1, 1, Duration::from_secs(1)).await?;
        let single = bench.unary(1, 1, options.duration).await?;
        single.print("unary, concurrency 1");
        let parallel = bench.unary(64, CONNECTIONS, options.duration).await?;
        parallel.print("unary, concurrency 64");
        let batches = bench.batches(options.duration).await?;
        batches.print(&format!("batches of {BATCH_RECORDS}, concurrency {BATCH_CONCURRENCY}"));
        match bench.stream(options.stream_records).await? {
            Some((count, elapsed)) => println!(
                "{:<34} {count} records in {:.1} s: {:.0} records/s",
                "CodeStream",
                elapsed.as_secs_f64(),
                count as f64 / elapsed.as_secs_f64()
            ),
            None => println!("{:<34} not measured: the server returned UNIMPLEMENTED", "CodeStream"),
        }
        anyhow::Ok(())
    });
    if let Err(error) = outcome {
        let log = std::fs::read_to_string(workdir.path().join("server.log")).unwrap_or_default();
        eprintln!("server log:\n{log}");
        return Err(error);
    }
    println!("server peak RSS (VmHWM) {:.1} MB", server.memory_kb("VmHWM:")? as f64 / 1024.0);
    Ok(())
}

/// Registers a partner client in `data_dir`, as `occoder clients add` does.
fn register_client(data_dir: &Path) -> anyhow::Result<(String, String)> {
    let registry = ClientRegistry::open(data_dir).context("failed to open the client registry")?;
    let client = registry.add("load generator", Role::Partner).context("failed to register the client")?;
    Ok((client.client_id, client.secret.expose().to_owned()))
}

/// A spawned `occoder serve`, stopped with SIGTERM (then SIGKILL) on drop.
struct ServerProcess {
    child: Child,
    addr: std::net::SocketAddr,
}

impl ServerProcess {
    fn spawn(workdir: &Path) -> anyhow::Result<ServerProcess> {
        // Binding port 0 and closing it again picks a port that is free now.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = format!(
            r#"listen = "{addr}"
models_dir = "{models}"
data_dir = "{data}"

[limits]
concurrency_limit_per_connection = 1024
max_concurrent_streams = 1024
drain_timeout_secs = 5

[logging]
filter = "warn"

[auth]
requests_per_second = 1000000.0
burst = 1000000
daily_limit_public = 1000000000000
daily_limit_partner = 1000000000000
token_requests_per_window = 1000
"#,
            models = common::models_dir().display(),
            data = workdir.join("data").display(),
        );
        let config_path = workdir.join("occoder.toml");
        std::fs::write(&config_path, config)?;
        let log_path = workdir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_occoder"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(File::create(&log_path)?)
            .spawn()
            .context("failed to start occoder serve")?;
        Ok(ServerProcess { child, addr })
    }

    /// Reads a `/proc/<pid>/status` field given in kB, such as `VmHWM:`.
    fn memory_kb(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|line| line.starts_with(field)).with_context(|| format!("no {field} in status"))?;
        let kilobytes = line[field.len()..].trim().trim_end_matches("kB").trim();
        Ok(kilobytes.parse()?)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("occoder serve (pid {pid}) did not stop within 10 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects until the server accepts connections, then creates a token.
async fn wait_for_token(url: &str, client_id: &str, secret: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Channel::from_shared(url.to_owned())?.connect().await {
            Ok(channel) => {
                let request =
                    pb::CreateTokenRequest { client_id: client_id.to_owned(), client_secret: secret.to_owned() };
                let response = AuthClient::new(channel).create_token(request).await.context("CreateToken failed")?;
                return Ok(response.into_inner().access_token);
            }
            Err(error) if Instant::now() > deadline => bail!("the server did not accept connections in 60 s: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

struct Bench {
    channels: Vec<Channel>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    topic: TopicId,
    records: Arc<Vec<pb::Record>>,
}

/// Latencies and counts of one timed run.
struct RunSummary {
    latencies: Vec<Duration>,
    elapsed: Duration,
    records_per_request: usize,
    errors: usize,
}

impl RunSummary {
    fn print(&self, name: &str) {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let requests = sorted.len() as f64 / self.elapsed.as_secs_f64();
        let mut line = format!("{name:<34} {} requests in {:.1} s: {requests:.0} requests/s", sorted.len(), self.elapsed.as_secs_f64());
        if self.records_per_request > 1 {
            line += &format!(" ({:.0} records/s)", requests * self.records_per_request as f64);
        }
        for (label, quantile) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            line += &format!(", {label} {:.3} ms", percentile(&sorted, quantile).as_secs_f64() * 1e3);
        }
        line += &format!(", errors {}", self.errors);
        println!("{line}");
    }
}

/// The `quantile` of sorted latencies by the nearest-rank method.
fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Bench {
    async fn connect(url: &str, token: &str, topic: TopicId, records: Vec<pb::Record>) -> anyhow::Result<Bench> {
        let mut channels = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            channels.push(Channel::from_shared(url.to_owned())?.connect().await?);
        }
        let authorization = format!("Bearer {token}").parse().context("the token is not valid metadata")?;
        Ok(Bench { channels, authorization, topic, records: Arc::new(records) })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request
    }

    fn code_request(&self, records: Vec<pb::Record>) -> pb::CodeRequest {
        let (record, records) = if records.len() == 1 { (records.into_iter().next(), Vec::new()) } else { (None, records) };
        pb::CodeRequest {
            topic: self.topic.uri_name().to_owned(),
            model_id: None,
            record,
            records,
            number_of_suggestions: None,
            per_record_errors: false,
        }
    }

    /// Retries one Code call while the server is still loading its models.
    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut coder = CoderClient::new(self.channels[0].clone());
        loop {
            let request = self.request(self.code_request(vec![self.records[0].clone()]));
            match coder.code(request).await {
                Ok(_) => return Ok(()),
                Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => bail!("Code failed while waiting for the models: {status}"),
            }
        }
    }

    /// Sends single-record Code calls from `concurrency` workers over
    /// `connections` connections for `duration`.
    async fn unary(&self, concurrency: usize, connections: usize, duration: Duration) -> anyhow::Result<RunSummary> {
        self.run_workers(concurrency, connections, duration, 1).await
    }

    async fn batches(&self, duration: Duration) -> anyhow::Result<RunSummary> {
        self.run_workers(BATCH_CONCURRENCY, BATCH_CONCURRENCY, duration, BATCH_RECORDS).await
    }

    async fn run_workers(
        &self,
        concurrency: usize,
        connections: usize,
        duration: Duration,
        records_per_request: usize,
    ) -> anyhow::Result<RunSummary> {
        let started = Instant::now();
        let deadline = started + duration;
        let mut workers = Vec::with_capacity(concurrency);
        for worker in 0..concurrency {
            let mut coder = CoderClient::new(self.channels[worker % connections].clone());
            let records = Arc::clone(&self.records);
            let requests: Vec<pb::CodeRequest> = (0..64)
                .map(|k| {
                    let first = (worker * 64 + k) * records_per_request;
                    let batch = (0..records_per_request).map(|i| records[(first + i) % records.len()].clone()).collect();
                    self.code_request(batch)
                })
                .collect();
            let authorization = self.authorization.clone();
            workers.push(tokio::spawn(async move {
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, None);
                let mut next = 0;
                while Instant::now() < deadline {
                    let mut request = Request::new(requests[next % requests.len()].clone());
                    request.metadata_mut().insert("authorization", authorization.clone());
                    next += 1;
                    let sent = Instant::now();
                    match coder.code(request).await {
                        Ok(_) => latencies.push(sent.elapsed()),
                        Err(status) => {
                            errors += 1;
                            first_error.get_or_insert(status);
                        }
                    }
                }
                (latencies, errors, first_error)
            }));
        }

        let mut summary = RunSummary { latencies: Vec::new(), elapsed: Duration::ZERO, records_per_request, errors: 0 };
        for worker in workers {
            let (latencies, errors, first_error) = worker.await?;
            summary.latencies.extend(latencies);
            summary.errors += errors;
            if let Some(status) = first_error {
                eprintln!("Code failed: {status}");
            }
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Streams `count` records through CodeStream and reads every response.
    /// Returns `None` when the server does not implement the method.
    async fn stream(&self, count: usize) -> anyhow::Result<Option<(usize, Duration)>> {
        use pb::code_stream_request::Message;

        let setup = pb::CodeStreamRequest {
            message: Some(Message::Setup(pb::CodeStreamSetup { topic: self.topic.uri_name().to_owned(), model_id: None })),
        };
        let records = Arc::clone(&self.records);
        let messages = (0..count)
            .map(move |i| pb::CodeStreamRequest { message: Some(Message::Record(records[i % records.len()].clone())) });
        let outbound = futures::stream::iter(std::iter::once(setup).chain(messages));

        let started = Instant::now();
        let mut client = BulkCoderClient::new(self.channels[0].clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut inbound = match client.code_stream(self.request(outbound)).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::Unimplemented => return Ok(None),
            Err(status) => bail!("CodeStream failed: {status}"),
        };
        let mut received = 0usize;
        while let Some(response) = inbound.message().await.context("CodeStream failed while streaming")? {
            if response.error.is_some() {
                bail!("record {received} of the stream failed: {:?}", response.error);
            }
            received += 1;
        }
        let elapsed = started.elapsed();
        if received != count {
            bail!("CodeStream returned {received} responses for {count} records");
        }
        Ok(Some((received, elapsed)))
    }
}
