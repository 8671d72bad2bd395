//! Times one full training run per topic on the shipped classification
//! data: the hold-out model, threshold choice and the final model, as
//! `occoder train` does. A run takes tens of seconds, so this is a plain
//! program (`harness = false`) that trains once per topic and prints the
//! seconds, instead of a criterion benchmark with at least 10 samples.
//!
//! Run with `cargo bench --bench training`; give topic names (`osca`,
//! `anzsco`) as arguments to train only those.

use std::time::Instant;

use occoder_classification::{Classification, TopicId};
use occoder_train::{Splits, TrainConfig, train};

fn main() {
    let requested: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let config = TrainConfig::default();
    for topic in TopicId::ALL {
        if !requested.is_empty() && !requested.iter().any(|name| name == topic.uri_name()) {
            continue;
        }
        let classification = Classification::builtin(topic);
        let splits = Splits::from_classification(&classification, &config);
        let records = splits.all.len();

        let started = Instant::now();
        let outcome = train(&classification, splits, &config, "benchmark", chrono::Utc::now())
            .unwrap_or_else(|error| panic!("training {} failed: {error}", topic.uri_name()));
        let seconds = started.elapsed().as_secs_f64();

        println!(
            "train {:<6} {records:>6} records  {seconds:>7.1} s  ({} weights, {} threads)",
            topic.uri_name(),
            outcome.model.weight_count(),
            rayon::current_num_threads(),
        );
    }
}
