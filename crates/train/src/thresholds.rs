//! Choosing each level's confidence threshold on a validation split.
//!
//! A record is coded at the deepest level whose best code clears that
//! level's threshold, so the levels are chosen in that order: first the
//! 6-digit threshold on all validation records, then the 4-digit threshold
//! on the records the 6-digit threshold left uncoded, and so on. At each
//! level the threshold is the lowest confidence at which the records coded
//! at that level still reach the target precision, which codes as many
//! records as the target allows.

use occoder_classification::Level;
use occoder_model::Model;
use occoder_text::Record;
use rayon::prelude::*;

use crate::LabelledRecord;
use crate::hsvm::NEVER;

/// The best code of each level for one validation record, and whether it
/// matches the record's label.
pub struct LevelOutcome {
    /// Confidence of the level's best code, or `None` when the level has
    /// no returnable code.
    pub confidence: [Option<f32>; 5],
    /// Whether that code agrees with the label at that level; `None` when
    /// the label is coarser than the level.
    pub correct: [Option<bool>; 5],
}

/// Scores every validation record with `model`.
pub fn level_outcomes(model: &Model, validation: &[LabelledRecord]) -> Vec<LevelOutcome> {
    validation
        .par_iter()
        .map(|example| {
            let confidences = model.confidences(&Record::new(example.occp_text.clone(), example.tasks_text.clone()));
            let best = model.best_per_level(&confidences);
            let mut outcome = LevelOutcome { confidence: [None; 5], correct: [None; 5] };
            for level in Level::ALL {
                let Some(index) = best[level.index()] else { continue };
                let code = &model.categories()[index].code;
                outcome.confidence[level.index()] = Some(confidences[index]);
                outcome.correct[level.index()] = level.prefix_of(example.code.trim()).map(|truth| truth == code);
            }
            outcome
        })
        .collect()
}

/// Chooses thresholds from 1-digit to 6-digit so that, on `outcomes`, the
/// records coded at each level have at least `target_precision` precision.
///
/// A level gets a threshold only where at least `min_support` records
/// reach it; otherwise it gets [`NEVER`] and codes nothing.
pub fn choose_thresholds(outcomes: &[LevelOutcome], target_precision: f64, min_support: usize) -> [f32; 5] {
    let mut thresholds = [NEVER; 5];
    let mut uncoded: Vec<&LevelOutcome> = outcomes.iter().collect();

    for level in Level::ALL.into_iter().rev() {
        let l = level.index();
        let mut candidates: Vec<(f32, bool)> = uncoded
            .iter()
            .filter_map(|outcome| Some((outcome.confidence[l]?, outcome.correct[l]?)))
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));

        let mut correct = 0usize;
        let mut chosen = None;
        for (position, &(confidence, is_correct)) in candidates.iter().enumerate() {
            correct += is_correct as usize;
            let coded = position + 1;
            let next_differs = candidates.get(position + 1).is_none_or(|next| next.0 < confidence);
            if coded >= min_support && next_differs && correct as f64 >= target_precision * coded as f64 {
                chosen = Some(confidence);
            }
        }

        if let Some(threshold) = chosen {
            thresholds[l] = threshold;
            uncoded.retain(|outcome| outcome.confidence[l].is_none_or(|c| c < threshold));
        }
    }
    thresholds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(six: (f32, bool), four: (f32, bool)) -> LevelOutcome {
        LevelOutcome {
            confidence: [Some(0.99), Some(0.98), Some(0.97), Some(four.0), Some(six.0)],
            correct: [Some(true), Some(true), Some(true), Some(four.1), Some(six.1)],
        }
    }

    #[test]
    fn threshold_stops_where_precision_drops() {
        let mut outcomes: Vec<LevelOutcome> = (0..20).map(|i| outcome((0.9 - i as f32 * 0.01, true), (0.95, true))).collect();
        outcomes.extend((0..10).map(|i| outcome((0.5 - i as f32 * 0.01, false), (0.9, true))));
        let thresholds = choose_thresholds(&outcomes, 0.97, 5);

        assert!((thresholds[4] - 0.71).abs() < 1e-6, "6-digit threshold {}", thresholds[4]);
    }

    #[test]
    fn coarser_levels_see_only_uncoded_records() {
        let mut outcomes: Vec<LevelOutcome> = (0..20).map(|_| outcome((0.9, true), (0.95, true))).collect();
        outcomes.extend((0..20).map(|_| outcome((0.2, false), (0.6, true))));
        let thresholds = choose_thresholds(&outcomes, 0.95, 5);

        assert_eq!(thresholds[4], 0.9);
        assert_eq!(thresholds[3], 0.6);
    }

    #[test]
    fn unreachable_precision_codes_nothing() {
        let outcomes: Vec<LevelOutcome> = (0..20).map(|i| outcome((0.9, i % 2 == 0), (0.9, i % 3 == 0))).collect();
        let thresholds = choose_thresholds(&outcomes, 0.95, 5);

        assert_eq!(thresholds[4], NEVER);
        assert_eq!(thresholds[3], NEVER);
    }
}
