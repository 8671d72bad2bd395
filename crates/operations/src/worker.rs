//! Background coding: the dispatcher task and the per-operation loop.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::coder::classify_output_line;
use crate::error::{IoContext, OperationError};
use crate::fsutil;
use crate::inner::{INPUT_FILE, Inner, OUTPUT_FILE, lock};
use crate::state::{LineCounts, OperationState};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Runs queued operations, at most `max_concurrent_operations` at a time,
/// each on a blocking thread. `recovered` runs before anything queued.
///
/// Returns after a stop request once the running operations have stopped at
/// their next chunk boundary.
pub(crate) async fn dispatch(
    inner: Arc<Inner>,
    mut queue: mpsc::Receiver<Uuid>,
    recovered: Vec<Uuid>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(inner.config.max_concurrent_operations));
    let mut backlog: VecDeque<Uuid> = recovered.into();
    let mut running = JoinSet::new();

    loop {
        let id = match backlog.pop_front() {
            Some(id) => id,
            None => tokio::select! {
                biased;
                _ = stop.wait_for(|stopping| *stopping) => break,
                next = queue.recv() => match next {
                    Some(id) => id,
                    None => break,
                },
            },
        };
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let worker_inner = Arc::clone(&inner);
        running.spawn_blocking(move || {
            let _permit = permit;
            run_operation(&worker_inner, id);
        });
        while let Some(result) = running.try_join_next() {
            log_join_error(result);
        }
    }

    while let Some(result) = running.join_next().await {
        log_join_error(result);
    }
    tracing::debug!("operation dispatcher stopped");
}

fn log_join_error(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result {
        tracing::error!(%error, "operation worker task ended abnormally");
    }
}

/// Outcome of a run of [`process`] that did not fail.
enum RunEnd {
    Complete(LineCounts),
    /// A stop was requested; the operation resumes from its checkpoint on
    /// the next open.
    Stopped,
    /// The operation was not in progress, so there was nothing to do.
    Skipped,
}

/// Codes one operation to completion, stops it at a chunk boundary, or fails
/// it with a recorded reason.
pub(crate) fn run_operation(inner: &Inner, id: Uuid) {
    let started = Instant::now();
    match process(inner, id) {
        Ok(RunEnd::Complete(counts)) => {
            tracing::info!(
                operation_id = %id,
                lines = counts.processed,
                successful = counts.successful,
                unsuccessful = counts.unsuccessful,
                errors = counts.errors,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "operation complete"
            );
        }
        Ok(RunEnd::Stopped) => {
            tracing::info!(operation_id = %id, "operation stopped at a checkpoint; it resumes on the next start");
        }
        Ok(RunEnd::Skipped) => {}
        Err(error) => inner.fail_operation(id, error.to_string()),
    }
}

