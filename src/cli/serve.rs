//! `occoder serve`: run the gRPC coding service until SIGTERM or Ctrl-C.
//!
//! Settings come from, in increasing order of precedence: defaults, the
//! TOML file (`--config`), `OCCODER_*` environment variables and flags.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::server::{self, LogFormat, ServerConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "OCCODER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of *.occm model files to load [default: models].
    #[arg(long, env = "OCCODER_MODELS")]
    models: Option<PathBuf>,
    /// Directory of clients, the token key and daily request counts
    /// [default: occoder-data].
    #[arg(long, env = "OCCODER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file; see docs/configuration.md.
    #[arg(long, env = "OCCODER_CONFIG")]
    config: Option<PathBuf>,
    /// PEM certificate chain; enables TLS together with --tls-key.
    #[arg(long, env = "OCCODER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "OCCODER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Log line format on standard error [default: text].
    #[arg(long, env = "OCCODER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Seconds that shutdown waits for calls in progress [default: 30].
    #[arg(long, env = "OCCODER_DRAIN_TIMEOUT_SECS")]
    drain_timeout_secs: Option<u64>,
    /// Development mode: loopback only, and a development client whose
    /// secret is printed and stored in plain text in the data directory.
    #[arg(long)]
    dev: bool,
}

/// Builds the configuration: the file (or defaults), then each flag or
/// environment variable that is set.
fn build_config(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(models) = args.models {
        config.models_dir = models;
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(cert) = args.tls_cert {
        config.tls.cert_file = Some(cert);
    }
    if let Some(key) = args.tls_key {
        config.tls.key_file = Some(key);
    }
    if let Some(format) = args.log_format {
        config.logging.format = format;
    }
    if let Some(secs) = args.drain_timeout_secs {
        config.limits.drain_timeout_secs = secs;
    }
    config.dev = args.dev;
    config.validate()?;
    Ok(config)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = build_config(args)?;
    init_logging(&config);
    if config.dev {
        eprintln!("{DEV_BANNER}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("occoder-server")
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

const DEV_BANNER: &str = "\
################################################################
#  DEVELOPMENT MODE (occoder serve --dev): NOT FOR PRODUCTION  #
#  Loopback only. The development client's secret is printed   #
#  below and stored in plain text in the data directory.       #
################################################################";

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let handle = server::start(config).await?;

    if let Some(credentials) = handle.dev_credentials() {
        eprintln!("development client id:     {}", credentials.client_id);
        eprintln!("development client secret: {}", credentials.secret.expose());
        eprintln!(
            "(stored in {}; listening on {})",
            data_dir.join(occoder_auth::DEV_CLIENT_FILE).display(),
            handle.local_addr()
        );
    }

    let trigger = handle.shutdown_trigger();
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "received shutdown signal");
        trigger.trigger();
    });
    handle.join().await
}

/// Resolves with the signal's name on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "failed to listen for SIGTERM; stop the server with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

/// Sets up tracing on standard error in the configured format, with ANSI
/// colours only when standard error is a terminal. `RUST_LOG` overrides the
/// configured filter.
fn init_logging(config: &ServerConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.logging.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
