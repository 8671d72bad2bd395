//! Hashed sparse features of a record.
//!
//! The pipeline reads top to bottom: words ([`crate::tokenize`]) → English
//! stems (rust-stemmers, Porter 2) → feature blocks → hashed indices → one
//! L2-normalised sparse vector. The job title and the tasks are separate
//! namespaces, so "manager" in a title and "manager" in a task are different
//! features. The blocks are:
//!
//! | block | source | survives |
//! | --- | --- | --- |
//! | title words | stems of `occp_text` | inflection ("nurses", "nursing") |
//! | title pairs | unordered pairs of neighbouring title stems | word order ("developer software") |
//! | title character n-grams | 4-grams of each title word, with `^` and `$` at the ends | misspellings ("sofware") |
//! | task words | stems of `tasks_text` | inflection |
//! | task pairs | unordered pairs of neighbouring task stems | word order |
//!
//! Each block's entries share the block's weight equally, so a long task
//! answer does not drown a short title; the whole vector is then scaled to
//! unit length.

use std::borrow::Cow;

use rust_stemmers::{Algorithm, Stemmer};

use crate::sparse::SparseVector;
use crate::tokenize::for_each_word;

/// Settings of the feature extractor, stored in each model file so that
/// inference extracts exactly the features the model was trained on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureConfig {
    /// Features are hashed into `2^hash_bits` indices.
    pub hash_bits: u8,
    /// Shortest character n-gram taken from title words.
    pub min_char_ngram: u8,
    /// Longest character n-gram taken from title words.
    pub max_char_ngram: u8,
    pub title_word_weight: f32,
    pub title_pair_weight: f32,
    pub title_char_weight: f32,
    pub task_word_weight: f32,
    pub task_pair_weight: f32,
}

impl Default for FeatureConfig {
    fn default() -> FeatureConfig {
        FeatureConfig {
            hash_bits: 24,
            min_char_ngram: 4,
            max_char_ngram: 4,
            title_word_weight: 1.0,
            title_pair_weight: 0.5,
            title_char_weight: 0.8,
            task_word_weight: 0.6,
            task_pair_weight: 0.3,
        }
    }
}

/// Feature namespaces; each seeds the hash differently.
#[derive(Clone, Copy)]
enum Namespace {
    TitleWord = 1,
    TitlePair = 2,
    TitleChar = 3,
    TaskWord = 4,
    TaskPair = 5,
}

/// Turns records into hashed sparse vectors. Cheap to share between threads.
pub struct Featurizer {
    config: FeatureConfig,
    stemmer: Stemmer,
    /// Stems of words seen in training, to skip the stemmer on the hot path.
    stem_cache: foldhash::HashMap<String, String>,
}

/// Reusable buffers for [`Featurizer::extract`], one per thread.
#[derive(Default)]
pub struct Scratch {
    word: String,
    /// The title's words after tokenisation, ending at `title_word_ends`,
    /// kept for the character n-grams so that the title is tokenised once.
    title_words: String,
    title_word_ends: Vec<usize>,
    stems: String,
    stem_ends: Vec<usize>,
    padded: Vec<u8>,
    entries: Vec<(u32, f32)>,
}

impl Featurizer {
    pub fn new(config: FeatureConfig) -> Featurizer {
        Featurizer { config, stemmer: Stemmer::create(Algorithm::English), stem_cache: foldhash::HashMap::default() }
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// Precomputes the stems of every word in `texts`, so that extraction
    /// looks them up instead of running the stemmer. Results are identical
    /// with or without the cache.
    pub fn warm_stem_cache<'a>(&mut self, texts: impl IntoIterator<Item = &'a str>) {
        let mut scratch = String::new();
        for text in texts {
            for_each_word(text, &mut scratch, |word| {
                if !self.stem_cache.contains_key(word) {
                    let stem = self.stemmer.stem(word).into_owned();
                    self.stem_cache.insert(word.to_string(), stem);
                }
            });
        }
    }

    /// Extracts the features of one record into `out`, replacing its contents.
    ///
    /// `out` is sorted by index with no repeats and has unit L2 norm, or is
    /// empty when neither field has a word.
    pub fn extract(&self, occp_text: &str, tasks_text: &str, scratch: &mut Scratch, out: &mut SparseVector) {
        scratch.entries.clear();

        self.collect_stems(occp_text, scratch, true);
        let title_start = scratch.entries.len();
        self.push_words(Namespace::TitleWord, scratch);
        self.weigh_block(scratch, title_start, self.config.title_word_weight);

        let pair_start = scratch.entries.len();
        self.push_pairs(Namespace::TitlePair, scratch);
        self.weigh_block(scratch, pair_start, self.config.title_pair_weight);

        let char_start = scratch.entries.len();
        self.push_char_ngrams(scratch);
        self.weigh_block(scratch, char_start, self.config.title_char_weight);

        self.collect_stems(tasks_text, scratch, false);
        let task_start = scratch.entries.len();
        self.push_words(Namespace::TaskWord, scratch);
        self.weigh_block(scratch, task_start, self.config.task_word_weight);

        let task_pair_start = scratch.entries.len();
        self.push_pairs(Namespace::TaskPair, scratch);
        self.weigh_block(scratch, task_pair_start, self.config.task_pair_weight);

        out.set_from_entries(&mut scratch.entries);
        out.normalize();
    }

    /// Convenience form of [`Featurizer::extract`] that allocates.
    pub fn features(&self, occp_text: &str, tasks_text: &str) -> SparseVector {
        let mut out = SparseVector::default();
        self.extract(occp_text, tasks_text, &mut Scratch::default(), &mut out);
        out
    }

