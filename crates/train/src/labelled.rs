//! Labelled records: coded text that a model learns from, read from an
//! agency's own files (JSON Lines or CSV).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use occoder_classification::Classification;

/// One coded answer: the text and the code a coder gave it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabelledRecord {
    #[serde(default)]
    pub occp_text: String,
    #[serde(default)]
    pub tasks_text: String,
    /// A code of the classification at any level (1, 2, 3, 4 or 6 digits).
    pub code: String,
}

impl LabelledRecord {
    pub fn new(occp_text: impl Into<String>, tasks_text: impl Into<String>, code: impl Into<String>) -> LabelledRecord {
        LabelledRecord { occp_text: occp_text.into(), tasks_text: tasks_text.into(), code: code.into() }
    }
}

/// A labelled file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LabelledFileError {
    #[error("failed to read labelled records from {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path} has no records; expected JSON Lines or CSV with occp_text, tasks_text and code")]
    Empty { path: PathBuf },
    #[error("{path}: the CSV header must name occp_text, tasks_text and code columns; found {found:?}")]
    CsvHeader { path: PathBuf, found: Vec<String> },
}

/// A line or row that was skipped, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// 1-based line number (for CSV, the record number counting the header as 1).
    pub line: usize,
    pub reason: String,
}

/// What [`read_labelled`] found in a file.
#[derive(Debug, Default)]
pub struct LabelledFile {
    pub records: Vec<LabelledRecord>,
    pub rejected: Vec<RejectedRecord>,
}

/// Reads labelled records from a `.csv` file (with a header row) or, for
/// any other name, from JSON Lines. `-` reads JSON Lines from standard
/// input.
///
/// Records whose code is not in `classification`, or whose text is empty,
/// are skipped and listed in [`LabelledFile::rejected`], so one bad row does
/// not stop a retraining run.
pub fn read_labelled(path: &Path, classification: &Classification) -> Result<LabelledFile, LabelledFileError> {
    let io_error = |cause| LabelledFileError::Io { path: path.to_path_buf(), cause };
    let is_csv = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
    let input: Box<dyn Read> =
        if path == Path::new("-") { Box::new(std::io::stdin()) } else { Box::new(File::open(path).map_err(io_error)?) };

    let (numbered, mut rejected) = if is_csv { read_csv(input, path)? } else { read_jsonl(input).map_err(io_error)? };

    let mut records = Vec::with_capacity(numbered.len());
    for (line, record) in numbered {
        let code = record.code.trim();
        if code.is_empty() {
            rejected.push(RejectedRecord {
                line,
                reason: format!(
                    "the code is missing; give the record's 1, 2, 3, 4 or 6-digit {} code in the code field",
                    classification.topic().full_name
                ),
            });
            continue;
        }
        if classification.category(code).is_none() {
            rejected.push(RejectedRecord {
                line,
                reason: format!(
                    "code {:?} is not a code of {}; use a 1, 2, 3, 4 or 6-digit code of that classification",
                    record.code,
                    classification.topic().full_name
                ),
            });
            continue;
        }
        if record.occp_text.trim().is_empty() && record.tasks_text.trim().is_empty() {
            rejected.push(RejectedRecord { line, reason: "occp_text and tasks_text are both empty".into() });
            continue;
        }
        records.push(LabelledRecord { code: code.to_string(), ..record });
    }

    rejected.sort_by_key(|r| r.line);
    if records.is_empty() && rejected.is_empty() {
        return Err(LabelledFileError::Empty { path: path.to_path_buf() });
    }
    Ok(LabelledFile { records, rejected })
}

/// Records with their line numbers, and the lines that did not parse.
type Parsed = (Vec<(usize, LabelledRecord)>, Vec<RejectedRecord>);

fn read_jsonl(input: Box<dyn Read>) -> std::io::Result<Parsed> {
    let (mut records, mut rejected) = (Vec::new(), Vec::new());
    for (index, line) in BufReader::new(input).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LabelledRecord>(&line) {
            Ok(record) => records.push((index + 1, record)),
            Err(error) => rejected.push(RejectedRecord {
                line: index + 1,
                reason: format!("not a JSON object with occp_text, tasks_text and code: {error}"),
            }),
        }
    }
    Ok((records, rejected))
}

fn read_csv(input: Box<dyn Read>, path: &Path) -> Result<Parsed, LabelledFileError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|error| LabelledFileError::Io { path: path.to_path_buf(), cause: error.into() })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(occp), Some(tasks), Some(code)) = (column("occp_text"), column("tasks_text"), column("code")) else {
        return Err(LabelledFileError::CsvHeader { path: path.to_path_buf(), found: headers });
    };

    let (mut records, mut rejected) = (Vec::new(), Vec::new());
    for (index, row) in reader.records().enumerate() {
        let line = index + 2;
        match row {
            Ok(row) => {
                let field = |i: usize| row.get(i).unwrap_or("").to_string();
                records.push((line, LabelledRecord::new(field(occp), field(tasks), field(code))));
            }
            Err(error) => rejected.push(RejectedRecord { line, reason: format!("invalid CSV row: {error}") }),
        }
    }
    Ok((records, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use occoder_classification::TopicId;

    fn osca() -> Classification {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
        Classification::load(TopicId::Osca, &data).unwrap()
    }

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
        (dir, path)
    }

    #[test]
    fn jsonl_keeps_good_lines_and_reports_bad_ones() {
        let text = concat!(
            "{\"occp_text\": \"chef\", \"tasks_text\": \"cooking\", \"code\": \"321131\"}\n",
            "not json\n",
            "{\"occp_text\": \"nurse\", \"tasks_text\": \"\", \"code\": \"999999\"}\n",
            "{\"occp_text\": \"retired\", \"tasks_text\": \"\", \"code\": \"099960\"}\n",
        );
        let (_dir, path) = write("records.jsonl", text);
        let file = read_labelled(&path, &osca()).unwrap();

        assert_eq!(file.records.len(), 2);
        assert_eq!(file.records[1].code, "099960");
        assert_eq!(file.rejected.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3]);
        assert!(file.rejected[1].reason.contains("999999"));
    }

    #[test]
    fn empty_code_is_reported_missing() {
        let (_dir, path) = write("records.csv", "occp_text,tasks_text,code
chef,cooking,
nurse,caring, 
");
        let file = read_labelled(&path, &osca()).unwrap();

        assert_eq!(file.rejected.len(), 2);
        for rejected in &file.rejected {
            assert!(rejected.reason.starts_with("the code is missing"), "{}", rejected.reason);
        }
    }

    #[test]
    fn csv_columns_found_by_header() {
        let (_dir, path) = write("records.csv", "code,tasks_text,occp_text\n2733,coding,programmer\n");
        let file = read_labelled(&path, &osca()).unwrap();

        assert_eq!(file.records, [LabelledRecord::new("programmer", "coding", "2733")]);
    }

    #[test]
    fn csv_without_code_column_is_rejected() {
        let (_dir, path) = write("records.csv", "occp_text,tasks_text\nchef,cooking\n");

        assert!(matches!(read_labelled(&path, &osca()), Err(LabelledFileError::CsvHeader { .. })));
    }
}
