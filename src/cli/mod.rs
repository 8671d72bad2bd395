//! Command-line interface. Each subcommand lives in its own module.

mod batch;
mod clients;
mod code;
mod csv_input;
mod evaluate;
mod models;
mod serve;
mod token_cache;
mod train;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use occoder_model::{LoadFailure, ModelRegistry, RegistryError};
use occoder_train::RejectedRecord;

/// Offline occupation coding for OSCA 2024 and ANZSCO 2022.
#[derive(Parser)]
#[command(name = "occoder", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Code one record, or a JSONL or CSV file of records.
    Code(code::CodeArgs),
    /// Train a model from the shipped classification data or labelled records.
    Train(train::TrainArgs),
    /// Measure a model against labelled records.
    Evaluate(evaluate::EvaluateArgs),
    /// List the models in a models directory with their metadata.
    Models(models::ModelsArgs),
    /// Serve the models over gRPC.
    Serve(serve::ServeArgs),
    /// Manage the API clients of a server's data directory.
    Clients(clients::ClientsArgs),
    /// Submit, check and download asynchronous operations on a running server.
    Batch(batch::BatchArgs),
}

/// Directory searched for models when `--models` is not given: `models/`
/// in the current directory, overridden by `OCCODER_MODELS`.
pub(crate) fn default_models_dir() -> PathBuf {
    std::env::var_os("OCCODER_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models"))
}

/// Loads every model of `dir`, adding to a directory error how to point
/// occoder at the right directory.
pub(crate) fn load_models_dir(dir: &Path) -> anyhow::Result<(ModelRegistry, Vec<LoadFailure>)> {
    ModelRegistry::load_dir(dir).map_err(|error| match error {
        RegistryError::Directory { .. } => anyhow::anyhow!("{error}; pass --models DIR or set OCCODER_MODELS"),
        other => anyhow::Error::new(other),
    })
}

/// Parses the command line, runs the subcommand and maps errors to exit
/// code 1 with the error chain on standard error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = occoder_model::check_simd_setting() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Code(args) => code::run(args),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Models(args) => models::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Clients(args) => clients::run(args),
        Command::Batch(args) => batch::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_report(&error));
            ExitCode::FAILURE
        }
    }
}

/// Skipped lines of a labelled file listed one by one; the rest are counted.
const MAX_LISTED_SKIPPED_LINES: usize = 20;

/// Prints a warning for each skipped line of a labelled file, up to
/// [`MAX_LISTED_SKIPPED_LINES`], then the number of further skipped lines.
pub(crate) fn report_skipped(path: &Path, rejected: &[RejectedRecord]) {
    for skipped in rejected.iter().take(MAX_LISTED_SKIPPED_LINES) {
        eprintln!("warning: {} line {}: skipped: {}", path.display(), skipped.line, skipped.reason);
    }
    if rejected.len() > MAX_LISTED_SKIPPED_LINES {
        let more = (rejected.len() - MAX_LISTED_SKIPPED_LINES) as u64;
        eprintln!("warning: {} more of {} skipped", count(more, "line"), path.display());
    }
}

/// Returns whether a level threshold can be reached by a confidence, which
/// is at most 1. Training gives a level that reaches no target precision a
/// threshold above 1.
pub(crate) fn reaches_confidence(threshold: f32) -> bool {
    threshold <= 1.0
}

/// Formats a level threshold for people: the number, or "never" with the
/// reason when no confidence can reach it.
pub(crate) fn threshold_text(threshold: f32) -> String {
    if reaches_confidence(threshold) {
        format!("{threshold:.3}")
    } else {
        "never (no confidence reaches the target precision)".to_owned()
    }
}

/// Formats `number` with `noun`, adding "s" to the noun unless the number is 1.
pub(crate) fn count(number: u64, noun: &str) -> String {
    if number == 1 { format!("1 {noun}") } else { format!("{number} {noun}s") }
}

/// Joins an error and its causes with ": ", as `{:#}` does, but leaves out a
/// cause whose text the message before it already ends with. Errors such as
/// `failed to read {path}: {source}` quote their source, which anyhow would
/// otherwise print twice.
pub(crate) fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if report.ends_with(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

/// Sets up tracing to standard error, at `info` unless `RUST_LOG` sets
/// another filter, with ANSI colours only when standard error is a terminal.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to read {path}: {source}")]
    struct ReadError {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn error_report_skips_quoted_source() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(ReadError { path: "/nonexistent", source }).context("failed to load models");

        assert_eq!(error_report(&error), "failed to load models: failed to read /nonexistent: No such file or directory");
    }

    #[test]
    fn error_report_keeps_other_causes() {
        let error = anyhow::anyhow!("disk full").context("failed to write the output");

        assert_eq!(error_report(&error), "failed to write the output: disk full");
    }
}
