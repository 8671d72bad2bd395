//! Classifier weights laid out by feature.
//!
//! Every category except the root has one linear classifier in its parent's
//! node, so a model has about as many classifiers as categories (about
//! 1,800 for OSCA). Storing them as one dense row each would take gigabytes
//! in a 2^24 hashed feature space, and most features occur under few nodes.
//! Instead the weights form an inverted index: for each feature seen in
//! training, a posting list of `(classifier, weight)` pairs. Scoring a record
//! walks the posting lists of its features and adds into one small score
//! array of all classifiers, which stays in the L1 cache, so one pass scores
//! the whole tree.

/// Empty slot marker in the open-addressing table.
const EMPTY: u32 = u32::MAX;

/// Inverted index from feature to `(classifier, weight)` postings.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureWeights {
    /// Open-addressing hash table of feature ids; `EMPTY` marks a free slot.
    slot_features: Vec<u32>,
    /// For each slot, the index of its feature in `posting_starts`.
    slot_entries: Vec<u32>,
    /// Postings of feature `k` are `posting_starts[k]..posting_starts[k + 1]`.
    posting_starts: Vec<u32>,
    posting_classifiers: Vec<u16>,
    posting_weights: Vec<f32>,
}

impl FeatureWeights {
    /// Builds the index from `(feature, classifier, weight)` triples in any
    /// order. Classifier indices must be below 65,536.
    pub fn build(mut triples: Vec<(u32, u16, f32)>) -> FeatureWeights {
        triples.sort_unstable_by_key(|&(feature, classifier, _)| (feature, classifier));

        let mut features = Vec::new();
        let mut posting_starts = Vec::new();
        let mut posting_classifiers = Vec::with_capacity(triples.len());
        let mut posting_weights = Vec::with_capacity(triples.len());
        for (feature, classifier, weight) in triples {
            if features.last() != Some(&feature) {
                features.push(feature);
                posting_starts.push(posting_classifiers.len() as u32);
            }
            posting_classifiers.push(classifier);
            posting_weights.push(weight);
        }
        posting_starts.push(posting_classifiers.len() as u32);

        let capacity = (features.len() * 2).next_power_of_two().max(16);
        let mut slot_features = vec![EMPTY; capacity];
        let mut slot_entries = vec![0; capacity];
        for (entry, &feature) in features.iter().enumerate() {
            let mut slot = slot_of(feature, capacity);
            while slot_features[slot] != EMPTY {
                slot = (slot + 1) & (capacity - 1);
            }
            slot_features[slot] = feature;
            slot_entries[slot] = entry as u32;
        }

        FeatureWeights { slot_features, slot_entries, posting_starts, posting_classifiers, posting_weights }
    }

    /// Number of features with postings.
    pub fn feature_count(&self) -> usize {
        self.posting_starts.len().saturating_sub(1)
    }

    /// Number of stored weights.
    pub fn weight_count(&self) -> usize {
        self.posting_weights.len()
    }

    /// Adds `value × weight` to `scores[classifier]` for each posting of `feature`.
    #[inline]
    pub fn accumulate(&self, feature: u32, value: f32, scores: &mut [f32]) {
        let Some(entry) = self.find(feature) else { return };
        let range = self.posting_starts[entry] as usize..self.posting_starts[entry + 1] as usize;
        for (&classifier, &weight) in self.posting_classifiers[range.clone()].iter().zip(&self.posting_weights[range]) {
            scores[classifier as usize] += value * weight;
        }
    }

    fn find(&self, feature: u32) -> Option<usize> {
        let capacity = self.slot_features.len();
        if capacity == 0 {
            return None;
        }
        let mut slot = slot_of(feature, capacity);
        loop {
            match self.slot_features[slot] {
                EMPTY => return None,
                found if found == feature => return Some(self.slot_entries[slot] as usize),
                _ => slot = (slot + 1) & (capacity - 1),
            }
        }
    }

    /// Checks the internal invariants after deserialising, so that a
    /// corrupt file cannot make inference index out of bounds.
    pub fn check(&self, classifier_count: usize) -> Result<(), String> {
        let capacity = self.slot_features.len();
        if capacity != 0 && !capacity.is_power_of_two() {
            return Err(format!("feature table capacity {capacity} is not a power of two"));
        }
        if self.slot_entries.len() != capacity {
            return Err("feature table arrays differ in length".into());
        }
        if capacity != 0 && !self.slot_features.contains(&EMPTY) {
            return Err("feature table has no free slot".into());
        }
        let features = self.feature_count();
        if self.slot_features.iter().zip(&self.slot_entries).any(|(&f, &e)| f != EMPTY && e as usize >= features) {
            return Err("feature table points past the posting lists".into());
        }
        if self.posting_starts.first().is_some_and(|&s| s != 0)
            || self.posting_starts.windows(2).any(|pair| pair[0] > pair[1])
            || self.posting_starts.last().is_some_and(|&s| s as usize != self.posting_weights.len())
        {
            return Err("posting list offsets are not increasing".into());
        }
        if self.posting_classifiers.len() != self.posting_weights.len() {
            return Err("posting arrays differ in length".into());
        }
        if self.posting_classifiers.iter().any(|&c| c as usize >= classifier_count) {
            return Err("a posting names a classifier that does not exist".into());
        }
        Ok(())
    }
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

        assert_eq!(scores, [2.0, 2.0, -1.0]);
        assert_eq!(weights.feature_count(), 2);
        assert_eq!(weights.check(3), Ok(()));
    }

    #[test]
    fn check_rejects_out_of_range_category() {
        let weights = FeatureWeights::build(vec![(7, 5, 1.0)]);

        assert!(weights.check(3).is_err());
    }
}
