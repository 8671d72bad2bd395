//! End-to-end tests of the `occoder` command on the shipped models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn occoder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_occoder"))
        .args(args)
        .current_dir(repository())
        .env_remove("OCCODER_MODELS")
        .output()
        .expect("occoder runs")
}

fn stdout_json(output: &Output) -> Value {
    assert!(output.status.success(), "occoder failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn first_code(response: &Value) -> &str {
    response["result"][0]["codeCategory"].as_str().unwrap_or("")
}

#[test]
fn guide_example_codes_to_software_engineer() {
    let output =
        occoder(&["code", "--topic", "osca", "--occupation", "software developer", "--tasks", "writing code and unit tests"]);
    let response = stdout_json(&output);

    assert_eq!(response["codeStatus"], "successful", "{response}");
    assert_eq!(first_code(&response), "273333", "{response}");
    assert_eq!(response["result"][0]["codeLabel"], "Software Engineer");
    assert_eq!(response["input"]["occp_text"], "software developer");
}

/// ANZSCO 2022 lists "Software Developer" as a specialisation of 261312
/// Developer Programmer, so the guide's example codes within unit group
/// 2613 Software and Applications Programmers; "software engineer" codes
/// to 261313 Software Engineer.
#[test]
fn anzsco_codes_software_titles_within_unit_group() {
    let example = stdout_json(&occoder(&[
        "code",
        "--topic",
        "anzsco",
        "--occupation",
        "software developer",
        "--tasks",
        "writing code and unit tests",
    ]));
    let engineer = stdout_json(&occoder(&[
        "code",
        "--topic",
        "anzsco",
        "--occupation",
        "software engineer",
        "--tasks",
        "designing and building software systems",
    ]));

    assert_eq!(example["codeStatus"], "successful", "{example}");
    assert!(first_code(&example).starts_with("2613"), "{example}");
    assert_eq!(first_code(&engineer), "261313", "{engineer}");
    assert_eq!(engineer["result"][0]["codeLabel"], "Software Engineer");
}

#[test]
fn supplementary_codes_only_in_osca() {
    let osca = stdout_json(&occoder(&["code", "--topic", "osca", "--occupation", "retired", "--tasks", ""]));
    let anzsco = stdout_json(&occoder(&["code", "--topic", "anzsco", "--occupation", "retired", "--tasks", ""]));

    assert_eq!(first_code(&osca), "099960", "{osca}");
    for field in ["result", "suggestions"] {
        for coded in anzsco[field].as_array().into_iter().flatten() {
            assert!(!coded["codeCategory"].as_str().unwrap().starts_with('0'), "{anzsco}");
        }
    }
}

#[test]
fn unsuccessful_record_gets_requested_suggestions() {
    let response =
        stdout_json(&occoder(&["code", "--topic", "osca", "--occupation", "xqzv plorb", "--suggestions", "5"]));

    assert_eq!(response["codeStatus"], "unsuccessful", "{response}");
    assert_eq!(response["result"].as_array().unwrap().len(), 0);
    assert_eq!(response["suggestions"].as_array().unwrap().len(), 5);
}

#[test]
fn invalid_single_records_get_service_errors() {
    let long = "a".repeat(101);
    let cases: [(&[&str], &str); 5] = [
        (&["--occupation", "caf\u{e9} manager"], "Invalid request body: occp_text contains"),
        (&["--occupation", "ab"], "total text length under 3 min"),
        (&["--occupation", &long], "total text length over 100 max"),
        (&["--occupation", "", "--tasks", ""], "total text length under 3 min"),
        (&["--occupation", "nurse", "--suggestions", "17"], "numberOfSuggestions is 17"),
    ];
    for (arguments, message) in cases {
        let mut args = vec!["code", "--topic", "osca"];
        args.extend_from_slice(arguments);
        let output = occoder(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);

        assert!(!output.status.success(), "{arguments:?} succeeded");
        assert!(stderr.contains(message), "{arguments:?}: {stderr}");
    }
}

#[test]
fn unknown_topic_and_model_are_reported() {
    let topic = occoder(&["code", "--topic", "isco", "--occupation", "nurse"]);
    let model = occoder(&["code", "--topic", "osca", "--model", "00000000-0000-0000-0000-000000000000", "--occupation", "nurse"]);

    assert!(String::from_utf8_lossy(&topic.stderr).contains("The specified topic does not exist"));
    assert!(String::from_utf8_lossy(&model.stderr).contains("The specified model does not exist"));
}

#[test]
fn file_coding_keeps_order_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let output_path = dir.path().join("out.jsonl");
    let output = occoder(&[
        "code",
        "--topic",
        "osca",
        "--input",
        "examples/records.jsonl",
        "--output",
        output_path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let input_lines = std::fs::read_to_string(repository().join("examples/records.jsonl")).unwrap().lines().count();
    let lines: Vec<Value> = std::fs::read_to_string(&output_path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect();

    assert_eq!(lines.len(), input_lines);
    assert_eq!(lines[0]["recordId"], "1");
    assert_eq!(lines[0]["result"]["codeCategory"], "273333");
    assert_eq!(lines[10]["recordId"], "unknown");
    let invalid = lines[10]["error"].as_str().unwrap();
    assert!(invalid.starts_with("Invalid JSON data format. The line is not valid JSON"), "{invalid}");
    assert!(invalid.contains("write one JSON object per line"), "{invalid}");
    assert_eq!(lines[10]["input"], "this is not a json string");
    assert!(lines[11]["error"].as_str().unwrap().starts_with("Invalid request body"));
    assert_eq!(lines[11]["recordId"], "12");
    assert!(lines[12]["error"].as_str().unwrap().contains("under 3 min"));
    for line in &lines[..10] {
        assert!(line.get("error").is_none(), "{line}");
        let has_result = line.get("result").is_some();
        let has_suggestions = line.get("suggestions").is_some_and(|s| !s.as_array().unwrap().is_empty());
        assert!(has_result != has_suggestions, "{line}");
    }
}

#[test]
fn stdin_to_stdout_and_csv_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_occoder"))
        .args(["code", "--topic", "anzsco", "--input", "-"])
        .current_dir(repository())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"{\"occp_text\": \"software developer\", \"tasks_text\": \"writing code and unit tests\"}\n{\"occp_text\": \"nurse\"}\n",
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["recordId"], Value::Null);
    assert!(lines[0]["result"]["codeCategory"].as_str().unwrap().starts_with("2613"), "{}", lines[0]);
    assert!(lines[1]["error"].as_str().unwrap().contains("tasks_text is missing"));

    let csv = occoder(&["code", "--topic", "osca", "--input", "examples/records.csv"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&csv.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["recordId"], "1");
    assert_eq!(lines[2]["result"]["codeCategory"], "099950", "{}", lines[2]);
}

/// Codes `input` as a file named `name` and returns the output lines.
fn code_file_lines(name: &str, input: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join(name);
    std::fs::write(&input_path, input).unwrap();
    let output = occoder(&["code", "--topic", "osca", "--input", input_path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    String::from_utf8(output.stdout)
        .expect("the output is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect()
}

#[test]
fn jsonl_bad_bytes_keep_other_lines() {
    let input = b"\xEF\xBB\xBF{\"recordId\": \"1\", \"occp_text\": \"software developer\", \"tasks_text\": \"\"}\r\n\
        {\"recordId\": \"2\", \"occp_text\": \"caf\xE9 manager\", \"tasks_text\": \"\"}\n\
        {\"recordId\": \"3\", \"occp_text\": \"chef\", \"tasks_text\": \"cooking\"}\n";
    let lines = code_file_lines("bad-bytes.jsonl", input);

    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["recordId"], "1", "a byte order mark is ignored: {}", lines[0]);
    assert!(lines[0].get("error").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["recordId"], "2");
    let error = lines[1]["error"].as_str().unwrap();
    assert!(error.starts_with("Invalid request body: occp_text contains"), "{error}");
    assert!(error.contains("U+FFFD"), "{error}");
    assert_eq!(lines[2]["recordId"], "3");
    assert!(lines[2].get("error").is_none(), "{}", lines[2]);
}

#[test]
fn csv_bad_rows_get_error_lines() {
    let input = b"recordId,occp_text,tasks_text\n\
        1,software developer,writing code\n\
        2,caf\xE9 manager,\n\
        3,chef\n\
        4,teacher, maths,teaching\n\
        5,nurse,caring for patients\n";
    let lines = code_file_lines("rows.csv", input);

    assert_eq!(lines.len(), 5);
    assert!(lines[0].get("error").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["recordId"], "2");
    assert!(lines[1]["error"].as_str().unwrap().contains("occp_text contains"), "{}", lines[1]);
    assert_eq!(lines[2]["recordId"], "3");
    assert!(lines[2]["error"].as_str().unwrap().contains("tasks_text is missing"), "{}", lines[2]);
    assert_eq!(lines[3]["recordId"], "4");
    assert!(lines[3]["error"].as_str().unwrap().contains("has 4 fields but the header has 3"), "{}", lines[3]);
    assert_eq!(lines[4]["recordId"], "5");
    assert!(lines[4].get("error").is_none(), "{}", lines[4]);
}

#[test]
fn empty_csv_gives_no_lines() {
    assert!(code_file_lines("empty.csv", b"").is_empty());
}

#[test]
fn models_lists_both_topics() {
    let output = occoder(&["models", "--json"]);
    let models = stdout_json(&output);
    let topics: Vec<&str> = models.as_array().unwrap().iter().map(|m| m["topic"].as_str().unwrap()).collect();

    assert!(topics.contains(&"osca"), "{models}");
    assert!(topics.contains(&"anzsco"), "{models}");
    for model in models.as_array().unwrap() {
        assert_eq!(model["modelType"], "hsvm");
        assert_eq!(model["inputFormat"], serde_json::json!(["occp_text", "tasks_text"]));
        assert_eq!(model["modelId"].as_str().unwrap().len(), 36);
    }
}

#[test]
fn shipped_models_are_under_30_megabytes() {
    for entry in std::fs::read_dir(repository().join("models")).unwrap() {
        let path = entry.unwrap().path();
        let size = std::fs::metadata(&path).unwrap().len();

        assert!(size < 30_000_000, "{} is {size} bytes", path.display());
    }
}

/// Agency retraining: a small coded file trains a model that codes its own
/// titles back, and evaluation writes its reports.
#[test]
fn retrain_on_labelled_file_then_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coded.jsonl");
    let mut lines = String::new();
    let examples = [
        ("barista", "making coffee", "471231"),
        ("coffee maker", "espresso drinks for customers", "471231"),
        ("bricklayer", "laying bricks", "371131"),
        ("brick layer", "building brick walls", "371131"),
        ("dentist", "treating teeth", "269232"),
        ("dental surgeon", "fillings and extractions", "269232"),
    ];
    for round in 0..20 {
        for (title, tasks, code) in examples {
            let title = if round % 2 == 0 { title.to_string() } else { title.to_uppercase() };
            lines.push_str(&format!("{{\"occp_text\": \"{title}\", \"tasks_text\": \"{tasks} {round}\", \"code\": \"{code}\"}}\n"));
        }
    }
    lines.push_str("{\"occp_text\": \"nobody\", \"tasks_text\": \"\", \"code\": \"123456\"}\n");
    std::fs::write(&data, lines).unwrap();

    let model = dir.path().join("agency.occm");
    // The 20 validation records, from titles held out of training, are too
    // few for any level to reach the target precision.
    let train = occoder(&[
        "train",
        "--topic",
        "osca",
        "--data",
        data.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--allow-uncoded",
    ]);
    let train_stderr = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{train_stderr}");
    assert!(train_stderr.contains("123456"), "the bad code is reported: {train_stderr}");
    assert!(train_stderr.contains("warning: no confidence reaches the target precision"), "{train_stderr}");

    let curve = dir.path().join("curve.csv");
    let plot = dir.path().join("curve.svg");
    let evaluate = occoder(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--training-data",
        data.to_str().unwrap(),
        "--curve",
        curve.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--json",
    ]);
    let evaluations = stdout_json(&evaluate);

    assert_eq!(evaluations.as_array().unwrap().len(), 3);
    assert!(evaluations[0]["accuracy"][4].as_f64().unwrap() > 0.9, "{}", evaluations[0]);
    assert!(std::fs::read_to_string(&curve).unwrap().starts_with("coder,production_rate,accuracy,threshold"));
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    assert!(Path::new(&model).exists());
}

#[test]
fn missing_models_dir_gives_hint_once() {
    for command in ["models", "code"] {
        let mut args = vec![command, "--models", "/nonexistent/models"];
        if command == "code" {
            args.extend(["--topic", "osca", "--occupation", "nurse"]);
        }
        let output = occoder(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);

        assert!(!output.status.success(), "{command} succeeded");
        assert!(stderr.contains("failed to read the models directory /nonexistent/models"), "{command}: {stderr}");
        assert!(stderr.contains("pass --models DIR or set OCCODER_MODELS"), "{command}: {stderr}");
        assert_eq!(stderr.matches("os error 2").count(), 1, "{command} repeats the cause: {stderr}");
    }
}

/// Labelled records that no model can code with confidence: every title
/// appears once with each of three codes from different major groups.
fn ambiguous_labelled_records() -> String {
    let codes = ["471231", "371131", "269232"];
    let mut lines = String::new();
    for round in 0..3 {
        for title in 0..40 {
            let code = codes[(title + round) % codes.len()];
            lines.push_str(&format!(
                "{{\"occp_text\": \"general worker {title}\", \"tasks_text\": \"various duties\", \"code\": \"{code}\"}}\n"
            ));
        }
    }
    lines
}

#[test]
fn train_without_reachable_threshold_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ambiguous.jsonl");
    std::fs::write(&data, ambiguous_labelled_records()).unwrap();
    let model = dir.path().join("ambiguous.occm");

    let output = occoder(&["train", "--topic", "osca", "--data", data.to_str().unwrap(), "--out", model.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "training succeeded: {stderr}");
    assert!(stderr.contains("no level reaches the target precision"), "{stderr}");
    assert!(stderr.contains("lower --target-precision"), "{stderr}");
    assert!(stderr.contains("--allow-uncoded"), "{stderr}");
    assert!(!model.exists(), "the model file was written");
}

#[test]
fn uncoded_model_prints_never_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ambiguous.jsonl");
    std::fs::write(&data, ambiguous_labelled_records()).unwrap();
    let models = dir.path().join("models");
    let model = models.join("ambiguous.occm");
    let never = "never (no confidence reaches the target precision)";

    let train = occoder(&[
        "train",
        "--topic",
        "osca",
        "--data",
        data.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--allow-uncoded",
    ]);
    let train_stdout = String::from_utf8_lossy(&train.stdout);
    let train_stderr = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{train_stderr}");
    assert!(train_stdout.contains(&format!("6-digit threshold {never}")), "{train_stdout}");
    assert!(train_stderr.contains("warning: no confidence reaches the target precision"), "{train_stderr}");
    assert!(!train_stderr.contains('\u{1b}'), "the log has ANSI escape codes although stderr is a pipe: {train_stderr:?}");

    let listed = occoder(&["models", "--models", models.to_str().unwrap()]);
    let listed_stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(listed_stdout.contains(never), "{listed_stdout}");
    assert!(!listed_stdout.contains("1.010"), "{listed_stdout}");

    let evaluate = occoder(&["evaluate", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let evaluate_stdout = String::from_utf8_lossy(&evaluate.stdout);
    assert!(evaluate.status.success(), "{}", String::from_utf8_lossy(&evaluate.stderr));
    assert!(evaluate_stdout.contains(&format!("6-digit threshold {never}")), "{evaluate_stdout}");
}

#[test]
fn evaluate_lists_every_skipped_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labelled.jsonl");
    std::fs::write(
        &data,
        concat!(
            "{\"occp_text\": \"barista\", \"tasks_text\": \"making coffee\", \"code\": \"471231\"}\n",
            "{\"occp_text\": \"chef\", \"tasks_text\": \"cooking\", \"code\": \"\"}\n",
            "{\"occp_text\": \"nurse\", \"tasks_text\": \"caring\", \"code\": \"999999\"}\n",
        ),
    )
    .unwrap();

    let output = occoder(&["evaluate", "--model", "models/osca-2024-v1.occm", "--data", data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("line 2: skipped: the code is missing"), "{stderr}");
    assert!(stderr.contains("line 3: skipped: code \"999999\" is not a code of"), "{stderr}");
}

#[test]
fn file_coding_summary_uses_singular() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one.jsonl");
    std::fs::write(&input, "{\"occp_text\": \"chef\", \"tasks_text\": \"cooking meals\"}\n").unwrap();

    let output = occoder(&["code", "--topic", "osca", "--input", input.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("coded 1 record: "), "{stderr}");
    assert!(stderr.contains(", 0 errors"), "{stderr}");
}

fn occoder_with_simd(simd: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_occoder"))
        .args(args)
        .current_dir(repository())
        .env_remove("OCCODER_MODELS")
        .env("OCCODER_SIMD", simd)
        .output()
        .expect("occoder runs")
}

/// Every instruction set gives the same confidences, so capping it changes
/// nothing but the speed.
#[test]
fn simd_cap_keeps_confidences() {
    let args = ["code", "--topic", "osca", "--occupation", "software developer", "--tasks", "writing code and unit tests"];
    let widest = stdout_json(&occoder(&args));

    for simd in ["baseline", "avx2", "avx512"] {
        let capped = stdout_json(&occoder_with_simd(simd, &args));

        assert_eq!(capped["result"], widest["result"], "OCCODER_SIMD={simd}");
    }
}

#[test]
fn simd_cap_rejects_unknown_value() {
    let output = occoder_with_simd("avx3", &["models"]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("invalid OCCODER_SIMD value \"avx3\""), "{stderr}");
    assert!(stderr.contains("use baseline, avx2 or avx512"), "{stderr}");
}

/// Negative numbers reach the settings check, which names the option,
/// instead of being read as an unknown flag.
#[test]
fn train_rejects_negative_pruning() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let model = dir.path().join("model.occm");

    let output = occoder(&["train", "--topic", "osca", "--out", model.to_str().unwrap(), "--prune-below", "-1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("prune-below must be 0 or a finite positive number, got -1"), "{stderr}");
    assert!(!model.exists(), "no model is written");
}
