//! Coding: from a record to confidences over the tree, and from
//! confidences to a code or suggestions.
//!
//! Every node turns its children's decision values into a distribution:
//! the node's Platt sigmoid gives each child a probability, and the
//! probabilities are divided by their sum. An occupation's path probability
//! is the product of these conditional probabilities from the root down.
//!
//! Top-down models lose accuracy where a group is too varied for one linear
//! boundary (the major group "Professionals" spans nurses and software
//! engineers), so each occupation also has a flat leaf expert, an SVM
//! trained against all other occupations. An occupation's confidence is the
//! weighted geometric mean of its path probability and the softmax of its
//! leaf expert's decision value, renormalised over all occupations. A
//! group's confidence is the sum of its occupations' confidences, so the
//! confidences of every level add up to 1. On held-out titles this blend
//! is more accurate than either part alone at every level.
//!
//! The code returned is the guide's "best match 6-digit to 1-digit": the
//! most confident occupation if it clears the 6-digit threshold; otherwise
//! its unit group if that clears the 4-digit threshold; and so on up the
//! hierarchy to its major group.

use occoder_classification::Level;
use occoder_text::{Record, SparseVector};
use rayon::prelude::*;

use crate::child_sums::ChildSums;
use crate::paths::TreePaths;
use crate::{CodeOptions, CodeStatus, CodedRecord, Coding, Model};

/// Nodes whose path probability is below this are not expanded, and the
/// occupations below them get confidence 0. With the blend's square-root
/// weighting such an occupation could reach at most a thousandth of the
/// confidence of one with path probability 1, far below any threshold,
/// and skipping them saves most of the sigmoids and exponentials.
pub(crate) const PATH_FLOOR: f32 = 1e-6;

/// Reusable buffers for coding, one per thread.
#[derive(Default)]
pub struct Scratch {
    text: occoder_text::Scratch,
    features: SparseVector,
    scores: Vec<f32>,
    /// Each category's calibrated probability under its parent, before
    /// normalisation.
    probability: Vec<f32>,
    /// Per node with children, in the order of [`ChildSums::nodes`], then
    /// one more entry: a sum over its children, or its inverse.
    child_sums: Vec<f32>,
    /// Per slot of [`TreePaths`]: the group's path probability, and the
    /// factor its children's probabilities are multiplied by.
    group_paths: Vec<f32>,
    group_factors: Vec<f32>,
    /// Per category, then the root: the confidence, which is the path
    /// probability in models without leaf experts.
    confidence: Vec<f32>,
    /// Per occupation, in category order: path probability, and after the
    /// blend the confidence. Searches for the best occupations read this
    /// contiguous copy instead of picking occupations out of `confidence`.
    occupation_confidence: Vec<f32>,
}

/// The widest vector instructions that coding may use on this processor,
/// narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Simd {
    /// The instructions of every processor of the target: SSE2 on x86-64.
    Baseline,
    Avx2,
    /// AVX-512 with the byte, word, doubleword and vector-length extensions.
    Avx512,
}

/// Environment variable that caps the vector instructions coding uses:
/// `baseline`, `avx2` or `avx512`. Coding uses the narrower of that and the
/// widest set the processor supports; every set gives identical
/// confidences, so the cap changes only the speed. Programs should check
/// the variable at start with [`check_simd_setting`], because coding
/// ignores a value it cannot parse.
pub const SIMD_VARIABLE: &str = "OCCODER_SIMD";

/// An `OCCODER_SIMD` value that names no instruction set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {SIMD_VARIABLE} value {0:?}; use baseline, avx2 or avx512, or unset it to use the widest the processor supports")]
pub struct InvalidSimdSetting(pub String);

/// Checks the `OCCODER_SIMD` environment variable; unset is valid.
pub fn check_simd_setting() -> Result<(), InvalidSimdSetting> {
    match std::env::var(SIMD_VARIABLE) {
        Ok(value) => Simd::parse(&value).map(|_| ()),
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(std::env::VarError::NotUnicode(value)) => Err(InvalidSimdSetting(value.to_string_lossy().into_owned())),
    }
}

/// Returns the name of the instruction set that coding uses on this
/// processor under the `OCCODER_SIMD` cap, for logs: `baseline`, `avx2` or
/// `avx512`.
pub fn simd_in_use() -> &'static str {
    Simd::detect().name()
}

/// The instruction set coding uses, chosen once per process.
static SELECTED: std::sync::LazyLock<Simd> = std::sync::LazyLock::new(|| {
    let widest = Simd::widest_supported();
    match std::env::var(SIMD_VARIABLE).ok().and_then(|value| Simd::parse(&value).ok()) {
        Some(cap) => cap.min(widest),
        None => widest,
    }
});

impl Simd {
    /// Returns the instruction set that coding uses: the widest this
    /// processor supports, capped by `OCCODER_SIMD`. The choice is made
    /// once per process, so this is cheap.
    #[inline]
    pub(crate) fn detect() -> Simd {
        *SELECTED
    }

