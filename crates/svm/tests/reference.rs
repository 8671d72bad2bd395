//! Checks the dual coordinate descent solver against linfa-svm on small
//! dense problems, where linfa-svm's full kernel matrix is affordable.

use linfa::dataset::{Dataset, DatasetBase};
use linfa::traits::{Fit, Predict};
use linfa_svm::Svm;
use ndarray::{Array1, Array2};
use occoder_svm::{LinearSvmParams, Loss, SparseRecords, train_one_vs_rest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Two Gaussian blobs in `dimensions` dimensions, with some overlap.
fn blobs(count: usize, dimensions: usize, seed: u64) -> (Array2<f64>, Array1<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut points = Array2::zeros((count, dimensions));
    let mut labels = Array1::from_elem(count, false);
    for i in 0..count {
        let positive = i % 2 == 0;
        labels[i] = positive;
        for j in 0..dimensions {
            let centre = if positive { 0.6 } else { -0.6 } * if j % 3 == 0 { 1.0 } else { 0.3 };
            points[(i, j)] = centre + rng.random_range(-1.0..1.0);
        }
    }
    (points, labels)
}

fn to_sparse(points: &Array2<f64>) -> SparseRecords {
    SparseRecords::from_rows(
        points.rows().into_iter().map(|row| row.iter().enumerate().map(|(j, &v)| (j as u32, v as f32)).collect::<Vec<_>>()),
    )
}

#[test]
fn agrees_with_linfa_svm_linear_kernel() {
    let (points, labels) = blobs(300, 8, 7);
    let reference = Svm::<f64, bool>::params().pos_neg_weights(1.0, 1.0).linear_kernel().shrinking(false).fit(
        &Dataset::new(points.clone(), labels.clone()),
    );
    let reference = reference.expect("linfa-svm trains");
    let reference_predictions = reference.predict(&points);

    let records = to_sparse(&points);
    let params = LinearSvmParams { loss: Loss::Hinge, c: 1.0, tolerance: 1e-3, ..LinearSvmParams::default() };
    let ours = params.fit(&DatasetBase::new(records.clone(), labels.clone())).expect("dual CD trains");
    let our_predictions = ours.predict(&records);

    let agreement =
        reference_predictions.iter().zip(our_predictions.iter()).filter(|(a, b)| a == b).count() as f64 / 300.0;
    let accuracy = labels.iter().zip(our_predictions.iter()).filter(|(a, b)| a == b).count() as f64 / 300.0;
    let reference_accuracy =
        labels.iter().zip(reference_predictions.iter()).filter(|(a, b)| a == b).count() as f64 / 300.0;

    assert!(agreement >= 0.97, "agreement with linfa-svm {agreement}");
    assert!(accuracy >= reference_accuracy - 0.02, "ours {accuracy}, linfa-svm {reference_accuracy}");
}

#[test]
fn squared_hinge_separates_blobs() {
    let (points, labels) = blobs(400, 6, 11);
    let records = to_sparse(&points);
    let model = LinearSvmParams::default().train(&records, labels.as_slice().unwrap()).unwrap();
    let accuracy =
        (0..400).filter(|&i| (model.decision_value(&records, i) > 0.0) == labels[i]).count() as f64 / 400.0;

    assert!(accuracy > 0.85, "accuracy {accuracy}");
}

#[test]
fn training_is_deterministic() {
    let (points, labels) = blobs(200, 5, 3);
    let records = to_sparse(&points);
    let params = LinearSvmParams { seed: 42, ..LinearSvmParams::default() };

    let first = params.train(&records, labels.as_slice().unwrap()).unwrap();
    let second = params.train(&records, labels.as_slice().unwrap()).unwrap();

    assert_eq!(first, second);
}

#[test]
fn one_vs_rest_picks_each_class() {
    let rows = vec![vec![(10u32, 1.0f32)], vec![(20, 1.0)], vec![(30, 1.0)], vec![(10, 1.0)], vec![(20, 1.0)], vec![(30, 1.0)]];
    let records = SparseRecords::from_rows(rows);
    let labels = [0u32, 1, 2, 0, 1, 2];
    let models = train_one_vs_rest(&records, &labels, 3, &LinearSvmParams::default()).unwrap();

    for (i, &label) in labels.iter().enumerate() {
        let best = (0..3)
            .max_by(|&a, &b| models[a].decision_value(&records, i).total_cmp(&models[b].decision_value(&records, i)))
            .unwrap();
        assert_eq!(best, label as usize, "row {i}");
    }
}

#[test]
fn mismatched_targets_are_rejected() {
    let records = SparseRecords::from_rows(vec![vec![(1u32, 1.0f32)]]);

    assert!(LinearSvmParams::default().train(&records, &[true, false]).is_err());
}
