//! The occupation classifications that occoder codes to: OSCA 2024 and
//! ANZSCO 2022.
//!
//! A [`Classification`] is a tree of [`Category`] values with five levels
//! (1-digit major group, 2-digit sub-major group, 3-digit minor group,
//! 4-digit unit group and 6-digit occupation), plus the descriptive text of
//! each occupation ([`OccupationText`]) that the training-set builder turns
//! into examples. [`Classification::load`] reads the files that ship in the
//! repository's `data/` folder; their formats are described in
//! `data/README.md`.
//!
//! OSCA 2024 also has supplementary codes (`0999xx`) for answers that are not
//! occupations, such as "retired" or "unemployed". They sit under a group
//! `0` → `09` → `099` → `0999` so that the tree keeps five levels, and
//! [`Category::is_supplementary`] marks them.

mod load;
mod topic;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use topic::{Topic, TopicId, UnknownTopic};

/// Depth of a category in the classification, named after the number of
/// digits in its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Level {
    /// 1-digit major group.
    Major,
    /// 2-digit sub-major group.
    SubMajor,
    /// 3-digit minor group.
    Minor,
    /// 4-digit unit group.
    Unit,
    /// 6-digit occupation.
    Occupation,
}

impl Level {
    /// All levels from the root down.
    pub const ALL: [Level; 5] = [Level::Major, Level::SubMajor, Level::Minor, Level::Unit, Level::Occupation];

    /// Number of digits in a code at this level.
    pub fn digits(self) -> usize {
        match self {
            Level::Major => 1,
            Level::SubMajor => 2,
            Level::Minor => 3,
            Level::Unit => 4,
            Level::Occupation => 6,
        }
    }

    /// Position of this level in [`Level::ALL`], 0 for major groups.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Level of a code with `digits` digits, if any.
    pub fn from_digits(digits: usize) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.digits() == digits)
    }

    /// Level of a code, checking that it is all ASCII digits.
    pub fn of_code(code: &str) -> Option<Level> {
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Level::from_digits(code.len())
    }

    /// Returns the code's ancestor at this level, or `None` if the code is shorter.
    pub fn prefix_of(self, code: &str) -> Option<&str> {
        code.get(..self.digits())
    }

    /// Name used in reports: "1-digit", "2-digit", ...
    pub fn label(self) -> &'static str {
        match self {
            Level::Major => "1-digit",
            Level::SubMajor => "2-digit",
            Level::Minor => "3-digit",
            Level::Unit => "4-digit",
            Level::Occupation => "6-digit",
        }
    }
}

/// One node of the classification tree: a group or an occupation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Category {
    /// Classification code, 1 to 6 digits.
    pub code: String,
    /// Principal title.
    pub title: String,
    pub level: Level,
    /// Index of the parent category; `None` for major groups.
    pub parent: Option<u32>,
    /// Indices of the child categories, in code order.
    pub children: Vec<u32>,
}

impl Category {
    /// Returns whether this is an OSCA supplementary code (`0`, `09`, `099`, `0999`
    /// or `0999xx`) rather than part of the classification proper.
    pub fn is_supplementary(&self) -> bool {
        self.code.starts_with('0')
    }
}

/// Descriptive text of one occupation, the raw material of training examples.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OccupationText {
    /// 6-digit occupation code.
    pub code: String,
    /// Principal title.
    pub title: String,
    /// Alternative titles. For ANZSCO these include the OSCA 2024 titles of
    /// the same-named OSCA occupation that ANZSCO lacks.
    pub alternative_titles: Vec<String>,
    /// Specialisations.
    pub specialisations: Vec<String>,
    /// Titles classified to this "not elsewhere classified" occupation.
    pub nec_titles: Vec<String>,
    /// Lead statement (may be empty).
    pub lead_statement: String,
    /// Main tasks. For ANZSCO these come from the unit group and, through the
    /// ABS correspondence, from the matching OSCA occupations.
    pub tasks: Vec<String>,
}

