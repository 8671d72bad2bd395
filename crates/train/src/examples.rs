//! The training-set builder: labelled records generated from the
//! classification's own text.
//!
//! No coded survey answers are public, so examples come from each
//! occupation's titles, tasks and lead statement, in the shapes people
//! answer in:
//!
//! 1. every title alone (`occp_text` = title, `tasks_text` empty), since
//!    many people give only a title, plus one copy with a seeded typo;
//! 2. a title with a fragment of one task (3 to 8 consecutive words), for
//!    each task;
//! 3. the principal title with the start of the lead statement;
//! 4. a task fragment alone, for one task in three;
//! 5. group titles (minor and unit groups), labelled with the group code;
//! 6. for OSCA's supplementary codes, each phrase alone and paired with a
//!    task phrase.
//!
//! [`split_titles`] holds out a share of the alternative titles,
//! specialisations and supplementary phrases, so that validation measures
//! coding of titles that training never saw. Everything is driven by one
//! seed, so the same seed gives the same examples.

use std::collections::HashSet;

use occoder_classification::{Classification, Level, OccupationText, SupplementaryText};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::LabelledRecord;

/// Longest text a generated example may have, the bulk coding limit.
const MAX_EXAMPLE_LENGTH: usize = 300;

/// Titles and phrases set aside for validation.
#[derive(Debug, Clone, Default)]
pub struct HeldOut {
    /// Lowercased held-out titles and phrases, for filtering.
    titles: HashSet<String>,
}

impl HeldOut {
    pub fn contains(&self, title: &str) -> bool {
        self.titles.contains(&title.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.titles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.titles.is_empty()
    }

    /// Splits the held-out titles into two halves at random (seeded), for
    /// example one to choose thresholds on and one to report on.
    pub fn halve(&self, seed: u64) -> (HeldOut, HeldOut) {
        let mut titles: Vec<&String> = self.titles.iter().collect();
        titles.sort();
        titles.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x4a1f));
        let middle = titles.len() / 2;
        let half = |part: &[&String]| HeldOut { titles: part.iter().map(|t| (*t).clone()).collect() };
        (half(&titles[..middle]), half(&titles[middle..]))
    }
}

/// Chooses about `fraction` of the non-principal titles (and supplementary
/// phrases) to hold out. The principal title of every occupation stays in
/// training, and a title that also names another occupation stays too.
pub fn split_titles(classification: &Classification, fraction: f64, seed: u64) -> HeldOut {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f71_71e5);
    let mut all_titles: Vec<String> = Vec::new();
    for occupation in classification.occupations() {
        all_titles.extend(occupation.titles().map(str::to_ascii_lowercase));
    }
    let mut seen = HashSet::new();
    let repeated: HashSet<String> = all_titles.iter().filter(|t| !seen.insert((*t).clone())).cloned().collect();

    let mut titles = HashSet::new();
    for occupation in classification.occupations() {
        let principal = occupation.title.to_ascii_lowercase();
        for title in occupation.titles().skip(1) {
            let lower = title.to_ascii_lowercase();
            if lower != principal && !repeated.contains(&lower) && rng.random_bool(fraction) {
                titles.insert(lower);
            }
        }
    }
    for supplementary in classification.supplementary() {
        for phrase in &supplementary.occupation_phrases {
            if rng.random_bool(fraction) {
                titles.insert(phrase.to_ascii_lowercase());
            }
        }
    }
    HeldOut { titles }
}

/// Builds training examples from the classification, leaving out the
/// held-out titles.
pub fn build_training_examples(classification: &Classification, held_out: &HeldOut, seed: u64) -> Vec<LabelledRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut examples = Vec::new();

    for occupation in classification.occupations() {
        let titles: Vec<&str> = occupation.titles().filter(|t| !held_out.contains(t)).collect();
        add_occupation_examples(occupation, &titles, &mut rng, &mut examples);
    }

    for level in [Level::Minor, Level::Unit] {
        for group in classification.at_level(level).filter(|g| !g.is_supplementary()) {
            examples.push(LabelledRecord::new(group.title.clone(), "", group.code.clone()));
        }
    }

    for supplementary in classification.supplementary() {
        let phrases: Vec<&str> =
            supplementary.occupation_phrases.iter().map(String::as_str).filter(|p| !held_out.contains(p)).collect();
        add_supplementary_examples(supplementary, &phrases, &mut rng, &mut examples);
    }
    examples
}

/// Builds validation examples from the held-out titles only: each title
/// alone and with a fragment of one of its occupation's tasks.
pub fn build_validation_examples(classification: &Classification, held_out: &HeldOut, seed: u64) -> Vec<LabelledRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0a11_da7e);
    let mut examples = Vec::new();

    for occupation in classification.occupations() {
        for title in occupation.titles().filter(|t| held_out.contains(t)) {
            examples.push(LabelledRecord::new(title, "", occupation.code.clone()));
            if let Some(task) = occupation.tasks.choose(&mut rng) {
                let fragment = task_fragment(task, &mut rng);
                examples.push(LabelledRecord::new(title, fragment, occupation.code.clone()));
            }
        }
    }

    for supplementary in classification.supplementary() {
        for phrase in supplementary.occupation_phrases.iter().filter(|p| held_out.contains(p)) {
            let task = supplementary.task_phrases.choose(&mut rng).map(String::as_str).unwrap_or("");
            examples.push(LabelledRecord::new(phrase.clone(), "", supplementary.code.clone()));
            examples.push(LabelledRecord::new(phrase.clone(), task, supplementary.code.clone()));
        }
    }
    examples
}

