//! Input validation with the coding service's rules and messages.
//!
//! A record's text must be printable ASCII (space to `~`), and the combined
//! length of `occp_text` and `tasks_text` must lie between 3 characters and
//! 100 for synchronous coding or 300 for bulk coding.

use std::fmt;

/// Free text of one survey answer: the job title and the main tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Answer to "What is your job?".
    #[serde(default)]
    pub occp_text: String,
    /// Answer to "What are your main tasks?".
    #[serde(default)]
    pub tasks_text: String,
}

impl Record {
    pub fn new(occp_text: impl Into<String>, tasks_text: impl Into<String>) -> Record {
        Record { occp_text: occp_text.into(), tasks_text: tasks_text.into() }
    }

    /// Combined length of both fields in characters, the quantity the
    /// length limits apply to.
    pub fn text_length(&self) -> usize {
        self.occp_text.chars().count() + self.tasks_text.chars().count()
    }
}

/// Minimum combined length of `occp_text` and `tasks_text`.
pub const MIN_TEXT_LENGTH: usize = 3;
/// Maximum combined length for synchronous (single record and small batch) coding.
pub const MAX_SYNCHRONOUS_TEXT_LENGTH: usize = 100;
/// Maximum combined length for bulk (streaming and asynchronous) coding.
pub const MAX_BULK_TEXT_LENGTH: usize = 300;

/// Which of the service's length limits applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthLimit {
    /// 3 to 100 characters.
    Synchronous,
    /// 3 to 300 characters.
    Bulk,
}

impl LengthLimit {
    pub fn max(self) -> usize {
        match self {
            LengthLimit::Synchronous => MAX_SYNCHRONOUS_TEXT_LENGTH,
            LengthLimit::Bulk => MAX_BULK_TEXT_LENGTH,
        }
    }
}

/// A record field, named as in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    OccpText,
    TasksText,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::OccpText => "occp_text",
            Field::TasksText => "tasks_text",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record cannot be coded.
///
/// `Display` starts with the coding service's message for the case
/// ("Invalid request body", "Record with index ... under 3 min") and goes on
/// with the field, the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A character outside printable ASCII (space to `~`).
    #[error(
        "Invalid request body: {field} contains {character:?} (U+{code:04X}) at position {position_from_one}, \
         which is not printable ASCII; remove accents, symbols outside ASCII and control characters",
        code = *character as u32,
        position_from_one = *position + 1
    )]
    NotPrintableAscii {
        field: Field,
        /// Index of the character in the field, counting from 0; messages
        /// count from 1, as readers do.
        position: usize,
        character: char,
    },
    /// Combined text shorter than [`MIN_TEXT_LENGTH`].
    #[error(
        "Record has a total text length under {min} min: occp_text and tasks_text together have {length} \
         characters; give a job title or tasks of at least {min} characters"
    )]
    TooShort { length: usize, min: usize },
    /// Combined text longer than the limit.
    #[error(
        "Record has a total text length over {max} max: occp_text and tasks_text together have {length} \
         characters; shorten the text to at most {max} characters"
    )]
    TooLong { length: usize, max: usize },
}

impl RecordError {
    /// Formats the service's per-record line for a small batch, as in
    /// "Record with index 2 has a total text length under 3 min".
    pub fn batch_line(&self, index: usize) -> String {
        match self {
            RecordError::NotPrintableAscii { field, position, .. } => {
                let position_from_one = position + 1;
                format!(
                    "Record with index {index} has a character that is not printable ASCII in {field} at position {position_from_one}"
                )
            }
            RecordError::TooShort { min, .. } => format!("Record with index {index} has a total text length under {min} min"),
            RecordError::TooLong { max, .. } => format!("Record with index {index} has a total text length over {max} max"),
        }
    }

    /// Returns the field the error is about. Length errors concern both
    /// fields and report `occp_text`.
    pub fn field(&self) -> Field {
        match self {
            RecordError::NotPrintableAscii { field, .. } => *field,
            RecordError::TooShort { .. } | RecordError::TooLong { .. } => Field::OccpText,
        }
    }
}

