//! Training occupation models.
//!
//! [`train`] runs the whole pipeline for one topic:
//!
//! 1. split the labelled records into training, validation and test parts,
//!    keeping every job title in one part only ([`Splits`]);
//! 2. train a hierarchical SVM on the training part ([`train_hsvm`]);
//! 3. choose each level's confidence threshold on the validation part so
//!    that codes reach the target precision ([`choose_thresholds`]);
//! 4. retrain on all records and give that model the thresholds.
//!
//! The model of step 2 is returned as well: it never saw the validation or
//! test titles, so evaluating it on the test part measures coding of new
//! titles. The records come either from the classification itself
//! ([`examples`]) or from an agency's coded file ([`read_labelled`]).

pub mod examples;
mod hsvm;
mod labelled;
mod thresholds;

use std::time::Instant;

use chrono::{DateTime, Utc};
use occoder_classification::{Classification, Level};
use occoder_model::{CodeOptions, Model, ModelMetadata, TrainingSummary};
use occoder_text::{FeatureConfig, Record};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use hsvm::{NEVER, train_hsvm};
pub use labelled::{LabelledFile, LabelledFileError, LabelledRecord, RejectedRecord, read_labelled};
pub use thresholds::{LevelOutcome, choose_thresholds, level_outcomes};

/// Settings of a training run. Every field has a default that reproduces
/// the shipped models.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Seed of every random choice, so a run is reproducible.
    pub seed: u64,
    /// SVM cost parameter of every node.
    pub c: f64,
    /// Precision that each level's threshold must reach on validation.
    pub target_precision: f64,
    /// Share of non-principal titles held out from training, half for
    /// validation and half for test.
    pub holdout_fraction: f64,
    /// Folds of the out-of-fold calibration of each node.
    pub folds: usize,
    /// Weights smaller than this in absolute value are dropped from the
    /// model. At 0.03 the OSCA model keeps about a third of its weights and
    /// its 6-digit accuracy on held-out titles moved by 0.002.
    pub prune_below: f32,
    /// Temperature of the softmax over the leaf experts' decision values.
    pub leaf_temperature: f32,
    /// Weight of the hierarchical path probability against the leaf
    /// experts, between 0 and 1.
    pub path_weight: f32,
    /// Fewest validation records coded at a level for its threshold to count.
    pub min_threshold_support: usize,
    pub features: FeatureConfig,
    /// `modelVersion` of the model written.
    pub model_version: u32,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            seed: 2024,
            c: 1.0,
            target_precision: 0.95,
            holdout_fraction: 0.3,
            folds: 3,
            prune_below: 0.03,
            leaf_temperature: 0.3,
            path_weight: 0.5,
            min_threshold_support: 5,
            features: FeatureConfig::default(),
            model_version: 1,
        }
    }
}

/// Training failures.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training example has both text and a known code")]
    NoExamples,
    #[error("invalid training setting: {0}")]
    Setting(String),
    #[error(transparent)]
    Svm(#[from] occoder_svm::SvmError),
    #[error("training produced an invalid model: {0}")]
    Invalid(String),
}

/// Labelled records divided so that each job title is in one part only.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    pub training: Vec<LabelledRecord>,
    pub validation: Vec<LabelledRecord>,
    pub test: Vec<LabelledRecord>,
    /// Every record, for the final model.
    pub all: Vec<LabelledRecord>,
}

impl Splits {
    /// Builds the splits from the classification's own text.
    pub fn from_classification(classification: &Classification, config: &TrainConfig) -> Splits {
        let held_out = examples::split_titles(classification, config.holdout_fraction, config.seed);
        let (validation_titles, test_titles) = held_out.halve(config.seed);
        Splits {
            training: examples::build_training_examples(classification, &held_out, config.seed),
            validation: examples::build_validation_examples(classification, &validation_titles, config.seed),
            test: examples::build_validation_examples(classification, &test_titles, config.seed),
            all: examples::build_training_examples(classification, &examples::HeldOut::default(), config.seed),
        }
    }