    /// Returns the widest instruction set this processor supports.
    fn widest_supported() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return Simd::Avx512;
            }
            if has!("avx2") {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }

    /// Parses an `OCCODER_SIMD` value, ignoring case and surrounding
    /// spaces.
    fn parse(value: &str) -> Result<Simd, InvalidSimdSetting> {
        match value.trim().to_ascii_lowercase().as_str() {
            "baseline" => Ok(Simd::Baseline),
            "avx2" => Ok(Simd::Avx2),
            "avx512" => Ok(Simd::Avx512),
            _ => Err(InvalidSimdSetting(value.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Simd::Baseline => "baseline",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }

    /// Runs `work` compiled for this instruction set, which the processor
    /// must support. The loops of `work` and of everything it inlines then
    /// vectorise to this width, so callers mark `work` `#[inline(always)]`.
    #[inline(always)]
    pub(crate) fn run<R>(self, work: impl FnOnce() -> R) -> R {
        match self {
            // SAFETY: `Simd::detect` returns these only when the processor
            // supports them, and tests pass only detected ones.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { run_avx512(work) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { run_avx2(work) },
            _ => work(),
        }
    }

    /// Returns every instruction set this processor supports, narrowest first.
    #[cfg(test)]
    pub(crate) fn supported() -> Vec<Simd> {
        let widest = Simd::widest_supported();
        [Simd::Baseline, Simd::Avx2, Simd::Avx512].into_iter().filter(|&simd| simd as u8 <= widest as u8).collect()
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn run_avx512<R>(work: impl FnOnce() -> R) -> R {
    work()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// Offset of an only child's sigmoid: `1 / (1 + e^-87)` rounds to exactly 1
/// in `f32`, so an only child takes its parent's whole path probability.
const ONLY_CHILD_OFFSET: f32 = -87.0;

/// The tree as flat arrays indexed by category, so that the coding loops
/// read contiguous memory and the compiler can vectorise them.
pub(crate) struct Layout {
    /// The slope and offset of the Platt sigmoid of each category's parent
    /// node, applied to the category's own decision value.
    slope: Vec<f32>,
    offset: Vec<f32>,
    /// The sums over each node's children.
    child_sums: ChildSums,
    /// The path probabilities from the root down.
    paths: TreePaths,
}

impl Layout {
    /// Builds the layout of a model whose parts passed the checks of
    /// [`Model::from_parts`]; `children` lists each node's children, the
    /// root's last.
    pub(crate) fn new(parts: &crate::ModelParts, children: &[Vec<u32>]) -> Layout {
        let count = parts.categories.len();
        // Each category's parent; the root's slot, the category count, for
        // major groups. Always below the category's own index or the root.
        let parents: Vec<usize> =
            parts.categories.iter().map(|category| category.parent.map_or(count, |parent| parent as usize)).collect();
        let (mut slope, mut offset) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for &parent in &parents {
            let sigmoid = parts.calibration[parent];
            let only_child = children[parent].len() == 1;
            slope.push(if only_child { 0.0 } else { sigmoid.a });
            offset.push(if only_child { ONLY_CHILD_OFFSET } else { sigmoid.b });
        }

        // Node depths: the root's is 0, and its slot is the category count.
        let mut depth = vec![0u32; count + 1];
        for index in 0..count {
            depth[index] = depth[parents[index]] + 1;
        }
        let child_sums = ChildSums::new(children, &depth);
        let is_occupation: Vec<bool> = parts.categories.iter().map(|category| category.level == Level::Occupation).collect();
        let paths = TreePaths::new(&parents, &depth, &is_occupation, child_sums.nodes());
        Layout { slope, offset, child_sums, paths }
    }
}

impl Model {
    /// Codes one record. The record is not validated here; callers apply
    /// [`occoder_text::validate`] with the limit of their API first.
    pub fn code(&self, record: &Record, options: &CodeOptions) -> Coding {
        self.code_with(record, options, &mut Scratch::default())
    }

    /// Codes one record, reusing `scratch` to avoid allocation.
    pub fn code_with(&self, record: &Record, options: &CodeOptions, scratch: &mut Scratch) -> Coding {
        self.compute_confidences(record, scratch);
        self.decide_with(&scratch.confidence, &scratch.occupation_confidence, options)
    }

    /// Codes many records in parallel on the rayon pool, in input order.
    pub fn code_batch(&self, records: &[Record], options: &CodeOptions) -> Vec<Coding> {
        records
            .par_iter()
            .map_init(Scratch::default, |scratch, record| self.code_with(record, options, scratch))
            .collect()
    }

    /// Computes the confidence of every category for `record`, indexed like
    /// [`Model::categories`].
    pub fn confidences(&self, record: &Record) -> Vec<f32> {
        let mut scratch = Scratch::default();
        self.compute_confidences(record, &mut scratch);
        scratch.confidence.truncate(self.parts.categories.len());
        scratch.confidence
    }

    /// Applies the thresholds to confidences from [`Model::confidences`].
    pub fn decide(&self, confidence: &[f32], options: &CodeOptions) -> Coding {
        self.decide_with(confidence, &self.occupation_confidences(confidence), options)
    }

    /// Returns the code of each level, from 1-digit to 6-digit, that coding
    /// considers: the most confident occupation and its ancestors, which
    /// is the guide's "moving up the classification hierarchy from 6-digit
    /// to 1-digit". Levels without a returnable code are `None`.
    pub fn best_per_level(&self, confidence: &[f32]) -> [Option<usize>; 5] {
        self.best_per_level_with(&self.occupation_confidences(confidence))
    }

    /// Returns the `count` most confident 6-digit codes, best first. Ties go
    /// to the lower code.
    pub fn top_occupations(&self, confidence: &[f32], count: usize) -> Vec<CodedRecord> {
        self.top_occupations_with(confidence, &self.occupation_confidences(confidence), count)
    }

    /// Picks the occupations' confidences out of every category's.
    fn occupation_confidences(&self, confidence: &[f32]) -> Vec<f32> {
        self.layout.paths.occupations().iter().map(|&index| confidence[index as usize]).collect()
    }

    /// Applies the thresholds. `occupation_confidence` contains the
    /// occupations' entries of `confidence`, in category order.
    fn decide_with(&self, confidence: &[f32], occupation_confidence: &[f32], options: &CodeOptions) -> Coding {
        let categories = &self.parts.categories;
        let best = self.best_per_level_with(occupation_confidence);

        for level in Level::ALL.into_iter().rev() {
            let Some(chosen) = best[level.index()] else { continue };
            let threshold = self.parts.thresholds[level.index()];
            if confidence[chosen] < threshold || confidence[chosen] <= 0.0 {
                continue;
            }

            // The categories with the chosen one's parent are that parent's
            // children (the root's for major groups), in index order.
            let parent = categories[chosen].parent.map_or(categories.len(), |parent| parent as usize);
            let mut result: Vec<usize> = self.children[parent]
                .iter()
                .map(|&sibling| sibling as usize)
                .filter(|&index| {
                    let category = &categories[index];
                    category.level == level && category.is_returnable() && confidence[index] >= threshold
                })
                .collect();
            result.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]).then(a.cmp(&b)));
            result.truncate(options.suggestions.max(1));

            return Coding {
                status: CodeStatus::Successful,
                level: Some(level),
                result: result.into_iter().map(|index| self.coded_record(index, confidence)).collect(),
                suggestions: Vec::new(),
            };
        }

        Coding {
            status: CodeStatus::Unsuccessful,
            level: None,
            result: Vec::new(),
            suggestions: self.top_occupations_with(confidence, occupation_confidence, options.suggestions),
        }
    }

    fn best_per_level_with(&self, occupation_confidence: &[f32]) -> [Option<usize>; 5] {
        let categories = &self.parts.categories;
        let mut best: [Option<usize>; 5] = [None; 5];
        let occupations = self.layout.paths.occupations();
        let mut next = self.best_occupation(occupation_confidence).map(|position| occupations[position] as usize);
        while let Some(index) = next {
            let category = &categories[index];
            if category.is_returnable() {
                best[category.level.index()] = Some(index);
            }
            next = category.parent.map(|parent| parent as usize);
        }
        best
    }

    fn top_occupations_with(&self, confidence: &[f32], occupation_confidence: &[f32], count: usize) -> Vec<CodedRecord> {
        if count == 0 {
            return Vec::new();
        }

        // `top` contains (key, position) pairs, best first, and one scan with
        // insertions finds the best `count`. Once it is full, a later
        // occupation must beat the last key, because an equal key goes to
        // the earlier, lower code. A chunk whose largest key cannot do that
        // is skipped whole, which is the common case and vectorises.
        const CHUNK: usize = 16;
        let mut top: Vec<(i32, usize)> = Vec::with_capacity(count + 1);
        for (chunk_index, chunk) in occupation_confidence.chunks(CHUNK).enumerate() {
            if top.len() == count {
                let floor = top[count - 1].0;
                let largest = chunk.iter().fold(i32::MIN, |largest, &value| largest.max(total_order_key(value)));
                if largest <= floor {
                    continue;
                }
            }
            for (offset, &value) in chunk.iter().enumerate() {
                let key = total_order_key(value);
                if top.len() == count && key <= top[count - 1].0 {
                    continue;
                }
                let position = top.partition_point(|&(kept, _)| kept >= key);
                top.insert(position, (key, chunk_index * CHUNK + offset));
                top.truncate(count);
            }
        }
        let occupations = self.layout.paths.occupations();
        top.into_iter().map(|(_, position)| self.coded_record(occupations[position] as usize, confidence)).collect()
    }

    /// Returns the position in `occupation_confidence` of the maximum by
    /// [`f32::total_cmp`]; ties go to the lower position.
    fn best_occupation(&self, occupation_confidence: &[f32]) -> Option<usize> {
        Simd::detect().run(
            #[inline(always)]
            || best_position(occupation_confidence),
        )
    }

    fn coded_record(&self, index: usize, confidence: &[f32]) -> CodedRecord {
        let category = &self.parts.categories[index];
        CodedRecord {
            code_category: category.code.clone(),
            code_label: category.title.clone(),
            code_confidence: confidence[index] as f64,
        }
    }

    /// Fills `scratch.confidence` with every category's confidence and one
    /// more entry for the root, and `scratch.occupation_confidence` with the
    /// occupations' entries.
    // NOTE: the indexed loops (sparse postings, path gathers, confidence
    // scatters) use AVX-512 where the processor has it and run scalar
    // otherwise. On the 2 CPUs of the benchmark machine the AVX2 form codes
    // about 177,000 records/s against 207,000 with AVX-512 (BENCHMARKS.md).
    fn compute_confidences(&self, record: &Record, scratch: &mut Scratch) {
        self.featurizer.extract(&record.occp_text, &record.tasks_text, &mut scratch.text, &mut scratch.features);
        self.score_and_walk(Simd::detect(), scratch);
    }

    /// Scores every classifier and walks the tree with the vector
    /// instructions of `simd`, which the processor must support.
    fn score_and_walk(&self, simd: Simd, scratch: &mut Scratch) {
        simd.run(
            #[inline(always)]
            || self.score_and_walk_inline(simd, scratch),
        );
    }

    /// Adds the biases and the weights of `scratch.features` into
    /// `scratch.scores`, then walks the tree. It is inlined into one copy
    /// per instruction set, so its loops vectorise to the widest registers
    /// the processor has. No copy fuses multiplies and adds, so all give
    /// identical confidences.
    #[inline(always)]
    fn score_and_walk_inline(&self, simd: Simd, scratch: &mut Scratch) {
        scratch.scores.clear();
        scratch.scores.extend_from_slice(&self.parts.biases);
        self.parts.weights.accumulate_vector_with(simd, &scratch.features, &mut scratch.scores);

        self.walk_tree(simd, scratch);
    }

    /// Turns the decision values in `scratch.scores` into path
    /// probabilities and, with leaf experts, blended confidences.
    #[inline(always)]
    fn walk_tree(&self, simd: Simd, scratch: &mut Scratch) {
        let count = self.parts.categories.len();
        let layout = &self.layout;

        // Every category's probability under its parent, in one pass that
        // the compiler vectorises.
        scratch.probability.resize(count, 0.0);
        let probability = &mut scratch.probability[..count];
        let scores = &scratch.scores[..count];
        let (slopes, offsets) = (&layout.slope[..count], &layout.offset[..count]);
        for index in 0..count {
            let sigmoid = 1.0 / (1.0 + fast_exp(slopes[index] * scores[index] + offsets[index]));
            probability[index] = sigmoid.max(f32::MIN_POSITIVE);
        }

        // Each node divides its children's probabilities by their sum. The
        // entry after the last node is 0, the factor of groups without
        // children.
        let nodes = layout.child_sums.nodes().len();
        scratch.child_sums.resize(nodes + 1, 0.0);
        let inverse_sums = &mut scratch.child_sums[..nodes + 1];
        layout.child_sums.sum_children(probability, &mut inverse_sums[..nodes]);
        inverse_sums.iter_mut().for_each(|sum| *sum = 1.0 / *sum);
        inverse_sums[nodes] = 0.0;

        // Path probabilities top down, the occupations' in category order.
        let slots = layout.paths.slot_count();
        scratch.group_paths.resize(slots, 0.0);
        scratch.group_factors.resize(slots, 0.0);
        let occupations = layout.paths.occupations();
        scratch.occupation_confidence.resize(occupations.len(), 0.0);
        let occupation_path = &mut scratch.occupation_confidence[..occupations.len()];
        layout.paths.compute(simd, probability, inverse_sums, &mut scratch.group_paths, &mut scratch.group_factors, occupation_path);

        // With leaf experts the blend replaces every confidence; without,
        // the path probabilities are the confidences.
        scratch.confidence.resize(count + 1, 0.0);
        if self.parts.leaf_experts.is_empty() {
            let confidence = &mut scratch.confidence[..count + 1];
            layout.paths.scatter_groups(simd, &scratch.group_paths, confidence);
            layout.paths.scatter_occupations(simd, occupation_path, confidence);
        } else {
            self.blend_leaf_experts(simd, scratch);
        }
    }

    /// Replaces occupation confidences by the blend of path probability and
    /// leaf expert softmax, then sums them up into the groups. The leaf
    /// experts are the occupations in category order, which
    /// [`Model::from_parts`] checks.
    #[inline(always)]
    fn blend_leaf_experts(&self, simd: Simd, scratch: &mut Scratch) {
        let count = self.parts.categories.len();
        let occupations = self.layout.paths.occupations();
        let expert_scores = &scratch.scores[count..count + occupations.len()];
        let max_score = lane_max(expert_scores);
        let (path_weight, temperature) = (self.parts.path_weight, self.parts.leaf_temperature);

        // blend = path^w × exp((1 - w) × (score - max) / T), where w is the
        // path weight. The common weight 0.5 takes a square root instead
        // of a logarithm, and vectorises; the two forms differ only by
        // rounding.
        let score_factor = (1.0 - path_weight) / temperature;
        let blended = &mut scratch.occupation_confidence[..occupations.len()];
        if path_weight == 0.5 {
            for (blend, &score) in blended.iter_mut().zip(expert_scores) {
                let path = *blend;
                let value = path.sqrt() * fast_exp((score - max_score) * score_factor);
                *blend = if path < PATH_FLOOR { 0.0 } else { value };
            }
        } else {
            for (blend, &score) in blended.iter_mut().zip(expert_scores) {
                let path = *blend;
                *blend = if path < PATH_FLOOR {
                    0.0
                } else {
                    fast_exp(path_weight * path.ln() + (score - max_score) * score_factor)
                };
            }
        }
        let inverse_total = 1.0 / lane_sum(blended);
        blended.iter_mut().for_each(|blend| *blend *= inverse_total);

        let confidence = &mut scratch.confidence[..count + 1];
        confidence.fill(0.0);
        self.layout.paths.scatter_occupations(simd, blended, confidence);
        self.layout.child_sums.sum_up(confidence, &mut scratch.child_sums);
    }
}

/// Returns the position of the maximum of `values` by [`f32::total_cmp`];
/// ties go to the lower position.
#[inline(always)]
fn best_position(values: &[f32]) -> Option<usize> {
    // One pass in 16 lanes vectorises. Each lane starts with the first
    // chunk and keeps its largest key and the first position that has it.
    const LANES: usize = 16;
    let mut chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut lane_keys = [i32::MIN; LANES];
    let mut lane_positions = [0u32; LANES];
    let full_chunks = chunks.len();
    if let Some(first) = chunks.next() {
        for lane in 0..LANES {
            lane_keys[lane] = total_order_key(first[lane]);
            lane_positions[lane] = lane as u32;
        }
    }
    for (chunk_index, chunk) in chunks.enumerate() {
        let start = ((chunk_index + 1) * LANES) as u32;
        for lane in 0..LANES {
            let key = total_order_key(chunk[lane]);
            let better = key > lane_keys[lane];
            lane_keys[lane] = if better { key } else { lane_keys[lane] };
            lane_positions[lane] = if better { start + lane as u32 } else { lane_positions[lane] };
        }
    }

    // The lanes' winners and the values after the last full chunk: larger
    // keys win, and equal keys go to the lower position.
    let mut best: Option<(i32, u32)> = None;
    let mut consider = |key: i32, position: u32| {
        if best.is_none_or(|(best_key, best_position)| key > best_key || (key == best_key && position < best_position)) {
            best = Some((key, position));
        }
    };
    if full_chunks > 0 {
        for (&key, &position) in lane_keys.iter().zip(&lane_positions) {
            consider(key, position);
        }
    }
    let tail_start = values.len() - tail.len();
    for (offset, &value) in tail.iter().enumerate() {
        consider(total_order_key(value), (tail_start + offset) as u32);
    }
    best.map(|(_, position)| position as usize)
}

/// Sums `values` in eight interleaved lanes, which the compiler keeps in
/// vector registers; the order of additions differs from a plain loop only
/// by rounding.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// Returns the maximum of `values` by [`f32::max`], taken in eight
/// interleaved lanes, or negative infinity for an empty slice.
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(value);
        }
    }
    lanes.iter().copied().fold(rest, f32::max)
}

