//! Model files: round trip, and a clear error for every kind of damage.

use chrono::TimeZone;
use occoder_classification::{Level, TopicId};
use occoder_model::file::{self, ModelFileError};
use occoder_model::{CodeOptions, CodeStatus, FeatureWeights, Model, ModelCategory, ModelMetadata, ModelParts, TrainingSummary};
use occoder_svm::PlattScaling;
use occoder_text::{FeatureConfig, Featurizer, Record};

/// A two-occupation model: "nurse" codes to 254411, "chef" to 321131.
fn tiny_model() -> Model {
    let category = |code: &str, title: &str, level, parent| ModelCategory {
        code: code.into(),
        title: title.into(),
        level,
        parent,
    };
    let categories = vec![
        category("2", "Professionals", Level::Major, None),
        category("3", "Technicians and Trades Workers", Level::Major, None),
        category("25", "Health Professionals", Level::SubMajor, Some(0)),
        category("32", "Food Trades Workers", Level::SubMajor, Some(1)),
        category("254", "Nurses", Level::Minor, Some(2)),
        category("321", "Chefs", Level::Minor, Some(3)),
        category("2544", "Registered Nurses", Level::Unit, Some(4)),
        category("3211", "Chefs", Level::Unit, Some(5)),
        category("254411", "Registered Nurse", Level::Occupation, Some(6)),
        category("321131", "Chef", Level::Occupation, Some(7)),
    ];

    let features = FeatureConfig::default();
    let featurizer = Featurizer::new(features.clone());
    let mut triples = Vec::new();
    for (text, major, occupation, expert) in [("nurse", 0u16, 8u16, 10u16), ("chef", 1, 9, 11)] {
        for (feature, value) in featurizer.features(text, "").iter() {
            triples.push((feature, major, 4.0 * value));
            triples.push((feature, 1 - major, -4.0 * value));
            triples.push((feature, occupation, 4.0 * value));
            triples.push((feature, expert, 4.0 * value));
        }
    }

    let parts = ModelParts {
        metadata: ModelMetadata::new_hsvm(TopicId::Osca, 1, chrono::Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).unwrap()),
        summary: TrainingSummary::default(),
        features,
        categories,
        biases: vec![0.0; 12],
        weights: FeatureWeights::build(triples),
        calibration: vec![PlattScaling { a: -3.0, b: 0.0 }; 11],
        leaf_experts: vec![8, 9],
        leaf_temperature: 0.3,
        path_weight: 0.5,
        thresholds: [0.7, 0.7, 0.7, 0.7, 0.6],
        vocabulary: vec!["nurse".into(), "chef".into()],
    };
    Model::from_parts(parts).expect("the tiny model is consistent")
}

fn saved_bytes() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    saved(&tiny_model())
}

fn saved(model: &Model) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.occm");
    file::save(model, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

#[test]
fn round_trip_codes_the_same() {
    let model = tiny_model();
    let (_dir, path, _) = saved(&model);
    let loaded = file::load(&path).unwrap();
    let record = Record::new("nurse", "");

    let coding = loaded.code(&record, &CodeOptions::default());

    assert_eq!(loaded.parts(), model.parts());
    assert_eq!(coding.status, CodeStatus::Successful);
    assert_eq!(coding.code().unwrap().code_category, "254411");
    assert_eq!(coding, model.code(&record, &CodeOptions::default()));
}

#[test]
fn confidences_sum_to_one_per_level() {
    let model = tiny_model();
    let confidence = model.confidences(&Record::new("chef", "cooking"));

    for level in Level::ALL {
        let sum: f32 = model.categories().iter().zip(&confidence).filter(|(c, _)| c.level == level).map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{level:?} sums to {sum}");
    }
}

#[test]
fn unknown_text_is_unsuccessful_with_suggestions() {
    let coding = tiny_model().code(&Record::new("zzqx", ""), &CodeOptions { suggestions: 2 });

    assert_eq!(coding.status, CodeStatus::Unsuccessful);
    assert!(coding.result.is_empty());
    assert_eq!(coding.suggestions.len(), 2);
}

#[test]
fn truncated_file_is_reported() {
    let (_dir, path, bytes) = saved_bytes();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    assert!(matches!(file::load(&path), Err(ModelFileError::Truncated { .. })));
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(matches!(file::load(&path), Err(ModelFileError::Truncated { .. })));
}

#[test]
fn flipped_byte_fails_checksum() {
    let (_dir, path, mut bytes) = saved_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    assert!(matches!(file::load(&path), Err(ModelFileError::ChecksumMismatch { .. })));
}

#[test]
fn other_format_version_is_reported() {
    let (_dir, path, mut bytes) = saved_bytes();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let error = file::load(&path).unwrap_err();
    assert!(matches!(error, ModelFileError::UnsupportedVersion { found: 7, supported: 1, .. }));
    assert!(error.to_string().contains("retrain"));
}

#[test]
fn other_file_is_not_a_model() {
    let (_dir, path, _) = saved_bytes();
    std::fs::write(&path, b"{\"json\": true}").unwrap();

    assert!(matches!(file::load(&path), Err(ModelFileError::NotAModel { .. })));
}

#[test]
fn valid_checksum_with_garbage_payload_is_corrupt() {
    let (_dir, path, bytes) = saved_bytes();
    let mut damaged = bytes[..24].to_vec();
    let garbage = vec![0xffu8; 64];
    damaged[12..20].copy_from_slice(&(garbage.len() as u64).to_le_bytes());
    damaged[20..24].copy_from_slice(&crc32fast::hash(&garbage).to_le_bytes());
    damaged.extend_from_slice(&garbage);
    std::fs::write(&path, &damaged).unwrap();

    assert!(matches!(file::load(&path), Err(ModelFileError::Corrupt { .. })));
}

#[test]
fn missing_file_is_read_error() {
    let error = file::load(std::path::Path::new("/nonexistent/model.occm")).unwrap_err();

    assert!(matches!(error, ModelFileError::Read { .. }), "{error}");
    assert!(error.to_string().starts_with("failed to read model file /nonexistent/model.occm: "), "{error}");
    assert!(std::error::Error::source(&error).is_none(), "the cause is in the message, so it is not repeated as a source");
}

#[test]
fn unwritable_path_is_write_error() {
    let directory = tempfile::tempdir().unwrap();
    // A regular file where the parent directory should be makes every write fail, even as root.
    let blocker = directory.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let path = blocker.join("model.occm");

    let error = file::save(&tiny_model(), &path).unwrap_err();

    assert!(matches!(error, ModelFileError::Write { .. }), "{error}");
    assert!(error.to_string().starts_with("failed to write model file "), "{error}");
}

#[test]
fn leaf_experts_out_of_order_are_rejected() {
    let mut parts = tiny_model().into_parts();
    parts.leaf_experts = vec![9, 8];

    let error = Model::from_parts(parts).expect_err("experts out of order");

    assert!(error.to_string().contains("leaf experts are not in category order"), "{error}");
}