    /// Splits an agency's coded records by job title: all records that
    /// share a lowercased `occp_text` go to the same part.
    pub fn from_records(records: Vec<LabelledRecord>, config: &TrainConfig) -> Splits {
        let mut titles: Vec<String> = records.iter().map(|r| r.occp_text.trim().to_ascii_lowercase()).collect();
        titles.sort();
        titles.dedup();
        titles.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));

        let held = (titles.len() as f64 * config.holdout_fraction).round() as usize;
        let validation_titles: std::collections::HashSet<&String> = titles[..held / 2].iter().collect();
        let test_titles: std::collections::HashSet<&String> = titles[held / 2..held].iter().collect();

        let mut splits = Splits { all: records.clone(), ..Splits::default() };
        for record in records {
            let title = record.occp_text.trim().to_ascii_lowercase();
            if validation_titles.contains(&title) {
                splits.validation.push(record);
            } else if test_titles.contains(&title) {
                splits.test.push(record);
            } else {
                splits.training.push(record);
            }
        }
        splits
    }
}

/// The models a training run produces.
pub struct TrainOutcome {
    /// Trained on all records, with the thresholds chosen on validation.
    pub model: Model,
    /// Trained on the training part only, with the same thresholds; use it
    /// to evaluate on [`Splits::test`].
    pub holdout_model: Model,
    pub splits: Splits,
}

/// Runs the whole training pipeline; see the crate documentation.
///
/// `source` describes where the records came from, for the model's summary.
pub fn train(
    classification: &Classification,
    splits: Splits,
    config: &TrainConfig,
    source: &str,
    release_date: DateTime<Utc>,
) -> Result<TrainOutcome, TrainError> {
    check_config(config)?;
    let started = Instant::now();
    let topic = classification.topic().id;

    let summary = TrainingSummary {
        source: source.to_string(),
        training_records: splits.training.len() as u64,
        validation_records: splits.validation.len() as u64,
        seed: config.seed,
        target_precision: config.target_precision,
        c: config.c,
        occoder_version: env!("CARGO_PKG_VERSION").to_string(),
        ..TrainingSummary::default()
    };
    let holdout_metadata = ModelMetadata::new_hsvm(topic, config.model_version, release_date);
    let mut holdout_model = train_hsvm(classification, &splits.training, config, holdout_metadata, summary.clone())?;

    let outcomes = level_outcomes(&holdout_model, &splits.validation);
    let thresholds = choose_thresholds(&outcomes, config.target_precision, config.min_threshold_support);
    holdout_model.set_thresholds(thresholds);
    let validation = validation_figures(&holdout_model, &splits.validation);

    let final_summary = TrainingSummary {
        training_records: splits.all.len() as u64,
        validation_precision: validation.precision,
        validation_production_rate_6_digit: validation.production_6_digit,
        validation_production_rate_any: validation.production_any,
        training_seconds: started.elapsed().as_secs_f64(),
        ..summary
    };
    let metadata = ModelMetadata::new_hsvm(topic, config.model_version, release_date);
    let mut model = train_hsvm(classification, &splits.all, config, metadata, final_summary)?;
    model.set_thresholds(thresholds);

    Ok(TrainOutcome { model, holdout_model, splits })
}

/// Maximum character n-gram length that training accepts. Job titles are at most
/// 100 characters, and n-grams longer than a word match almost nothing.
const MAX_CHAR_NGRAM: u8 = 20;

