//! Importers for the classification files in the repository's `data/` folder.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Classification, ClassificationError, OccupationText, SupplementaryText, TopicId};

#[derive(Deserialize)]
struct OscaOccupation {
    code: String,
    title: String,
    #[serde(default)]
    alt: Vec<String>,
    #[serde(default)]
    spec: Vec<String>,
    #[serde(default)]
    nec: Vec<String>,
    #[serde(default)]
    lead: String,
    #[serde(default)]
    tasks: Vec<String>,
}

#[derive(Deserialize)]
struct SupplementaryLine {
    code: String,
    title: String,
    #[serde(default)]
    occp_text: Vec<String>,
    #[serde(default)]
    tasks_text: Vec<String>,
}

#[derive(Deserialize)]
struct AnzscoGroup {
    code: String,
    title: String,
    #[serde(default)]
    overview: String,
    #[serde(default)]
    tasks: Vec<String>,
}

#[derive(Deserialize)]
struct AnzscoOccupation {
    code: String,
    title: String,
    #[serde(default)]
    alt: Vec<String>,
    #[serde(default)]
    spec: Vec<String>,
    #[serde(default)]
    lead: String,
}

#[derive(Deserialize)]
struct CorrespondenceRow {
    osca_code: String,
    anzsco_code: String,
}

/// The origin of the classification files: a directory on disk, or the
/// copies compiled into the binary.
pub(crate) enum Source<'a> {
    Directory(&'a Path),
    Builtin,
}

/// The repository's `data/` files, compiled in so that `occoder train`
/// works without a checkout.
const BUILTIN_FILES: &[(&str, &str)] = &[
    ("osca2024/groups.tsv", include_str!("../../../data/osca2024/groups.tsv")),
    ("osca2024/occupations.jsonl", include_str!("../../../data/osca2024/occupations.jsonl")),
    ("osca2024/supplementary.jsonl", include_str!("../../../data/osca2024/supplementary.jsonl")),
    ("osca2024/osca2024-to-anzsco2022.csv", include_str!("../../../data/osca2024/osca2024-to-anzsco2022.csv")),
    ("anzsco2022/groups.jsonl", include_str!("../../../data/anzsco2022/groups.jsonl")),
    ("anzsco2022/occupations.jsonl", include_str!("../../../data/anzsco2022/occupations.jsonl")),
];

impl Source<'_> {
    /// The path of a file, relative to the data directory, as errors show it.
    fn path(&self, relative: &str) -> PathBuf {
        match self {
            Source::Directory(dir) => dir.join(relative),
            Source::Builtin => PathBuf::from("<built-in data>").join(relative),
        }
    }

    fn read(&self, relative: &str) -> Result<String, ClassificationError> {
        match self {
            Source::Directory(_) => read(&self.path(relative)),
            Source::Builtin => BUILTIN_FILES
                .iter()
                .find(|(name, _)| *name == relative)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| ClassificationError::Structure(format!("no built-in file {relative}"))),
        }
    }
}

pub(crate) fn load(topic: TopicId, source: &Source) -> Result<Classification, ClassificationError> {
    match topic {
        TopicId::Osca => osca(source),
        TopicId::Anzsco => anzsco(source),
    }
}

fn osca(source: &Source) -> Result<Classification, ClassificationError> {
    let groups_path = source.path("osca2024/groups.tsv");
    let groups_text = source.read("osca2024/groups.tsv")?;
    let mut categories = Vec::new();
    for (number, line) in groups_text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (code, title) = line.split_once('\t').ok_or_else(|| ClassificationError::Parse {
            path: groups_path.clone(),
            line: number + 1,
            message: "expected a code and a title separated by a tab".into(),
        })?;
        categories.push((code.trim().to_string(), title.trim().to_string()));
    }

    let occupations: Vec<OscaOccupation> = read_jsonl(source, "osca2024/occupations.jsonl")?;
    let supplementary_lines: Vec<SupplementaryLine> = read_jsonl(source, "osca2024/supplementary.jsonl")?;

    categories.extend(occupations.iter().map(|o| (o.code.clone(), o.title.clone())));
    categories.extend(supplementary_lines.iter().map(|s| (s.code.clone(), s.title.clone())));

    let occupation_texts = occupations
        .into_iter()
        .map(|o| OccupationText {
            code: o.code,
            title: o.title,
            alternative_titles: o.alt,
            specialisations: o.spec,
            nec_titles: o.nec,
            lead_statement: o.lead,
            tasks: o.tasks,
        })
        .collect();
    let supplementary = supplementary_lines
        .into_iter()
        .filter(|s| s.code.len() == 6)
        .map(|s| SupplementaryText { code: s.code, occupation_phrases: s.occp_text, task_phrases: s.tasks_text })
        .collect();

    Classification::from_parts(TopicId::Osca, categories, occupation_texts, supplementary)
}

