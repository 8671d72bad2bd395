//! Hierarchical SVM occupation models: what a model contains, how it codes
//! a record, and how it is stored.
//!
//! A [`Model`] holds the classification tree of its topic, one linear
//! classifier per category, a Platt sigmoid per internal node, one flat
//! "leaf expert" classifier per 6-digit code, and a confidence threshold per
//! level. All classifiers are scored in one pass through the inverted index
//! in [`FeatureWeights`]. [`Model::code`] turns a record into a [`Coding`];
//! [`Model::code_batch`] does the same for many records on all cores.
//!
//! Model files ([`file`](mod@file)) carry a header with a format version and a
//! checksum, then the model serialised with postcard. [`ModelRegistry`]
//! loads every model file of a directory and picks each topic's latest.

pub mod bulk;
mod child_sums;
pub mod file;
mod gather;
mod infer;
mod paths;
mod metadata;
mod registry;
mod response;
mod weights;

use occoder_classification::{Level, TopicId};
use occoder_svm::PlattScaling;
use occoder_text::{FeatureConfig, Featurizer};

pub use file::ModelFileError;
pub use infer::{InvalidSimdSetting, SIMD_VARIABLE, Scratch, check_simd_setting, simd_in_use};
pub use metadata::{MODEL_TYPE_HSVM, ModelMetadata, TrainingSummary};
pub use registry::{LoadFailure, ModelRegistry, RegistryError};
pub use response::{
    CodeOptions, CodeStatus, CodedRecord, Coding, DEFAULT_SUGGESTIONS, InvalidSuggestionCount, MAX_SUGGESTIONS,
};
pub use weights::FeatureWeights;

/// A category as the model stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelCategory {
    pub code: String,
    pub title: String,
    pub level: Level,
    /// Index of the parent category; `None` for major groups.
    pub parent: Option<u32>,
}

impl ModelCategory {
    /// Whether the model may return this category as a code. The group
    /// codes `0`, `09`, `099` and `0999` above OSCA's supplementary codes
    /// only structure the tree and are never returned.
    pub fn is_returnable(&self) -> bool {
        !(self.code.starts_with('0') && self.level != Level::Occupation)
    }
}

/// Everything a model file stores.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelParts {
    pub metadata: ModelMetadata,
    pub summary: TrainingSummary,
    pub features: FeatureConfig,
    /// Categories, parents before children.
    pub categories: Vec<ModelCategory>,
    /// Bias of each classifier: first each category's classifier in its
    /// parent's node (indexed like `categories`), then the leaf experts.
    pub biases: Vec<f32>,
    pub weights: FeatureWeights,
    /// Sigmoid of each node, indexed by the node's category index; the last
    /// entry is the root's.
    pub calibration: Vec<PlattScaling>,
    /// Category index of each leaf expert, in increasing order: a
    /// one-versus-rest SVM over all 6-digit codes, whose classifier index is
    /// `categories.len() + k`. A model has one per occupation or none.
    pub leaf_experts: Vec<u32>,
    /// Temperature of the softmax over leaf expert decision values.
    pub leaf_temperature: f32,
    /// Weight of the hierarchical path probability in the geometric blend
    /// with the leaf experts' probability, between 0 and 1.
    pub path_weight: f32,
    /// Confidence threshold of each level, from 1-digit to 6-digit. A value
    /// above 1 means that codes of that level are never returned.
    pub thresholds: [f32; 5],
    /// Words seen in training, whose stems are precomputed at load time.
    pub vocabulary: Vec<String>,
}

/// A loaded model, ready to code records. Immutable and shareable between
/// threads.
pub struct Model {
    parts: ModelParts,
    featurizer: Featurizer,
    /// Children of each category, then of the root (last).
    children: Vec<Vec<u32>>,
    /// The tree in the flat form the coding loops read.
    layout: infer::Layout,
}

/// A model whose parts contradict each other.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid model: {0}")]
pub struct InvalidModel(pub String);

