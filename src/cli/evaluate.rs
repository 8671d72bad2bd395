//! `occoder evaluate`: measure a model against labelled records, and
//! optionally compare it with reference coders trained on the same data.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use occoder_classification::{Classification, Level};
use occoder_eval::{Evaluation, FlatSvm, HsvmCoder, TitleMatcher, evaluate, markdown_table, write_curve_csv, write_curve_svg};
use occoder_model::file;
use occoder_train::read_labelled;

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// Model file to evaluate.
    #[arg(long)]
    model: PathBuf,
    /// Labelled records (JSON Lines, or CSV when the name ends in .csv)
    /// with occp_text, tasks_text and code.
    #[arg(long)]
    data: PathBuf,
    /// Labelled records the model was trained on. When given, two reference
    /// coders are trained on them and evaluated beside the model: a flat
    /// linear SVM over the same features and a nearest-title fuzzy matcher.
    #[arg(long)]
    training_data: Option<PathBuf>,
    /// Write the accuracy-versus-production-rate curve as CSV here.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// Draw the curve as an SVG chart here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the comparison table as Markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let model = file::load(&args.model)?;
    let classification = Classification::builtin(model.topic());
    let records = read_checked(&args.data, &classification)?;

    let mut evaluations = vec![evaluate(&HsvmCoder { model: &model }, &records)];
    if let Some(path) = &args.training_data {
        let training = read_checked(path, &classification)?;
        let flat = FlatSvm::train(&training, &model.parts().features, model.summary().c.max(f64::MIN_POSITIVE))?;
        evaluations.push(evaluate(&flat, &records));
        evaluations.push(evaluate(&TitleMatcher::build(&training), &records));
    }

    if let Some(path) = &args.curve {
        write_curve_csv(&evaluations, path).with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let title = format!("{} {}: accuracy against production rate", model.metadata().topic, model.metadata().topic_version);
        write_curve_svg(&evaluations, &title, path).map_err(|e| anyhow::anyhow!("failed to draw {}: {e}", path.display()))?;
    }
    let table = markdown_table(&evaluations);
    if let Some(path) = &args.markdown {
        std::fs::write(path, &table).with_context(|| format!("failed to write {}", path.display()))?;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluations)?);
    } else {
        println!("{} records from {}\n", records.len(), args.data.display());
        print!("{table}");
        print_thresholded(&evaluations[0], &model.thresholds());
    }
    Ok(ExitCode::SUCCESS)
}

fn read_checked(path: &Path, classification: &Classification) -> anyhow::Result<Vec<occoder_train::LabelledRecord>> {
    let file = read_labelled(path, classification)?;
    super::report_skipped(path, &file.rejected);
    if file.records.is_empty() {
        bail!("{} has no usable labelled records", path.display());
    }
    Ok(file.records)
}

fn print_thresholded(evaluation: &Evaluation, thresholds: &[f32; 5]) {
    println!("\nthresholded coding by the model:");
    for level in Level::ALL {
        let precision = evaluation.precision_by_level[level.index()]
            .map_or_else(|| "no records coded".to_string(), |p| format!("precision {p:.3}"));
        println!("  {} threshold {}: {}", level.label(), super::threshold_text(thresholds[level.index()]), precision);
    }
}
