//! The injected coding step and the classification of its output lines.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// Codes batches of raw input lines; the server implements it.
///
/// The store calls `code_lines` on a blocking thread (never on an async
/// worker), once per chunk of at most `StoreConfig::chunk_lines` lines, in
/// input order, and one chunk at a time per operation.
pub trait BatchCoder: Send + Sync + 'static {
    /// Codes a chunk of raw input lines with the model `model_id`.
    ///
    /// Must return exactly one output line per input line, in the same
    /// order. Each output line is one JSON object (an
    /// AsynchronousCodeResponse) with a `"codeStatus"` field and no line
    /// break. A bad input line becomes an error line, never an `Err`.
    ///
    /// An `Err` fails the whole operation with the error's message, which
    /// the client sees and the store logs, so it must not contain input text.
    /// A wrong number of lines, a line containing a line break, or a panic
    /// also fails the operation.
    fn code_lines(&self, model_id: &str, lines: &[String]) -> Result<Vec<String>, CoderError>;
}

/// A failure that stops an operation, for example a model that was removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CoderError {
    message: String,
}

impl CoderError {
    pub fn new(message: impl Into<String>) -> Self {
        CoderError {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The class of one output line, used for the metadata counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// `"codeStatus":"successful"` and no `"error"` field.
    Successful,
    /// Any other `codeStatus` (or none) and no `"error"` field.
    Unsuccessful,
    /// The object has an `"error"` field, or the line is not a JSON object.
    Error,
}

#[derive(Deserialize)]
struct OutputProbe {
    #[serde(rename = "codeStatus")]
    code_status: Option<String>,
    /// True when the field is present, even with a `null` value.
    #[serde(default, rename = "error", deserialize_with = "field_present")]
    has_error: bool,
}

fn field_present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer)?;
    Ok(true)
}

/// Classifies one output line of a `BatchCoder`.
///
/// An `"error"` field wins over `codeStatus`. A line that is not a JSON
/// object counts as an error line.
pub fn classify_output_line(line: &str) -> LineOutcome {
    let Ok(probe) = serde_json::from_str::<OutputProbe>(line) else {
        return LineOutcome::Error;
    };
    if probe.has_error {
        return LineOutcome::Error;
    }
    match probe.code_status.as_deref() {
        Some("successful") => LineOutcome::Successful,
        _ => LineOutcome::Unsuccessful,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_output_line_cases() {
        let cases = [
            (
                r#"{"codeStatus":"successful","code":"261313"}"#,
                LineOutcome::Successful,
            ),
            (
                r#"{"codeStatus":"unsuccessful"}"#,
                LineOutcome::Unsuccessful,
            ),
            (r#"{"code":"1"}"#, LineOutcome::Unsuccessful),
            (
                r#"{"codeStatus":"successful","error":"x"}"#,
                LineOutcome::Error,
            ),
            (r#"{"error":{"message":"bad"}}"#, LineOutcome::Error),
            (r#"{"error":null}"#, LineOutcome::Error),
            ("not json", LineOutcome::Error),
            ("[1,2]", LineOutcome::Error),
        ];
        for (line, expected) in cases {
            assert_eq!(classify_output_line(line), expected, "line {line}");
        }
    }
}
