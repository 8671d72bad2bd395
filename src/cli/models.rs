//! `occoder models`: list the models of a models directory.

use std::path::PathBuf;
use std::process::ExitCode;

use occoder_model::ModelMetadata;

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Directory of model files; `OCCODER_MODELS` or ./models by default.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Print the models as a JSON array of the service's Model objects.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let dir = args.models.unwrap_or_else(super::default_models_dir);
    let (registry, failures) = super::load_models_dir(&dir)?;
    for failure in &failures {
        eprintln!("warning: skipped {}: {}", failure.path.display(), failure.error);
    }

    if args.json {
        let models: Vec<&ModelMetadata> = registry.all().iter().map(|m| m.metadata()).collect();
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(ExitCode::SUCCESS);
    }

    if registry.is_empty() {
        println!("no models in {}", dir.display());
    }
    for model in registry.all() {
        let metadata = model.metadata();
        let latest = registry.latest(metadata.topic).is_ok_and(|m| m.metadata().model_id == metadata.model_id);
        println!(
            "{}  {:<7} {} v{}  released {}  type {}{}",
            metadata.model_id,
            metadata.topic,
            metadata.topic_version,
            metadata.model_version,
            metadata.release_date_iso8601(),
            metadata.model_type,
            if latest { "  (latest)" } else { "" }
        );
        println!("    {}", metadata.topic_standard);
        println!("    input format: {}", metadata.input_format.join(", "));
        println!(
            "    thresholds (1, 2, 3, 4, 6 digits): {}",
            model.thresholds().iter().map(|&t| super::threshold_text(t)).collect::<Vec<_>>().join(", ")
        );
        let summary = model.summary();
        println!(
            "    trained on {} records from {}, seed {}, target precision {}",
            summary.training_records, summary.source, summary.seed, summary.target_precision
        );
    }
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
