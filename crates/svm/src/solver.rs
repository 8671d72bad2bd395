//! Dual coordinate descent for L2-regularised linear SVMs (Hsieh, Chang,
//! Lin, Keerthi and Sundararajan, "A Dual Coordinate Descent Method for
//! Large-scale Linear SVM", ICML 2008), the method behind LIBLINEAR's
//! default solvers.
//!
//! The dual problem is `min ½ αᵀ(Q + D)α − Σα` subject to `0 ≤ αᵢ ≤ U`,
//! with `Qᵢⱼ = yᵢyⱼxᵢ·xⱼ`. For the hinge loss `U = C` and `D = 0`; for the
//! squared hinge loss `U = ∞` and `Dᵢᵢ = 1/(2C)`. The solver keeps
//! `w = Σ αᵢyᵢxᵢ` up to date, so each coordinate step costs one sparse dot
//! product and one sparse update.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::records::SparseRecords;
use crate::{LinearSvm, LinearSvmParams, Loss};

/// Trains a binary classifier on `records` with labels `positive[i]`.
///
/// The bias is learned as the weight of an extra constant feature with
/// value `params.bias_feature`, as LIBLINEAR does. Positive rows get cost
/// `params.c * params.positive_weight`, negative rows `params.c`.
pub(crate) fn train_binary(records: &SparseRecords, positive: &[bool], params: &LinearSvmParams) -> LinearSvm {
    let n = records.nrows();
    let mut weights = vec![0.0f64; records.ncolumns()];
    let mut bias_weight = 0.0f64;
    let bias_feature = params.bias_feature;

    let sign: Vec<f64> = positive.iter().map(|&p| if p { 1.0 } else { -1.0 }).collect();
    let cost = |i: usize| if positive[i] { params.c * params.positive_weight } else { params.c };
    let (upper, diagonal): (Vec<f64>, Vec<f64>) = (0..n)
        .map(|i| match params.loss {
            Loss::Hinge => (cost(i), 0.0),
            Loss::SquaredHinge => (f64::INFINITY, 0.5 / cost(i)),
        })
        .unzip();
    let q_diagonal: Vec<f64> =
        (0..n).map(|i| records.row_norm_squared(i) + bias_feature * bias_feature + diagonal[i]).collect();

    let mut alpha = vec![0.0f64; n];
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);

    // Shrinking: a row whose bound constraint stays satisfied by more than
    // last pass's largest violation is left out of later passes. Before
    // stopping, every row is checked again on the full set.
    let mut active = n;
    let (mut max_violation_old, mut min_violation_old) = (f64::INFINITY, f64::NEG_INFINITY);

    for _ in 0..params.max_iterations {
        order[..active].shuffle(&mut rng);
        let (mut max_violation, mut min_violation) = (f64::NEG_INFINITY, f64::INFINITY);

        let mut position = 0;
        while position < active {
            let i = order[position];
            let (columns, values) = records.row(i);
            let margin: f64 = columns.iter().zip(values).map(|(&c, &v)| weights[c as usize] * v as f64).sum::<f64>()
                + bias_weight * bias_feature;
            let gradient = sign[i] * margin - 1.0 + diagonal[i] * alpha[i];

            let at_lower = alpha[i] == 0.0;
            let at_upper = alpha[i] == upper[i];
            if (at_lower && gradient > max_violation_old) || (at_upper && gradient < min_violation_old) {
                active -= 1;
                order.swap(position, active);
                continue;
            }
            let projected = if at_lower {
                gradient.min(0.0)
            } else if at_upper {
                gradient.max(0.0)
            } else {
                gradient
            };
            max_violation = max_violation.max(projected);
            min_violation = min_violation.min(projected);

            if projected.abs() > 1e-12 && q_diagonal[i] > 0.0 {
                let previous = alpha[i];
                alpha[i] = (alpha[i] - gradient / q_diagonal[i]).clamp(0.0, upper[i]);
                let step = (alpha[i] - previous) * sign[i];
                for (&c, &v) in columns.iter().zip(values) {
                    weights[c as usize] += step * v as f64;
                }
                bias_weight += step * bias_feature;
            }
            position += 1;
        }

        if max_violation - min_violation <= params.tolerance {
            if active == n {
                break;
            }
            active = n;
            (max_violation_old, min_violation_old) = (f64::INFINITY, f64::NEG_INFINITY);
            continue;
        }
        max_violation_old = if max_violation <= 0.0 { f64::INFINITY } else { max_violation };
        min_violation_old = if min_violation >= 0.0 { f64::NEG_INFINITY } else { min_violation };
    }

    LinearSvm {
        weights: weights.into_iter().map(|w| w as f32).collect(),
        bias: (bias_weight * bias_feature) as f32,
    }
}
