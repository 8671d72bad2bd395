//! `occoder train`: build a model from the shipped classification data or
//! from an agency's coded records.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use occoder_classification::{Classification, Level, TopicId};
use occoder_model::file;
use occoder_text::FeatureConfig;
use occoder_train::{LabelledRecord, Splits, TrainConfig, read_labelled};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Topic to train: osca or anzsco.
    #[arg(long)]
    topic: TopicId,
    /// Labelled records (JSON Lines, or CSV when the name ends in .csv)
    /// with occp_text, tasks_text and code. Without it, training examples
    /// are built from the classification data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model file to write.
    #[arg(long)]
    out: PathBuf,
    /// Seed of every random choice; the same seed and data give the same model weights.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// SVM cost parameter C of every node.
    #[arg(long, default_value_t = TrainConfig::default().c, allow_negative_numbers = true)]
    c: f64,
    /// Precision, between 0 and 1, that each level's threshold must reach on the validation split.
    #[arg(long, default_value_t = TrainConfig::default().target_precision, allow_negative_numbers = true)]
    target_precision: f64,
    /// Share of job titles held out from training for validation and test, between 0 and 1.
    #[arg(long, default_value_t = TrainConfig::default().holdout_fraction, allow_negative_numbers = true)]
    holdout_fraction: f64,
    /// Shortest character n-gram taken from the job title, in characters,
    /// from 1 to 20. Shorter n-grams occur in more titles and make coding
    /// slower.
    #[arg(long, default_value_t = TrainConfig::default().features.min_char_ngram)]
    min_char_ngram: u8,
    /// Longest character n-gram taken from the job title, in characters,
    /// from --min-char-ngram to 20.
    #[arg(long, default_value_t = TrainConfig::default().features.max_char_ngram)]
    max_char_ngram: u8,
    /// Weights smaller than this in absolute value are dropped from the
    /// model; 0 or more. Larger values make the model smaller and coding
    /// faster, and may lower accuracy.
    #[arg(long, default_value_t = TrainConfig::default().prune_below, allow_negative_numbers = true)]
    prune_below: f32,
    /// modelVersion recorded in the model.
    #[arg(long, default_value_t = 1)]
    model_version: u32,
    /// modelReleaseDate recorded in the model, RFC 3339 (for example
    /// 2026-12-04T00:00:00Z); now by default.
    #[arg(long)]
    release_date: Option<DateTime<Utc>>,
    /// Classification data directory (laid out as the repository's data/);
    /// the copy built into occoder by default.
    #[arg(long)]
    classification_dir: Option<PathBuf>,
    /// Also write the model trained without the validation and test titles,
    /// for evaluation on the test split.
    #[arg(long)]
    holdout_model: Option<PathBuf>,
    /// Also write the training, validation and test splits as labelled JSON
    /// Lines files (training.jsonl, validation.jsonl, test.jsonl) here.
    #[arg(long)]
    splits_dir: Option<PathBuf>,
    /// Write the model even when no level reaches --target-precision, so
    /// that the model codes no record.
    #[arg(long)]
    allow_uncoded: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let started = Instant::now();
    let classification = match &args.classification_dir {
        Some(dir) => Classification::load(args.topic, dir)?,
        None => Classification::builtin(args.topic),
    };
    let config = TrainConfig {
        seed: args.seed,
        c: args.c,
        target_precision: args.target_precision,
        holdout_fraction: args.holdout_fraction,
        model_version: args.model_version,
        prune_below: args.prune_below,
        features: FeatureConfig {
            min_char_ngram: args.min_char_ngram,
            max_char_ngram: args.max_char_ngram,
            ..FeatureConfig::default()
        },
        ..TrainConfig::default()
    };

    let (splits, source) = match &args.data {
        None => (Splits::from_classification(&classification, &config), "built-in classification data".to_string()),
        Some(path) => {
            let file = read_labelled(path, &classification)?;
            super::report_skipped(path, &file.rejected);
            if file.records.is_empty() {
                bail!("{} has no usable labelled records", path.display());
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (Splits::from_records(file.records, &config), name)
        }
    };
    tracing::info!(
        topic = %args.topic,
        training = splits.training.len(),
        validation = splits.validation.len(),
        test = splits.test.len(),
        "training started"
    );

    let release_date = args.release_date.unwrap_or_else(Utc::now);
    let outcome = occoder_train::train(&classification, splits, &config, &source, release_date)?;
    let uncoded: Vec<Level> =
        Level::ALL.into_iter().filter(|level| !super::reaches_confidence(outcome.model.thresholds()[level.index()])).collect();
    if uncoded.len() == Level::ALL.len() && !args.allow_uncoded {
        bail!(
            "no level reaches the target precision {} on the {} validation records, so the model would code no record \
             and {} was not written; train on more labelled records, lower --target-precision, \
             or pass --allow-uncoded to write the model anyway",
            config.target_precision,
            outcome.model.summary().validation_records,
            args.out.display()
        );
    }

    let bytes = file::save(&outcome.model, &args.out)?;
    if let Some(path) = &args.holdout_model {
        file::save(&outcome.holdout_model, path)?;
    }
    if let Some(dir) = &args.splits_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        write_labelled(&dir.join("training.jsonl"), &outcome.splits.training)?;
        write_labelled(&dir.join("validation.jsonl"), &outcome.splits.validation)?;
        write_labelled(&dir.join("test.jsonl"), &outcome.splits.test)?;
    }

    let metadata = outcome.model.metadata();
    let summary = outcome.model.summary();
    println!("model {} ({} {} v{})", metadata.model_id, metadata.topic, metadata.topic_version, metadata.model_version);
    println!("  file: {} ({:.1} MB)", args.out.display(), bytes as f64 / 1e6);
    println!("  records: {} training, {} validation", summary.training_records, summary.validation_records);
    for level in Level::ALL {
        let threshold = outcome.model.thresholds()[level.index()];
        if super::reaches_confidence(threshold) {
            println!(
                "  {} threshold {threshold:.3}, validation precision {:.3}",
                level.label(),
                summary.validation_precision[level.index()]
            );
        } else {
            println!("  {} threshold {}", level.label(), super::threshold_text(threshold));
        }
    }
    println!(
        "  validation production rate: {:.3} at 6 digits, {:.3} at any level",
        summary.validation_production_rate_6_digit, summary.validation_production_rate_any
    );
    println!("  trained in {:.1} s", started.elapsed().as_secs_f64());
    tracing::info!(model_id = %metadata.model_id, seconds = started.elapsed().as_secs_f64(), "training finished");
    if !uncoded.is_empty() {
        let labels: Vec<&str> = uncoded.iter().map(|level| level.label()).collect();
        eprintln!(
            "warning: no confidence reaches the target precision {} at {} on the validation split, so the model \
             never codes a record at {}; train on more labelled records or lower --target-precision",
            config.target_precision,
            labels.join(", "),
            if uncoded.len() == 1 { "that level" } else { "those levels" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_labelled(path: &Path, records: &[LabelledRecord]) -> anyhow::Result<()> {
    let context = || format!("failed to write {}", path.display());
    let mut writer = BufWriter::new(File::create(path).with_context(context)?);
    for record in records {
        serde_json::to_writer(&mut writer, record).with_context(context)?;
        writer.write_all(b"\n").with_context(context)?;
    }
    writer.flush().with_context(context)
}