/// Reads ANZSCO 2022. ANZSCO publishes tasks per unit group only, so each
/// occupation's tasks are its unit group's tasks followed by the tasks of the
/// OSCA 2024 occupations that the ABS correspondence maps to it.
fn anzsco(source: &Source) -> Result<Classification, ClassificationError> {
    let groups: Vec<AnzscoGroup> = read_jsonl(source, "anzsco2022/groups.jsonl")?;
    let occupations: Vec<AnzscoOccupation> = read_jsonl(source, "anzsco2022/occupations.jsonl")?;

    let osca_occupations: Vec<OscaOccupation> = read_jsonl(source, "osca2024/occupations.jsonl")?;
    let osca_tasks: HashMap<&str, &[String]> =
        osca_occupations.iter().map(|o| (o.code.as_str(), o.tasks.as_slice())).collect();
    let correspondence = read_correspondence(source, "osca2024/osca2024-to-anzsco2022.csv")?;
    let mut osca_codes_by_anzsco: HashMap<&str, Vec<&str>> = HashMap::new();
    for row in &correspondence {
        osca_codes_by_anzsco.entry(row.anzsco_code.as_str()).or_default().push(row.osca_code.as_str());
    }

    let unit_groups: HashMap<&str, &AnzscoGroup> =
        groups.iter().filter(|g| g.code.len() == 4).map(|g| (g.code.as_str(), g)).collect();

    let borrowed_titles = osca_titles_by_anzsco(&occupations, &osca_occupations, &correspondence);

    let mut occupation_texts = Vec::with_capacity(occupations.len());
    for occupation in &occupations {
        let unit = unit_groups.get(&occupation.code[..4.min(occupation.code.len())]);
        let mut tasks: Vec<String> = unit.map(|u| u.tasks.clone()).unwrap_or_default();
        for osca_code in osca_codes_by_anzsco.get(occupation.code.as_str()).into_iter().flatten() {
            tasks.extend(osca_tasks.get(osca_code).into_iter().flat_map(|t| t.iter().cloned()));
        }

        let lead_statement = if occupation.lead.is_empty() {
            unit.map(|u| u.overview.clone()).unwrap_or_default()
        } else {
            occupation.lead.clone()
        };

        occupation_texts.push(OccupationText {
            code: occupation.code.clone(),
            title: occupation.title.clone(),
            alternative_titles: occupation
                .alt
                .iter()
                .cloned()
                .chain(borrowed_titles.get(occupation.code.as_str()).into_iter().flatten().cloned())
                .collect(),
            specialisations: occupation.spec.clone(),
            nec_titles: Vec::new(),
            lead_statement,
            tasks,
        });
    }

    let categories = groups
        .iter()
        .map(|g| (g.code.clone(), g.title.clone()))
        .chain(occupations.iter().map(|o| (o.code.clone(), o.title.clone())))
        .collect();
    Classification::from_parts(TopicId::Anzsco, categories, occupation_texts, Vec::new())
}

/// OSCA 2024 titles that ANZSCO 2022 lacks, keyed by the ANZSCO code that
/// should learn them.
///
/// OSCA is the newer classification and lists many current titles
/// ("Software Developer", "Full Stack Developer") that ANZSCO does not.
/// When an OSCA occupation corresponds to an ANZSCO occupation of the
/// same principal title, the OSCA occupation's alternative titles,
/// specialisations and nec titles become alternative titles of that ANZSCO
/// occupation. A title that already names any ANZSCO occupation is left
/// where ANZSCO puts it.
fn osca_titles_by_anzsco<'a>(
    anzsco: &'a [AnzscoOccupation],
    osca: &'a [OscaOccupation],
    correspondence: &[CorrespondenceRow],
) -> HashMap<&'a str, Vec<String>> {
    let anzsco_titles: std::collections::HashSet<String> = anzsco
        .iter()
        .flat_map(|o| std::iter::once(&o.title).chain(&o.alt).chain(&o.spec))
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let anzsco_by_code: HashMap<&str, &AnzscoOccupation> = anzsco.iter().map(|o| (o.code.as_str(), o)).collect();
    let osca_by_code: HashMap<&str, &OscaOccupation> = osca.iter().map(|o| (o.code.as_str(), o)).collect();

    let mut borrowed: HashMap<&str, Vec<String>> = HashMap::new();
    for row in correspondence {
        let (Some(osca), Some(anzsco)) = (osca_by_code.get(row.osca_code.as_str()), anzsco_by_code.get(row.anzsco_code.as_str())) else {
            continue;
        };
        if !osca.title.eq_ignore_ascii_case(&anzsco.title) {
            continue;
        }
        let titles = borrowed.entry(anzsco.code.as_str()).or_default();
        for title in osca.alt.iter().chain(&osca.spec).chain(&osca.nec) {
            let lower = title.to_ascii_lowercase();
            if !anzsco_titles.contains(&lower) && !titles.iter().any(|t: &String| t.eq_ignore_ascii_case(title)) {
                titles.push(title.clone());
            }
        }
    }
    borrowed
}

fn read(path: &Path) -> Result<String, ClassificationError> {
    fs::read_to_string(path).map_err(|cause| ClassificationError::Io { path: path.to_path_buf(), cause })
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(source: &Source, relative: &str) -> Result<Vec<T>, ClassificationError> {
    let path = &source.path(relative);
    let text = source.read(relative)?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|error| parse_error(path, number + 1, error.to_string()))
        })
        .collect()
}

fn read_correspondence(source: &Source, relative: &str) -> Result<Vec<CorrespondenceRow>, ClassificationError> {
    let path = &source.path(relative);
    let text = source.read(relative)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .deserialize()
        .enumerate()
        .map(|(number, row)| row.map_err(|error| parse_error(path, number + 2, error.to_string())))
        .collect()
}

fn parse_error(path: &Path, line: usize, message: String) -> ClassificationError {
    ClassificationError::Parse { path: PathBuf::from(path), line, message }
}