/// The coding loop: read a chunk, code it, append and fsync the output, then
/// write the checkpoint.
///
/// Crash safety rests on the order of the last two steps: the output is
/// durable up to the new offset before the checkpoint records that offset. After a crash
/// the output may extend past the checkpoint; it is truncated back here.
fn process(inner: &Inner, id: Uuid) -> Result<RunEnd, OperationError> {
    let slot = inner
        .lookup(id)
        .ok_or_else(|| OperationError::Internal(format!("queued operation {id} is unknown")))?;
    let record = lock(&slot).record.clone();
    if record.state != OperationState::InProgress {
        return Ok(RunEnd::Skipped);
    }
    let checkpoint = record.checkpoint;

    let input_path = inner.file_path(id, INPUT_FILE);
    let input_file =
        File::open(&input_path).context(|| format!("failed to open {}", input_path.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, input_file);
    input
        .seek(SeekFrom::Start(checkpoint.input_offset))
        .context(|| format!("failed to seek in {}", input_path.display()))?;

    let mut output = open_output_at_checkpoint(inner, id, checkpoint.output_offset)?;

    let now = inner.clock.now();
    let resuming = record.started_at.is_some();
    inner.update_record(id, |record| {
        if resuming {
            record.resume_count += 1;
        } else {
            record.started_at = Some(now);
        }
        Ok(())
    })?;
    if resuming {
        tracing::info!(operation_id = %id, from_line = record.counts.processed, "operation resumed");
    } else {
        tracing::info!(operation_id = %id, lines = record.input_lines, "operation started");
    }

    let mut at_start = checkpoint.input_offset == 0;
    let mut line_buffer = Vec::new();
    let mut output_buffer = Vec::new();
    loop {
        if inner.is_stopping() {
            return Ok(RunEnd::Stopped);
        }
        let (lines, input_bytes) = read_chunk(
            &mut input,
            inner.config.chunk_lines,
            at_start,
            &mut line_buffer,
        )
        .context(|| format!("failed to read {}", input_path.display()))?;
        at_start = false;
        if lines.is_empty() {
            break;
        }

        let coded = code_chunk(inner, &record.model_id, &lines)?;
        output_buffer.clear();
        let mut chunk_counts = LineCounts::default();
        for line in &coded {
            chunk_counts.add(classify_output_line(line));
            output_buffer.extend_from_slice(line.as_bytes());
            output_buffer.push(b'\n');
        }
        output
            .write_all(&output_buffer)
            .and_then(|()| output.sync_data())
            .context(|| format!("failed to write the output of operation {id}"))?;

        let output_bytes = output_buffer.len() as u64;
        inner.update_record(id, |record| {
            if record.state != OperationState::InProgress {
                return Err(OperationError::Internal(format!(
                    "operation {id} changed to {} while it was being coded",
                    record.state
                )));
            }
            record.checkpoint.input_offset += input_bytes;
            record.checkpoint.output_offset += output_bytes;
            record.counts.processed += chunk_counts.processed;
            record.counts.successful += chunk_counts.successful;
            record.counts.unsuccessful += chunk_counts.unsuccessful;
            record.counts.errors += chunk_counts.errors;
            Ok(())
        })?;
    }

    let completed_at = inner.clock.now();
    let completed = inner.update_record(id, |record| {
        if let Some(expected) = record.input_lines
            && expected != record.counts.processed
        {
            return Err(OperationError::Internal(format!(
                "the input has {expected} lines but {} were coded; the input file changed after upload",
                record.counts.processed
            )));
        }
        record.state = OperationState::Complete;
        record.completed_at = Some(completed_at);
        Ok(())
    })?;
    Ok(RunEnd::Complete(completed.counts))
}

/// Opens `output.jsonl` for appending at `offset`, truncating whatever a
/// crash left after the checkpoint.
fn open_output_at_checkpoint(inner: &Inner, id: Uuid, offset: u64) -> Result<File, OperationError> {
    let path = inner.file_path(id, OUTPUT_FILE);
    let existed = path.exists();
    let mut output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .context(|| format!("failed to open {}", path.display()))?;
    if !existed {
        fsutil::sync_parent(&path)
            .context(|| format!("failed to fsync the directory of {}", path.display()))?;
    }
    let length = output
        .metadata()
        .context(|| format!("failed to read the length of {}", path.display()))?
        .len();
    if length < offset {
        return Err(OperationError::Internal(format!(
            "the output file has {length} bytes but the checkpoint records {offset}; \
             the output was lost or truncated outside the store"
        )));
    }
    if length > offset {
        output
            .set_len(offset)
            .and_then(|()| output.sync_data())
            .context(|| format!("failed to truncate {} to its checkpoint", path.display()))?;
        tracing::info!(
            operation_id = %id,
            dropped_bytes = length - offset,
            "truncated output written after the last checkpoint"
        );
    }
    output
        .seek(SeekFrom::Start(offset))
        .context(|| format!("failed to seek in {}", path.display()))?;
    Ok(output)
}

/// Reads up to `max_lines` lines and returns them with the number of input
/// bytes they took, line breaks included.
///
/// Line breaks are `\n` or `\r\n`. A last line without a line break counts.
/// Invalid UTF-8 is replaced with U+FFFD. A UTF-8 byte order mark at the
/// start of the file is dropped.
fn read_chunk(
    input: &mut impl BufRead,
    max_lines: usize,
    at_start: bool,
    buffer: &mut Vec<u8>,
) -> std::io::Result<(Vec<String>, u64)> {
    let mut lines = Vec::with_capacity(max_lines.min(4096));
    let mut bytes = 0u64;
    while lines.len() < max_lines {
        buffer.clear();
        let read = input.read_until(b'\n', buffer)?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        let mut line: &[u8] = buffer;
        if at_start && lines.is_empty() {
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        lines.push(String::from_utf8_lossy(line).into_owned());
    }
    Ok((lines, bytes))
}

/// Calls the coder and checks its output shape.
fn code_chunk(
    inner: &Inner,
    model_id: &str,
    lines: &[String],
) -> Result<Vec<String>, OperationError> {
    let coder = Arc::clone(&inner.coder);
    let result = panic::catch_unwind(AssertUnwindSafe(|| coder.code_lines(model_id, lines)));
    let coded = match result {
        Ok(Ok(coded)) => coded,
        Ok(Err(error)) => return Err(OperationError::Internal(error.message().to_owned())),
        Err(_) => {
            return Err(OperationError::Internal(
                "the coder panicked while coding a chunk".to_owned(),
            ));
        }
    };
    if coded.len() != lines.len() {
        return Err(OperationError::Internal(format!(
            "the coder returned {} output lines for {} input lines",
            coded.len(),
            lines.len()
        )));
    }
    if let Some(position) = coded.iter().position(|line| line.contains('\n')) {
        return Err(OperationError::Internal(format!(
            "the coder returned an output line with a line break at chunk position {position}"
        )));
    }
    Ok(coded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_chunk_splits_lines_and_counts_bytes() {
        let data = b"\xEF\xBB\xBFa\r\nb\n\nc";
        let mut reader = &data[..];
        let mut buffer = Vec::new();
        let (first, first_bytes) = read_chunk(&mut reader, 2, true, &mut buffer).unwrap();
        assert_eq!(first, ["a", "b"]);
        assert_eq!(first_bytes, 8);
        let (rest, rest_bytes) = read_chunk(&mut reader, 10, false, &mut buffer).unwrap();
        assert_eq!(rest, ["", "c"]);
        assert_eq!(rest_bytes, 2);
        let (empty, empty_bytes) = read_chunk(&mut reader, 10, false, &mut buffer).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty_bytes, 0);
    }
}
