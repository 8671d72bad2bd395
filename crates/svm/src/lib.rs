//! Sparse linear support vector machines for text classification.
//!
//! [`LinearSvmParams`] trains a binary linear SVM by dual coordinate
//! descent (the LIBLINEAR algorithm) on [`SparseRecords`], and
//! [`train_one_vs_rest`] trains one classifier per class in parallel with
//! rayon. [`PlattScaling`] turns decision values into probabilities.
//!
//! The parameters implement linfa's [`Fit`] for a
//! `DatasetBase<SparseRecords, Array1<bool>>`, and the model implements
//! [`Predict`], so the solver can stand in wherever
//! a linfa classifier is expected. linfa-svm solves the same problem with a
//! dense kernel matrix; the tests use it as a reference on small problems.

mod platt;
mod records;
mod solver;

use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, Predict};
use ndarray::Array1;
use rayon::prelude::*;

pub use platt::PlattScaling;
pub use records::SparseRecords;

/// Loss function of the primal problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// `max(0, 1 − y·w·x)`, the classic SVM.
    Hinge,
    /// `max(0, 1 − y·w·x)²`, LIBLINEAR's default; smoother and usually
    /// converges faster.
    SquaredHinge,
}

/// Training parameters of a linear SVM.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinearSvmParams {
    /// Cost of a margin violation; larger fits the training data harder.
    pub c: f64,
    pub loss: Loss,
    /// Multiplier of `c` for positive rows, to offset class imbalance in
    /// one-versus-rest training.
    pub positive_weight: f64,
    /// Value of the constant feature whose weight is the bias.
    pub bias_feature: f64,
    /// Stop when the spread of projected gradients falls below this.
    pub tolerance: f64,
    /// Maximum passes over the data.
    pub max_iterations: usize,
    /// Seed of the coordinate order, so training is deterministic.
    pub seed: u64,
}

impl Default for LinearSvmParams {
    fn default() -> LinearSvmParams {
        LinearSvmParams {
            c: 1.0,
            loss: Loss::SquaredHinge,
            positive_weight: 1.0,
            bias_feature: 1.0,
            tolerance: 0.1,
            max_iterations: 1000,
            seed: 0,
        }
    }
}

/// A trained linear classifier over the local columns of the
/// [`SparseRecords`] it was trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearSvm {
    /// One weight per local column.
    pub weights: Vec<f32>,
    pub bias: f32,
}

/// Errors of the linfa interface.
#[derive(Debug, thiserror::Error)]
pub enum SvmError {
    #[error("the number of targets ({targets}) differs from the number of records ({records})")]
    TargetCount { records: usize, targets: usize },
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

impl LinearSvmParams {
    /// Trains on `records` with one boolean label per row.
    pub fn train(&self, records: &SparseRecords, positive: &[bool]) -> Result<LinearSvm, SvmError> {
        if positive.len() != records.nrows() {
            return Err(SvmError::TargetCount { records: records.nrows(), targets: positive.len() });
        }
        if !(self.c > 0.0 && self.c.is_finite()) {
            return Err(SvmError::InvalidParameter(format!("c must be positive and finite, got {}", self.c)));
        }
        if !(self.positive_weight > 0.0 && self.positive_weight.is_finite()) {
            return Err(SvmError::InvalidParameter(format!(
                "positive_weight must be positive and finite, got {}",
                self.positive_weight
            )));
        }
        Ok(solver::train_binary(records, positive, self))
    }
}

impl LinearSvm {
    /// Decision value of row `i` of `records`, which must share the local
    /// columns of the training records.
    pub fn decision_value(&self, records: &SparseRecords, i: usize) -> f32 {
        let (columns, values) = records.row(i);
        columns.iter().zip(values).map(|(&c, &v)| self.weights.get(c as usize).copied().unwrap_or(0.0) * v).sum::<f32>()
            + self.bias
    }
}

/// Trains one classifier per class (`labels[i]` in `0..class_count`), each
/// separating its class from all others, in parallel.
pub fn train_one_vs_rest(
    records: &SparseRecords,
    labels: &[u32],
    class_count: usize,
    params: &LinearSvmParams,
) -> Result<Vec<LinearSvm>, SvmError> {
    (0..class_count as u32)
        .into_par_iter()
        .map(|class| {
            let positive: Vec<bool> = labels.iter().map(|&label| label == class).collect();
            params.train(records, &positive)
        })
        .collect()
}

impl<T> Fit<SparseRecords, T, SvmError> for LinearSvmParams
where
    T: AsSingleTargets<Elem = bool>,
{
    type Object = LinearSvm;

    fn fit(&self, dataset: &DatasetBase<SparseRecords, T>) -> Result<LinearSvm, SvmError> {
        let targets: Vec<bool> = dataset.as_single_targets().iter().copied().collect();
        self.train(&dataset.records, &targets)
    }
}

impl Predict<&SparseRecords, Array1<bool>> for LinearSvm {
    /// Predicts `true` where the decision value is positive.
    fn predict(&self, records: &SparseRecords) -> Array1<bool> {
        (0..records.nrows()).map(|i| self.decision_value(records, i) > 0.0).collect()
    }
}
