//! The bulk (JSON Lines) format shared by file coding, streaming and
//! asynchronous operations.
//!
//! Each input line is an object `{"recordId", "occp_text", "tasks_text"}`;
//! `recordId` is optional, and both text fields are required although
//! either may be empty. Each input line gives exactly one output line, an
//! AsynchronousCodeResponse: `recordId`, `codeStatus`, `input`, then
//! `result` (successful), `suggestions` (unsuccessful, at most 3) or
//! `error` (a line that could not be coded). A bad line never affects the
//! other lines.

use occoder_text::{LengthLimit, Record, validate};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::{CodeOptions, CodeStatus, CodedRecord, Coding, Model, Scratch};

/// Suggestions given for an unsuccessful record in bulk output.
pub const BULK_SUGGESTIONS: usize = 3;

/// The service's message for a line that is not a JSON object. Error lines
/// start with it and go on with the problem and the fix.
pub const INVALID_JSON: &str = "Invalid JSON data format.";

/// The `input` echoed in a response: the record's fields, or the raw line
/// when it was not a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EchoedInput {
    Fields {
        #[serde(skip_serializing_if = "Option::is_none")]
        occp_text: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tasks_text: Option<String>,
    },
    Raw(String),
}

/// One output line (the service's AsynchronousCodeResponse).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AsynchronousCodeResponse {
    /// The record's `recordId`, `None` (JSON null) when it gave none, or
    /// `"unknown"` when the line could not be parsed.
    pub record_id: Option<String>,
    pub code_status: CodeStatus,
    pub input: EchoedInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<CodedRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestions: Option<Vec<CodedRecord>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AsynchronousCodeResponse {
    /// Builds the response for a record that was coded.
    pub fn coded(record_id: Option<String>, record: Record, coding: Coding) -> AsynchronousCodeResponse {
        let (result, suggestions) = match coding.status {
            CodeStatus::Successful => (coding.result.into_iter().next(), None),
            CodeStatus::Unsuccessful => {
                let mut suggestions = coding.suggestions;
                suggestions.truncate(BULK_SUGGESTIONS);
                (None, Some(suggestions))
            }
        };
        AsynchronousCodeResponse {
            record_id,
            code_status: coding.status,
            input: EchoedInput::Fields { occp_text: Some(record.occp_text), tasks_text: Some(record.tasks_text) },
            result,
            suggestions,
            error: None,
        }
    }

    /// Builds the response for a record that could not be coded.
    pub fn failed(record_id: Option<String>, input: EchoedInput, error: String) -> AsynchronousCodeResponse {
        AsynchronousCodeResponse {
            record_id,
            code_status: CodeStatus::Unsuccessful,
            input,
            result: None,
            suggestions: None,
            error: Some(error),
        }
    }

    /// Returns whether this response reports an error rather than a coding.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// Serialises the response as one line of JSON, without the newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("responses contain only strings and finite numbers")
    }
}

/// Parses and validates one input line, with the bulk length limit.
///
/// On failure returns the error response for the line, which keeps the
/// line's `recordId` when it has one.
// The error is the line's output, built once per bad line; boxing it would
// only move the allocation.
#[allow(clippy::result_large_err)]
pub fn parse_line(line: &str) -> Result<(Option<String>, Record), AsynchronousCodeResponse> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let problem = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(Value::Array(_)) => Err("The line is a JSON array".to_string()),
        Ok(Value::String(_)) => Err("The line is a JSON string".to_string()),
        Ok(_) => Err("The line is a single JSON value".to_string()),
        Err(error) => Err(format!("The line is not valid JSON ({error})")),
    };
    let object = match problem {
        Ok(object) => object,
        Err(problem) => {
            let message = format!(
                "{INVALID_JSON} {problem}; write one JSON object per line, such as \
                 {{\"recordId\": \"1\", \"occp_text\": \"nurse\", \"tasks_text\": \"\"}}"
            );
            return Err(AsynchronousCodeResponse::failed(Some("unknown".into()), EchoedInput::Raw(line.to_string()), message));
        }
    };

    let record_id = match object.get("recordId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(_) => {
            return Err(malformed(None, &object, "recordId must be a string"));
        }
    };

    let mut fields = [None, None];
    for (slot, name) in fields.iter_mut().zip(["occp_text", "tasks_text"]) {
        match object.get(name) {
            Some(Value::String(text)) => *slot = Some(text.clone()),
            Some(_) => return Err(malformed(record_id, &object, &format!("{name} must be a string"))),
            None => {
                let message = format!("{name} is missing; every line needs occp_text and tasks_text, either may be \"\"");
                return Err(malformed(record_id, &object, &message));
            }
        }
    }
    let [Some(occp_text), Some(tasks_text)] = fields else { unreachable!("both fields were set above") };
    let record = Record { occp_text, tasks_text };

    match validate(&record, LengthLimit::Bulk) {
        Ok(()) => Ok((record_id, record)),
        Err(error) => Err(AsynchronousCodeResponse::failed(record_id, echo(&record), error.to_string())),
    }
}

