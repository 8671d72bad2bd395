//! Training the hierarchical SVM.
//!
//! Each internal node of the tree (the root and every group) gets one
//! linear SVM per child, trained one-versus-rest on the examples whose code
//! lies below that node, each labelled with the child on its path. Nodes
//! train in parallel on the rayon pool. An example coded to a group (for
//! example a 4-digit unit group) trains the nodes above that group only.
//!
//! Each node's decision values are calibrated by one Platt sigmoid, fitted
//! on out-of-fold decision values: the node's examples are split into
//! folds by their job title, so that all examples sharing a title fall in
//! one fold and the sigmoid sees scores of unseen titles, as in real use.

use std::collections::HashMap;

use occoder_classification::{Classification, Level};
use occoder_model::{FeatureWeights, Model, ModelCategory, ModelMetadata, ModelParts, TrainingSummary};
use occoder_svm::{LinearSvm, LinearSvmParams, PlattScaling, SparseRecords, train_one_vs_rest};
use occoder_text::{Featurizer, SparseVector, tokenize};
use rayon::prelude::*;

use crate::{LabelledRecord, TrainConfig, TrainError};

/// A weight of a trained classifier: `(feature, classifier, weight)`.
type WeightTriple = (u32, u16, f32);

/// A node's training example: `(row index, child label)`.
type Member = (usize, u32);

/// One example after feature extraction.
struct Row {
    features: SparseVector,
    /// Category indices from the major group down to the example's code.
    path: Vec<u32>,
    /// Fold of the example's job title, for calibration.
    fold: usize,
}

/// The outcome of training one node.
struct NodeResult {
    /// Weights of all its children's classifiers.
    weights: Vec<WeightTriple>,
    /// `(category, bias)` of each child.
    biases: Vec<(u32, f32)>,
    calibration: PlattScaling,
}

/// Trains a model on `examples`. Its thresholds are set above 1, so it
/// codes nothing until [`crate::choose_thresholds`] sets them.
pub fn train_hsvm(
    classification: &Classification,
    examples: &[LabelledRecord],
    config: &TrainConfig,
    metadata: ModelMetadata,
    summary: TrainingSummary,
) -> Result<Model, TrainError> {
    let categories = classification.categories();
    let count = categories.len();
    let featurizer = Featurizer::new(config.features.clone());

    let rows: Vec<Row> = examples
        .par_iter()
        .filter_map(|example| {
            let code = classification.index_of(example.code.trim())?;
            let features = featurizer.features(&example.occp_text, &example.tasks_text);
            if features.is_empty() {
                return None;
            }
            Some(Row { features, path: path_of(classification, code), fold: fold_of(&example.occp_text, config.folds) })
        })
        .collect();
    if rows.is_empty() {
        return Err(TrainError::NoExamples);
    }

    let mut children: Vec<Vec<u32>> = vec![Vec::new(); count + 1];
    for (index, category) in categories.iter().enumerate() {
        children[category.parent.map_or(count, |p| p as usize)].push(index as u32);
    }

    let results: Vec<(usize, NodeResult)> = (0..=count)
        .into_par_iter()
        .filter(|&node| children[node].len() >= 2)
        .map(|node| {
            let level_index = categories.get(node).map_or(0, |c| c.level.index());
            train_node(node, level_index, count, &children[node], &rows, config).map(|result| (node, result))
        })
        .collect::<Result<_, _>>()?;

    let occupations: Vec<u32> =
        (0..count as u32).filter(|&i| categories[i as usize].level == Level::Occupation).collect();
    let (expert_triples, expert_biases) = train_leaf_experts(count, &occupations, &rows, config)?;

    let mut triples = expert_triples;
    let mut biases = vec![0.0f32; count];
    biases.extend(expert_biases);
    let mut calibration = vec![PlattScaling::default(); count + 1];
    for (node, result) in results {
        triples.extend(result.weights);
        for (category, bias) in result.biases {
            biases[category as usize] = bias;
        }
        calibration[node] = result.calibration;
    }

    let parts = ModelParts {
        metadata,
        summary,
        features: config.features.clone(),
        categories: categories
            .iter()
            .map(|c| ModelCategory { code: c.code.clone(), title: c.title.clone(), level: c.level, parent: c.parent })
            .collect(),
        biases,
        weights: FeatureWeights::build(triples),
        calibration,
        leaf_experts: occupations,
        leaf_temperature: config.leaf_temperature,
        path_weight: config.path_weight,
        thresholds: [NEVER; 5],
        vocabulary: vocabulary(examples),
    };
    Model::from_parts(parts).map_err(|error| TrainError::Invalid(error.0))
}

/// Trains one SVM per occupation against all other occupations, on the
/// examples coded to 6 digits. Expert `k` gets classifier index `count + k`.
fn train_leaf_experts(
    count: usize,
    occupations: &[u32],
    rows: &[Row],
    config: &TrainConfig,
) -> Result<(Vec<WeightTriple>, Vec<f32>), TrainError> {
    let class_of: HashMap<u32, u32> = occupations.iter().enumerate().map(|(k, &c)| (c, k as u32)).collect();
    let members: Vec<Member> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| row.path.last().and_then(|leaf| class_of.get(leaf)).map(|&class| (i, class)))
        .collect();

    let params = LinearSvmParams { c: config.c, seed: config.seed ^ 0x1eaf, ..LinearSvmParams::default() };
    let records = SparseRecords::from_rows(members.iter().map(|&(i, _)| rows[i].features.iter()));
    let labels: Vec<u32> = members.iter().map(|&(_, class)| class).collect();
    let models = train_one_vs_rest(&records, &labels, occupations.len(), &params)?;

    let mut triples = Vec::new();
    let mut biases = Vec::with_capacity(models.len());
    for (k, model) in models.iter().enumerate() {
        let classifier = (count + k) as u16;
        for (&feature, &weight) in records.feature_ids().iter().zip(&model.weights) {
            if weight.abs() >= config.prune_below {
                triples.push((feature, classifier, weight));
            }
        }
        biases.push(model.bias);
    }
    Ok((triples, biases))
}