/// Maps `value` to an integer that orders like [`f32::total_cmp`].
#[inline(always)]
fn total_order_key(value: f32) -> i32 {
    let bits = value.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// Computes `e^x` for `x` in [-87, 88], inlined so that the loops over children and
/// occupations need no call into libm. Outside that range it returns
/// `e^-87` or `e^88` in place of values nearer 0 or infinity. Sigmoids
/// clamp their result to `f32::MIN_POSITIVE` either way. In the blend this
/// changes only occupations whose leaf expert scores more than 52 below
/// the best one (at temperature 0.3 and path weight 0.5), whose confidence
/// stays below 1e-30 unless every occupation is that far below.
///
/// The argument is split as `x = n ln 2 + r` with `|r| <= ln 2 / 2`, and
/// `e^r` is the degree-6 polynomial of the Cephes library's `expf`
/// (Stephen Moshier), whose relative error is below 2e-7 on that interval.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 × 2^23 rounds to the nearest integer
    // without `f32::round`, which is a libm call on baseline x86-64.
    const ROUNDING: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUNDING;
    let n = shifted - ROUNDING;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let polynomial = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = polynomial * r * r + r + 1.0;
    // n is in [-126, 127], so n + 127 is a valid biased exponent of 2^n.
    // The low bits of `shifted` hold n, so the exponent needs no float to
    // integer conversion, which would stop the loops from vectorising.
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDING.to_bits());
    let power = f32::from_bits(n_bits.wrapping_add(127) << 23);
    e_r * power
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use occoder_classification::TopicId;
    use occoder_svm::PlattScaling;
    use occoder_text::FeatureConfig;

    use super::*;
    use crate::{FeatureWeights, ModelCategory, ModelMetadata, ModelParts, TrainingSummary};

    /// Largest difference in any confidence that the optimised coding may
    /// have from the reference.
    const TOLERANCE: f32 = 1e-5;

    /// Small deterministic generator (splitmix64), so the tests need no
    /// random number crate.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        /// Uniform in `[low, high)`.
        fn uniform(&mut self, low: f32, high: f32) -> f32 {
            low + (high - low) * (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// Computes every category's confidence the plain way: every posting
    /// found by binary search, every child's sigmoid, and the blend with
    /// `ln` and `exp` for each occupation.
    fn reference_confidences(model: &Model, record: &Record) -> Vec<f32> {
        let parts = &model.parts;
        let count = parts.categories.len();
        let features = model.featurizer.features(&record.occp_text, &record.tasks_text);

        let mut scores = parts.biases.clone();
        for (feature, value) in features.iter() {
            for (classifier, weight) in parts.weights.postings_by_search(feature) {
                scores[classifier] += value * weight;
            }
        }

        let mut confidence = vec![0.0f32; count];
        let expand = |node: usize, node_confidence: f32, confidence: &mut Vec<f32>| {
            let children = &model.children[node];
            if children.len() == 1 {
                confidence[children[0] as usize] = node_confidence;
                return;
            }
            let probabilities: Vec<f32> = children
                .iter()
                .map(|&child| parts.calibration[node].probability(scores[child as usize]).max(f32::MIN_POSITIVE))
                .collect();
            let sum: f32 = probabilities.iter().sum();
            for (&child, probability) in children.iter().zip(probabilities) {
                confidence[child as usize] = probability * (node_confidence / sum);
            }
        };
        expand(count, 1.0, &mut confidence);
        for node in 0..count {
            if confidence[node] >= PATH_FLOOR && !model.children[node].is_empty() {
                let node_confidence = confidence[node];
                expand(node, node_confidence, &mut confidence);
            }
        }
        if parts.leaf_experts.is_empty() {
            return confidence;
        }

        let expert_scores = &scores[count..];
        let max_score = expert_scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let blended: Vec<f32> = parts
            .leaf_experts
            .iter()
            .zip(expert_scores)
            .map(|(&category, &score)| {
                let path = confidence[category as usize];
                if path < PATH_FLOOR {
                    return 0.0;
                }
                let log_blend =
                    parts.path_weight * path.ln() + (1.0 - parts.path_weight) * (score - max_score) / parts.leaf_temperature;
                log_blend.exp()
            })
            .collect();
        let total: f32 = blended.iter().sum();
        let mut blended_confidence = vec![0.0f32; count];
        for (&category, blend) in parts.leaf_experts.iter().zip(blended) {
            blended_confidence[category as usize] = blend / total;
        }
        for index in (0..count).rev() {
            if let Some(parent) = parts.categories[index].parent {
                blended_confidence[parent as usize] += blended_confidence[index];
            }
        }
        blended_confidence
    }

    /// Builds a random model with the shape of a classification: 4 major
    /// groups, each level splitting into 1 to 4 groups (so some nodes have
    /// one child), one leaf expert per occupation and weights on the
    /// features of a vocabulary of 300 made-up words.
    fn random_model(seed: u64) -> (Model, Vec<String>) {
        random_model_with(seed, true)
    }

    /// Builds a random model as [`random_model`] does, with or without leaf
    /// experts.
    fn random_model_with(seed: u64, leaf_experts: bool) -> (Model, Vec<String>) {
        let mut rng = SplitMix(seed);
        let vocabulary: Vec<String> = (0..300)
            .map(|_| (0..3 + rng.below(6)).map(|_| (b'a' + rng.below(26) as u8) as char).collect())
            .collect();

        let mut categories: Vec<ModelCategory> = Vec::new();
        let mut frontier: Vec<Option<u32>> = vec![None];
        for level in Level::ALL {
            let mut next = Vec::new();
            for &parent in &frontier {
                let children = if level == Level::Major { 4 } else { 1 + rng.below(4) };
                for _ in 0..children {
                    let parent_code = parent.map_or(String::new(), |p: u32| categories[p as usize].code.clone());
                    let digits = if level == Level::Occupation { 2 } else { 1 };
                    let code = format!("{parent_code}{:0digits$}", 1 + categories.len() % 9);
                    categories.push(ModelCategory { code, title: format!("category {}", categories.len()), level, parent });
                    next.push(Some(categories.len() as u32 - 1));
                }
            }
            frontier = next;
        }
        // Parents come before children, as Model::from_parts requires, but
        // the order above is level by level; no reordering is needed.
        let count = categories.len();
        let leaf_experts: Vec<u32> = (0..count as u32)
            .filter(|&index| leaf_experts && categories[index as usize].level == Level::Occupation)
            .collect();
        let classifiers = count + leaf_experts.len();

        let featurizer = occoder_text::Featurizer::new(FeatureConfig::default());
        let mut triples = Vec::new();
        for word in &vocabulary {
            let features = featurizer.features(word, word);
            for (feature, _) in features.iter() {
                for _ in 0..1 + rng.below(40) {
                    triples.push((feature, rng.below(classifiers) as u16, rng.uniform(-2.0, 2.0)));
                }
            }
        }
        triples.sort_by_key(|&(feature, classifier, _)| (feature, classifier));
        triples.dedup_by_key(|&mut (feature, classifier, _)| (feature, classifier));

        let parts = ModelParts {
            metadata: ModelMetadata::new_hsvm(TopicId::Osca, 1, chrono::Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).unwrap()),
            summary: TrainingSummary::default(),
            features: FeatureConfig::default(),
            categories,
            biases: (0..classifiers).map(|_| rng.uniform(-1.0, 0.5)).collect(),
            weights: FeatureWeights::build(triples),
            calibration: (0..=count)
                .map(|_| PlattScaling { a: rng.uniform(-6.0, -0.5), b: rng.uniform(-1.0, 1.0) })
                .collect(),
            leaf_experts,
            leaf_temperature: 0.3,
            path_weight: 0.5,
            thresholds: [0.5, 0.45, 0.4, 0.35, 0.3],
            vocabulary: vocabulary.clone(),
        };
        (Model::from_parts(parts).expect("the random model is consistent"), vocabulary)
    }

    /// Builds records of 1 to 4 title words and 0 to 8 task words, mostly
    /// from `vocabulary`, with some unknown and misspelt words.
    fn random_records(vocabulary: &[String], count: usize, seed: u64) -> Vec<Record> {
        let mut rng = SplitMix(seed);
        let words = |rng: &mut SplitMix, max: usize| -> String {
            let n = rng.below(max + 1);
            let mut text = Vec::with_capacity(n);
            for _ in 0..n {
                let mut word = vocabulary[rng.below(vocabulary.len())].clone();
                match rng.below(10) {
                    0 => word = "unseen".into(),
                    1 if word.len() > 3 => {
                        word.remove(rng.below(word.len()));
                    }
                    2 => word.push('s'),
                    _ => {}
                }
                text.push(word);
            }
            text.join(" ")
        };
        (0..count)
            .map(|_| {
                let occp_text = format!("{} {}", vocabulary[rng.below(vocabulary.len())], words(&mut rng, 3));
                Record { occp_text, tasks_text: words(&mut rng, 8) }
            })
            .collect()
    }

    /// Checks that `model` gives the reference confidences and the same
    /// codes for every record.
    fn assert_matches_reference(model: &Model, records: &[Record]) {
        let mut scratch = Scratch::default();
        let options = CodeOptions { suggestions: 5 };
        for record in records {
            let expected = reference_confidences(model, record);
            model.compute_confidences(record, &mut scratch);
            let actual = &scratch.confidence[..expected.len()];
            assert_eq!(scratch.confidence.len(), expected.len() + 1, "one confidence per category and the root");
            for (index, (a, e)) in actual.iter().zip(&expected).enumerate() {
                assert!((a - e).abs() <= TOLERANCE, "{record:?}: category {index} has {a}, reference {e}");
            }

            let coding = model.code_with(record, &options, &mut scratch);
            let reference = model.decide(&expected, &options);
            assert_eq!(coding.status, reference.status, "{record:?}");
            assert_eq!(coding.level, reference.level, "{record:?}");
            let codes = |coded: &[CodedRecord]| coded.iter().map(|c| c.code_category.clone()).collect::<Vec<_>>();
            assert_eq!(codes(&coding.result), codes(&reference.result), "{record:?}");
            assert_eq!(codes(&coding.suggestions), codes(&reference.suggestions), "{record:?}");
        }
    }

    /// Scoring and the tree pass give bit-identical confidences with every
    /// instruction set the processor supports.
    #[test]
    fn every_instruction_set_gives_identical_confidences() {
        let (model, vocabulary) = random_model(5);
        let mut scratch = Scratch::default();
        let simds = Simd::supported();
        eprintln!("instruction sets compared: {simds:?}");
        for record in random_records(&vocabulary, 500, 105) {
            model.featurizer.extract(&record.occp_text, &record.tasks_text, &mut scratch.text, &mut scratch.features);
            model.score_and_walk(Simd::Baseline, &mut scratch);
            let baseline = scratch.confidence.clone();

            for &simd in &simds {
                model.score_and_walk(simd, &mut scratch);

                assert_eq!(scratch.confidence, baseline, "{simd:?}, {record:?}");
            }
        }
    }

    #[test]
    fn simd_setting_parses_names() {
        assert_eq!(Simd::parse("baseline"), Ok(Simd::Baseline));
        assert_eq!(Simd::parse(" AVX2 "), Ok(Simd::Avx2));
        assert_eq!(Simd::parse("avx512"), Ok(Simd::Avx512));
        for simd in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
            assert_eq!(Simd::parse(simd.name()), Ok(simd));
        }
    }

    #[test]
    fn simd_setting_rejects_unknown_names() {
        for value in ["", "sse2", "avx-512", "avx"] {
            let error = Simd::parse(value).expect_err("not an instruction set");

            assert!(error.to_string().contains("use baseline, avx2 or avx512"), "{value:?}: {error}");
        }
    }

    #[test]
    fn fast_exp_matches_libm() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (fast, libm) = (fast_exp(x), x.exp());
            assert!(((fast - libm) / libm).abs() < 5e-7, "exp({x}) = {fast}, libm {libm}");
            x += 0.0137;
        }
    }

    #[test]
    fn fast_exp_saturates_outside_range() {
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert_eq!(fast_exp(1000.0), fast_exp(88.0));
        assert!(fast_exp(88.0).is_finite());
        assert!(fast_exp(-87.0) > 0.0);
    }

    /// The vectorised search for the best occupation agrees with a plain
    /// scan, ties and the smallest keys included, and so does the search
    /// for the top occupations with a sort.
    #[test]
    fn occupation_searches_match_plain_scan() {
        let plain_best = |values: &[f32]| {
            (0..values.len()).fold(None, |best: Option<usize>, position| match best {
                Some(best) if values[position].total_cmp(&values[best]).is_le() => Some(best),
                _ => Some(position),
            })
        };
        let plain_top = |values: &[f32], count: usize| {
            let mut positions: Vec<usize> = (0..values.len()).collect();
            positions.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
            positions.truncate(count);
            positions
        };
        let (model, _) = random_model(9);
        let occupations = model.layout.paths.occupations();
        let count = occupations.len();
        assert!(count > 16, "{count} occupations fill no 16-lane chunk");
        assert_ne!(count % 16, 0, "{count} occupations leave no tail after the 16-lane chunks");

        let mut rng = SplitMix(99);
        for length in 0..40 {
            let values: Vec<f32> = (0..length).map(|_| rng.below(3) as f32 / 4.0).collect();

            assert_eq!(model.best_occupation(&values), plain_best(&values), "{length} values");
        }
        for trial in 0..500 {
            let values: Vec<f32> = match trial % 4 {
                0 => vec![0.0; count],
                1 => vec![f32::NEG_INFINITY; count],
                2 => (0..count).map(|_| rng.below(3) as f32 / 4.0).collect(),
                _ => (0..count).map(|_| rng.uniform(0.0, 1.0)).collect(),
            };
            let mut confidence = vec![0.0; model.categories().len()];
            for (&category, &value) in occupations.iter().zip(&values) {
                confidence[category as usize] = value;
            }

            assert_eq!(model.best_occupation(&values), plain_best(&values), "trial {trial}");
            for requested in [1, 5, 16] {
                let top: Vec<String> =
                    model.top_occupations_with(&confidence, &values, requested).into_iter().map(|c| c.code_category).collect();
                let expected: Vec<String> = plain_top(&values, requested)
                    .into_iter()
                    .map(|position| model.categories()[occupations[position] as usize].code.clone())
                    .collect();
                assert_eq!(top, expected, "trial {trial}, {requested} requested");
            }
        }
    }

    #[test]
    fn total_order_key_orders_like_total_cmp() {
        let values = [f32::NEG_INFINITY, -1.0, -0.0, 0.0, f32::MIN_POSITIVE, 0.5, 1.0, f32::INFINITY, f32::NAN];
        for a in values {
            for b in values {
                assert_eq!(total_order_key(a).cmp(&total_order_key(b)), a.total_cmp(&b), "{a} against {b}");
            }
        }
    }

    #[test]
    fn models_without_experts_match_reference() {
        let (model, vocabulary) = random_model_with(4, false);
        assert!(model.parts.leaf_experts.is_empty());
        let records = random_records(&vocabulary, 1_000, 104);

        assert_matches_reference(&model, &records);
    }

    #[test]
    fn random_models_match_reference() {
        for seed in 1..=3 {
            let (model, vocabulary) = random_model(seed);
            let records = random_records(&vocabulary, 2_000, seed + 100);
            assert_matches_reference(&model, &records);
        }
    }

    /// The shipped OSCA model, when present, against records made of its
    /// category titles and vocabulary.
    #[test]
    fn shipped_model_matches_reference() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/osca-2024-v1.occm");
        if !path.exists() {
            eprintln!("skipped: {} is missing", path.display());
            return;
        }
        let model = crate::file::load(&path).expect("the shipped model loads");
        let vocabulary = &model.parts().vocabulary;
        let mut records: Vec<Record> = model
            .categories()
            .iter()
            .map(|category| Record { occp_text: category.title.clone(), tasks_text: String::new() })
            .collect();
        records.extend(random_records(vocabulary, 3_000, 7));
        assert_matches_reference(&model, &records);
    }
}