impl OccupationText {
    /// Returns all titles: principal first, then alternative titles,
    /// specialisations and nec titles.
    pub fn titles(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.title.as_str())
            .chain(self.alternative_titles.iter().map(String::as_str))
            .chain(self.specialisations.iter().map(String::as_str))
            .chain(self.nec_titles.iter().map(String::as_str))
    }
}

/// Survey-style phrases for one supplementary code, which the training-set
/// builder pairs into examples.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SupplementaryText {
    pub code: String,
    /// Responses to "What is your job?".
    pub occupation_phrases: Vec<String>,
    /// Responses to "What are your main tasks?". An empty string is allowed.
    pub task_phrases: Vec<String>,
}

/// A loaded classification: its topic, its tree and its descriptive text.
#[derive(Debug, Clone)]
pub struct Classification {
    topic: Topic,
    categories: Vec<Category>,
    index_by_code: HashMap<String, u32>,
    occupations: Vec<OccupationText>,
    supplementary: Vec<SupplementaryText>,
}

/// Errors from reading classification files.
#[derive(Debug, thiserror::Error)]
pub enum ClassificationError {
    #[error("failed to read classification file {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("invalid classification file {path}, line {line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("inconsistent classification: {0}")]
    Structure(String),
}

impl Classification {
    /// Reads the classification of `topic` from a data directory laid out as
    /// the repository's `data/` folder (`osca2024/...`, `anzsco2022/...`).
    ///
    /// Checks that every code is well formed, unique and has its parent.
    pub fn load(topic: TopicId, data_dir: &Path) -> Result<Classification, ClassificationError> {
        load::load(topic, &load::Source::Directory(data_dir))
    }

    /// Loads the classification of `topic` from the copy of `data/` compiled
    /// into this build.
    pub fn builtin(topic: TopicId) -> Classification {
        load::load(topic, &load::Source::Builtin).expect("the built-in classification data is checked by the tests")
    }

    /// Builds a classification from categories given as `(code, title)`
    /// pairs in any order, linking parents by code prefix.
    ///
    /// Fails if a code is malformed or repeated, or a parent is missing.
    pub fn from_parts(
        topic: TopicId,
        categories: Vec<(String, String)>,
        occupations: Vec<OccupationText>,
        supplementary: Vec<SupplementaryText>,
    ) -> Result<Classification, ClassificationError> {
        let mut categories = categories;
        categories.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));

        let mut index_by_code = HashMap::with_capacity(categories.len());
        let mut nodes: Vec<Category> = Vec::with_capacity(categories.len());
        for (code, title) in categories {
            let level = Level::of_code(&code)
                .ok_or_else(|| ClassificationError::Structure(format!("code {code:?} is not 1, 2, 3, 4 or 6 digits")))?;
            let parent = parent_code(&code)
                .map(|parent| {
                    index_by_code
                        .get(parent)
                        .copied()
                        .ok_or_else(|| ClassificationError::Structure(format!("code {code} has no parent group {parent}")))
                })
                .transpose()?;
            let index = nodes.len() as u32;
            if index_by_code.insert(code.clone(), index).is_some() {
                return Err(ClassificationError::Structure(format!("code {code} appears twice")));
            }
            if let Some(parent) = parent {
                nodes[parent as usize].children.push(index);
            }
            nodes.push(Category { code, title, level, parent, children: Vec::new() });
        }

        for occupation in &occupations {
            match index_by_code.get(&occupation.code) {
                Some(&index) if nodes[index as usize].level == Level::Occupation => {}
                _ => {
                    return Err(ClassificationError::Structure(format!(
                        "occupation text for {} has no 6-digit category",
                        occupation.code
                    )));
                }
            }
        }

        Ok(Classification { topic: topic.topic(), categories: nodes, index_by_code, occupations, supplementary })
    }

    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Returns all categories, parents before children, sorted by level then code.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// Finds the category with this code.
    pub fn category(&self, code: &str) -> Option<&Category> {
        self.index_of(code).map(|index| &self.categories[index as usize])
    }

    /// Index into [`Classification::categories`] of the category with this code.
    pub fn index_of(&self, code: &str) -> Option<u32> {
        self.index_by_code.get(code).copied()
    }

    /// Categories at one level, in code order.
    pub fn at_level(&self, level: Level) -> impl Iterator<Item = &Category> {
        self.categories.iter().filter(move |category| category.level == level)
    }

    /// Descriptive text of every occupation, in code order.
    pub fn occupations(&self) -> &[OccupationText] {
        &self.occupations
    }

    /// Phrases for the supplementary codes (empty for ANZSCO).
    pub fn supplementary(&self) -> &[SupplementaryText] {
        &self.supplementary
    }
}

