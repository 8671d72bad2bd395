//! The results of coding one record, in the coding service's terms.

use occoder_classification::Level;

/// Whether a record was coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeStatus {
    /// A code cleared its level's confidence threshold.
    Successful,
    /// No code cleared a threshold; suggestions are given instead.
    Unsuccessful,
}

/// One code with its title and confidence (the service's CodedRecord).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodedRecord {
    pub code_category: String,
    pub code_label: String,
    /// Probability, between 0 and 1, that the code is right.
    pub code_confidence: f64,
}

/// The outcome of coding one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Coding {
    pub status: CodeStatus,
    /// Level of the assigned code; `None` when unsuccessful.
    pub level: Option<Level>,
    /// When successful: the assigned code first, then the other codes of the
    /// same category (same parent and level) that also clear the threshold,
    /// by decreasing confidence, at most `numberOfSuggestions` in all.
    /// Empty when unsuccessful.
    pub result: Vec<CodedRecord>,
    /// When unsuccessful: the most likely 6-digit codes, by decreasing
    /// confidence, `numberOfSuggestions` of them. Empty when successful.
    pub suggestions: Vec<CodedRecord>,
}

impl Coding {
    /// The assigned code, if any.
    pub fn code(&self) -> Option<&CodedRecord> {
        self.result.first()
    }
}

/// Default number of suggestions, as in the coding service.
pub const DEFAULT_SUGGESTIONS: usize = 3;
/// Maximum `numberOfSuggestions` a request may ask for.
pub const MAX_SUGGESTIONS: usize = 16;

/// Options of one coding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeOptions {
    /// How many suggestions (and at most how many result codes) to return,
    /// 1 to [`MAX_SUGGESTIONS`].
    pub suggestions: usize,
}

impl Default for CodeOptions {
    fn default() -> CodeOptions {
        CodeOptions { suggestions: DEFAULT_SUGGESTIONS }
    }
}

/// A `numberOfSuggestions` outside 1 to 16.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid request body: numberOfSuggestions is {0}; give a number from 1 to 16, or leave it out for 3")]
pub struct InvalidSuggestionCount(pub i64);

impl CodeOptions {
    /// Options for a request's `numberOfSuggestions`; `None` means the
    /// default of 3.
    pub fn with_suggestions(requested: Option<i64>) -> Result<CodeOptions, InvalidSuggestionCount> {
        match requested {
            None => Ok(CodeOptions::default()),
            Some(n) if (1..=MAX_SUGGESTIONS as i64).contains(&n) => Ok(CodeOptions { suggestions: n as usize }),
            Some(n) => Err(InvalidSuggestionCount(n)),
        }
    }
}
