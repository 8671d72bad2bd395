//! Coding topics: the classifications a model codes to, named as the
//! coding service's API names them.

use std::fmt;
use std::str::FromStr;

/// A coding topic, identified in the API by its `uriName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicId {
    /// OSCA 2024, uriName `osca`.
    Osca,
    /// ANZSCO 2022, uriName `anzsco`.
    Anzsco,
}

/// The description of a topic that the API returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topic {
    pub id: TopicId,
    /// Name used in request paths and fields: `osca` or `anzsco`.
    pub uri_name: String,
    /// Full name of the classification standard.
    pub full_name: String,
    /// Version of the classification, for example `2024`.
    pub version: String,
}

/// Error for a topic name that is neither `osca` nor `anzsco`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The specified topic does not exist: {0:?}; valid topics are \"osca\" and \"anzsco\"")]
pub struct UnknownTopic(pub String);

impl TopicId {
    pub const ALL: [TopicId; 2] = [TopicId::Osca, TopicId::Anzsco];

    pub fn uri_name(self) -> &'static str {
        match self {
            TopicId::Osca => "osca",
            TopicId::Anzsco => "anzsco",
        }
    }

    /// Full description of this topic.
    pub fn topic(self) -> Topic {
        let (full_name, version) = match self {
            TopicId::Osca => ("OSCA - Occupation Standard Classification for Australia", "2024"),
            TopicId::Anzsco => ("ANZSCO - Australian and New Zealand Standard Classification of Occupations", "2022"),
        };
        Topic { id: self, uri_name: self.uri_name().to_string(), full_name: full_name.to_string(), version: version.to_string() }
    }

    /// Name of this topic's folder under the data directory.
    pub fn data_folder(self) -> &'static str {
        match self {
            TopicId::Osca => "osca2024",
            TopicId::Anzsco => "anzsco2022",
        }
    }

    /// Whether models of this topic return supplementary (0999xx) codes.
    pub fn has_supplementary_codes(self) -> bool {
        self == TopicId::Osca
    }
}

impl FromStr for TopicId {
    type Err = UnknownTopic;

    /// Parses a topic's uriName, ignoring ASCII case.
    fn from_str(name: &str) -> Result<TopicId, UnknownTopic> {
        TopicId::ALL
            .into_iter()
            .find(|topic| topic.uri_name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| UnknownTopic(name.to_string()))
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri_name())
    }
}