/// Checks a record against the character set and the length limit.
///
/// The character check comes first, so a record with both problems reports
/// the bad character.
pub fn validate(record: &Record, limit: LengthLimit) -> Result<(), RecordError> {
    check_printable_ascii(Field::OccpText, &record.occp_text)?;
    check_printable_ascii(Field::TasksText, &record.tasks_text)?;

    let length = record.text_length();
    if length < MIN_TEXT_LENGTH {
        return Err(RecordError::TooShort { length, min: MIN_TEXT_LENGTH });
    }
    if length > limit.max() {
        return Err(RecordError::TooLong { length, max: limit.max() });
    }
    Ok(())
}

fn check_printable_ascii(field: Field, text: &str) -> Result<(), RecordError> {
    match text.chars().enumerate().find(|(_, c)| !(' '..='~').contains(c)) {
        Some((position, character)) => Err(RecordError::NotPrintableAscii { field, position, character }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_example_is_valid() {
        let record = Record::new("software developer", "writing code and unit tests");

        assert_eq!(validate(&record, LengthLimit::Synchronous), Ok(()));
    }

    #[test]
    fn non_ascii_names_field_and_position() {
        let record = Record::new("caf\u{e9} manager", "");
        let error = validate(&record, LengthLimit::Synchronous).unwrap_err();

        assert_eq!(error, RecordError::NotPrintableAscii { field: Field::OccpText, position: 3, character: '\u{e9}' });
        assert!(error.to_string().starts_with("Invalid request body"));
        assert!(error.to_string().contains("occp_text"));
        assert!(error.to_string().contains("at position 4,"), "{error}");
        assert!(error.batch_line(0).ends_with("in occp_text at position 4"), "{}", error.batch_line(0));
    }

    #[test]
    fn control_character_in_tasks_is_rejected() {
        let record = Record::new("nurse", "caring\tfor patients");
        let error = validate(&record, LengthLimit::Bulk).unwrap_err();

        assert_eq!(error.field(), Field::TasksText);
    }

    #[test]
    fn length_limits_are_inclusive() {
        let three = Record::new("abc", "");
        let hundred = Record::new("a".repeat(60), "b".repeat(40));
        let three_hundred = Record::new("a".repeat(150), "b".repeat(150));

        assert_eq!(validate(&three, LengthLimit::Synchronous), Ok(()));
        assert_eq!(validate(&hundred, LengthLimit::Synchronous), Ok(()));
        assert_eq!(validate(&three_hundred, LengthLimit::Bulk), Ok(()));
    }

    #[test]
    fn too_short_and_empty_are_rejected() {
        for record in [Record::new("ab", ""), Record::new("", ""), Record::new("a", "b")] {
            let error = validate(&record, LengthLimit::Synchronous).unwrap_err();

            assert!(matches!(error, RecordError::TooShort { min: 3, .. }), "{record:?} gave {error:?}");
        }
    }

    #[test]
    fn too_long_depends_on_limit() {
        let record = Record::new("a".repeat(80), "b".repeat(21));

        assert_eq!(validate(&record, LengthLimit::Synchronous), Err(RecordError::TooLong { length: 101, max: 100 }));
        assert_eq!(validate(&record, LengthLimit::Bulk), Ok(()));
        assert_eq!(
            validate(&Record::new("a".repeat(301), ""), LengthLimit::Bulk),
            Err(RecordError::TooLong { length: 301, max: 300 })
        );
    }

    #[test]
    fn batch_lines_match_service_wording() {
        let short = RecordError::TooShort { length: 1, min: 3 };
        let long = RecordError::TooLong { length: 120, max: 100 };

        assert_eq!(short.batch_line(0), "Record with index 0 has a total text length under 3 min");
        assert_eq!(long.batch_line(4), "Record with index 4 has a total text length over 100 max");
    }
}
