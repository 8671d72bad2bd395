//! Criterion benchmarks of the coding engine on the shipped models:
//! feature extraction, one record at a time, batches on all cores, and
//! model loading.
//!
//! Run with `cargo bench --bench engine`; see BENCHMARKS.md for figures.

mod common;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use occoder_classification::TopicId;
use occoder_model::{CodeOptions, Scratch, file};
use occoder_text::SparseVector;

fn extraction(c: &mut Criterion) {
    let model = file::load(&common::model_path(TopicId::Osca)).expect("the OSCA model loads");
    let records = common::records(TopicId::Osca);
    let featurizer = occoder_text::Featurizer::new(model.parts().features.clone());
    let mut warmed = occoder_text::Featurizer::new(model.parts().features.clone());
    warmed.warm_stem_cache(model.parts().vocabulary.iter().map(String::as_str));

    let mut group = c.benchmark_group("extract");
    group.throughput(Throughput::Elements(records.len() as u64));
    for (name, featurizer) in [("cold_stem_cache", &featurizer), ("model_vocabulary", &warmed)] {
        group.bench_function(name, |b| {
            let mut scratch = occoder_text::Scratch::default();
            let mut out = SparseVector::default();
            b.iter(|| {
                for record in &records {
                    featurizer.extract(&record.occp_text, &record.tasks_text, &mut scratch, &mut out);
                    black_box(out.len());
                }
            });
        });
    }
    group.finish();
}

fn single_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("code_with");
    for topic in TopicId::ALL {
        let model = file::load(&common::model_path(topic)).expect("the model loads");
        let records = common::records(topic);
        let options = CodeOptions::default();
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_function(topic.uri_name(), |b| {
            let mut scratch = Scratch::default();
            b.iter(|| {
                for record in &records {
                    black_box(model.code_with(record, &options, &mut scratch));
                }
            });
        });
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let model = file::load(&common::model_path(TopicId::Osca)).expect("the OSCA model loads");
    let records = common::records(TopicId::Osca);
    let options = CodeOptions::default();

    let mut group = c.benchmark_group("code_batch_osca");
    group.sample_size(10);
    for count in [1_000, 100_000] {
        let batch = common::cycle(&records, count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(count.to_string(), |b| b.iter(|| black_box(model.code_batch(&batch, &options))));
    }
    group.finish();
}

fn loading(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for topic in TopicId::ALL {
        let path = common::model_path(topic);
        group.bench_function(topic.uri_name(), |b| {
            b.iter_batched(|| (), |()| file::load(&path).expect("the model loads"), BatchSize::PerIteration);
        });
    }
    group.finish();
}

criterion_group!(benches, extraction, single_record, batch, loading);
criterion_main!(benches);
