//! Classifier weights laid out by feature.
//!
//! Every category except the root has one linear classifier in its parent's
//! node, and every occupation also has a leaf expert, so a model has about
//! 2,900 classifiers for OSCA. Storing them as one dense row each would take
//! gigabytes in a 2^24 hashed feature space, and most features occur under
//! few nodes.
//! Instead the weights form an inverted index: for each feature seen in
//! training, a posting list of `(classifier, weight)` pairs. Scoring a record
//! walks the posting lists of its features and adds into one small score
//! array of all classifiers, which stays in the L1 cache, so one pass scores
//! the whole tree. Features whose posting lists cover at least an eighth of
//! the classifiers also get a dense row, added with vector instructions.

use occoder_text::SparseVector;

use crate::infer::Simd;

/// Dense rows added in one pass over the scores.
const DENSE_BATCH: usize = 4;

/// Dense rows waiting to be added, with the values of their features.
#[derive(Default)]
struct DenseBatch {
    rows: [(u32, f32); DENSE_BATCH],
    count: usize,
}

/// How many features ahead [`FeatureWeights::accumulate_vector`] prefetches
/// hash table slots.
const PREFETCH_DISTANCE: usize = 4;

/// Empty slot marker in the open-addressing table.
const EMPTY: u32 = u32::MAX;

/// One weight of a posting list. Classifier and weight sit side by side,
/// so scoring reads one array instead of two.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Posting {
    classifier: u16,
    /// Weight in units of [`FeatureWeights::scale`].
    weight: i16,
}

/// One slot of the open-addressing table: a feature id, the range of its
/// postings and its dense row, so a lookup touches one cache line before
/// the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    feature: u32,
    start: u32,
    end: u32,
    /// Index of the feature's row in [`FeatureWeights::dense_rows`], or
    /// [`NO_ROW`].
    row: u32,
}

const NO_ROW: u32 = u32::MAX;

const EMPTY_SLOT: Slot = Slot { feature: EMPTY, start: 0, end: 0, row: NO_ROW };

/// A feature whose postings cover at least one classifier in this many
/// also gets a dense row of all classifiers' weights. Scoring adds a dense
/// row with vector instructions, 8 or 16 classifiers at a time, which beats
/// scattering that many single postings. Most of a record's postings come
/// from such features, the common character n-grams.
const DENSE_ROW_DIVISOR: usize = 8;

/// Inverted index from feature to `(classifier, weight)` postings.
///
/// Weights are stored as 16-bit fixed point with one scale per index
/// (`weight = quantised × scale`), which halves the model file and the
/// memory the postings take; the rounding error is below 1/65,536 of the
/// largest weight.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "StoredWeights", into = "StoredWeights")]
pub struct FeatureWeights {
    /// Feature ids with postings, increasing.
    features: Vec<u32>,
    /// Postings of feature `k` are `posting_starts[k]..posting_starts[k + 1]`.
    posting_starts: Vec<u32>,
    postings: Vec<Posting>,
    scale: f32,
    /// One more than the largest classifier index in the postings.
    classifier_bound: usize,
    /// Open-addressing hash table of feature ids, rebuilt on load; a slot
    /// whose feature is `EMPTY` is free.
    slots: Vec<Slot>,
    /// Dense rows of `classifier_bound` weights each, for the features with
    /// the longest posting lists; rebuilt on load.
    dense_rows: Vec<i16>,
}

/// The file form of [`FeatureWeights`]: ids and offsets as differences,
/// which postcard's variable-length integers store in one or two bytes,
/// and no hash table.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredWeights {
    feature_gaps: Vec<u32>,
    posting_lengths: Vec<u32>,
    classifiers: Vec<u16>,
    weights: Vec<i16>,
    scale: f32,
}

