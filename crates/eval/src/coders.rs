//! The coders compared by the evaluation: the hierarchical model and two
//! reference coders trained on the same records.

use std::collections::HashMap;

use occoder_classification::Level;
use occoder_model::{CodeOptions, FeatureWeights, Model};
use occoder_svm::{LinearSvmParams, SparseRecords, train_one_vs_rest};
use occoder_text::{FeatureConfig, Featurizer, Record, tokenize};
use occoder_train::LabelledRecord;

use crate::{Coder, Prediction};

/// Ranked codes kept per prediction, enough for top-5 accuracy.
const RANKED: usize = 5;

/// The hierarchical SVM model under evaluation.
pub struct HsvmCoder<'a> {
    pub model: &'a Model,
}

impl Coder for HsvmCoder<'_> {
    fn name(&self) -> &str {
        "occoder hierarchical SVM"
    }

    fn predict(&self, record: &Record) -> Prediction {
        let confidence = self.model.confidences(record);
        let categories = self.model.categories();
        let best = self.model.best_per_level(&confidence).map(|index| index.map(|i| categories[i].code.clone()));
        let ranked = self.model.top_occupations(&confidence, RANKED);
        let coding = self.model.decide(&confidence, &CodeOptions::default());
        Prediction {
            best,
            confidence: ranked.first().map_or(0.0, |c| c.code_confidence as f32),
            ranked: ranked.into_iter().map(|c| c.code_category).collect(),
            coded: coding.code().map(|c| c.code_category.clone()),
        }
    }
}

/// Reference coder: one linear SVM per 6-digit code over the same
/// features as the model, with no hierarchy. It always codes to its best
/// occupation.
pub struct FlatSvm {
    featurizer: Featurizer,
    codes: Vec<String>,
    biases: Vec<f32>,
    weights: FeatureWeights,
}

impl FlatSvm {
    /// Trains on the records with 6-digit codes.
    pub fn train(records: &[LabelledRecord], features: &FeatureConfig, c: f64) -> Result<FlatSvm, occoder_svm::SvmError> {
        let featurizer = Featurizer::new(features.clone());
        let mut codes: Vec<String> = records.iter().filter(|r| r.code.len() == 6).map(|r| r.code.clone()).collect();
        codes.sort();
        codes.dedup();
        let class_of: HashMap<&str, u32> = codes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();

        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for record in records {
            let Some(&class) = class_of.get(record.code.as_str()) else { continue };
            let features = featurizer.features(&record.occp_text, &record.tasks_text);
            if !features.is_empty() {
                rows.push(features);
                labels.push(class);
            }
        }
        let sparse = SparseRecords::from_rows(rows.iter().map(|f| f.iter()));
        let params = LinearSvmParams { c, ..LinearSvmParams::default() };
        let models = train_one_vs_rest(&sparse, &labels, codes.len(), &params)?;

        let mut triples = Vec::new();
        let mut biases = Vec::with_capacity(models.len());
        for (class, model) in models.iter().enumerate() {
            for (&feature, &weight) in sparse.feature_ids().iter().zip(&model.weights) {
                if weight.abs() >= 1e-3 {
                    triples.push((feature, class as u16, weight));
                }
            }
            biases.push(model.bias);
        }
        Ok(FlatSvm { featurizer, codes, biases, weights: FeatureWeights::build(triples) })
    }
}

impl FlatSvm {
    /// The decision value of every code, in the order of [`FlatSvm::codes`].
    pub fn scores(&self, record: &Record) -> Vec<f32> {
        let features = self.featurizer.features(&record.occp_text, &record.tasks_text);
        let mut scores = self.biases.clone();
        for (feature, value) in features.iter() {
            self.weights.accumulate(feature, value, &mut scores);
        }
        scores
    }

    /// The 6-digit codes, one per classifier.
    pub fn codes(&self) -> &[String] {
        &self.codes
    }
}

impl Coder for FlatSvm {
    fn name(&self) -> &str {
        "reference: flat linear SVM"
    }

    fn predict(&self, record: &Record) -> Prediction {
        let scores = self.scores(record);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        order.truncate(RANKED);

        let ranked: Vec<String> = order.iter().map(|&i| self.codes[i].clone()).collect();
        prediction_from_ranking(ranked, order.first().map_or(f32::MIN, |&i| scores[i]))
    }
}

/// Reference coder: the nearest title. Titles of the training records are
/// normalised (lowercase words, sorted) and indexed; a record's job title
/// is matched exactly, or else to the most similar indexed title by
/// normalised Damerau-Levenshtein similarity. It always codes to the best
/// match; records with no job title are matched on their tasks.
pub struct TitleMatcher {
    titles: Vec<String>,
    /// Codes of each title, most frequent first.
    codes: Vec<Vec<String>>,
    exact: HashMap<String, usize>,
}

impl TitleMatcher {
    pub fn build(records: &[LabelledRecord]) -> TitleMatcher {
        let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for record in records.iter().filter(|r| r.code.len() == 6) {
            let title = normalise(if record.occp_text.trim().is_empty() { &record.tasks_text } else { &record.occp_text });
            if !title.is_empty() {
                *counts.entry(title).or_default().entry(record.code.clone()).or_default() += 1;
            }
        }

        let mut entries: Vec<(String, Vec<String>)> = counts
            .into_iter()
            .map(|(title, codes)| {
                let mut codes: Vec<(String, usize)> = codes.into_iter().collect();
                codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                (title, codes.into_iter().map(|(code, _)| code).collect())
            })
            .collect();
        entries.sort();
        let exact = entries.iter().enumerate().map(|(i, (title, _))| (title.clone(), i)).collect();
        let (titles, codes) = entries.into_iter().unzip();
        TitleMatcher { titles, codes, exact }
    }
}

impl Coder for TitleMatcher {
    fn name(&self) -> &str {
        "reference: nearest-title fuzzy matcher"
    }

    fn predict(&self, record: &Record) -> Prediction {
        let query = normalise(if record.occp_text.trim().is_empty() { &record.tasks_text } else { &record.occp_text });
        let mut scored: Vec<(f64, usize)> = match self.exact.get(&query) {
            Some(&index) => vec![(1.0, index)],
            None => Vec::new(),
        };
        let mut others: Vec<(f64, usize)> = self
            .titles
            .iter()
            .enumerate()
            .map(|(i, title)| (strsim::normalized_damerau_levenshtein(&query, title), i))
            .collect();
        others.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.extend(others);

        let mut ranked: Vec<String> = Vec::new();
        for (_, index) in &scored {
            for code in &self.codes[*index] {
                if !ranked.contains(code) {
                    ranked.push(code.clone());
                }
            }
            if ranked.len() >= RANKED {
                break;
            }
        }
        ranked.truncate(RANKED);
        prediction_from_ranking(ranked, scored.first().map_or(0.0, |s| s.0 as f32))
    }
}

/// A flat coder's prediction: every level's best code is a prefix of its
/// best occupation, and it always codes to that occupation.
fn prediction_from_ranking(ranked: Vec<String>, confidence: f32) -> Prediction {
    let top = ranked.first().cloned();
    Prediction {
        best: Level::ALL.map(|level| top.as_deref().and_then(|code| level.prefix_of(code)).map(str::to_string)),
        ranked,
        confidence,
        coded: top,
    }
}

fn normalise(text: &str) -> String {
    let mut words = Vec::new();
    tokenize::for_each_word(text, &mut String::new(), |word| words.push(word.to_string()));
    words.sort();
    words.join(" ")
}