fn add_occupation_examples(
    occupation: &OccupationText,
    titles: &[&str],
    rng: &mut ChaCha8Rng,
    examples: &mut Vec<LabelledRecord>,
) {
    let code = &occupation.code;
    for &title in titles {
        examples.push(LabelledRecord::new(title, "", code.clone()));
        if let Some(misspelt) = with_typo(title, rng) {
            examples.push(LabelledRecord::new(misspelt, "", code.clone()));
        }
    }

    for task in &occupation.tasks {
        let title = titles.choose(rng).copied().unwrap_or(occupation.title.as_str());
        examples.push(LabelledRecord::new(title, task_fragment(task, rng), code.clone()));
        if rng.random_bool(1.0 / 3.0) {
            examples.push(LabelledRecord::new("", task_fragment(task, rng), code.clone()));
        }
    }

    if !occupation.lead_statement.is_empty() {
        let room = MAX_EXAMPLE_LENGTH.saturating_sub(occupation.title.len());
        examples.push(LabelledRecord::new(
            occupation.title.clone(),
            truncate_at_word(&occupation.lead_statement, room.min(120)),
            code.clone(),
        ));
    }
}

fn add_supplementary_examples(
    supplementary: &SupplementaryText,
    phrases: &[&str],
    rng: &mut ChaCha8Rng,
    examples: &mut Vec<LabelledRecord>,
) {
    for &phrase in phrases {
        examples.push(LabelledRecord::new(phrase, "", supplementary.code.clone()));
        for _ in 0..2 {
            let task = supplementary.task_phrases.choose(rng).map(String::as_str).unwrap_or("");
            examples.push(LabelledRecord::new(phrase, task, supplementary.code.clone()));
        }
    }
}

/// A run of 3 to 8 consecutive words of `task`, lowercased as survey
/// answers often are.
fn task_fragment(task: &str, rng: &mut ChaCha8Rng) -> String {
    let words: Vec<&str> = task.split_whitespace().collect();
    if words.len() <= 3 {
        return task.to_ascii_lowercase();
    }
    let length = rng.random_range(3..=8.min(words.len()));
    let start = rng.random_range(0..=words.len() - length);
    words[start..start + length].join(" ").trim_end_matches([',', ';', '.']).to_ascii_lowercase()
}

/// The title with one letter deleted, doubled or swapped with its
/// neighbour in one word of at least 5 letters, or `None` if no word is
/// that long.
fn with_typo(title: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let words: Vec<&str> = title.split(' ').collect();
    let mut candidates: Vec<usize> = (0..words.len()).filter(|&i| words[i].len() >= 5).collect();
    candidates.shuffle(rng);
    let &chosen = candidates.first()?;

    let mut letters: Vec<char> = words[chosen].chars().collect();
    let position = rng.random_range(1..letters.len() - 1);
    match rng.random_range(0..3) {
        0 => {
            letters.remove(position);
        }
        1 => letters.insert(position, letters[position]),
        _ => letters.swap(position, position + 1),
    }

    let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    out[chosen] = letters.into_iter().collect();
    Some(out.join(" "))
}

fn truncate_at_word(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let cut = text[..max].rfind(' ').unwrap_or(max);
    text[..cut].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use occoder_classification::TopicId;

    fn osca() -> Classification {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
        Classification::load(TopicId::Osca, &data).unwrap()
    }

    #[test]
    fn builder_is_deterministic() {
        let osca = osca();
        let held_out = split_titles(&osca, 0.2, 1);

        assert_eq!(build_training_examples(&osca, &held_out, 1), build_training_examples(&osca, &held_out, 1));
        assert_ne!(build_training_examples(&osca, &held_out, 1), build_training_examples(&osca, &held_out, 2));
    }

    #[test]
    fn held_out_titles_never_reach_training() {
        let osca = osca();
        let held_out = split_titles(&osca, 0.2, 3);
        let training = build_training_examples(&osca, &held_out, 3);
        let validation = build_validation_examples(&osca, &held_out, 3);

        assert!(held_out.len() > 200, "held out {}", held_out.len());
        assert!(!validation.is_empty());
        for example in &training {
            assert!(!held_out.contains(&example.occp_text), "{:?} leaked into training", example.occp_text);
        }
        for example in &validation {
            assert!(held_out.contains(&example.occp_text), "{:?} is not held out", example.occp_text);
        }
    }

    #[test]
    fn examples_fit_bulk_limit_and_cover_supplementary_codes() {
        let osca = osca();
        let training = build_training_examples(&osca, &HeldOut::default(), 5);

        assert!(training.iter().all(|e| e.occp_text.len() + e.tasks_text.len() <= MAX_EXAMPLE_LENGTH));
        assert!(training.iter().any(|e| e.code == "099960"));
        assert!(training.iter().any(|e| e.code.len() == 4));
    }

    #[test]
    fn typo_changes_one_long_word() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let misspelt = with_typo("Software Engineer", &mut rng).unwrap();

        assert_ne!(misspelt, "Software Engineer");
        assert!(with_typo("Cook", &mut rng).is_none());
    }
}