impl From<FeatureWeights> for StoredWeights {
    fn from(weights: FeatureWeights) -> StoredWeights {
        let mut previous = 0;
        let feature_gaps = weights
            .features
            .iter()
            .map(|&feature| {
                let gap = feature - previous;
                previous = feature;
                gap
            })
            .collect();
        let posting_lengths = weights.posting_starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        StoredWeights {
            feature_gaps,
            posting_lengths,
            classifiers: weights.postings.iter().map(|posting| posting.classifier).collect(),
            weights: weights.postings.iter().map(|posting| posting.weight).collect(),
            scale: weights.scale,
        }
    }
}

impl TryFrom<StoredWeights> for FeatureWeights {
    type Error = String;

    fn try_from(stored: StoredWeights) -> Result<FeatureWeights, String> {
        if stored.feature_gaps.len() != stored.posting_lengths.len() {
            return Err("feature and posting list counts differ".into());
        }
        let mut features = Vec::with_capacity(stored.feature_gaps.len());
        let mut feature = 0u32;
        for (i, &gap) in stored.feature_gaps.iter().enumerate() {
            if i > 0 && gap == 0 {
                return Err("feature ids are not increasing".into());
            }
            feature = feature.checked_add(gap).ok_or("feature id overflows")?;
            features.push(feature);
        }
        let mut posting_starts = Vec::with_capacity(features.len() + 1);
        let mut start = 0u32;
        posting_starts.push(0);
        for &length in &stored.posting_lengths {
            start = start.checked_add(length).ok_or("posting offsets overflow")?;
            posting_starts.push(start);
        }
        if !(stored.scale.is_finite() && stored.scale >= 0.0) {
            return Err(format!("weight scale {} is invalid", stored.scale));
        }

        if stored.classifiers.len() != stored.weights.len() {
            return Err("posting arrays differ in length".into());
        }
        if start as usize != stored.weights.len() {
            return Err("posting list offsets do not match the weights".into());
        }
        for pair in posting_starts.windows(2) {
            let classifiers = &stored.classifiers[pair[0] as usize..pair[1] as usize];
            if classifiers.windows(2).any(|adjacent| adjacent[0] >= adjacent[1]) {
                return Err("the classifiers of a posting list are not increasing".into());
            }
        }

        let postings: Vec<Posting> = stored
            .classifiers
            .iter()
            .zip(&stored.weights)
            .map(|(&classifier, &weight)| Posting { classifier, weight })
            .collect();
        Ok(FeatureWeights::index(features, posting_starts, postings, stored.scale))
    }
}

impl FeatureWeights {
    /// Builds the index from `(feature, classifier, weight)` triples in any
    /// order. Classifier indices must be below 65,536. Triples with the
    /// same feature and classifier are added into one weight.
    pub fn build(mut triples: Vec<(u32, u16, f32)>) -> FeatureWeights {
        triples.sort_unstable_by_key(|&(feature, classifier, _)| (feature, classifier));
        triples.dedup_by(|later, kept| {
            let same = (later.0, later.1) == (kept.0, kept.1);
            if same {
                kept.2 += later.2;
            }
            same
        });
        let largest = triples.iter().map(|t| t.2.abs()).fold(0.0f32, f32::max);
        let scale = if largest > 0.0 { largest / i16::MAX as f32 } else { 1.0 };

        let mut features = Vec::new();
        let mut posting_starts = Vec::new();
        let mut postings = Vec::with_capacity(triples.len());
        for (feature, classifier, weight) in triples {
            if features.last() != Some(&feature) {
                features.push(feature);
                posting_starts.push(postings.len() as u32);
            }
            postings.push(Posting { classifier, weight: (weight / scale).round() as i16 });
        }
        posting_starts.push(postings.len() as u32);

        FeatureWeights::index(features, posting_starts, postings, scale)
    }

