//! Sums over the children of every node of the tree, laid out so that the
//! additions vectorise.
//!
//! Adding each child into its parent one edge at a time costs a load and a
//! store of the parent's sum per child. Here the nodes of one depth are
//! sorted by their number of children, most first. Their children are
//! stored in columns, and column `k` lists the `k`-th child of every node
//! that has more than `k` children. Those nodes are a prefix of the
//! depth's nodes. Adding a column to the depth's sums is one loop over
//! contiguous sums with a gather of the children's values, which
//! vectorises. Each node's sum starts at 0 and adds its children in their
//! order, so the result does not depend on the vector width.

use std::cmp::Reverse;

/// The tree's nodes with children and their children, by depth and column.
pub(crate) struct ChildSums {
    /// Every node with children, deepest first, and within a depth those
    /// with the most children first. Nodes are category indices, and the
    /// root is the category count.
    nodes: Vec<u32>,
    /// The depths, deepest first.
    depths: Vec<Depth>,
    columns: Vec<Column>,
    /// The children of all columns, one column after the other. Indices
    /// of 16 bits let the gathers use 32-bit offsets, 16 to an AVX-512
    /// instruction instead of 8.
    children: Vec<u16>,
    /// One more than the largest child index.
    child_bound: usize,
}

/// The nodes and columns of one depth, as ranges of [`ChildSums::nodes`]
/// and [`ChildSums::columns`].
struct Depth {
    nodes: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
}

/// The `k`-th children of the first `len` nodes from `first_node`.
struct Column {
    first_node: usize,
    len: usize,
    first_child: usize,
}

impl ChildSums {
    /// Lays out the tree given by the children of every node and the depth
    /// of every node; nodes without children are left out.
    pub(crate) fn new(children: &[Vec<u32>], depth: &[u32]) -> ChildSums {
        assert_eq!(children.len(), depth.len(), "one depth per node");
        let mut parents: Vec<usize> = (0..children.len()).filter(|&node| !children[node].is_empty()).collect();
        parents.sort_by_key(|&node| (Reverse(depth[node]), Reverse(children[node].len()), node));

        let mut sums = ChildSums {
            nodes: parents.iter().map(|&node| node as u32).collect(),
            depths: Vec::new(),
            columns: Vec::new(),
            children: Vec::new(),
            child_bound: children.iter().flatten().map(|&child| child as usize + 1).max().unwrap_or(0),
        };
        let mut start = 0;
        while start < parents.len() {
            let end = start + parents[start..].iter().take_while(|&&node| depth[node] == depth[parents[start]]).count();
            let first_column = sums.columns.len();
            let widest = children[parents[start]].len();
            for k in 0..widest {
                let len = parents[start..end].iter().take_while(|&&node| children[node].len() > k).count();
                sums.columns.push(Column { first_node: start, len, first_child: sums.children.len() });
                let column = parents[start..start + len].iter().map(|&node| children[node][k]);
                sums.children.extend(column.map(|child| u16::try_from(child).expect("at most 65,535 categories")));
            }
            sums.depths.push(Depth { nodes: start..end, columns: first_column..sums.columns.len() });
            start = end;
        }
        sums
    }

    /// Nodes with children, in the order of the sums that
    /// [`ChildSums::sum_children`] and [`ChildSums::sum_up`] write.
    pub(crate) fn nodes(&self) -> &[u32] {
        &self.nodes
    }

    /// Writes into `sums[j]` the sum of `values` over the children of
    /// `nodes()[j]`, for every node with children.
    ///
    /// # Panics
    /// If `values` does not cover every child, or `sums` has fewer entries
    /// than [`ChildSums::nodes`].
    #[inline(always)]
    pub(crate) fn sum_children(&self, values: &[f32], sums: &mut [f32]) {
        assert!(values.len() >= self.child_bound, "{} values for {} children", values.len(), self.child_bound);
        let sums = &mut sums[..self.nodes.len()];
        sums.fill(0.0);
        for column in &self.columns {
            self.add_column(column, values, sums);
        }
    }

    /// Replaces the value of every node with children by the sum of its
    /// children's values, deepest nodes first, so that each node adds up
    /// its children's finished sums. `sums` is scratch space.
    ///
    /// # Panics
    /// As [`ChildSums::sum_children`], and if `values` does not cover every
    /// node.
    #[inline(always)]
    pub(crate) fn sum_up(&self, values: &mut [f32], sums: &mut [f32]) {
        assert!(values.len() >= self.child_bound, "{} values for {} children", values.len(), self.child_bound);
        let sums = &mut sums[..self.nodes.len()];
        sums.fill(0.0);
        for depth in &self.depths {
            for column in &self.columns[depth.columns.clone()] {
                self.add_column(column, values, sums);
            }
            for (&node, &sum) in self.nodes[depth.nodes.clone()].iter().zip(&sums[depth.nodes.clone()]) {
                values[node as usize] = sum;
            }
        }
    }

    /// Adds the values of one column's children to their nodes' sums.
    /// Callers check that `values` covers every child.
    #[inline(always)]
    fn add_column(&self, column: &Column, values: &[f32], sums: &mut [f32]) {
        let children = &self.children[column.first_child..][..column.len];
        let sums = &mut sums[column.first_node..][..column.len];
        for (sum, &child) in sums.iter_mut().zip(children) {
            // SAFETY: every child index is below `child_bound`, which the callers
            // checked against the length of `values`. Unchecked reads let
            // the loop vectorise with gathers.
            *sum += unsafe { *values.get_unchecked(child as usize) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root 0 with children 1, 2 and 3; node 1 with children 4 and 5;
    /// node 3 with child 6.
    fn small_tree() -> ChildSums {
        let children = vec![vec![1, 2, 3], vec![4, 5], vec![], vec![6], vec![], vec![], vec![]];
        let depth = vec![0, 1, 1, 1, 2, 2, 2];
        ChildSums::new(&children, &depth)
    }

    #[test]
    fn nodes_go_deepest_first_widest_first() {
        assert_eq!(small_tree().nodes(), &[1, 3, 0]);
    }

    #[test]
    fn sum_children_adds_each_node_children() {
        let tree = small_tree();
        let values = [100.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
        let mut sums = vec![f32::NAN; 3];

        tree.sum_children(&values, &mut sums);

        assert_eq!(sums, [24.0, 32.0, 7.0]);
    }

    #[test]
    fn sum_up_adds_finished_sums() {
        let tree = small_tree();
        let mut values = [0.0, 0.0, 2.0, 0.0, 8.0, 16.0, 32.0];
        let mut sums = vec![0.0; 3];

        tree.sum_up(&mut values, &mut sums);

        assert_eq!(values, [58.0, 24.0, 2.0, 32.0, 8.0, 16.0, 32.0]);
    }

    #[test]
    #[should_panic(expected = "values for 7 children")]
    fn short_values_panic() {
        small_tree().sum_children(&[1.0; 6], &mut [0.0; 3]);
    }
}
