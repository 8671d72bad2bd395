//! The tonic gRPC server: the `occoder.v1` services over the loaded models,
//! with access control, health, reflection, TLS and graceful shutdown.
//!
//! [`start`] binds the listener and returns at once. Models load on a
//! blocking thread meanwhile: until they are loaded, the health service
//! reports NOT_SERVING and coding calls return UNAVAILABLE.

pub mod bulk;
mod coder;
pub mod config;
pub mod errors;
mod operations;
mod request_id;
mod state;
mod token;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use occoder_auth::{AccessControl, AuthLayer, DevCredentials};
use occoder_model::ModelRegistry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use config::{ConfigError, LogFormat, ServerConfig};
pub use request_id::REQUEST_ID_HEADER;

use crate::proto::v1::auth_server::AuthServer;
use crate::proto::v1::bulk_coder_server::BulkCoderServer;
use crate::proto::v1::coder_server::CoderServer;
use request_id::{FailureCounts, RequestIdLayer};
use state::ServerState;

/// Method paths that need no access token, besides health and reflection.
pub const UNAUTHENTICATED_METHODS: &[&str] = &["/occoder.v1.Auth/CreateToken", "/occoder.v1.Coder/GetSecurityContact"];

/// Service prefix whose methods only partner clients may call.
pub const BULK_SERVICE_PREFIX: &str = "/occoder.v1.BulkCoder/";

/// Progress of model loading after [`start`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Loading,
    /// Models loaded; the health service reports SERVING.
    Serving,
    /// No model could be loaded; the server is shutting down.
    Failed(String),
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    readiness: watch::Receiver<Readiness>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    dev_credentials: Option<DevCredentials>,
}

impl ServerHandle {
    /// The address the server listens on, with the actual port when the
    /// configuration asked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Credentials of the development client, in development mode only.
    pub fn dev_credentials(&self) -> Option<&DevCredentials> {
        self.dev_credentials.as_ref()
    }

    /// Waits until the models are loaded, or returns why loading failed.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let mut readiness = self.readiness.clone();
        let state = readiness
            .wait_for(|state| *state != Readiness::Loading)
            .await
            .map_err(|_| anyhow::anyhow!("the server stopped before its models were loaded"))?;
        match &*state {
            Readiness::Failed(reason) => anyhow::bail!("{reason}"),
            _ => Ok(()),
        }
    }

    /// Starts a graceful shutdown: new connections are refused, calls in
    /// progress may finish within the drain timeout.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A trigger for [`ServerHandle::trigger_shutdown`] that another task,
    /// such as a signal handler, can own.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.shutdown.clone())
    }

    /// Waits for the server to stop and returns its result, which is an
    /// error also when the server stopped because no model could be loaded.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await.context("the server task panicked")??;
        match &*self.readiness.borrow() {
            Readiness::Failed(reason) => anyhow::bail!("{reason}"),
            _ => Ok(()),
        }
    }

    /// Shuts the server down gracefully and waits for it to stop.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.trigger_shutdown();
        self.join().await
    }
}

