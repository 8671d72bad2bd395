//! Path probabilities from the root down, in loops that vectorise.
//!
//! A category's path probability is its probability under its parent times
//! the parent's factor: the parent's own path probability divided by the
//! sum of its children's probabilities, or 0 when the parent's path is
//! below the floor. The groups are numbered in slots, the root first and
//! then one depth after another, so that all parents of a depth are
//! finished before the depth starts. Each depth is then one loop that reads
//! its parents' factors with gathers and writes its own factors to
//! contiguous slots, and the occupations are one more such loop.

use crate::gather;
use crate::infer::Simd;

/// The groups in slots and each category's parent slot. Indices have 16
/// bits, which [`crate::Model::from_parts`] allows for every category and
/// the root, so that the gathers use 32-bit offsets, 16 to an AVX-512
/// instruction.
pub(crate) struct TreePaths {
    /// Per slot, the group's category index. Slot 0 is the root, whose
    /// index is the category count; then come the groups, shallowest depth
    /// first and by index within a depth.
    categories: Vec<u16>,
    /// Per slot, the slot of the group's parent (0 for the major groups and
    /// for the root itself).
    parent_slots: Vec<u16>,
    /// Per slot, where the inverse sum of the group's children's
    /// probabilities is: its position in [`crate::child_sums::ChildSums::nodes`],
    /// or the position after the last node for a group without children.
    inverse_slots: Vec<u16>,
    /// The slots of each depth below the root, shallowest first.
    depths: Vec<std::ops::Range<usize>>,
    /// Indices of the occupations, increasing, and their parents' slots.
    occupations: Vec<u16>,
    occupation_parent_slots: Vec<u16>,
    /// The category count, above every index in `occupations` and in
    /// `categories` after the root's slot: the length `probability` must
    /// have.
    category_bound: usize,
    /// One more than the largest entry of `inverse_slots`: the length
    /// `inverse_sums` must have.
    inverse_bound: usize,
}

impl TreePaths {
    /// Lays out the tree of `count` categories with `parents` (the root's
    /// index, `count`, for major groups) and the `depth` of every node (the
    /// root's 0, last), whose occupations are `is_occupation`. `nodes`
    /// lists the nodes with children in the order of their inverse sums.
    pub(crate) fn new(parents: &[usize], depth: &[u32], is_occupation: &[bool], nodes: &[u32]) -> TreePaths {
        let count = parents.len();
        assert_eq!(depth.len(), count + 1, "one depth per category and the root");
        let index = |value: usize| u16::try_from(value).expect("at most 65,535 categories");
        let mut inverse_slot_of = vec![index(nodes.len()); count + 1];
        for (position, &node) in nodes.iter().enumerate() {
            inverse_slot_of[node as usize] = index(position);
        }

        let mut groups: Vec<usize> = (0..count).filter(|&index| !is_occupation[index]).collect();
        groups.sort_by_key(|&index| (depth[index], index));
        let mut slot_of = vec![0u16; count + 1];
        let mut paths = TreePaths {
            categories: vec![index(count)],
            parent_slots: vec![0],
            inverse_slots: vec![inverse_slot_of[count]],
            depths: Vec::new(),
            occupations: Vec::new(),
            occupation_parent_slots: Vec::new(),
            category_bound: count,
            inverse_bound: nodes.len() + 1,
        };
        for &group in &groups {
            let slot = paths.categories.len();
            if paths.depths.last().is_none_or(|range| depth[paths.categories[range.start] as usize] != depth[group]) {
                paths.depths.push(slot..slot);
            }
            paths.depths.last_mut().expect("a depth was pushed").end = slot + 1;
            slot_of[group] = index(slot);
            paths.categories.push(index(group));
            paths.parent_slots.push(slot_of[parents[group]]);
            paths.inverse_slots.push(inverse_slot_of[group]);
        }
        for occupation in (0..count).filter(|&category| is_occupation[category]) {
            paths.occupations.push(index(occupation));
            paths.occupation_parent_slots.push(slot_of[parents[occupation]]);
        }

        // `compute` reads a depth's parents from the slots before it.
        for depth in &paths.depths {
            let parents_before = paths.parent_slots[depth.clone()].iter().all(|&parent| (parent as usize) < depth.start);
            assert!(parents_before, "parents precede children");
        }
        paths
    }

    /// Indices of the occupations, increasing.
    pub(crate) fn occupations(&self) -> &[u16] {
        &self.occupations
    }

    /// Number of slots: the root and every group.
    pub(crate) fn slot_count(&self) -> usize {
        self.categories.len()
    }