impl Model {
    /// Checks the parts' invariants and prepares the model for coding.
    pub fn from_parts(parts: ModelParts) -> Result<Model, InvalidModel> {
        let count = parts.categories.len();
        if count == 0 || count > u16::MAX as usize {
            return Err(InvalidModel(format!("{count} categories; expected 1 to 65,535")));
        }
        let classifiers = count + parts.leaf_experts.len();
        if classifiers > u16::MAX as usize {
            return Err(InvalidModel(format!("{classifiers} classifiers; at most 65,535 fit the weight index")));
        }
        if parts.biases.len() != classifiers {
            return Err(InvalidModel(format!("{} biases for {classifiers} classifiers", parts.biases.len())));
        }
        if parts.leaf_experts.iter().any(|&c| parts.categories.get(c as usize).is_none_or(|c| c.level != Level::Occupation)) {
            return Err(InvalidModel("a leaf expert names a category that is not an occupation".into()));
        }
        let occupations = parts.categories.iter().filter(|c| c.level == Level::Occupation).count();
        if !parts.leaf_experts.is_empty() && parts.leaf_experts.len() != occupations {
            return Err(InvalidModel(format!(
                "{} leaf experts for {occupations} occupations; a model has one per occupation or none",
                parts.leaf_experts.len()
            )));
        }
        let in_category_order = parts.leaf_experts.windows(2).all(|pair| pair[0] < pair[1]);
        if !in_category_order {
            return Err(InvalidModel("leaf experts are not in category order".into()));
        }
        let temperature_valid = parts.leaf_temperature > 0.0 && parts.leaf_temperature.is_finite();
        if !temperature_valid || !(0.0..=1.0).contains(&parts.path_weight) {
            return Err(InvalidModel(format!(
                "leaf temperature {} or path weight {} is out of range",
                parts.leaf_temperature, parts.path_weight
            )));
        }
        if parts.calibration.len() != count + 1 {
            return Err(InvalidModel(format!("{} node sigmoids for {count} categories", parts.calibration.len())));
        }
        if parts.thresholds.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(InvalidModel(format!("thresholds {:?} are not all finite and non-negative", parts.thresholds)));
        }
        if !(1..=30).contains(&parts.features.hash_bits)
            || parts.features.min_char_ngram == 0
            || parts.features.min_char_ngram > parts.features.max_char_ngram
        {
            return Err(InvalidModel(format!("feature settings {:?} are out of range", parts.features)));
        }

        let mut children = vec![Vec::new(); count + 1];
        for (index, category) in parts.categories.iter().enumerate() {
            match category.parent {
                Some(parent) if (parent as usize) < index => children[parent as usize].push(index as u32),
                None if category.level == Level::Major => children[count].push(index as u32),
                _ => return Err(InvalidModel(format!("category {} has an invalid parent", category.code))),
            }
        }
        parts.weights.check(classifiers).map_err(InvalidModel)?;

        let mut featurizer = Featurizer::new(parts.features.clone());
        featurizer.warm_stem_cache(parts.vocabulary.iter().map(String::as_str));
        let layout = infer::Layout::new(&parts, &children);
        Ok(Model { parts, featurizer, children, layout })
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.parts.metadata
    }

    pub fn summary(&self) -> &TrainingSummary {
        &self.parts.summary
    }

    pub fn topic(&self) -> TopicId {
        self.parts.metadata.topic
    }

    pub fn categories(&self) -> &[ModelCategory] {
        &self.parts.categories
    }

    /// Confidence threshold of each level, from 1-digit to 6-digit.
    pub fn thresholds(&self) -> [f32; 5] {
        self.parts.thresholds
    }

    /// Replaces the thresholds, for example after choosing them on a
    /// validation split.
    pub fn set_thresholds(&mut self, thresholds: [f32; 5]) {
        self.parts.thresholds = thresholds;
    }

    pub fn parts(&self) -> &ModelParts {
        &self.parts
    }

    pub fn into_parts(self) -> ModelParts {
        self.parts
    }

    /// Number of stored classifier weights, a measure of model size.
    pub fn weight_count(&self) -> usize {
        self.parts.weights.weight_count()
    }
}

impl std::fmt::Debug for Model {
    /// Shows the metadata only; the weights run to millions of entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("metadata", &self.parts.metadata).field("weights", &self.weight_count()).finish()
    }
}
