//! Compressed sparse rows with a compact local feature space.

use std::collections::HashMap;

/// Training rows in compressed sparse row form.
///
/// Rows arrive with global feature indices (for example hashed text
/// features in a space of 2^24); the columns here are renumbered densely
/// over the features that actually occur, so that weight vectors stay small.
/// [`SparseRecords::feature_ids`] maps a local column back to its global index.
#[derive(Debug, Clone, Default)]
pub struct SparseRecords {
    row_starts: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
    feature_ids: Vec<u32>,
}

impl SparseRecords {
    /// Builds the records from rows of `(global index, value)` pairs.
    ///
    /// Local columns are numbered in increasing global index, so
    /// `feature_ids` is sorted.
    pub fn from_rows<I, R>(rows: I) -> SparseRecords
    where
        I: IntoIterator<Item = R>,
        R: IntoIterator<Item = (u32, f32)>,
    {
        let mut row_starts = vec![0];
        let mut global_columns = Vec::new();
        let mut values = Vec::new();
        for row in rows {
            for (index, value) in row {
                global_columns.push(index);
                values.push(value);
            }
            row_starts.push(global_columns.len());
        }

        let mut feature_ids = global_columns.clone();
        feature_ids.sort_unstable();
        feature_ids.dedup();
        let local: HashMap<u32, u32> = feature_ids.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect();
        let columns = global_columns.iter().map(|id| local[id]).collect();

        SparseRecords { row_starts, columns, values, feature_ids }
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.row_starts.len() - 1
    }

    /// Number of distinct features (local columns).
    pub fn ncolumns(&self) -> usize {
        self.feature_ids.len()
    }

    /// Global index of each local column.
    pub fn feature_ids(&self) -> &[u32] {
        &self.feature_ids
    }

    /// Local columns and values of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let range = self.row_starts[i]..self.row_starts[i + 1];
        (&self.columns[range.clone()], &self.values[range])
    }

    /// Squared L2 norm of row `i`.
    pub fn row_norm_squared(&self, i: usize) -> f64 {
        self.row(i).1.iter().map(|&v| (v as f64) * (v as f64)).sum()
    }
}

impl linfa::dataset::Records for SparseRecords {
    type Elem = f32;

    fn nsamples(&self) -> usize {
        self.nrows()
    }

    fn nfeatures(&self) -> usize {
        self.ncolumns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_renumbered_densely() {
        let records = SparseRecords::from_rows(vec![vec![(900, 1.0), (7, 2.0)], vec![(7, 3.0)]]);

        assert_eq!(records.nrows(), 2);
        assert_eq!(records.feature_ids(), [7, 900]);
        assert_eq!(records.row(0), (&[1u32, 0][..], &[1.0f32, 2.0][..]));
        assert_eq!(records.row(1), (&[0u32][..], &[3.0f32][..]));
    }
}