    /// Adds the hash table and the dense rows to the postings.
    fn index(features: Vec<u32>, posting_starts: Vec<u32>, postings: Vec<Posting>, scale: f32) -> FeatureWeights {
        let classifier_bound = classifier_bound(&postings);
        let mut slots = hash_table(&features, &posting_starts);

        let dense_length = (classifier_bound / DENSE_ROW_DIVISOR).max(1);
        let mut dense_rows = Vec::new();
        for slot in slots.iter_mut().filter(|slot| slot.feature != EMPTY) {
            if ((slot.end - slot.start) as usize) < dense_length {
                continue;
            }
            let row_start = dense_rows.len();
            dense_rows.resize(row_start + classifier_bound, 0i16);
            for posting in &postings[slot.start as usize..slot.end as usize] {
                dense_rows[row_start + posting.classifier as usize] = posting.weight;
            }
            slot.row = (row_start / classifier_bound) as u32;
        }

        FeatureWeights { features, posting_starts, postings, scale, classifier_bound, slots, dense_rows }
    }

    /// Number of features with postings.
    pub fn feature_count(&self) -> usize {
        self.features.len()
    }

    /// Number of stored weights.
    pub fn weight_count(&self) -> usize {
        self.postings.len()
    }

    /// Adds `value × weight` to `scores[classifier]` for each posting of `feature`.
    ///
    /// # Panics
    /// If `scores` is shorter than the number of classifiers given to
    /// [`FeatureWeights::check`].
    #[inline]
    pub fn accumulate(&self, feature: u32, value: f32, scores: &mut [f32]) {
        self.check_scores(scores);
        self.add_postings(feature, value, scores);
    }

    /// Adds the postings of every feature of `vector`, each scaled by its
    /// value, to `scores`: the decision values of all classifiers minus
    /// their biases.
    ///
    /// # Panics
    /// If `scores` is shorter than the number of classifiers given to
    /// [`FeatureWeights::check`].
    pub fn accumulate_vector(&self, vector: &SparseVector, scores: &mut [f32]) {
        self.accumulate_vector_with(Simd::detect(), vector, scores);
    }

    /// Does the work of [`FeatureWeights::accumulate_vector`] with the
    /// vector instructions of `simd`, which the processor must support.
    /// Callers inline it into code compiled for `simd`, so that the dense
    /// rows vectorise to that width.
    #[inline(always)]
    pub(crate) fn accumulate_vector_with(&self, simd: Simd, vector: &SparseVector, scores: &mut [f32]) {
        self.check_scores(scores);
        let features = vector.indices();
        let mut dense = DenseBatch::default();
        for (k, (&feature, &value)) in features.iter().zip(vector.values()).enumerate() {
            // Most slots are not in the cache yet, so asking for one a few
            // features ahead overlaps its fetch with this feature's work.
            if let Some(&ahead) = features.get(k + PREFETCH_DISTANCE) {
                self.prefetch_slot(ahead);
            }
            let Some(slot) = self.find(feature) else { continue };
            let value = value * self.scale;
            if slot.row == NO_ROW {
                self.add_sparse(simd, slot, value, scores);
                continue;
            }
            dense.rows[dense.count] = (slot.row, value);
            dense.count += 1;
            if dense.count == DENSE_BATCH {
                self.add_dense(&dense.rows, scores);
                dense.count = 0;
            }
        }
        match dense.count {
            1 => self.add_dense(&[dense.rows[0]], scores),
            2 => self.add_dense(&[dense.rows[0], dense.rows[1]], scores),
            3 => self.add_dense(&[dense.rows[0], dense.rows[1], dense.rows[2]], scores),
            _ => {}
        }
    }