fn check_config(config: &TrainConfig) -> Result<(), TrainError> {
    if !(config.c > 0.0 && config.c.is_finite()) {
        return Err(TrainError::Setting(format!("c must be a positive number, got {}", config.c)));
    }
    if !(0.0..=1.0).contains(&config.target_precision) {
        return Err(TrainError::Setting(format!("target precision must be between 0 and 1, got {}", config.target_precision)));
    }
    if !(0.0..1.0).contains(&config.holdout_fraction) {
        return Err(TrainError::Setting(format!(
            "hold-out fraction must be at least 0 and below 1, got {}",
            config.holdout_fraction
        )));
    }
    if config.folds < 2 {
        return Err(TrainError::Setting(format!("calibration needs at least 2 folds, got {}", config.folds)));
    }
    if !(config.prune_below >= 0.0 && config.prune_below.is_finite()) {
        return Err(TrainError::Setting(format!("prune-below must be 0 or a finite positive number, got {}", config.prune_below)));
    }
    let (min, max) = (config.features.min_char_ngram, config.features.max_char_ngram);
    if !(1..=MAX_CHAR_NGRAM).contains(&min) || !(min..=MAX_CHAR_NGRAM).contains(&max) {
        return Err(TrainError::Setting(format!(
            "character n-gram lengths must satisfy 1 <= min-char-ngram <= max-char-ngram <= {MAX_CHAR_NGRAM}, \
             got min-char-ngram {min} and max-char-ngram {max}; \
             set both between 1 and {MAX_CHAR_NGRAM}, the first no larger than the second"
        )));
    }
    Ok(())
}

/// Precision and production rates of a thresholded model on labelled records.
struct ValidationFigures {
    precision: [f64; 5],
    production_6_digit: f64,
    production_any: f64,
}

fn validation_figures(model: &Model, records: &[LabelledRecord]) -> ValidationFigures {
    let options = CodeOptions::default();
    let codings: Vec<Option<String>> = records
        .par_iter()
        .map(|r| model.code(&Record::new(r.occp_text.clone(), r.tasks_text.clone()), &options).code().map(|c| c.code_category.clone()))
        .collect();

    let mut correct = [0usize; 5];
    let mut coded = [0usize; 5];
    for (record, code) in records.iter().zip(&codings) {
        let Some(code) = code else { continue };
        for level in Level::ALL {
            if let (Some(predicted), Some(truth)) = (level.prefix_of(code), level.prefix_of(record.code.trim())) {
                coded[level.index()] += 1;
                correct[level.index()] += (predicted == truth) as usize;
            }
        }
    }

    let share = |count: usize| if records.is_empty() { 0.0 } else { count as f64 / records.len() as f64 };
    ValidationFigures {
        precision: std::array::from_fn(|l| if coded[l] == 0 { 0.0 } else { correct[l] as f64 / coded[l] as f64 }),
        production_6_digit: share(codings.iter().flatten().filter(|c| c.len() == 6).count()),
        production_any: share(codings.iter().flatten().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ngrams(min: u8, max: u8) -> TrainConfig {
        let features = FeatureConfig { min_char_ngram: min, max_char_ngram: max, ..FeatureConfig::default() };
        TrainConfig { features, ..TrainConfig::default() }
    }

    #[test]
    fn settings_accept_defaults() {
        assert!(check_config(&TrainConfig::default()).is_ok());
        assert!(check_config(&with_ngrams(5, 5)).is_ok());
        assert!(check_config(&with_ngrams(1, MAX_CHAR_NGRAM)).is_ok());
    }

    #[test]
    fn settings_reject_bad_ngram_lengths() {
        for (min, max) in [(0, 5), (5, 4), (4, MAX_CHAR_NGRAM + 1)] {
            let error = check_config(&with_ngrams(min, max)).expect_err("invalid lengths").to_string();

            assert!(error.contains("min-char-ngram"), "{min} to {max}: {error}");
            assert!(error.contains(&format!("got min-char-ngram {min} and max-char-ngram {max}")), "{min} to {max}: {error}");
        }
    }

    #[test]
    fn settings_reject_bad_pruning() {
        for prune_below in [-0.1, f32::NAN, f32::INFINITY] {
            let config = TrainConfig { prune_below, ..TrainConfig::default() };
            let error = check_config(&config).expect_err("invalid pruning").to_string();

            assert!(error.contains("prune-below"), "{prune_below}: {error}");
        }
    }
}