/// Starts a graceful shutdown of the server it came from when triggered.
#[derive(Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Starts the server: checks the configuration, opens the data directory,
/// binds the listener and begins loading the models.
pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    config.validate()?;

    let data_dir = config.data_dir.clone();
    let auth_config = config.auth.clone();
    let access = tokio::task::spawn_blocking(move || AccessControl::open(&data_dir, auth_config))
        .await
        .context("opening access control panicked")?
        .with_context(|| format!("failed to open the data directory {}", config.data_dir.display()))?;
    let access = Arc::new(access);
    let dev_credentials = if config.dev {
        Some(access.ensure_dev_client().context("failed to create the development client")?)
    } else {
        None
    };

    let tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };

    let incoming = TcpIncoming::bind(config.listen)
        .with_context(|| format!("failed to listen on {}", config.listen))?
        .with_nodelay(Some(true))
        .with_keepalive(config.limits.tcp_keepalive());
    let local_addr = incoming.local_addr().context("failed to read the listening address")?;

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;

    let state = Arc::new(ServerState::new(config.clone(), Arc::clone(&access)));
    let limits = &config.limits;
    let coder = CoderServer::new(coder::CoderService::new(Arc::clone(&state)))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let bulk = BulkCoderServer::new(bulk::BulkCoderService::new(Arc::clone(&state)))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let auth = AuthServer::new(token::AuthService::new(Arc::clone(&access)))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("failed to build the reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("failed to build the reflection service")?;

    let mut auth_layer = AuthLayer::new(Arc::clone(&access)).bulk(BULK_SERVICE_PREFIX);
    for method in UNAUTHENTICATED_METHODS {
        auth_layer = auth_layer.allow_unauthenticated(*method);
    }
    let failures = Arc::new(FailureCounts::default());
    let layers = tower::ServiceBuilder::new().layer(RequestIdLayer::new(Arc::clone(&failures))).layer(auth_layer);

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("invalid TLS configuration")?;
    }
    let router = builder
        .concurrency_limit_per_connection(limits.concurrency_limit_per_connection)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(limits.http2_keepalive_interval())
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout()))
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(auth)
        .add_service(coder)
        .add_service(bulk);

    tracing::info!(
        address = %local_addr,
        tls = config.tls.cert_file.is_some(),
        dev = config.dev,
        models_dir = %config.models_dir.display(),
        data_dir = %config.data_dir.display(),
        simd = occoder_model::simd_in_use(),
        "server listening"
    );

    let (shutdown, shutdown_signal) = watch::channel(false);
    let (readiness_sender, readiness) = watch::channel(Readiness::Loading);
    tokio::spawn(load_models(Arc::clone(&state), health.clone(), readiness_sender, shutdown.clone()));

    let drain_timeout = limits.drain_timeout();
    let bulk_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let flusher = access.spawn_quota_flusher();
        let stop_requested = wait_for_shutdown(shutdown_signal.clone());
        let graceful = {
            let health = health.clone();
            let signal = shutdown_signal.clone();
            async move {
                wait_for_shutdown(signal).await;
                set_health(&health, ServingStatus::NotServing).await;
                tracing::info!(drain_timeout_secs = drain_timeout.as_secs(), "server stopping; draining calls in progress");
            }
        };
        let serve = router.serve_with_incoming_shutdown(incoming, graceful);
        tokio::pin!(serve);
        let drain_deadline = async {
            stop_requested.await;
            tokio::time::sleep(drain_timeout).await;
        };
        let result = tokio::select! {
            result = &mut serve => result.context("the server failed"),
            () = drain_deadline => {
                tracing::warn!(drain_timeout_secs = drain_timeout.as_secs(), "drain timeout passed; closing the calls still in progress");
                Ok(())
            }
        };

        bulk_state.bulk.shutdown().await;
        drop(flusher);
        if let Err(error) = access.flush() {
            tracing::error!(%error, "failed to write the daily request counts at shutdown");
        }
        tracing::info!(
            over_limit_rejections = failures.over_limit.load(Ordering::Relaxed),
            other_failed_calls = failures.other.load(Ordering::Relaxed),
            "server stopped"
        );
        result
    });

    Ok(ServerHandle { local_addr, readiness, shutdown, task, dev_credentials })
}

/// Resolves when shutdown is requested or the [`ServerHandle`] is dropped.
async fn wait_for_shutdown(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(<CoderServer<coder::CoderService> as tonic::server::NamedService>::NAME, status).await;
    health.set_service_status(<BulkCoderServer<bulk::BulkCoderService> as tonic::server::NamedService>::NAME, status).await;
    health.set_service_status(<AuthServer<token::AuthService> as tonic::server::NamedService>::NAME, status).await;
}

/// Loads every model of the models directory, logging each file that fails,
/// then marks the server SERVING. With no model at all it stops the server.
async fn load_models(
    state: Arc<ServerState>,
    health: HealthReporter,
    readiness: watch::Sender<Readiness>,
    shutdown: watch::Sender<bool>,
) {
    let dir = state.config.models_dir.clone();
    let started = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || ModelRegistry::load_dir(&dir)).await;
    let dir = state.config.models_dir.display().to_string();

    let failure = match loaded {
        Ok(Ok((registry, failures))) => {
            for failure in &failures {
                tracing::error!(path = %failure.path.display(), error = %failure.error, "failed to load a model file; serving the others");
            }
            for model in registry.all() {
                let metadata = model.metadata();
                tracing::info!(
                    model_id = %metadata.model_id,
                    topic = %metadata.topic,
                    model_version = metadata.model_version,
                    "loaded model"
                );
            }
            if registry.is_empty() {
                Some(format!("no model could be loaded from {dir}; add *.occm files or set --models"))
            } else {
                tracing::info!(models = registry.all().len(), millis = started.elapsed().as_millis() as u64, "models loaded; serving");
                let opened = state.bulk.open(&state.config.bulk, &state.config.data_dir, &registry).await;
                state.set_models(registry);
                opened.err().map(|error| format!("failed to open the operation store: {error:#}"))
            }
        }
        Ok(Err(error)) => Some(format!("failed to load models: {error}")),
        Err(error) => Some(format!("model loading panicked: {error}")),
    };

    match failure {
        None => {
            set_health(&health, ServingStatus::Serving).await;
            let _ = readiness.send(Readiness::Serving);
        }
        Some(reason) => {
            tracing::error!(reason, "stopping the server");
            let _ = readiness.send(Readiness::Failed(reason));
            let _ = shutdown.send(true);
        }
    }
}

fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<ServerTlsConfig> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("failed to read the TLS certificate {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("failed to read the TLS key {}", key.display()))?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))
}