    /// Asks the processor to start loading the first slot `find` would
    /// read for `feature`.
    #[inline(always)]
    fn prefetch_slot(&self, feature: u32) {
        #[cfg(target_arch = "x86_64")]
        if !self.slots.is_empty() {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let slot = &self.slots[slot_of(feature, self.slots.len())];
            // SAFETY: SSE is part of every x86-64 processor, and a prefetch
            // of a valid address has no effect but on the cache.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((slot as *const Slot).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = feature;
    }

    fn check_scores(&self, scores: &[f32]) {
        assert!(self.classifier_bound <= scores.len(), "score buffer of {} for {} classifiers", scores.len(), self.classifier_bound);
    }

    /// Adds the postings of `feature` times `value` to `scores`, by the same
    /// arithmetic as [`FeatureWeights::accumulate_vector`]. Callers check
    /// `scores` with [`FeatureWeights::check_scores`] first.
    #[inline(always)]
    fn add_postings(&self, feature: u32, value: f32, scores: &mut [f32]) {
        let Some(slot) = self.find(feature) else { return };
        let value = value * self.scale;
        if slot.row == NO_ROW {
            self.add_sparse(Simd::detect(), slot, value, scores);
        } else {
            self.add_dense(&[(slot.row, value)], scores);
        }
    }

    /// Adds a slot's postings times `value` to `scores`, with AVX-512
    /// gathers and scatters when `simd` allows. `value` is already
    /// multiplied by the index's scale.
    #[inline(always)]
    fn add_sparse(&self, simd: Simd, slot: &Slot, value: f32, scores: &mut [f32]) {
        let postings = &self.postings[slot.start as usize..slot.end as usize];
        #[cfg(target_arch = "x86_64")]
        if simd == Simd::Avx512 {
            // SAFETY: `simd` is Avx512 only on processors with AVX-512F.
            // Every classifier is below `classifier_bound`, which callers
            // checked against the length of `scores`, and the classifiers of
            // one posting list are distinct, which loading checks.
            unsafe { add_postings_avx512(postings, value, scores) };
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        for posting in postings {
            // SAFETY: `classifier_bound` exceeds every stored classifier
            // index, and every caller checked it against the length of
            // `scores` with `check_scores`.
            unsafe { *scores.get_unchecked_mut(posting.classifier as usize) += value * posting.weight as f32 };
        }
    }

    /// Adds `value × row` for each `(row, value)` of `rows`, in order, to
    /// every classifier's score in one pass, so that each score is loaded
    /// and stored once for all the rows. The loop over classifiers
    /// vectorises to the width of the caller's instruction set.
    #[inline(always)]
    fn add_dense<const N: usize>(&self, rows: &[(u32, f32); N], scores: &mut [f32]) {
        let width = self.classifier_bound;
        let weights = rows.map(|(row, _)| &self.dense_rows[row as usize * width..][..width]);
        let values = rows.map(|(_, value)| value);
        for (index, score) in scores[..width].iter_mut().enumerate() {
            let mut sum = *score;
            for row in 0..N {
                sum += values[row] * weights[row][index] as f32;
            }
            *score = sum;
        }
    }

    /// Returns the `(classifier, weight)` postings of `feature`, found by
    /// binary search instead of the hash table: the reference for tests.
    #[cfg(test)]
    pub(crate) fn postings_by_search(&self, feature: u32) -> Vec<(usize, f32)> {
        let Ok(entry) = self.features.binary_search(&feature) else { return Vec::new() };
        let range = self.posting_starts[entry] as usize..self.posting_starts[entry + 1] as usize;
        range.map(|k| (self.postings[k].classifier as usize, self.postings[k].weight as f32 * self.scale)).collect()
    }

    /// Returns the slot of `feature`, or `None` when it has no postings.
    #[inline(always)]
    fn find(&self, feature: u32) -> Option<&Slot> {
        let capacity = self.slots.len();
        if capacity == 0 {
            return None;
        }
        let mut slot = slot_of(feature, capacity);
        loop {
            let found = &self.slots[slot];
            if found.feature == feature {
                return Some(found);
            }
            if found.feature == EMPTY {
                return None;
            }
            slot = (slot + 1) & (capacity - 1);
        }
    }

    /// Checks the internal invariants after deserialising, so that a
    /// corrupt file cannot make inference index out of bounds.
    pub fn check(&self, classifier_count: usize) -> Result<(), String> {
        if self.posting_starts.len() != self.features.len() + 1 {
            return Err("posting list offsets do not match the features".into());
        }
        if self.posting_starts.last().is_some_and(|&s| s as usize != self.postings.len()) {
            return Err("posting list offsets do not match the weights".into());
        }
        if self.posting_starts.windows(2).any(|pair| pair[0] > pair[1]) {
            return Err("posting list offsets decrease".into());
        }
        if self.features.contains(&EMPTY) {
            return Err(format!("feature id {EMPTY} is reserved"));
        }
        if self.classifier_bound > classifier_count {
            return Err("a posting names a classifier that does not exist".into());
        }
        Ok(())
    }
}

/// Adds `value × weight` to `scores[classifier]` for each posting, 16
/// postings at a time: a gather of their scores, the same multiply and add
/// as the scalar loop, and a scatter back. A scatter with a repeated
/// classifier would keep only one of its sums.
///
/// # Safety
/// The processor supports AVX-512F, every classifier of `postings` is
/// below `scores.len()`, and no classifier occurs twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn add_postings_avx512(postings: &[Posting], value: f32, scores: &mut [f32]) {
    use std::arch::x86_64::*;

    // A posting is one 32-bit lane: the classifier in the low half and the
    // signed weight in the high half, by the `repr(C)` layout on this
    // little-endian target.
    const LANES: usize = 16;
    let values = _mm512_set1_ps(value);
    let low_half = _mm512_set1_epi32(0xFFFF);
    let mut start = 0;
    while start < postings.len() {
        let lanes = (postings.len() - start).min(LANES);
        let mask: __mmask16 = if lanes == LANES { u16::MAX } else { (1u16 << lanes) - 1 };
        // SAFETY: the mask limits the load to `lanes` postings from
        // `start`, and the gather and scatter to their classifiers, which
        // the caller guarantees are within `scores`.
        unsafe {
            let packed = _mm512_maskz_loadu_epi32(mask, postings.as_ptr().add(start).cast());
            let classifiers = _mm512_and_si512(packed, low_half);
            let weights = _mm512_cvtepi32_ps(_mm512_srai_epi32::<16>(packed));
            let current = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, classifiers, scores.as_ptr());
            let updated = _mm512_add_ps(current, _mm512_mul_ps(values, weights));
            _mm512_mask_i32scatter_ps::<4>(scores.as_mut_ptr(), mask, classifiers, updated);
        }
        start += lanes;
    }
}

