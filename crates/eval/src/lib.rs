//! Evaluation of occupation coders against labelled records.
//!
//! Every coder implements [`Coder`]: it ranks 6-digit codes for a record
//! with a confidence, and may also code at a coarser level when it is
//! unsure. [`evaluate`] measures one coder on labelled records:
//!
//! - accuracy at each level of its best code;
//! - top-3 and top-5 accuracy at 6 digits;
//! - production rate (share of records coded, at 6 digits and at any
//!   level) and the precision of what was coded;
//! - an accuracy-versus-production-rate curve, from ranking the records by
//!   the confidence of their best 6-digit code.
//!
//! Two reference coders trained on the same records give a baseline:
//! [`FlatSvm`], one linear SVM per occupation over the same features, and
//! [`TitleMatcher`], a nearest-title fuzzy matcher in the manner of
//! index-based coders.

mod coders;
mod curve;

use occoder_classification::Level;
use occoder_train::LabelledRecord;
use occoder_text::Record;
use rayon::prelude::*;

pub use coders::{FlatSvm, HsvmCoder, TitleMatcher};
pub use curve::{CurvePoint, write_curve_csv, write_curve_svg};

/// A coder's output for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Best code of each level from 1-digit to 6-digit, when the coder has
    /// an opinion at that level.
    pub best: [Option<String>; 5],
    /// 6-digit codes by decreasing confidence, at least 5 where possible.
    pub ranked: Vec<String>,
    /// Confidence of the best 6-digit code; higher means surer.
    pub confidence: f32,
    /// The code the coder returns after its own thresholds, if any.
    pub coded: Option<String>,
}

/// An occupation coder under evaluation.
pub trait Coder: Sync {
    fn name(&self) -> &str;
    fn predict(&self, record: &Record) -> Prediction;
}

/// The figures of one coder on one set of labelled records.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub coder: String,
    pub records: usize,
    /// Accuracy of the best code at each level, 1-digit to 6-digit.
    pub accuracy: [f64; 5],
    pub top3: f64,
    pub top5: f64,
    /// Share of records coded at 6 digits.
    pub production_6_digit: f64,
    /// Share of records coded at any level.
    pub production_any: f64,
    /// Share of coded records whose code is right at the level it was given.
    pub precision: f64,
    /// Precision of the records coded at each level, 1-digit to 6-digit.
    pub precision_by_level: [Option<f64>; 5],
    pub curve: Vec<CurvePoint>,
}

/// Measures `coder` on `records` (labelled with 6-digit codes; records with
/// coarser labels count only at the levels their label reaches, and
/// records with OSCA supplementary codes count only at 6 digits).
pub fn evaluate(coder: &dyn Coder, records: &[LabelledRecord]) -> Evaluation {
    let predictions: Vec<Prediction> = records
        .par_iter()
        .map(|r| coder.predict(&Record::new(r.occp_text.clone(), r.tasks_text.clone())))
        .collect();

    let mut correct = [0usize; 5];
    let mut eligible = [0usize; 5];
    let (mut top3, mut top5, mut occupation_labels) = (0usize, 0usize, 0usize);
    let (mut coded_6, mut coded_any, mut coded_correct) = (0usize, 0usize, 0usize);
    let mut by_level = [(0usize, 0usize); 5];
    for (record, prediction) in records.iter().zip(&predictions) {
        let truth = record.code.trim();
        for level in Level::ALL {
            let Some(truth_prefix) = level.prefix_of(truth) else { continue };
            if truth.starts_with('0') && level != Level::Occupation {
                // Supplementary codes have no real groups above them.
                continue;
            }
            eligible[level.index()] += 1;
            let best = prediction.best[level.index()].as_deref();
            correct[level.index()] += (best.and_then(|b| level.prefix_of(b)) == Some(truth_prefix)) as usize;
        }
        if truth.len() == 6 {
            occupation_labels += 1;
            top3 += prediction.ranked.iter().take(3).any(|c| c == truth) as usize;
            top5 += prediction.ranked.iter().take(5).any(|c| c == truth) as usize;
        }
        if let Some(code) = &prediction.coded {
            coded_any += 1;
            coded_6 += (code.len() == 6) as usize;
            let right = truth.starts_with(code.as_str());
            coded_correct += right as usize;
            if let Some(level) = Level::of_code(code) {
                by_level[level.index()].0 += 1;
                by_level[level.index()].1 += right as usize;
            }
        }
    }

    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let curve = curve::accuracy_curve(records, &predictions);
    Evaluation {
        coder: coder.name().to_string(),
        records: records.len(),
        accuracy: std::array::from_fn(|l| ratio(correct[l], eligible[l])),
        top3: ratio(top3, occupation_labels),
        top5: ratio(top5, occupation_labels),
        production_6_digit: ratio(coded_6, records.len()),
        production_any: ratio(coded_any, records.len()),
        precision: ratio(coded_correct, coded_any),
        precision_by_level: std::array::from_fn(|l| (by_level[l].0 > 0).then(|| ratio(by_level[l].1, by_level[l].0))),
        curve,
    }
}

/// A Markdown table comparing evaluations, one row per coder.
pub fn markdown_table(evaluations: &[Evaluation]) -> String {
    let mut out = String::from(
        "| coder | 1-digit | 2-digit | 3-digit | 4-digit | 6-digit | top-3 | top-5 | coded at 6 digits | coded at any level | precision of coded |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for e in evaluations {
        let accuracy: Vec<String> = e.accuracy.iter().map(|a| format!("{a:.3}")).collect();
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            e.coder,
            accuracy.join(" | "),
            e.top3,
            e.top5,
            e.production_6_digit,
            e.production_any,
            e.precision
        ));
    }
    out
}
