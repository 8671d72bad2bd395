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

pub(crate) fn osca(data_dir: &Path) -> Result<Classification, ClassificationError> {
    let folder = data_dir.join(TopicId::Osca.data_folder());

    let groups_path = folder.join("groups.tsv");
    let groups_text = read(&groups_path)?;
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

    let occupations: Vec<OscaOccupation> = read_jsonl(&folder.join("occupations.jsonl"))?;
    let supplementary_lines: Vec<SupplementaryLine> = read_jsonl(&folder.join("supplementary.jsonl"))?;

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
pub(crate) fn anzsco(data_dir: &Path) -> Result<Classification, ClassificationError> {
    let folder = data_dir.join(TopicId::Anzsco.data_folder());
    let groups: Vec<AnzscoGroup> = read_jsonl(&folder.join("groups.jsonl"))?;
    let occupations: Vec<AnzscoOccupation> = read_jsonl(&folder.join("occupations.jsonl"))?;

    let osca_folder = data_dir.join(TopicId::Osca.data_folder());
    let osca_occupations: Vec<OscaOccupation> = read_jsonl(&osca_folder.join("occupations.jsonl"))?;
    let osca_tasks: HashMap<&str, &[String]> =
        osca_occupations.iter().map(|o| (o.code.as_str(), o.tasks.as_slice())).collect();
    let correspondence = read_correspondence(&osca_folder.join("osca2024-to-anzsco2022.csv"))?;
    let mut osca_codes_by_anzsco: HashMap<&str, Vec<&str>> = HashMap::new();
    for row in &correspondence {
        osca_codes_by_anzsco.entry(row.anzsco_code.as_str()).or_default().push(row.osca_code.as_str());
    }

    let unit_groups: HashMap<&str, &AnzscoGroup> =
        groups.iter().filter(|g| g.code.len() == 4).map(|g| (g.code.as_str(), g)).collect();

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
            alternative_titles: occupation.alt.clone(),
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

fn read(path: &Path) -> Result<String, ClassificationError> {
    fs::read_to_string(path).map_err(|source| ClassificationError::Io { path: path.to_path_buf(), source })
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, ClassificationError> {
    let text = read(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|error| parse_error(path, number + 1, error.to_string()))
        })
        .collect()
}

fn read_correspondence(path: &Path) -> Result<Vec<CorrespondenceRow>, ClassificationError> {
    let mut reader = csv::Reader::from_path(path)
        .map_err(|error| parse_error(path, 0, error.to_string()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(number, row)| row.map_err(|error| parse_error(path, number + 2, error.to_string())))
        .collect()
}

fn parse_error(path: &Path, line: usize, message: String) -> ClassificationError {
    ClassificationError::Parse { path: PathBuf::from(path), line, message }
}
