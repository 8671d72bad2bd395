//! Reading the output of a complete operation.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Take};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::OperationError;
use crate::state::OutputMetadata;

/// The result of a download call: the metadata and the output lines.
pub struct Download {
    pub metadata: OutputMetadata,
    pub lines: OutputLines,
}

/// The output lines of an operation, in input order, without line breaks.
///
/// Reads the file lazily through a 256 KiB buffer, so memory does not grow
/// with the output size. The file handle stays valid if retention deletes the
/// file during the download.
pub struct OutputLines {
    operation_id: Uuid,
    reader: Take<BufReader<File>>,
    buffer: Vec<u8>,
}

impl OutputLines {
    /// Reads at most `length` bytes (the checkpointed output length) of `file`.
    pub(crate) fn new(operation_id: Uuid, file: File, length: u64) -> Self {
        OutputLines {
            operation_id,
            reader: BufReader::with_capacity(256 * 1024, file).take(length),
            buffer: Vec::new(),
        }
    }

    /// Moves the reading to a blocking thread and returns a channel of at
    /// most `capacity` buffered lines, for a server-streaming response.
    ///
    /// The reading stops when the receiver is dropped. Must be called inside
    /// a Tokio runtime.
    pub fn into_channel(
        mut self,
        capacity: usize,
    ) -> mpsc::Receiver<Result<String, OperationError>> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        tokio::task::spawn_blocking(move || {
            for line in &mut self {
                let stop = line.is_err();
                if sender.blocking_send(line).is_err() || stop {
                    break;
                }
            }
        });
        receiver
    }
}

impl Iterator for OutputLines {
    type Item = Result<String, OperationError>;

    /// Returns the next line; an I/O or encoding error is returned once and
    /// ends nothing by itself, so callers should stop at the first error.
    fn next(&mut self) -> Option<Self::Item> {
        self.buffer.clear();
        match self.reader.read_until(b'\n', &mut self.buffer) {
            Ok(0) => None,
            Ok(_) => {
                if self.buffer.last() == Some(&b'\n') {
                    self.buffer.pop();
                }
                let bytes = std::mem::take(&mut self.buffer);
                Some(String::from_utf8(bytes).map_err(|_| {
                    OperationError::Internal(format!(
                        "the output of operation {} is not valid UTF-8",
                        self.operation_id
                    ))
                }))
            }
            Err(source) => Some(Err(OperationError::io(
                format!(
                    "failed to read the output of operation {}",
                    self.operation_id
                ),
                source,
            ))),
        }
    }
}
