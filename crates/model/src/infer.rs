//! Coding: from a record to confidences over the tree, and from
//! confidences to a code or suggestions.
//!
//! Every node turns its children's decision values into a distribution:
//! the node's Platt sigmoid gives each child a probability, and the
//! probabilities are divided by their sum. An occupation's path probability
//! is the product of these conditional probabilities from the root down.
//!
//! Top-down models lose accuracy where a group is too varied for one linear
//! boundary (the major group "Professionals" spans nurses and software
//! engineers), so each occupation also has a flat leaf expert, an SVM
//! trained against all other occupations. An occupation's confidence is the
//! weighted geometric mean of its path probability and the softmax of its
//! leaf expert's decision value, renormalised over all occupations. A
//! group's confidence is the sum of its occupations' confidences, so the
//! confidences of every level add up to 1. On held-out titles this blend
//! is more accurate than either part alone at every level.
//!
//! The code returned is the guide's "best match 6-digit to 1-digit": the
//! most confident occupation if it clears the 6-digit threshold; otherwise
//! its unit group if that clears the 4-digit threshold; and so on up the
//! hierarchy to its major group.

use occoder_classification::Level;
use occoder_text::{Record, SparseVector};
use rayon::prelude::*;

use crate::{CodeOptions, CodeStatus, CodedRecord, Coding, Model};

/// Nodes whose path probability is below this are not expanded, and the
/// occupations below them get confidence 0. With the blend's square-root
/// weighting such an occupation could reach at most a thousandth of the
/// confidence of one with path probability 1, far below any threshold,
/// and skipping them saves most of the sigmoids and exponentials.
const PATH_FLOOR: f32 = 1e-6;

/// Reusable buffers for coding, one per thread.
#[derive(Default)]
pub struct Scratch {
    text: occoder_text::Scratch,
    features: SparseVector,
    scores: Vec<f32>,
    confidence: Vec<f32>,
    blended: Vec<f32>,
}

impl Model {
    /// Codes one record. The record is not validated here; callers apply
    /// [`occoder_text::validate`] with the limit of their API first.
    pub fn code(&self, record: &Record, options: &CodeOptions) -> Coding {
        self.code_with(record, options, &mut Scratch::default())
    }

    /// Codes one record, reusing `scratch` to avoid allocation.
    pub fn code_with(&self, record: &Record, options: &CodeOptions, scratch: &mut Scratch) -> Coding {
        self.compute_confidences(record, scratch);
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
    /// [`Model::categories`].
    pub fn confidences(&self, record: &Record) -> Vec<f32> {
        let mut scratch = Scratch::default();
        self.compute_confidences(record, &mut scratch);
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

    /// The code of each level, from 1-digit to 6-digit, that coding
    /// considers: the most confident occupation and its ancestors, which
    /// is the guide's "moving up the classification hierarchy from 6-digit
    /// to 1-digit". Levels without a returnable code are `None`.
    pub fn best_per_level(&self, confidence: &[f32]) -> [Option<usize>; 5] {
        let categories = &self.parts.categories;
        let mut best: [Option<usize>; 5] = [None; 5];
        let occupation = (0..categories.len())
            .filter(|&index| categories[index].level == Level::Occupation)
            .max_by(|&a, &b| confidence[a].total_cmp(&confidence[b]).then(b.cmp(&a)));

        let mut next = occupation;
        while let Some(index) = next {
            let category = &categories[index];
            if category.is_returnable() {
                best[category.level.index()] = Some(index);
            }
            next = category.parent.map(|parent| parent as usize);
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

    /// Fills `scratch.confidence` with every category's confidence.
    fn compute_confidences(&self, record: &Record, scratch: &mut Scratch) {
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
            if node_confidence >= PATH_FLOOR && !self.children[node].is_empty() {
                self.expand_node(node, node_confidence, scratch);
            }
        }

        if !self.parts.leaf_experts.is_empty() {
            self.blend_leaf_experts(scratch);
        }
    }

    /// Replaces occupation confidences by the blend of path probability and
    /// leaf expert softmax, then sums them up into the groups.
    fn blend_leaf_experts(&self, scratch: &mut Scratch) {
        let count = self.parts.categories.len();
        let expert_scores = &scratch.scores[count..];
        let max_score = expert_scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (path_weight, temperature) = (self.parts.path_weight, self.parts.leaf_temperature);

        scratch.blended.clear();
        let mut total = 0.0f32;
        for (&category, &score) in self.parts.leaf_experts.iter().zip(expert_scores) {
            let path = scratch.confidence[category as usize];
            let blend = if path >= PATH_FLOOR {
                (path_weight * path.ln() + (1.0 - path_weight) * (score - max_score) / temperature).exp()
            } else {
                0.0
            };
            scratch.blended.push(blend);
            total += blend;
        }

        scratch.confidence.fill(0.0);
        for (&category, &blend) in self.parts.leaf_experts.iter().zip(&scratch.blended) {
            scratch.confidence[category as usize] = blend / total;
        }
        for index in (0..count).rev() {
            if let Some(parent) = self.parts.categories[index].parent {
                scratch.confidence[parent as usize] += scratch.confidence[index];
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
