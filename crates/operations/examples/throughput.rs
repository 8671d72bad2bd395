//! Measures lines per second through the operation store with a trivial
//! coder, so the numbers show the cost of the store itself (file I/O,
//! fsyncs, checkpoints and output classification), not of a model.
//!
//! Usage: `cargo run --release -p occoder-operations --example throughput -- [LINES] [CHUNK_LINES]`
//! (defaults 1,000,000 and 4,096). The data directory is a temporary
//! directory under `$TMPDIR`, so the disk behind it sets the fsync cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use occoder_operations::{BatchCoder, CoderError, OperationState, OperationStore, StoreConfig};

/// Returns a fixed successful response for every line.
struct ConstantCoder;

impl BatchCoder for ConstantCoder {
    fn code_lines(&self, _model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError> {
        Ok(lines
            .iter()
            .map(|_| r#"{"codeStatus":"successful","code":"261313","confidence":0.93}"#.to_owned())
            .collect())
    }
}

fn parse_argument(position: usize, default: usize) -> usize {
    match std::env::args().nth(position) {
        Some(value) => value.replace(['_', ','], "").parse().unwrap_or_else(|_| {
            panic!("argument {position} must be a positive integer, got {value:?}")
        }),
        None => default,
    }
}

fn rate(lines: usize, elapsed: Duration) -> f64 {
    lines as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let lines = parse_argument(1, 1_000_000);
    let chunk_lines = parse_argument(2, 4096);
    let data = tempfile::tempdir().expect("failed to create a temporary directory");
    let config = StoreConfig {
        chunk_lines,
        sweep_interval: None,
        ..StoreConfig::default()
    };
    let store = OperationStore::open(data.path(), config, Arc::new(ConstantCoder))
        .expect("failed to open the store");
    let id = store
        .create("bench-client", "occupation", "bench-model")
        .expect("failed to create an operation")
        .operation_id
        .to_string();

    let upload_started = Instant::now();
    let mut upload = store
        .begin_upload("bench-client", "occupation", &id)
        .expect("failed to start the upload");
    let mut buffer = String::with_capacity(1 << 16);
    let mut input_bytes = 0usize;
    for n in 0..lines {
        buffer.push_str(&format!(
            "{{\"id\":\"{n}\",\"text\":\"registered nurse, emergency department\"}}\n"
        ));
        if buffer.len() >= 1 << 16 {
            upload
                .write_chunk(buffer.as_bytes())
                .expect("failed to write a chunk");
            input_bytes += buffer.len();
            buffer.clear();
        }
    }
    upload
        .write_chunk(buffer.as_bytes())
        .expect("failed to write a chunk");
    input_bytes += buffer.len();
    let finish_upload = tokio::task::spawn_blocking(move || upload.finish());
    finish_upload
        .await
        .unwrap()
        .expect("failed to finish the upload");
    let upload_elapsed = upload_started.elapsed();

    let coding_started = Instant::now();
    loop {
        let status = store
            .status("bench-client", "occupation", &id)
            .expect("failed to read the status");
        match status.state {
            OperationState::Complete => break,
            OperationState::InProgress => tokio::time::sleep(Duration::from_millis(2)).await,
            other => panic!("operation ended as {other}: {:?}", status.error_message),
        }
    }
    let coding_elapsed = coding_started.elapsed();

    let download_started = Instant::now();
    let download = store
        .download("bench-client", "occupation", &id)
        .expect("failed to open the download");
    let mut output_lines = 0usize;
    for line in download.lines {
        line.expect("failed to read an output line");
        output_lines += 1;
    }
    let download_elapsed = download_started.elapsed();
    assert_eq!(
        output_lines, lines,
        "the output has a different number of lines"
    );

    println!(
        "lines {lines}, chunk_lines {chunk_lines}, input {:.1} MiB",
        input_bytes as f64 / f64::from(1 << 20)
    );
    println!(
        "upload   {upload_elapsed:>10.2?}  {:>12.0} lines/s",
        rate(lines, upload_elapsed)
    );
    println!(
        "coding   {coding_elapsed:>10.2?}  {:>12.0} lines/s",
        rate(lines, coding_elapsed)
    );
    println!(
        "download {download_elapsed:>10.2?}  {:>12.0} lines/s",
        rate(lines, download_elapsed)
    );
    store.shutdown().await;
}
