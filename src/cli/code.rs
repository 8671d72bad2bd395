//! `occoder code`: code one record, or a file of records, offline.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use occoder_classification::TopicId;
use occoder_model::bulk::{self, AsynchronousCodeResponse, EchoedInput};
use occoder_model::{CodeOptions, CodeStatus, CodedRecord, Model, Scratch};
use occoder_text::{LengthLimit, Record, validate};
use rayon::prelude::*;
use serde::Serialize;

use super::csv_input::{self, CsvColumns, CsvRow};

/// Records read and coded together when coding a file.
const CHUNK_RECORDS: usize = 16_384;

#[derive(clap::Args)]
pub struct CodeArgs {
    /// Topic to code to: osca or anzsco.
    #[arg(long)]
    topic: TopicId,
    /// Job title of a single record (the service's occp_text).
    #[arg(long, conflicts_with = "input")]
    occupation: Option<String>,
    /// Main tasks of a single record (the service's tasks_text).
    #[arg(long, conflicts_with = "input")]
    tasks: Option<String>,
    /// File of records to code: JSON Lines, or CSV with a header row when
    /// the name ends in .csv; `-` reads JSON Lines from standard input.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output file, one JSON line per input record; `-` (the default) is
    /// standard output.
    #[arg(long, default_value = "-", requires = "input")]
    output: PathBuf,
    /// Model id (GUID) to code with; the topic's latest model by default.
    #[arg(long)]
    model: Option<String>,
    /// Number of suggestions for a record that cannot be coded, 1 to 16.
    #[arg(long)]
    suggestions: Option<i64>,
    /// Directory of model files; `OCCODER_MODELS` or ./models by default.
    #[arg(long)]
    models: Option<PathBuf>,
}

/// A single record's result: the service's SynchronousCodeResponse, plus
/// `suggestions` when unsuccessful.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SynchronousCodeResponse<'a> {
    code_status: CodeStatus,
    input: &'a Record,
    result: Vec<CodedRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    suggestions: Vec<CodedRecord>,
}

pub fn run(args: CodeArgs) -> anyhow::Result<ExitCode> {
    let options = CodeOptions::with_suggestions(args.suggestions)?;
    let models_dir = args.models.clone().unwrap_or_else(super::default_models_dir);
    let model = load_model(&models_dir, args.topic, args.model.as_deref())?;

    match &args.input {
        Some(input) => code_file(&model, input, &args.output),
        None => code_single(&model, &args, &options),
    }
}

/// Loads the models directory and selects the model to use.
pub(crate) fn load_model(models_dir: &Path, topic: TopicId, model_id: Option<&str>) -> anyhow::Result<Arc<Model>> {
    let (registry, failures) = super::load_models_dir(models_dir)?;
    for failure in &failures {
        eprintln!("warning: skipped {}: {}", failure.path.display(), failure.error);
    }
    Ok(registry.select(topic, model_id)?.clone())
}

fn code_single(model: &Model, args: &CodeArgs, options: &CodeOptions) -> anyhow::Result<ExitCode> {
    let record = Record::new(args.occupation.clone().unwrap_or_default(), args.tasks.clone().unwrap_or_default());
    if args.occupation.is_none() && args.tasks.is_none() {
        bail!("give --occupation and/or --tasks for one record, or --input FILE for many");
    }
    validate(&record, LengthLimit::Synchronous)?;

    let coding = model.code(&record, options);
    let response =
        SynchronousCodeResponse { code_status: coding.status, input: &record, result: coding.result, suggestions: coding.suggestions };
    let mut stdout = io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &response)?;
    writeln!(stdout).context("failed to write the response")?;
    Ok(ExitCode::SUCCESS)
}

fn code_file(model: &Model, input: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let is_csv = input.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
    let reader: Box<dyn Read> = if input == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(input).with_context(|| format!("failed to open input file {}", input.display()))?)
    };
    let mut writer: Box<dyn Write> = if output == Path::new("-") {
        Box::new(BufWriter::new(io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(
            File::create(output).with_context(|| format!("failed to create output file {}", output.display()))?,
        ))
    };

    let progress = progress_bar(input);
    let mut counts = Counts::default();
    if is_csv {
        code_csv(model, reader, &mut writer, &progress, &mut counts)?;
    } else {
        code_jsonl(model, reader, &mut writer, &progress, &mut counts)?;
    }
    writer.flush().context("failed to write the output")?;
    progress.finish_and_clear();

    eprintln!(
        "coded {}: {} successful, {} unsuccessful with suggestions, {} (unsuccessful with an error field)",
        super::count(counts.total, "record"),
        counts.successful,
        counts.unsuccessful,
        super::count(counts.errors, "error")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Counts {
    total: u64,
    successful: u64,
    unsuccessful: u64,
    errors: u64,
}

impl Counts {
    fn add(&mut self, response: &AsynchronousCodeResponse) {
        self.total += 1;
        if response.is_error() {
            self.errors += 1;
        } else if response.code_status == CodeStatus::Successful {
            self.successful += 1;
        } else {
            self.unsuccessful += 1;
        }
    }
}

fn code_jsonl(
    model: &Model,
    reader: Box<dyn Read>,
    writer: &mut dyn Write,
    progress: &ProgressBar,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let mut lines = JsonLines::new(BufReader::new(reader));
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_RECORDS);
        while chunk.len() < CHUNK_RECORDS {
            match lines.next_line().context("failed to read the input")? {
                Some(line) => chunk.push(line),
                None => break,
            }
        }
        if chunk.is_empty() {
            return Ok(());
        }

        let responses: Vec<AsynchronousCodeResponse> = chunk
            .par_iter()
            .map_init(Scratch::default, |scratch, line| bulk::respond(model, bulk::parse_line(line), scratch))
            .collect();
        write_responses(&responses, writer, progress, counts)?;
    }
}

