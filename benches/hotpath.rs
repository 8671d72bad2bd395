//! Codes the OSCA records once on one thread and prints the time per
//! record, a fixed amount of work for instruction counts under callgrind:
//!
//! `valgrind --tool=callgrind target/release/deps/hotpath-* [--repeat N]`
//!
//! The throughput figures belong to the criterion benchmarks in
//! `engine.rs`. This program's own timing serves to compare a change of
//! the hot path before and after, in interleaved runs of the two builds on
//! one machine. Its instruction count does not depend on other load.

mod common;

use std::hint::black_box;
use std::time::Instant;

use occoder_classification::TopicId;
use occoder_model::{CodeOptions, Scratch, file};

fn main() {
    let mut repeat = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--repeat" {
            repeat = args.next().and_then(|value| value.parse().ok()).expect("--repeat needs a whole number");
        }
    }

    let model = file::load(&common::model_path(TopicId::Osca)).expect("the OSCA model loads");
    let records = common::records(TopicId::Osca);
    let options = CodeOptions::default();
    let mut scratch = Scratch::default();

    let started = Instant::now();
    let mut coded = 0usize;
    for _ in 0..repeat {
        for record in &records {
            coded += black_box(model.code_with(record, &options, &mut scratch)).result.len();
        }
    }
    let records_coded = records.len() * repeat;
    println!(
        "{records_coded} records coded in {:.3} s: {:.2} µs per record ({coded} result codes)",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e6 / records_coded as f64
    );
}
