//! Bulk coding throughput: starts a server in this process on a free port
//! of 127.0.0.1 with the shipped models and a temporary data directory,
//! then sends the same generated records
//!
//! - through `BulkCoder.CodeStream`: records per second from the first
//!   request message to the last response;
//! - through an asynchronous operation: the upload, the coding (the
//!   operation's `processing_millis`), the download, and records per second
//!   from the start of the upload to the end of the download. While the
//!   operation codes, one synchronous `Coder.Code` call per status poll
//!   measures how long a synchronous call takes meanwhile.
//!
//! The client runs on the same machine and in the same process, so it takes
//! CPU time from the server. Run with
//! `cargo bench --bench bulk_throughput -- [--records N]` (default
//! 1,000,000).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use occoder::proto::v1 as pb;
use occoder::proto::v1::auth_client::AuthClient;
use occoder::proto::v1::bulk_coder_client::BulkCoderClient;
use occoder::proto::v1::coder_client::CoderClient;
use occoder::server::{self, ServerConfig};
use occoder_auth::{ClientRegistry, Role};
use tonic::Request;
use tonic::transport::Channel;

/// Texts cycled through the generated records; every one is valid.
const TEXTS: &[(&str, &str)] = &[
    ("software developer", "writing code and unit tests"),
    ("Paramedic", "responding to medical emergencies"),
    ("Brickie", ""),
    ("registered nurse", "caring for patients in the emergency department"),
    ("chef", "cooking meals in a restaurant kitchen"),
    ("truck driver", "delivering freight interstate"),
    ("primary school teacher", "teaching year 3 students"),
    ("sales assistant", "serving customers and stocking shelves"),
    ("electrician", "installing wiring in new houses"),
    ("retired", ""),
    ("accounts clerk", "processing invoices and reconciling payments"),
];

fn record(index: usize) -> pb::Record {
    let (occp_text, tasks_text) = TEXTS[index % TEXTS.len()];
    pb::Record { record_id: Some(index.to_string()), occp_text: occp_text.to_owned(), tasks_text: tasks_text.to_owned() }
}

fn json_line(index: usize) -> String {
    let record = record(index);
    serde_json::json!({
        "recordId": record.record_id,
        "occp_text": record.occp_text,
        "tasks_text": record.tasks_text,
    })
    .to_string()
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("a token is ASCII"));
    request
}

fn parse_records() -> anyhow::Result<usize> {
    let mut arguments = std::env::args().skip(1);
    let mut records = 1_000_000;
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--records" => {
                let value = arguments.next().context("--records needs a number")?;
                records = value.replace(['_', ','], "").parse().with_context(|| format!("invalid --records {value:?}"))?;
            }
            // Cargo passes --bench to every bench binary.
            "--bench" => {}
            other => bail!("unknown argument {other:?}; use --records N"),
        }
    }
    Ok(records)
}

fn rate(records: usize, elapsed: Duration) -> String {
    format!("{:.0} records/s", records as f64 / elapsed.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let records = parse_records()?;
    let data_dir = tempfile::tempdir()?;
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.path().to_path_buf(),
        models_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
        ..ServerConfig::default()
    };
    config.auth.requests_per_second = 10_000.0;
    config.auth.burst = 10_000;
    config.auth.daily_limit_partner = 1_000_000;
    let client = ClientRegistry::open(data_dir.path())?.add("bulk benchmark", Role::Partner)?;

    // The server gets a runtime of its own, as it would in its own process.
    let server_runtime = tokio::runtime::Runtime::new()?;
    let handle = server_runtime.block_on(async {
        let handle = server::start(config).await?;
        handle.ready().await?;
        anyhow::Ok(handle)
    })?;
    let url = format!("http://{}", handle.local_addr());
    println!("server on {url}; {} CPUs; {records} records per run", std::thread::available_parallelism().map_or(1, usize::from));

    let client_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    client_runtime.block_on(async {
        let channel = Channel::from_shared(url)?.connect().await?;
        let token = AuthClient::new(channel.clone())
            .create_token(pb::CreateTokenRequest {
                client_id: client.client_id.clone(),
                client_secret: client.secret.expose().to_owned(),
            })
            .await?
            .into_inner()
            .access_token;
        let mut bulk = BulkCoderClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        let mut coder = CoderClient::new(channel);
        run_stream(&mut bulk, &token, records).await?;
        run_operation(&mut bulk, &mut coder, &token, records).await
    })?;

    server_runtime.block_on(handle.shutdown())?;
    Ok(())
}