    /// Fills `group_paths` and `factors`, one entry per slot, and
    /// `occupation_paths`, one per occupation in category order, with the
    /// vector instructions of `simd`, which the processor must support.
    /// `probability` is each category's probability under its parent, and
    /// `inverse_sums` contains 1 / the sum of each node's children's
    /// probabilities in the order of the nodes with children, then 0.
    ///
    /// # Panics
    /// If a buffer is shorter than the tree needs.
    #[inline(always)]
    pub(crate) fn compute(
        &self,
        simd: Simd,
        probability: &[f32],
        inverse_sums: &[f32],
        group_paths: &mut [f32],
        factors: &mut [f32],
        occupation_paths: &mut [f32],
    ) {
        let slots = self.slot_count();
        let (categories, inverse_entries) = (self.category_bound, self.inverse_bound);
        assert!(probability.len() >= categories, "{} probabilities for {categories} categories", probability.len());
        assert!(inverse_sums.len() >= inverse_entries, "{} inverse sums for {inverse_entries} entries", inverse_sums.len());
        let (group_paths, factors) = (&mut group_paths[..slots], &mut factors[..slots]);
        let occupation_paths = &mut occupation_paths[..self.occupations.len()];

        group_paths[0] = 1.0;
        factors[0] = inverse_sums[self.inverse_slots[0] as usize];
        for depth in &self.depths {
            let (parents_done, current) = factors.split_at_mut(depth.start);
            // SAFETY: the caller guarantees that the processor supports
            // `simd`. `new` built every category index below
            // `category_bound`, every inverse slot below `inverse_bound`,
            // and every parent slot below the depth's first slot, which is
            // the length of `parents_done`. The asserts above checked the
            // buffers against those bounds.
            unsafe {
                gather::depth_paths(
                    simd,
                    probability,
                    parents_done,
                    inverse_sums,
                    &self.categories[depth.clone()],
                    &self.parent_slots[depth.clone()],
                    &self.inverse_slots[depth.clone()],
                    &mut group_paths[depth.clone()],
                    &mut current[..depth.len()],
                )
            };
        }

        // SAFETY: as above; every parent slot is below `slots`, the length
        // of `factors`.
        unsafe {
            gather::gather_products(simd, probability, &self.occupations, factors, &self.occupation_parent_slots, occupation_paths)
        };
    }

    /// Writes the root's and the groups' values from `group_values`, one
    /// per slot, into `confidence`, indexed by category with the root last.
    ///
    /// # Panics
    /// If `group_values` has fewer entries than slots, or `confidence`
    /// fewer than the categories and the root.
    #[inline(always)]
    pub(crate) fn scatter_groups(&self, simd: Simd, group_values: &[f32], confidence: &mut [f32]) {
        assert!(confidence.len() > self.category_bound, "{} confidences", confidence.len());
        // SAFETY: the caller guarantees that the processor supports
        // `simd`. Every slot has a distinct category index of at most
        // `category_bound`, and the assert above checked that `confidence`
        // is longer.
        unsafe { gather::scatter(simd, &group_values[..self.slot_count()], &self.categories, confidence) };
    }

    /// Writes the occupations' values from `occupation_values`, in category
    /// order, into `confidence`, indexed by category.
    ///
    /// # Panics
    /// As [`TreePaths::scatter_groups`].
    #[inline(always)]
    pub(crate) fn scatter_occupations(&self, simd: Simd, occupation_values: &[f32], confidence: &mut [f32]) {
        assert!(confidence.len() > self.category_bound, "{} confidences", confidence.len());
        // SAFETY: as in `scatter_groups`; occupation indices are distinct
        // and below `category_bound`.
        unsafe { gather::scatter(simd, &occupation_values[..self.occupations.len()], &self.occupations, confidence) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Major groups 0 and 3; group 1 under 0 with occupations 2 and 5;
    /// occupation 4 under 3. The nodes with children, deepest first as
    /// `ChildSums` orders them, are 1, 0, 3 and the root (6).
    fn small_tree() -> TreePaths {
        let parents = [6, 0, 1, 6, 3, 1];
        let depth = [1, 2, 3, 1, 2, 3, 0];
        let is_occupation = [false, false, true, false, true, true];
        TreePaths::new(&parents, &depth, &is_occupation, &[1, 0, 3, 6])
    }

    /// Computes `(group paths, factors, occupation paths)`. The inverse
    /// sums of nodes 1, 0, 3 and the root are 1, 2, 1 and 1.
    fn compute(paths: &TreePaths, probability: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let inverse_sums = [1.0, 2.0, 1.0, 1.0, 0.0];
        let mut group_paths = vec![f32::NAN; 4];
        let mut factors = vec![f32::NAN; 4];
        let mut occupation_paths = vec![f32::NAN; 3];
        paths.compute(Simd::Baseline, probability, &inverse_sums, &mut group_paths, &mut factors, &mut occupation_paths);
        (group_paths, factors, occupation_paths)
    }

    #[test]
    fn slots_go_root_then_by_depth() {
        let paths = small_tree();

        assert_eq!(paths.categories, [6, 0, 3, 1]);
        assert_eq!(paths.parent_slots, [0, 0, 0, 1]);
        assert_eq!(paths.inverse_slots, [3, 1, 2, 0]);
        assert_eq!(paths.depths, [1..3, 3..4]);
        assert_eq!(paths.occupations, [2, 4, 5]);
        assert_eq!(paths.occupation_parent_slots, [3, 2, 3]);
    }

    #[test]
    fn paths_multiply_down_the_tree() {
        let (group_paths, factors, occupation_paths) = compute(&small_tree(), &[0.75, 0.5, 0.5, 0.25, 1.0, 0.25]);

        assert_eq!(group_paths, [1.0, 0.75, 0.25, 0.75]);
        assert_eq!(factors, [1.0, 1.5, 0.25, 0.75]);
        assert_eq!(occupation_paths, [0.375, 0.25, 0.1875]);
    }

    #[test]
    fn paths_below_floor_stop() {
        let (group_paths, factors, occupation_paths) = compute(&small_tree(), &[0.75, 0.5, 0.5, 1e-7, 1.0, 0.25]);

        assert_eq!(group_paths[2], 1e-7);
        assert_eq!(factors[2], 0.0);
        assert_eq!(occupation_paths[1], 0.0);
    }

    #[test]
    #[should_panic(expected = "5 probabilities")]
    fn short_buffers_panic() {
        compute(&small_tree(), &[0.5; 5]);
    }
}