/// Lines of a JSON Lines input, read as asynchronous operations read their
/// input: `\n` or `\r\n` ends a line, a UTF-8 byte order mark at the start
/// is dropped, and invalid UTF-8 becomes U+FFFD. So a bad byte gives its
/// line an error line, which names the field, and the other lines are coded.
struct JsonLines<R> {
    reader: R,
    buffer: Vec<u8>,
    at_start: bool,
}

impl<R: BufRead> JsonLines<R> {
    fn new(reader: R) -> JsonLines<R> {
        JsonLines { reader, buffer: Vec::new(), at_start: true }
    }

    /// Reads the next line without its line break, or `None` at the end of
    /// the input.
    fn next_line(&mut self) -> io::Result<Option<String>> {
        self.buffer.clear();
        if self.reader.read_until(b'\n', &mut self.buffer)? == 0 {
            return Ok(None);
        }
        let mut line = self.buffer.as_slice();
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(Some(String::from_utf8_lossy(line).into_owned()))
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A CSV row parsed into a record, or its error line.
type ParsedRow = Result<(Option<String>, Record), AsynchronousCodeResponse>;

// A bad row's error line is its output, as in `bulk::parse_line`, so
// boxing it would only move the allocation.
#[allow(clippy::result_large_err)]
fn code_csv(
    model: &Model,
    reader: Box<dyn Read>,
    writer: &mut dyn Write,
    progress: &ProgressBar,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let mut csv = csv_input::reader(reader);
    let Some(columns) = CsvColumns::read_header(&mut csv)? else {
        // An empty file has no header and no rows, so no output lines.
        return Ok(());
    };

    let mut rows = csv.byte_records();
    loop {
        let chunk: Vec<ParsedRow> = rows
            .by_ref()
            .take(CHUNK_RECORDS)
            .map(|row| match row {
                Ok(row) => parse_csv_row(&columns, &row),
                Err(error) => Err(AsynchronousCodeResponse::failed(
                    Some("unknown".into()),
                    EchoedInput::Raw(String::new()),
                    format!("Malformed record found in request: invalid CSV row: {error}"),
                )),
            })
            .collect();
        if chunk.is_empty() {
            return Ok(());
        }

        let responses: Vec<AsynchronousCodeResponse> =
            chunk.into_par_iter().map_init(Scratch::default, |scratch, parsed| bulk::respond(model, parsed, scratch)).collect();
        write_responses(&responses, writer, progress, counts)?;
    }
}

/// Reads one CSV row into a record and validates it with the bulk limit.
/// A row that does not fit the header gets a "Malformed record" error line.
#[allow(clippy::result_large_err)]
fn parse_csv_row(columns: &CsvColumns, row: &csv::ByteRecord) -> ParsedRow {
    let CsvRow { record_id, occp_text, tasks_text, problem } = columns.read(row);
    if let Some(problem) = problem {
        return Err(AsynchronousCodeResponse::failed(
            record_id,
            EchoedInput::Fields { occp_text, tasks_text },
            format!("Malformed record found in request: {problem}"),
        ));
    }

    let record = Record::new(occp_text.unwrap_or_default(), tasks_text.unwrap_or_default());
    match validate(&record, LengthLimit::Bulk) {
        Ok(()) => Ok((record_id, record)),
        Err(error) => Err(AsynchronousCodeResponse::failed(
            record_id,
            EchoedInput::Fields { occp_text: Some(record.occp_text), tasks_text: Some(record.tasks_text) },
            error.to_string(),
        )),
    }
}

fn write_responses(
    responses: &[AsynchronousCodeResponse],
    writer: &mut dyn Write,
    progress: &ProgressBar,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    for response in responses {
        writer.write_all(response.to_json_line().as_bytes()).context("failed to write the output")?;
        writer.write_all(b"\n").context("failed to write the output")?;
        counts.add(response);
    }
    progress.inc(responses.len() as u64);
    Ok(())
}

/// A spinner counting records, shown only when standard error is a terminal.
fn progress_bar(input: &Path) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} records coded ({per_sec}, {elapsed})")
            .expect("the progress template is valid"),
    );
    bar.set_message(input.display().to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