fn classifier_bound(postings: &[Posting]) -> usize {
    postings.iter().map(|posting| posting.classifier).max().map_or(0, |largest| largest as usize + 1)
}

/// Builds the open-addressing table of `features`, at most half full.
/// Feature `k`'s postings are `posting_starts[k]..posting_starts[k + 1]`.
fn hash_table(features: &[u32], posting_starts: &[u32]) -> Vec<Slot> {
    let capacity = (features.len() * 2).next_power_of_two().max(16);
    let mut slots = vec![EMPTY_SLOT; capacity];
    for (entry, &feature) in features.iter().enumerate() {
        let mut slot = slot_of(feature, capacity);
        while slots[slot].feature != EMPTY {
            slot = (slot + 1) & (capacity - 1);
        }
        slots[slot] = Slot { feature, start: posting_starts[entry], end: posting_starts[entry + 1], row: NO_ROW };
    }
    slots
}

#[inline]
fn slot_of(feature: u32, capacity: usize) -> usize {
    (feature.wrapping_mul(0x9e37_79b1) as usize) & (capacity - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_postings_of_known_features() {
        let weights = FeatureWeights::build(vec![(7, 0, 1.0), (7, 2, -0.5), (1 << 20, 1, 2.0)]);
        let mut scores = vec![0.0; 3];

        weights.accumulate(7, 2.0, &mut scores);
        weights.accumulate(1 << 20, 1.0, &mut scores);
        weights.accumulate(99, 1.0, &mut scores);

        for (score, expected) in scores.iter().zip([2.0, 2.0, -1.0]) {
            assert!((score - expected).abs() < 1e-3, "{scores:?}");
        }
        assert_eq!(weights.feature_count(), 2);
        assert_eq!(weights.check(3), Ok(()));
    }

    #[test]
    fn stored_form_round_trips() {
        let weights = FeatureWeights::build(vec![(7, 0, 1.0), (7, 2, -0.5), (1 << 20, 1, 2.0), (3, 1, 0.25)]);
        let bytes = postcard::to_stdvec(&weights).unwrap();
        let back: FeatureWeights = postcard::from_bytes(&bytes).unwrap();

        assert_eq!(back, weights);
    }

    #[test]
    fn dense_and_sparse_features_score_alike() {
        // Feature 1 has postings for 30 of 64 classifiers, so it gets a
        // dense row; feature 2 has one posting and stays sparse.
        let mut triples: Vec<(u32, u16, f32)> = (0..30).map(|k| (1, 2 * k as u16, k as f32 / 7.0 - 2.0)).collect();
        triples.push((2, 63, 1.5));
        let weights = FeatureWeights::build(triples);
        assert_eq!(weights.dense_rows.len(), 64, "one dense row of 64 classifiers");

        let mut scores = vec![0.25f32; 64];
        weights.accumulate(1, 0.5, &mut scores);
        weights.accumulate(2, 2.0, &mut scores);

        let mut expected = vec![0.25f32; 64];
        for feature in [1, 2] {
            let value = if feature == 1 { 0.5 } else { 2.0 };
            for (classifier, weight) in weights.postings_by_search(feature) {
                expected[classifier] += value * weight;
            }
        }
        for (classifier, (score, want)) in scores.iter().zip(&expected).enumerate() {
            assert!((score - want).abs() < 1e-6, "classifier {classifier}: {score} against {want}");
        }
    }

    #[test]
    fn build_adds_repeated_pairs() {
        let weights = FeatureWeights::build(vec![(7, 1, 1.0), (7, 0, 2.0), (7, 1, 0.5)]);

        let postings = weights.postings_by_search(7);

        assert_eq!(postings.len(), 2, "{postings:?}");
        assert_eq!(postings[0].0, 0);
        assert!((postings[0].1 - 2.0).abs() < 1e-3, "{postings:?}");
        assert_eq!(postings[1].0, 1);
        assert!((postings[1].1 - 1.5).abs() < 1e-3, "{postings:?}");
    }

    #[test]
    fn loading_rejects_repeated_classifiers() {
        let stored = StoredWeights {
            feature_gaps: vec![7],
            posting_lengths: vec![2],
            classifiers: vec![1, 1],
            weights: vec![100, 200],
            scale: 0.01,
        };

        let error = FeatureWeights::try_from(stored).expect_err("a repeated classifier");

        assert!(error.contains("not increasing"), "{error}");
    }

    /// Long posting lists, with full 16-lane chunks and a tail, give the
    /// same scores with every instruction set.
    #[test]
    fn sparse_postings_score_alike_on_every_instruction_set() {
        let lengths = [1, 15, 16, 17, 37, 200];
        // A posting of the last of 4,000 classifiers keeps 200 postings
        // below the dense row cut-off.
        let mut triples = vec![(0, 3_999, 1.0)];
        for (feature, &length) in lengths.iter().enumerate() {
            for k in 0..length {
                let classifier = (k * 7 + feature * 3) % 2_000;
                triples.push((feature as u32, classifier as u16, (k as f32 - 20.0) / 9.0));
            }
        }
        let weights = FeatureWeights::build(triples);
        assert!(weights.dense_rows.is_empty(), "every feature stays sparse");
        let mut vector = SparseVector::default();
        let mut entries: Vec<(u32, f32)> = (0..lengths.len() as u32).map(|feature| (feature, 0.3 + feature as f32)).collect();
        vector.set_from_entries(&mut entries);

        let mut baseline = vec![0.5f32; weights.classifier_bound];
        weights.accumulate_vector_with(Simd::Baseline, &vector, &mut baseline);
        for simd in Simd::supported() {
            let mut scores = vec![0.5f32; weights.classifier_bound];
            simd.run(|| weights.accumulate_vector_with(simd, &vector, &mut scores));

            assert_eq!(scores, baseline, "{simd:?}");
        }
    }

    #[test]
    fn check_rejects_out_of_range_category() {
        let weights = FeatureWeights::build(vec![(7, 5, 1.0)]);

        assert!(weights.check(3).is_err());
    }
}