fn malformed(record_id: Option<String>, object: &serde_json::Map<String, Value>, problem: &str) -> AsynchronousCodeResponse {
    let text = |name| object.get(name).and_then(Value::as_str).map(str::to_string);
    AsynchronousCodeResponse::failed(
        record_id,
        EchoedInput::Fields { occp_text: text("occp_text"), tasks_text: text("tasks_text") },
        format!("Malformed record found in request: {problem}"),
    )
}

fn echo(record: &Record) -> EchoedInput {
    EchoedInput::Fields { occp_text: Some(record.occp_text.clone()), tasks_text: Some(record.tasks_text.clone()) }
}

/// Codes one parsed or failed line into its response.
pub fn respond(
    model: &Model,
    parsed: Result<(Option<String>, Record), AsynchronousCodeResponse>,
    scratch: &mut Scratch,
) -> AsynchronousCodeResponse {
    let options = CodeOptions { suggestions: BULK_SUGGESTIONS };
    match parsed {
        Ok((record_id, record)) => {
            let coding = model.code_with(&record, &options, scratch);
            AsynchronousCodeResponse::coded(record_id, record, coding)
        }
        Err(response) => response,
    }
}

/// Codes input lines in parallel and returns one output JSON line per input
/// line, in order.
pub fn code_lines<S: AsRef<str> + Sync>(model: &Model, lines: &[S]) -> Vec<String> {
    lines
        .par_iter()
        .map_init(Scratch::default, |scratch, line| respond(model, parse_line(line.as_ref()), scratch).to_json_line())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_json_gives_service_message() {
        let response = parse_line("this is not a json string").unwrap_err();

        assert_eq!(response.record_id.as_deref(), Some("unknown"));
        assert!(response.error.as_deref().unwrap().starts_with(INVALID_JSON), "{response:?}");
        assert_eq!(response.input, EchoedInput::Raw("this is not a json string".into()));
    }

    #[test]
    fn missing_field_is_malformed_and_keeps_id() {
        let response = parse_line(r#"{"recordId": "7", "occp_text": "nurse"}"#).unwrap_err();

        assert_eq!(response.record_id.as_deref(), Some("7"));
        assert!(response.error.as_deref().unwrap().starts_with("Malformed record found in request: tasks_text is missing"));
    }

    #[test]
    fn numeric_record_id_becomes_string() {
        let (record_id, record) = parse_line(r#"{"recordId": 12, "occp_text": "chef", "tasks_text": ""}"#).unwrap();

        assert_eq!(record_id.as_deref(), Some("12"));
        assert_eq!(record, Record::new("chef", ""));
    }

    #[test]
    fn bulk_limit_is_300() {
        let long = format!(r#"{{"occp_text": "{}", "tasks_text": ""}}"#, "a".repeat(300));
        let too_long = format!(r#"{{"occp_text": "{}", "tasks_text": ""}}"#, "a".repeat(301));

        assert!(parse_line(&long).is_ok());
        assert!(parse_line(&too_long).unwrap_err().error.unwrap().contains("over 300 max"));
    }

    #[test]
    fn error_response_serialises_like_service() {
        let line = parse_line("oops").unwrap_err().to_json_line();

        assert!(
            line.starts_with(r#"{"recordId":"unknown","codeStatus":"unsuccessful","input":"oops","error":"Invalid JSON data format. "#),
            "{line}"
        );
    }

    #[test]
    fn invalid_json_names_problem_and_fix() {
        let cases = [
            ("oops", "not valid JSON (expected value at line 1 column 1)"),
            ("[1, 2]", "a JSON array"),
            ("\"nurse\"", "a JSON string"),
            ("42", "a single JSON value"),
            ("{\"occp_text\": \"nurse\"", "not valid JSON (EOF while parsing an object"),
        ];
        for (line, problem) in cases {
            let error = parse_line(line).unwrap_err().error.unwrap();

            assert!(error.starts_with(INVALID_JSON), "{line}: {error}");
            assert!(error.contains(problem), "{line}: {error}");
            assert!(error.contains("write one JSON object per line"), "{line}: {error}");
        }
    }
}