async fn run_stream(bulk: &mut BulkCoderClient<Channel>, token: &str, records: usize) -> anyhow::Result<()> {
    let setup = pb::CodeStreamRequest {
        message: Some(pb::code_stream_request::Message::Setup(pb::CodeStreamSetup { topic: "osca".into(), model_id: None })),
    };
    let messages = std::iter::once(setup).chain(
        (0..records).map(|index| pb::CodeStreamRequest { message: Some(pb::code_stream_request::Message::Record(record(index))) }),
    );

    let started = Instant::now();
    let mut responses = bulk.code_stream(bearer(tokio_stream::iter(messages), token)).await?.into_inner();
    let mut received = 0usize;
    let mut errors = 0usize;
    while let Some(response) = responses.message().await? {
        received += 1;
        errors += usize::from(response.error.is_some());
    }
    let elapsed = started.elapsed();
    if received != records || errors != 0 {
        bail!("CodeStream returned {received} responses with {errors} errors for {records} valid records");
    }
    println!("CodeStream: {records} records in {:.2} s: {}", elapsed.as_secs_f64(), rate(records, elapsed));
    Ok(())
}

async fn run_operation(
    bulk: &mut BulkCoderClient<Channel>,
    coder: &mut CoderClient<Channel>,
    token: &str,
    records: usize,
) -> anyhow::Result<()> {
    let mut input = String::new();
    for index in 0..records {
        input.push_str(&json_line(index));
        input.push('\n');
    }
    let input = input.into_bytes();

    let started = Instant::now();
    let created = bulk.create_operation(bearer(pb::CreateOperationRequest { topic: "osca".into(), model_id: None }, token)).await?.into_inner();
    let id = created.operation_id;
    let messages: Vec<pb::UploadOperationInputRequest> = input
        .chunks(1 << 20)
        .enumerate()
        .map(|(index, chunk)| pb::UploadOperationInputRequest {
            operation_id: if index == 0 { id.clone() } else { String::new() },
            topic: if index == 0 { "osca".into() } else { String::new() },
            data: chunk.to_vec(),
        })
        .collect();
    bulk.upload_operation_input(bearer(tokio_stream::iter(messages), token)).await?;
    let uploaded = started.elapsed();

    let mut sync_latencies = Vec::new();
    loop {
        let request = pb::GetOperationRequest { topic: "osca".into(), operation_id: id.clone() };
        let status = bulk.get_operation(bearer(request, token)).await?.into_inner();
        match status.operation_status() {
            pb::OperationState::InProgress => {
                let request = pb::CodeRequest { topic: "osca".into(), record: Some(record(0)), ..Default::default() };
                let call_started = Instant::now();
                coder.code(bearer(request, token)).await?;
                sync_latencies.push(call_started.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            pb::OperationState::Complete => break,
            other => bail!("operation {id} ended {other:?}: {}", status.message),
        }
    }
    let coded = started.elapsed();
    sync_latencies.sort();

    let request = pb::DownloadOperationOutputRequest { topic: "osca".into(), operation_id: id.clone() };
    let mut stream = bulk.download_operation_output(bearer(request, token)).await?.into_inner();
    let mut lines = 0usize;
    let mut processing_millis = None;
    while let Some(message) = stream.message().await? {
        if let Some(metadata) = message.metadata {
            processing_millis = metadata.processing_millis;
        }
        lines += message.lines.len();
    }
    let finished = started.elapsed();
    if lines != records {
        bail!("the download returned {lines} lines for {records} records");
    }

    let processing = Duration::from_millis(processing_millis.context("a complete operation has processing_millis")?.max(1) as u64);
    println!(
        "operation upload: {:.1} MB in {:.2} s ({:.0} MB/s)",
        input.len() as f64 / 1e6,
        uploaded.as_secs_f64(),
        input.len() as f64 / 1e6 / uploaded.as_secs_f64()
    );
    println!("operation coding: {records} records in {:.2} s: {}", processing.as_secs_f64(), rate(records, processing));
    println!("operation download: {lines} lines in {:.2} s", (finished - coded).as_secs_f64());
    if let (Some(median), Some(max)) = (sync_latencies.get(sync_latencies.len() / 2), sync_latencies.last()) {
        println!(
            "Coder.Code of one record during the operation: {} calls, median {:.1} ms, max {:.1} ms",
            sync_latencies.len(),
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    println!(
        "operation end to end (upload, coding, download): {:.2} s: {}",
        finished.as_secs_f64(),
        rate(records, finished)
    );
    Ok(())
}
