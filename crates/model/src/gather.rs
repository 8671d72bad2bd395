//! Indexed loops of the tree pass: reads through index arrays (gathers)
//! and writes through them (scatters). The compiler leaves such loops
//! scalar, so on processors with AVX-512 they run 16 lanes at a time with
//! gather and scatter instructions. Both forms do the same multiplications
//! in the same order, so their results are identical.
//!
//! Indices have 16 bits, which [`crate::Model::from_parts`] allows for
//! every category. Every function is unsafe because it reads and writes
//! without bounds checks: the callers build the index arrays once per
//! model and check them against the buffers' lengths.

use crate::infer::{PATH_FLOOR, Simd};

/// Computes one depth of the path probabilities. For each `k`: `paths[k] =
/// probability[categories[k]] × parent_factors[parent_slots[k]]`, and
/// `factors[k]` is `paths[k] × inverse_sums[inverse_slots[k]]`, or 0 when
/// the path is below [`PATH_FLOOR`].
///
/// # Safety
/// - The processor supports `simd`.
/// - `paths` and `factors` have one length, and `categories`,
///   `parent_slots` and `inverse_slots` are at least that long.
/// - Every index is below the length of the slice it indexes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn depth_paths(
    simd: Simd,
    probability: &[f32],
    parent_factors: &[f32],
    inverse_sums: &[f32],
    categories: &[u16],
    parent_slots: &[u16],
    inverse_slots: &[u16],
    paths: &mut [f32],
    factors: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: the caller's guarantees are this function's.
        unsafe {
            avx512::depth_paths(probability, parent_factors, inverse_sums, categories, parent_slots, inverse_slots, paths, factors)
        };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;

    for k in 0..paths.len() {
        // SAFETY: the caller guarantees every index in bounds.
        unsafe {
            let path = read(probability, categories[k]) * read(parent_factors, parent_slots[k]);
            paths[k] = path;
            factors[k] = if path >= PATH_FLOOR { path * read(inverse_sums, inverse_slots[k]) } else { 0.0 };
        }
    }
}

