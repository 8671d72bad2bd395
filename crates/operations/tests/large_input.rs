//! A 200,000-line operation, streamed in and out with bounded memory.
//!
//! This file contains a single test so that the process's peak resident memory
//! belongs to it alone.

mod common;

use std::time::Instant;

use common::*;
use occoder_operations::{OperationState, OperationStore, StoreConfig};

const LINES: usize = 200_000;
const CHUNK_LINES: usize = 4096;

/// Returns input line `n`, about 200 bytes long.
fn input_line(n: usize) -> String {
    format!(
        "{{\"id\":\"{n}\",\"text\":\"registered nurse in a regional hospital emergency department, \
         night shift rotation, line {n:08}\",\"padding\":\"{}\"}}",
        "p".repeat(64)
    )
}

/// Returns the peak and current resident memory in KiB from /proc.
fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_input_streams_in_chunks() {
    let data = tempfile::tempdir().unwrap();
    let coder = GatedCoder::never_blocking();
    let config = StoreConfig {
        chunk_lines: CHUNK_LINES,
        sweep_interval: None,
        ..StoreConfig::default()
    };
    let store = OperationStore::open(data.path(), config, coder.clone()).unwrap();
    let id = create_operation(&store);

    // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
    let memory_tracked = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (_, rss_before) = memory_kib().unwrap_or_default();
    let started = Instant::now();

    let mut upload = store.begin_upload(CLIENT, TOPIC, &id).unwrap();
    let mut buffer = String::new();
    let mut input_bytes = 0usize;
    for n in 0..LINES {
        buffer.push_str(&input_line(n));
        buffer.push('\n');
        if buffer.len() >= 64 * 1024 {
            upload.write_chunk(buffer.as_bytes()).unwrap();
            input_bytes += buffer.len();
            buffer.clear();
        }
    }
    upload.write_chunk(buffer.as_bytes()).unwrap();
    input_bytes += buffer.len();
    let uploaded = upload.finish().unwrap();
    assert_eq!(uploaded.total_lines, Some(LINES as u64));

    let done = wait_for_state(&store, &id, OperationState::Complete).await;
    assert_eq!(done.counts.processed, LINES as u64);
    assert_eq!(done.counts.successful, LINES as u64);
    assert_eq!(coder.calls(), LINES.div_ceil(CHUNK_LINES));
    assert_eq!(coder.max_chunk(), CHUNK_LINES);

    let download = store.download(CLIENT, TOPIC, &id).unwrap();
    assert_eq!(download.metadata.input_lines, LINES as u64);
    let mut count = 0;
    for (n, line) in download.lines.enumerate() {
        let line = line.unwrap();
        assert_eq!(line, echo_line(&input_line(n)), "output line {n}");
        count += 1;
    }
    assert_eq!(count, LINES);
    let elapsed = started.elapsed();

    if memory_tracked && let Some((peak, _)) = memory_kib() {
        let growth_mib = peak.saturating_sub(rss_before) / 1024;
        let input_mib = input_bytes / (1 << 20);
        eprintln!("input {input_mib} MiB, peak memory growth {growth_mib} MiB, {elapsed:?}");
        // Keeping the whole input in memory would take more than its 38 MiB.
        // The store needs a few MiB of buffers and one chunk of lines.
        assert!(input_mib >= 38, "input is only {input_mib} MiB");
        assert!(growth_mib < 32, "peak memory grew by {growth_mib} MiB");
    } else {
        eprintln!("peak memory not measured: /proc/self/clear_refs is not writable");
    }
    store.shutdown().await;
}
