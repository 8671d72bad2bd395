//! Coding: from a record to confidences over the tree, and from
//! confidences to a code or suggestions.
//!
//! Every node turns its children's decision values into a distribution:
//! the node's Platt sigmoid gives each child a probability, and the
//! probabilities are divided by their sum. A category's confidence is the
//! product of these conditional probabilities along its path from the root,
//! so the confidences of a group's children add up to the group's own.
//!
//! The code returned is the guide's "best match 6-digit to 1-digit": at
//! 6 digits, the most confident occupation if it clears the 6-digit
//! threshold; otherwise the most confident unit group if it clears the
//! 4-digit threshold; and so on up to major groups.

use occoder_classification::Level;
use occoder_text::{Record, SparseVector};
use rayon::prelude::*;

use crate::{CodeOptions, CodeStatus, CodedRecord, Coding, Model};

/// Nodes whose confidence falls below this are not expanded: no threshold
/// is this low, and their descendants only matter for suggestions, which
/// fall back to a full pass when too few codes were reached.
const EXPANSION_FLOOR: f32 = 1e-4;

/// Reusable buffers for coding, one per thread.
#[derive(Default)]
pub struct Scratch {
    text: occoder_text::Scratch,
    features: SparseVector,
    scores: Vec<f32>,
    confidence: Vec<f32>,
}

impl Model {
    /// Codes one record. The record is not validated here; callers apply
    /// [`occoder_text::validate`] with the limit of their API first.
    pub fn code(&self, record: &Record, options: &CodeOptions) -> Coding {
        self.code_with(record, options, &mut Scratch::default())
    }

    /// Codes one record, reusing `scratch` to avoid allocation.
    pub fn code_with(&self, record: &Record, options: &CodeOptions, scratch: &mut Scratch) -> Coding {
        self.compute_confidences(record, scratch, EXPANSION_FLOOR);
        if self.reached_occupations(&scratch.confidence) < options.suggestions {
            self.compute_confidences(record, scratch, 0.0);
        }
        self.decide(&scratch.confidence, options)
    }

    /// Codes many records in parallel on the rayon pool, in input order.
    pub fn code_batch(&self, records: &[Record], options: &CodeOptions) -> Vec<Coding> {
        records
            .par_iter()
            .map_init(Scratch::default, |scratch, record| self.code_with(record, options, scratch))
            .collect()
    }

    /// The confidence of every category for `record`, indexed like
    /// [`Model::categories`], computed over the whole tree.
    pub fn confidences(&self, record: &Record) -> Vec<f32> {
        let mut scratch = Scratch::default();
        self.compute_confidences(record, &mut scratch, 0.0);
        scratch.confidence
    }

    /// Applies the thresholds to confidences from [`Model::confidences`].
    pub fn decide(&self, confidence: &[f32], options: &CodeOptions) -> Coding {
        let categories = &self.parts.categories;
        let best = self.best_per_level(confidence);

        for level in Level::ALL.into_iter().rev() {
            let Some(chosen) = best[level.index()] else { continue };
            let threshold = self.parts.thresholds[level.index()];
            if confidence[chosen] < threshold || confidence[chosen] <= 0.0 {
                continue;
            }

            let mut result: Vec<usize> = categories
                .iter()
                .enumerate()
                .filter(|(index, category)| {
                    category.level == level
                        && category.parent == categories[chosen].parent
                        && category.is_returnable()
                        && confidence[*index] >= threshold
                })
                .map(|(index, _)| index)
                .collect();
            result.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]).then(a.cmp(&b)));
            result.truncate(options.suggestions.max(1));

            return Coding {
                status: CodeStatus::Successful,
                level: Some(level),
                result: result.into_iter().map(|index| self.coded_record(index, confidence)).collect(),
                suggestions: Vec::new(),
            };
        }

        Coding {
            status: CodeStatus::Unsuccessful,
            level: None,
            result: Vec::new(),
            suggestions: self.top_occupations(confidence, options.suggestions),
        }
    }

    /// The index of the most confident returnable category of each level,
    /// from 1-digit to 6-digit; ties go to the lower code.
    pub fn best_per_level(&self, confidence: &[f32]) -> [Option<usize>; 5] {
        let mut best: [Option<usize>; 5] = [None; 5];
        for (index, category) in self.parts.categories.iter().enumerate() {
            if !category.is_returnable() {
                continue;
            }
            let slot = &mut best[category.level.index()];
            if slot.is_none_or(|current| confidence[index] > confidence[current]) {
                *slot = Some(index);
            }
        }
        best
    }

    /// The `count` most confident 6-digit codes, best first; ties go to the
    /// lower code.
    pub fn top_occupations(&self, confidence: &[f32], count: usize) -> Vec<CodedRecord> {
        let mut occupations: Vec<usize> = (0..self.parts.categories.len())
            .filter(|&index| self.parts.categories[index].level == Level::Occupation)
            .collect();
        let count = count.min(occupations.len());
        if count == 0 {
            return Vec::new();
        }
        let by_confidence = |a: &usize, b: &usize| confidence[*b].total_cmp(&confidence[*a]).then(a.cmp(b));
        occupations.select_nth_unstable_by(count - 1, by_confidence);
        occupations.truncate(count);
        occupations.sort_by(by_confidence);
        occupations.into_iter().map(|index| self.coded_record(index, confidence)).collect()
    }

    fn coded_record(&self, index: usize, confidence: &[f32]) -> CodedRecord {
        let category = &self.parts.categories[index];
        CodedRecord {
            code_category: category.code.clone(),
            code_label: category.title.clone(),
            code_confidence: confidence[index] as f64,
        }
    }

    fn reached_occupations(&self, confidence: &[f32]) -> usize {
        self.parts
            .categories
            .iter()
            .zip(confidence)
            .filter(|(category, c)| category.level == Level::Occupation && **c > 0.0)
            .count()
    }

    /// Fills `scratch.confidence` top-down, expanding only nodes whose
    /// confidence is at least `floor`; categories under other nodes get 0.
    fn compute_confidences(&self, record: &Record, scratch: &mut Scratch, floor: f32) {
        let count = self.parts.categories.len();
        self.featurizer.extract(&record.occp_text, &record.tasks_text, &mut scratch.text, &mut scratch.features);

        scratch.scores.clear();
        scratch.scores.extend_from_slice(&self.parts.biases);
        for (feature, value) in scratch.features.iter() {
            self.parts.weights.accumulate(feature, value, &mut scratch.scores);
        }

        scratch.confidence.clear();
        scratch.confidence.resize(count, 0.0);
        self.expand_node(count, 1.0, scratch);
        for node in 0..count {
            let node_confidence = scratch.confidence[node];
            if node_confidence >= floor && node_confidence > 0.0 && !self.children[node].is_empty() {
                self.expand_node(node, node_confidence, scratch);
            }
        }
    }

    /// Sets each child's confidence to `node_confidence` times its
    /// normalised calibrated probability.
    fn expand_node(&self, node: usize, node_confidence: f32, scratch: &mut Scratch) {
        let children = &self.children[node];
        if let [only] = children.as_slice() {
            scratch.confidence[*only as usize] = node_confidence;
            return;
        }

        let sigmoid = self.parts.calibration[node];
        let mut sum = 0.0;
        for &child in children {
            let probability = sigmoid.probability(scratch.scores[child as usize]).max(f32::MIN_POSITIVE);
            scratch.confidence[child as usize] = probability;
            sum += probability;
        }
        for &child in children {
            scratch.confidence[child as usize] *= node_confidence / sum;
        }
    }
}