/// Multiplies pairs of gathered values: `out[k] = a[a_indices[k]] ×
/// b[b_indices[k]]` for each `k`.
///
/// # Safety
/// - The processor supports `simd`.
/// - Both index arrays are at least as long as `out`.
/// - Every index is below the length of the slice it indexes.
#[inline(always)]
pub(crate) unsafe fn gather_products(simd: Simd, a: &[f32], a_indices: &[u16], b: &[f32], b_indices: &[u16], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: the caller's guarantees are this function's.
        unsafe { avx512::gather_products(a, a_indices, b, b_indices, out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;

    for k in 0..out.len() {
        // SAFETY: the caller guarantees every index in bounds.
        out[k] = unsafe { read(a, a_indices[k]) * read(b, b_indices[k]) };
    }
}

/// Writes each value to the entry its index names: `out[indices[k]] =
/// values[k]` for each `k`.
///
/// # Safety
/// - The processor supports `simd`.
/// - `indices` is at least as long as `values`.
/// - No index occurs twice, and every index is below `out.len()`.
#[inline(always)]
pub(crate) unsafe fn scatter(simd: Simd, values: &[f32], indices: &[u16], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: the caller's guarantees are this function's.
        unsafe { avx512::scatter(values, indices, out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;

    for k in 0..values.len() {
        // SAFETY: the caller guarantees every index in bounds.
        unsafe { *out.get_unchecked_mut(indices[k] as usize) = values[k] };
    }
}

/// Reads `values[index]` without a bounds check.
///
/// # Safety
/// `index` is below `values.len()`.
#[inline(always)]
unsafe fn read(values: &[f32], index: u16) -> f32 {
    debug_assert!((index as usize) < values.len(), "index {index} of {} values", values.len());
    // SAFETY: the caller guarantees that `index` is in bounds.
    unsafe { *values.get_unchecked(index as usize) }
}

/// The AVX-512 forms, 16 lanes at a time with a mask for the last chunk.
/// Each has the contract of the function of the same name above.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::infer::PATH_FLOOR;

    const LANES: usize = 16;

    /// Returns the mask of the lanes that a chunk with `remaining` entries
    /// left fills, at most 16.
    #[inline(always)]
    fn lanes(remaining: usize) -> __mmask16 {
        if remaining >= LANES { u16::MAX } else { (1u16 << remaining) - 1 }
    }

    /// Loads the indices of the lanes of `mask` from `start`, widened to
    /// 32 bits.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn load_indices(indices: &[u16], start: usize, mask: __mmask16) -> __m512i {
        // SAFETY: the mask limits the load to entries of `indices`.
        unsafe { _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, indices.as_ptr().add(start).cast())) }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(super) unsafe fn depth_paths(
        probability: &[f32],
        parent_factors: &[f32],
        inverse_sums: &[f32],
        categories: &[u16],
        parent_slots: &[u16],
        inverse_slots: &[u16],
        paths: &mut [f32],
        factors: &mut [f32],
    ) {
        let floor = _mm512_set1_ps(PATH_FLOOR);
        let zero = _mm512_setzero_ps();
        let mut start = 0;
        while start < paths.len() {
            let mask = lanes(paths.len() - start);
            // SAFETY: masked lanes stay within the slices, and the caller
            // guarantees every index in bounds.
            unsafe {
                let category = load_indices(categories, start, mask);
                let parent = load_indices(parent_slots, start, mask);
                let inverse_slot = load_indices(inverse_slots, start, mask);
                let own = _mm512_mask_i32gather_ps::<4>(zero, mask, category, probability.as_ptr());
                let parent_factor = _mm512_mask_i32gather_ps::<4>(zero, mask, parent, parent_factors.as_ptr());
                let path = _mm512_mul_ps(own, parent_factor);
                _mm512_mask_storeu_ps(paths.as_mut_ptr().add(start), mask, path);

                let inverse = _mm512_mask_i32gather_ps::<4>(zero, mask, inverse_slot, inverse_sums.as_ptr());
                let above_floor = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(path, floor);
                let factor = _mm512_maskz_mul_ps(above_floor, path, inverse);
                _mm512_mask_storeu_ps(factors.as_mut_ptr().add(start), mask, factor);
            }
            start += LANES;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(super) unsafe fn gather_products(a: &[f32], a_indices: &[u16], b: &[f32], b_indices: &[u16], out: &mut [f32]) {
        let zero = _mm512_setzero_ps();
        let mut start = 0;
        while start < out.len() {
            let mask = lanes(out.len() - start);
            // SAFETY: as in `depth_paths`.
            unsafe {
                let a_values = _mm512_mask_i32gather_ps::<4>(zero, mask, load_indices(a_indices, start, mask), a.as_ptr());
                let b_values = _mm512_mask_i32gather_ps::<4>(zero, mask, load_indices(b_indices, start, mask), b.as_ptr());
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(start), mask, _mm512_mul_ps(a_values, b_values));
            }
            start += LANES;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(super) unsafe fn scatter(values: &[f32], indices: &[u16], out: &mut [f32]) {
        let mut start = 0;
        while start < values.len() {
            let mask = lanes(values.len() - start);
            // SAFETY: as in `depth_paths`; the caller guarantees distinct
            // indices, so no lane overwrites another.
            unsafe {
                let chunk = _mm512_maskz_loadu_ps(mask, values.as_ptr().add(start));
                _mm512_mask_i32scatter_ps::<4>(out.as_mut_ptr(), mask, load_indices(indices, start, mask), chunk);
            }
            start += LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every supported instruction set against the plain loops, for
    /// lengths with and without a partial last chunk.
    #[test]
    fn every_instruction_set_matches_plain_loops() {
        let values: Vec<f32> = (0..300).map(|k| (k as f32 * 0.37).sin().abs() + 1e-7 * (k % 3) as f32).collect();
        let reversed: Vec<u16> = (0..300u16).rev().collect();
        let strided: Vec<u16> = (0..300u16).map(|k| (k * 7) % 300).collect();

        for length in [0, 1, 15, 16, 17, 40, 300] {
            let mut expected_paths = vec![0.0; length];
            let mut expected_factors = vec![0.0; length];
            let mut expected_products = vec![0.0; length];
            let mut expected_scatter = vec![-1.0; 300];
            for k in 0..length {
                let path = values[reversed[k] as usize] * values[strided[k] as usize];
                expected_paths[k] = path;
                expected_factors[k] = if path >= PATH_FLOOR { path * values[k] } else { 0.0 };
                expected_products[k] = path;
                expected_scatter[strided[k] as usize] = values[k];
            }
            let identity: Vec<u16> = (0..300u16).collect();

            for simd in Simd::supported() {
                let (mut paths, mut factors, mut products) = (vec![9.0; length], vec![9.0; length], vec![9.0; length]);
                let mut scattered = vec![-1.0; 300];
                // SAFETY: every index is below 300, the length of every
                // indexed slice, and `strided` has no repeats.
                unsafe {
                    simd.run(|| {
                        depth_paths(simd, &values, &values, &values, &reversed, &strided, &identity, &mut paths, &mut factors);
                        gather_products(simd, &values, &reversed, &values, &strided, &mut products);
                        scatter(simd, &values[..length], &strided, &mut scattered);
                    })
                };

                assert_eq!(paths, expected_paths, "{simd:?}, {length} entries");
                assert_eq!(factors, expected_factors, "{simd:?}, {length} entries");
                assert_eq!(products, expected_products, "{simd:?}, {length} entries");
                assert_eq!(scattered, expected_scatter, "{simd:?}, {length} entries");
            }
        }
    }
}
