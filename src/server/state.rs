//! State shared by the services of one server: models, access control and
//! the slots for CPU-bound coding.

use std::sync::{Arc, OnceLock};

use occoder_auth::{AccessControl, Principal};
use occoder_model::ModelRegistry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::ServerConfig;
use super::errors::ApiError;

pub struct ServerState {
    pub config: ServerConfig,
    pub access: Arc<AccessControl>,
    /// Set once, when model loading at start has finished.
    models: OnceLock<ModelRegistry>,
    coding_slots: Arc<Semaphore>,
    /// The bulk coding pool and the operation store, opened once the models
    /// are loaded.
    pub bulk: super::operations::BulkState,
}

impl ServerState {
    pub fn new(config: ServerConfig, access: Arc<AccessControl>) -> ServerState {
        let coding_slots = Arc::new(Semaphore::new(config.limits.coding_slots()));
        ServerState { config, access, models: OnceLock::new(), coding_slots, bulk: Default::default() }
    }

    /// The loaded models, or UNAVAILABLE while they are still loading.
    pub fn models(&self) -> Result<&ModelRegistry, ApiError> {
        self.models.get().ok_or(ApiError::ModelsLoading)
    }

    /// Installs the loaded models; later calls are ignored.
    pub fn set_models(&self, registry: ModelRegistry) {
        let _ = self.models.set(registry);
    }

    /// Waits for a free coding slot. Holding the permit while coding on a
    /// blocking thread bounds the number of batches using the CPU at once.
    pub async fn coding_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.coding_slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal { context: "the coding semaphore was closed".to_owned() })
    }
}

/// The client id of a call for logs: the verified principal's id, or `-`
/// for calls that need no token.
pub fn client_id_of<T>(request: &tonic::Request<T>) -> String {
    request.extensions().get::<Principal>().map_or_else(|| "-".to_owned(), |principal| principal.client_id.clone())
}