    /// Tokenises and stems `text` into `scratch.stems`, and with
    /// `keep_words` also keeps its words in `scratch.title_words`.
    fn collect_stems(&self, text: &str, scratch: &mut Scratch, keep_words: bool) {
        scratch.stems.clear();
        scratch.stem_ends.clear();
        scratch.title_words.clear();
        scratch.title_word_ends.clear();
        let Scratch { word, title_words, title_word_ends, stems, stem_ends, .. } = scratch;
        for_each_word(text, word, |word| {
            if keep_words {
                title_words.push_str(word);
                title_word_ends.push(title_words.len());
            }
            let stem: Cow<str> = match self.stem_cache.get(word) {
                Some(stem) => Cow::Borrowed(stem),
                None => self.stemmer.stem(word),
            };
            stems.push_str(&stem);
            stem_ends.push(stems.len());
        });
    }

    fn push_words(&self, namespace: Namespace, scratch: &mut Scratch) {
        let Scratch { stems, stem_ends, entries, .. } = scratch;
        for i in 0..stem_ends.len() {
            let stem = word_at(stems, stem_ends, i);
            entries.push((self.hash(namespace, stem, b""), 0.0));
        }
    }

    fn push_pairs(&self, namespace: Namespace, scratch: &mut Scratch) {
        let Scratch { stems, stem_ends, entries, .. } = scratch;
        for i in 1..stem_ends.len() {
            let (left, right) = (word_at(stems, stem_ends, i - 1), word_at(stems, stem_ends, i));
            let (first, second) = if left <= right { (left, right) } else { (right, left) };
            entries.push((self.hash(namespace, first, second), 0.0));
        }
    }

    /// Pushes the character n-grams of the title words that
    /// [`Featurizer::collect_stems`] kept.
    fn push_char_ngrams(&self, scratch: &mut Scratch) {
        let (min, max) = (self.config.min_char_ngram as usize, self.config.max_char_ngram as usize);
        let Scratch { title_words, title_word_ends, padded, entries, .. } = scratch;
        for i in 0..title_word_ends.len() {
            padded.clear();
            padded.push(b'^');
            padded.extend_from_slice(word_at(title_words, title_word_ends, i));
            padded.push(b'$');
            for n in min..=max.min(padded.len()) {
                for gram in padded.windows(n) {
                    entries.push((self.hash(Namespace::TitleChar, gram, b""), 0.0));
                }
            }
        }
    }

    /// Gives each entry from `start` on the value `weight / sqrt(count)`, so
    /// the block's norm is about `weight` whatever its length.
    fn weigh_block(&self, scratch: &mut Scratch, start: usize, weight: f32) {
        let block = &mut scratch.entries[start..];
        if block.is_empty() {
            return;
        }
        let value = weight / (block.len() as f32).sqrt();
        block.iter_mut().for_each(|entry| entry.1 = value);
    }

    fn hash(&self, namespace: Namespace, first: &[u8], second: &[u8]) -> u32 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ (namespace as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for &byte in first.iter().chain([0xffu8].iter()).chain(second) {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= hash >> 29;
        hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash ^= hash >> 32;
        (hash & ((1u64 << self.config.hash_bits) - 1)) as u32
    }
}

/// Returns the `i`-th of the words concatenated in `text`, which ends at
/// `ends[i]`.
fn word_at<'a>(text: &'a str, ends: &[usize], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &text.as_bytes()[start..ends[i]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn featurizer() -> Featurizer {
        Featurizer::new(FeatureConfig::default())
    }

    fn cosine(a: &SparseVector, b: &SparseVector) -> f32 {
        a.dot_sparse(b)
    }

    #[test]
    fn output_is_sorted_unique_and_unit_length() {
        let features = featurizer().features("Software developer", "writing code and unit tests");
        let norm: f32 = features.values().iter().map(|v| v * v).sum::<f32>().sqrt();

        assert!(features.indices().windows(2).all(|pair| pair[0] < pair[1]));
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn empty_record_has_no_features() {
        assert!(featurizer().features("", "...").is_empty());
    }

    #[test]
    fn word_order_does_not_change_features() {
        let f = featurizer();

        assert_eq!(f.features("developer software", ""), f.features("software developer", ""));
    }

    #[test]
    fn inflections_share_features() {
        let f = featurizer();
        let similarity = cosine(&f.features("nursing", ""), &f.features("nurses", ""));

        assert!(similarity > 0.3, "similarity {similarity}");
    }

    #[test]
    fn misspelling_stays_close() {
        let f = featurizer();
        let near = cosine(&f.features("sofware developer", ""), &f.features("software developer", ""));
        let far = cosine(&f.features("sofware developer", ""), &f.features("chef", ""));

        assert!(near > 0.5, "near {near}");
        assert!(far < 0.05, "far {far}");
    }

    /// Character n-grams come from the title's words after stop words are
    /// dropped and abbreviations expanded, as the word features do.
    #[test]
    fn char_ngrams_use_tokenised_words() {
        let f = featurizer();

        assert_eq!(f.features("the Mgr", ""), f.features("manager", ""));
        assert_ne!(f.features("mgr", ""), f.features("mgrs", ""));
    }

    #[test]
    fn title_and_tasks_are_separate_namespaces() {
        let f = featurizer();

        assert_eq!(cosine(&f.features("cleaner", ""), &f.features("", "cleaner")), 0.0);
    }

    #[test]
    fn stem_cache_gives_identical_features() {
        let plain = featurizer();
        let mut cached = featurizer();
        cached.warm_stem_cache(["Registered nurses caring for patients"]);

        assert_eq!(
            cached.features("registered nurse", "caring for patients"),
            plain.features("registered nurse", "caring for patients")
        );
    }
}
