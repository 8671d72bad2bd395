//! The model description the coding service returns, and the record of how
//! a model was trained.

use chrono::{DateTime, Utc};
use occoder_classification::TopicId;
use uuid::Uuid;

/// The fields every model reports, named as the coding service's Model
/// object names them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetadata {
    /// Unique identifier of the model, a GUID.
    pub model_id: Uuid,
    /// Version number of the model within its topic; distinct from the
    /// topic version.
    pub model_version: u32,
    /// When the model was released (written), in UTC.
    pub model_release_date: DateTime<Utc>,
    /// Algorithm: always `hsvm` (hierarchical support vector machine).
    pub model_type: String,
    /// Names of the expected input fields.
    pub input_format: Vec<String>,
    /// Full name of the classification.
    pub topic_standard: String,
    /// Version of the classification, for example `2024`.
    pub topic_version: String,
    /// Topic uriName (`osca` or `anzsco`).
    pub topic: TopicId,
}

impl ModelMetadata {
    /// Metadata for a new hierarchical SVM model of `topic`.
    pub fn new_hsvm(topic: TopicId, model_version: u32, release_date: DateTime<Utc>) -> ModelMetadata {
        let description = topic.topic();
        ModelMetadata {
            model_id: Uuid::new_v4(),
            model_version,
            model_release_date: release_date,
            model_type: MODEL_TYPE_HSVM.to_string(),
            input_format: vec!["occp_text".to_string(), "tasks_text".to_string()],
            topic_standard: description.full_name,
            topic_version: description.version,
            topic,
        }
    }

    /// Release date in ISO 8601 with milliseconds, as the service prints it
    /// (for example `2026-12-04T06:06:44.514Z`).
    pub fn release_date_iso8601(&self) -> String {
        self.model_release_date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// The `modelType` of hierarchical SVM models.
pub const MODEL_TYPE_HSVM: &str = "hsvm";

/// How a model was trained, kept in the model file for audit.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingSummary {
    /// Where the training records came from, for example
    /// `built-in classification data` or a file name.
    pub source: String,
    pub training_records: u64,
    pub validation_records: u64,
    pub seed: u64,
    /// Precision each level's threshold was chosen to reach.
    pub target_precision: f64,
    /// SVM cost parameter.
    pub c: f64,
    /// Measured on the validation split, per level from 1-digit to 6-digit:
    /// the share of records coded at that level or deeper whose code was
    /// right at that level.
    pub validation_precision: [f64; 5],
    /// Share of validation records coded to 6 digits.
    pub validation_production_rate_6_digit: f64,
    /// Share of validation records coded at any level.
    pub validation_production_rate_any: f64,
    /// Wall-clock training time in seconds.
    pub training_seconds: f64,
    pub occoder_version: String,
}
