//! Records and models shared by the benchmarks. Records come from the
//! shipped classification, so the benchmarks need no extra files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use occoder_classification::{Classification, TopicId};
use occoder_text::{LengthLimit, Record, validate};
use occoder_train::{Splits, TrainConfig};

/// Returns the directory of the shipped models, or `OCCODER_BENCH_MODELS`
/// when set.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("OCCODER_BENCH_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// Returns the path of a topic's shipped model file.
pub fn model_path(topic: TopicId) -> PathBuf {
    let name = match topic {
        TopicId::Osca => "osca-2024-v1.occm",
        TopicId::Anzsco => "anzsco-2022-v1.occm",
    };
    models_dir().join(name)
}

/// Builds the topic's labelled records (titles alone and titles with a
/// task fragment) and keeps those that the synchronous API accepts
/// (printable ASCII, 3 to 100 characters).
pub fn records(topic: TopicId) -> Vec<Record> {
    let classification = Classification::builtin(topic);
    let splits = Splits::from_classification(&classification, &TrainConfig::default());
    splits
        .all
        .into_iter()
        .map(|labelled| Record { occp_text: labelled.occp_text, tasks_text: labelled.tasks_text })
        .filter(|record| validate(record, LengthLimit::Synchronous).is_ok())
        .collect()
}

/// Repeats `records` in order until there are `count` of them.
pub fn cycle(records: &[Record], count: usize) -> Vec<Record> {
    records.iter().cycle().take(count).cloned().collect()
}
