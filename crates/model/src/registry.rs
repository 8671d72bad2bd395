//! The set of models a process serves, grouped by topic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use occoder_classification::TopicId;

use crate::Model;
use crate::file::{self, ModelFileError};

/// Models by topic, newest first within each topic.
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: Vec<Arc<Model>>,
}

/// A model file that [`ModelRegistry::load_dir`] skipped.
#[derive(Debug)]
pub struct LoadFailure {
    pub path: PathBuf,
    pub error: ModelFileError,
}

/// Errors of building a registry or finding a model in it. Messages start
/// with the coding service's wording for the case.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("failed to read the models directory {path}: {cause}")]
    Directory { path: PathBuf, cause: std::io::Error },
    #[error("two model files share the model id {model_id}: {first} and {second}; remove one of them")]
    DuplicateModelId { model_id: String, first: String, second: String },
    #[error("The specified model does not exist: no model has the id {model_id:?}; list the topic's models for valid ids")]
    ModelNotFound { model_id: String },
    #[error("Selected model does not match the input topic.: model {model_id} codes to {model_topic}, not {topic}")]
    ModelTopicMismatch { model_id: String, model_topic: TopicId, topic: TopicId },
    #[error("No models found for topic {topic}: add a model file for it to the models directory")]
    NoModels { topic: TopicId },
}

impl ModelRegistry {
    /// Loads every `*.occm` file in `dir`, non-recursively. Files that fail
    /// to load are returned beside the registry rather than failing it, so
    /// one bad file does not take down the other models.
    pub fn load_dir(dir: &Path) -> Result<(ModelRegistry, Vec<LoadFailure>), RegistryError> {
        let directory_error = |cause| RegistryError::Directory { path: dir.to_path_buf(), cause };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(directory_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == file::EXTENSION))
            .collect();
        paths.sort();

        let mut models = Vec::new();
        let mut failures = Vec::new();
        let mut origins = Vec::new();
        for path in paths {
            match file::load(&path) {
                Ok(model) => {
                    origins.push(path.display().to_string());
                    models.push(model);
                }
                Err(error) => failures.push(LoadFailure { path, error }),
            }
        }

        for (i, model) in models.iter().enumerate() {
            if let Some(j) = models[..i].iter().position(|other| other.metadata().model_id == model.metadata().model_id) {
                return Err(RegistryError::DuplicateModelId {
                    model_id: model.metadata().model_id.to_string(),
                    first: origins[j].clone(),
                    second: origins[i].clone(),
                });
            }
        }
        Ok((ModelRegistry::from_models(models), failures))
    }

    /// Builds a registry from loaded models.
    pub fn from_models(models: Vec<Model>) -> ModelRegistry {
        let mut models: Vec<Arc<Model>> = models.into_iter().map(Arc::new).collect();
        models.sort_by(|a, b| {
            let (a, b) = (a.metadata(), b.metadata());
            a.topic
                .cmp(&b.topic)
                .then(b.model_version.cmp(&a.model_version))
                .then(b.model_release_date.cmp(&a.model_release_date))
                .then(a.model_id.cmp(&b.model_id))
        });
        ModelRegistry { models }
    }

    /// Returns every model, grouped by topic, newest first.
    pub fn all(&self) -> &[Arc<Model>] {
        &self.models
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Returns the models of `topic`, newest first: highest `modelVersion`,
    /// then latest release date.
    pub fn models(&self, topic: TopicId) -> impl Iterator<Item = &Arc<Model>> {
        self.models.iter().filter(move |model| model.topic() == topic)
    }

    /// Returns the newest model of `topic`.
    pub fn latest(&self, topic: TopicId) -> Result<&Arc<Model>, RegistryError> {
        self.models(topic).next().ok_or(RegistryError::NoModels { topic })
    }

    /// Finds the model with id `model_id` (a GUID, compared case-insensitively),
    /// which must code to `topic`.
    pub fn find(&self, topic: TopicId, model_id: &str) -> Result<&Arc<Model>, RegistryError> {
        let requested = model_id.trim();
        let model = self
            .models
            .iter()
            .find(|model| model.metadata().model_id.to_string().eq_ignore_ascii_case(requested))
            .ok_or_else(|| RegistryError::ModelNotFound { model_id: model_id.to_string() })?;
        if model.topic() != topic {
            return Err(RegistryError::ModelTopicMismatch {
                model_id: model_id.to_string(),
                model_topic: model.topic(),
                topic,
            });
        }
        Ok(model)
    }

    /// [`ModelRegistry::find`] when `model_id` is given, otherwise
    /// [`ModelRegistry::latest`].
    pub fn select(&self, topic: TopicId, model_id: Option<&str>) -> Result<&Arc<Model>, RegistryError> {
        match model_id.filter(|id| !id.trim().is_empty()) {
            Some(id) => self.find(topic, id),
            None => self.latest(topic),
        }
    }
}
