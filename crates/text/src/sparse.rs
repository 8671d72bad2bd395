//! Sparse vectors with sorted `u32` indices and `f32` values.

/// A sparse vector: strictly increasing indices, each with one value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SparseVector {
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl SparseVector {
    /// Builds a vector from `(index, value)` pairs in any order, summing the
    /// values of repeated indices.
    pub fn from_entries(mut entries: Vec<(u32, f32)>) -> SparseVector {
        let mut vector = SparseVector::default();
        vector.set_from_entries(&mut entries);
        vector
    }

    /// Replaces the contents with `entries`, which are sorted in place;
    /// repeated indices are summed.
    pub fn set_from_entries(&mut self, entries: &mut [(u32, f32)]) {
        self.indices.clear();
        self.values.clear();
        entries.sort_unstable_by_key(|entry| entry.0);
        for &(index, value) in entries.iter() {
            if self.indices.last() == Some(&index) {
                *self.values.last_mut().expect("values and indices have equal length") += value;
            } else {
                self.indices.push(index);
                self.values.push(value);
            }
        }
    }

    /// Scales the vector to unit L2 norm; an all-zero vector stays as it is.
    pub fn normalize(&mut self) {
        let norm = self.values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            self.values.iter_mut().for_each(|v| *v /= norm);
        }
    }

    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// `(index, value)` pairs in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.indices.iter().copied().zip(self.values.iter().copied())
    }

    /// Dot product with another sparse vector, by merging the sorted indices.
    pub fn dot_sparse(&self, other: &SparseVector) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        while i < self.indices.len() && j < other.indices.len() {
            match self.indices[i].cmp(&other.indices[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.values[i] * other.values[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_indices_are_summed() {
        let vector = SparseVector::from_entries(vec![(5, 1.0), (2, 0.5), (5, 2.0)]);

        assert_eq!(vector.indices(), [2, 5]);
        assert_eq!(vector.values(), [0.5, 3.0]);
    }

    #[test]
    fn dot_of_disjoint_is_zero() {
        let a = SparseVector::from_entries(vec![(1, 1.0), (3, 1.0)]);
        let b = SparseVector::from_entries(vec![(2, 1.0), (4, 1.0)]);

        assert_eq!(a.dot_sparse(&b), 0.0);
        assert_eq!(a.dot_sparse(&a), 2.0);
    }
}