/// Returns the code of a category's parent: the first 4 digits of an
/// occupation, or the code less its last digit for groups. `None` for major
/// groups.
pub fn parent_code(code: &str) -> Option<&str> {
    match code.len() {
        6 => Some(&code[..4]),
        2..=4 => Some(&code[..code.len() - 1]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
    }

    #[test]
    fn osca_loads_with_supplementary_codes() {
        let osca = Classification::load(TopicId::Osca, &data_dir()).unwrap();

        assert_eq!(osca.at_level(Level::Major).filter(|c| !c.is_supplementary()).count(), 8);
        assert_eq!(osca.at_level(Level::Unit).filter(|c| !c.is_supplementary()).count(), 421);
        assert_eq!(osca.at_level(Level::Occupation).filter(|c| !c.is_supplementary()).count(), 1156);
        assert_eq!(osca.at_level(Level::Occupation).filter(|c| c.is_supplementary()).count(), 8);
        assert_eq!(osca.category("273333").unwrap().title, "Software Engineer");
        assert_eq!(osca.category("099960").unwrap().title, "Retired");
        assert_eq!(osca.supplementary().len(), 8);
    }

    #[test]
    fn osca_parents_link_by_prefix() {
        let osca = Classification::load(TopicId::Osca, &data_dir()).unwrap();
        let engineer = osca.category("273333").unwrap();
        let unit = &osca.categories()[engineer.parent.unwrap() as usize];

        assert_eq!(unit.code, "2733");
        assert!(unit.children.contains(&osca.index_of("273333").unwrap()));
    }

    #[test]
    fn anzsco_tasks_come_from_unit_group_and_osca() {
        let anzsco = Classification::load(TopicId::Anzsco, &data_dir()).unwrap();
        let engineer = anzsco.occupations().iter().find(|o| o.code == "261313").unwrap();

        assert_eq!(anzsco.at_level(Level::Occupation).count(), 1076);
        assert!(anzsco.supplementary().is_empty());
        assert!(anzsco.category("0999").is_none());
        assert!(engineer.tasks.len() > 5, "expected unit group and OSCA tasks, got {}", engineer.tasks.len());
        assert!(engineer.alternative_titles.iter().any(|t| t == "Full Stack Developer"), "{:?}", engineer.alternative_titles);
        // ANZSCO lists Software Developer under 261312, so OSCA's use of it
        // as a Software Engineer title is not borrowed.
        assert!(!engineer.alternative_titles.iter().any(|t| t == "Software Developer"));
    }

    #[test]
    fn builtin_matches_data_directory() {
        for topic in TopicId::ALL {
            let loaded = Classification::load(topic, &data_dir()).unwrap();
            let builtin = Classification::builtin(topic);

            assert_eq!(builtin.categories(), loaded.categories());
            assert_eq!(builtin.occupations(), loaded.occupations());
        }
    }

    #[test]
    fn malformed_code_is_rejected() {
        let result = Classification::from_parts(TopicId::Osca, vec![("12345".into(), "Five digits".into())], vec![], vec![]);

        assert!(matches!(result, Err(ClassificationError::Structure(message)) if message.contains("12345")));
    }

    #[test]
    fn missing_parent_is_rejected() {
        let result = Classification::from_parts(TopicId::Osca, vec![("12".into(), "Orphan".into())], vec![], vec![]);

        assert!(matches!(result, Err(ClassificationError::Structure(message)) if message.contains("no parent")));
    }
}