/// A threshold no confidence reaches: codes of that level are never returned.
pub const NEVER: f32 = 1.01;

/// Trains the classifiers of one node and its calibration.
fn train_node(
    node: usize,
    level_index: usize,
    count: usize,
    children: &[u32],
    rows: &[Row],
    config: &TrainConfig,
) -> Result<NodeResult, TrainError> {
    // Rows that pass through a category at level index `l` hold it at
    // `path[l]` and its child at `path[l + 1]`; the root's children sit at `path[0]`.
    let depth = if node == count { 0 } else { level_index + 1 };
    let members: Vec<Member> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| row.path.len() > depth && (node == count || row.path[depth - 1] == node as u32))
        .filter_map(|(i, row)| children.iter().position(|&c| c == row.path[depth]).map(|label| (i, label as u32)))
        .collect();

    let params = LinearSvmParams { c: config.c, seed: config.seed ^ node as u64, ..LinearSvmParams::default() };
    let records = SparseRecords::from_rows(members.iter().map(|&(i, _)| rows[i].features.iter()));
    let labels: Vec<u32> = members.iter().map(|&(_, label)| label).collect();
    let models = train_one_vs_rest(&records, &labels, children.len(), &params)?;

    let mut weights = Vec::new();
    let mut biases = Vec::with_capacity(children.len());
    for (model, &child) in models.iter().zip(children) {
        for (&feature, &weight) in records.feature_ids().iter().zip(&model.weights) {
            if weight.abs() >= config.prune_below {
                weights.push((feature, child as u16, weight));
            }
        }
        biases.push((child, model.bias));
    }

    let calibration = calibrate(&members, rows, children.len(), &params, config.folds);
    Ok(NodeResult { weights, biases, calibration })
}

/// Fits the node's sigmoid on out-of-fold decision values. Falls back to
/// the default sigmoid when the node has too few examples to split.
fn calibrate(members: &[Member], rows: &[Row], class_count: usize, params: &LinearSvmParams, folds: usize) -> PlattScaling {
    let mut scores = Vec::new();
    let mut truths = Vec::new();
    for fold in 0..folds {
        let (held, kept): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|(i, _)| rows[*i].fold == fold);
        let kept_labels: Vec<u32> = kept.iter().map(|(_, label)| *label).collect();
        let distinct = {
            let mut labels = kept_labels.clone();
            labels.sort_unstable();
            labels.dedup();
            labels.len()
        };
        if held.is_empty() || distinct < 2 {
            continue;
        }

        let records = SparseRecords::from_rows(kept.iter().map(|(i, _)| rows[*i].features.iter()));
        let Ok(models) = train_one_vs_rest(&records, &kept_labels, class_count, params) else { continue };
        let lookup: HashMap<u32, usize> =
            records.feature_ids().iter().enumerate().map(|(local, &global)| (global, local)).collect();

        for &&(i, label) in &held {
            for (class, model) in models.iter().enumerate() {
                scores.push(decision_value(model, &lookup, &rows[i].features));
                truths.push(class as u32 == label);
            }
        }
    }
    if truths.iter().filter(|&&t| t).count() < 5 {
        return PlattScaling::default();
    }
    PlattScaling::fit(&scores, &truths)
}

fn decision_value(model: &LinearSvm, lookup: &HashMap<u32, usize>, features: &SparseVector) -> f32 {
    features.iter().filter_map(|(feature, value)| lookup.get(&feature).map(|&local| model.weights[local] * value)).sum::<f32>()
        + model.bias
}

fn path_of(classification: &Classification, index: u32) -> Vec<u32> {
    let categories = classification.categories();
    let mut path = vec![index];
    while let Some(parent) = categories[*path.last().expect("path starts non-empty") as usize].parent {
        path.push(parent);
    }
    path.reverse();
    path
}

/// Fold of a job title: FNV-1a of its trimmed lowercase form, so the
/// assignment is stable across runs and Rust releases.
fn fold_of(title: &str, folds: usize) -> usize {
    let hash = title
        .trim()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ byte.to_ascii_lowercase() as u64).wrapping_mul(0x0100_0000_01b3));
    (hash % folds.max(1) as u64) as usize
}

/// Distinct lowercase words of the examples, sorted.
fn vocabulary(examples: &[LabelledRecord]) -> Vec<String> {
    let mut words = std::collections::BTreeSet::new();
    let mut scratch = String::new();
    for example in examples {
        for text in [&example.occp_text, &example.tasks_text] {
            tokenize::for_each_word(text, &mut scratch, |word| {
                if !words.contains(word) {
                    words.insert(word.to_string());
                }
            });
        }
    }
    words.into_iter().collect()
}
