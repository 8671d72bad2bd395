//! Server settings: the TOML file's schema, its defaults and its checks.
//!
//! `occoder serve` builds a [`ServerConfig`] from, in increasing order of
//! precedence: these defaults, the TOML file, `OCCODER_*` environment
//! variables and command-line flags. `docs/configuration.md` lists every key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use occoder_auth::AuthConfig;
use serde::Deserialize;

/// Address the server listens on when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Data directory (clients, token key, quota counts) when nothing else is configured.
pub const DEFAULT_DATA_DIR: &str = "occoder-data";
/// Models directory when nothing else is configured.
pub const DEFAULT_MODELS_DIR: &str = "models";

/// Every setting of the server. Each field has a default, so an empty file
/// is a valid configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory whose `*.occm` model files are loaded at start.
    pub models_dir: PathBuf,
    /// Directory of `clients.json`, `token-key` and `quota-usage.json`.
    pub data_dir: PathBuf,
    /// Development mode: loopback only, with a development client. Set only
    /// by the `--dev` flag, never by the file.
    #[serde(skip)]
    pub dev: bool,
    pub limits: LimitsConfig,
    pub tls: TlsConfig,
    pub logging: LoggingConfig,
    pub security: SecurityConfig,
    /// Access tokens, rate limits and daily ceilings.
    pub auth: AuthConfig,
    /// Streaming coding and asynchronous batch operations.
    pub bulk: BulkConfig,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("the default listen address is valid"),
            models_dir: PathBuf::from(DEFAULT_MODELS_DIR),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            dev: false,
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            logging: LoggingConfig::default(),
            security: SecurityConfig::default(),
            auth: AuthConfig::default(),
            bulk: BulkConfig::default(),
        }
    }
}

/// Transport and resource limits.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Maximum size in bytes of one decoded request message. Default 4 MiB.
    pub max_message_bytes: usize,
    /// Maximum size in bytes of one encoded response message. Default 4 MiB.
    pub max_response_bytes: usize,
    /// Maximum calls in progress on one connection; more wait. Default 64.
    pub concurrency_limit_per_connection: usize,
    /// Maximum HTTP/2 streams a client may open at once on one connection.
    /// Default 128.
    pub max_concurrent_streams: u32,
    /// Maximum coding batches run at once on blocking threads; later calls
    /// wait for a slot. Calls with 1 or 2 valid records skip the wait and
    /// are coded on the async worker. 0 means the number of CPUs. Default 0.
    pub max_concurrent_batches: usize,
    /// Seconds between HTTP/2 PING frames on idle connections; 0 disables
    /// them. Default 60.
    pub http2_keepalive_interval_secs: u64,
    /// Seconds to wait for a PING acknowledgement before closing the
    /// connection. Default 20.
    pub http2_keepalive_timeout_secs: u64,
    /// Seconds of idle time before TCP keep-alive probes start; 0 disables
    /// them. Default 60.
    pub tcp_keepalive_secs: u64,
    /// Seconds that shutdown waits for calls in progress before closing
    /// their connections. Default 30.
    pub drain_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_message_bytes: 4 * 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            concurrency_limit_per_connection: 64,
            max_concurrent_streams: 128,
            max_concurrent_batches: 0,
            http2_keepalive_interval_secs: 60,
            http2_keepalive_timeout_secs: 20,
            tcp_keepalive_secs: 60,
            drain_timeout_secs: 30,
        }
    }
}

impl LimitsConfig {
    /// The number of coding batches that may run at once.
    pub fn coding_slots(&self) -> usize {
        match self.max_concurrent_batches {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    fn nonzero_secs(secs: u64) -> Option<Duration> {
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    pub fn http2_keepalive_interval(&self) -> Option<Duration> {
        Self::nonzero_secs(self.http2_keepalive_interval_secs)
    }

    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_timeout_secs)
    }

    pub fn tcp_keepalive(&self) -> Option<Duration> {
        Self::nonzero_secs(self.tcp_keepalive_secs)
    }
}

/// TLS settings. TLS is on when both files are given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key.
    pub key_file: Option<PathBuf>,
}

/// Log output settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `text` (human-readable) or `json` (one JSON object per line).
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax, used when `RUST_LOG` is unset. Default `info`.
    pub filter: String,
}

impl Default for LoggingConfig {
    fn default() -> LoggingConfig {
        LoggingConfig { format: LogFormat::Text, filter: "info".to_owned() }
    }
}

/// Format of log lines on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What GetSecurityContact returns (RFC 9116 security.txt fields).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Contact URIs, such as `mailto:security@example.org`. When empty,
    /// GetSecurityContact returns NOT_FOUND.
    pub contact: Vec<String>,
    /// Time after which the contact information is stale, RFC 3339.
    /// Required when `contact` is set.
    pub expires: Option<DateTime<Utc>>,
}

/// Settings of bulk coding: the CodeStream RPC and the asynchronous
/// operations stored under `<data_dir>/operations`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkConfig {
    /// Threads of the pool that codes bulk records, separate from the pool
    /// of synchronous calls so that those never queue behind bulk work. 0
    /// means the number of CPUs. Default 0.
    pub threads: usize,
    /// Records of one CodeStream coded together as one task. Default 256.
    pub stream_chunk_records: usize,
    /// Maximum records of one CodeStream read from the client and not yet
    /// passed to the response stream; the server stops reading until
    /// responses are sent. Default 4096.
    pub stream_max_in_flight_records: usize,
    /// Seconds from CreateOperation within which the upload must start;
    /// after it the operation is timed_out. Default 3600.
    pub upload_timeout_secs: u64,
    /// Seconds after completion (or failure) after which an operation's
    /// input and output are deleted. Default 86400 (24 hours).
    pub retention_secs: u64,
    /// Maximum size in bytes of one upload. Default 5,000,000,000 (5 GB).
    pub max_upload_bytes: u64,
    /// Maximum length in bytes of one input line; a longer line rejects the
    /// whole upload. Default 65536.
    pub max_line_bytes: u64,
    /// Operations coded at the same time. Default 1.
    pub max_concurrent_operations: usize,
    /// Input lines coded and checkpointed together. Default 4096.
    pub chunk_lines: usize,
    /// Maximum operations uploading or waiting to run. Default 64.
    pub queue_capacity: usize,
    /// Seconds between sweeps that apply upload timeouts and retention.
    /// Status calls also apply them. Default 60.
    pub sweep_interval_secs: u64,
    /// A clock for the operation store in place of the system clock, so
    /// that tests can move time. Set only in code, never by the file.
    #[serde(skip)]
    pub clock: Option<StoreClock>,
}

impl Default for BulkConfig {
    fn default() -> BulkConfig {
        BulkConfig {
            threads: 0,
            stream_chunk_records: 256,
            stream_max_in_flight_records: 4096,
            upload_timeout_secs: 3600,
            retention_secs: 24 * 60 * 60,
            max_upload_bytes: 5_000_000_000,
            max_line_bytes: 64 * 1024,
            max_concurrent_operations: 1,
            chunk_lines: 4096,
            queue_capacity: 64,
            sweep_interval_secs: 60,
            clock: None,
        }
    }
}

impl BulkConfig {
    /// Returns the number of threads of the bulk coding pool.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    fn validate(&self, max_response_bytes: usize) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let counts = [
            ("stream_chunk_records", self.stream_chunk_records as u64),
            ("stream_max_in_flight_records", self.stream_max_in_flight_records as u64),
            ("upload_timeout_secs", self.upload_timeout_secs),
            ("retention_secs", self.retention_secs),
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_line_bytes", self.max_line_bytes),
            ("max_concurrent_operations", self.max_concurrent_operations as u64),
            ("chunk_lines", self.chunk_lines as u64),
            ("queue_capacity", self.queue_capacity as u64),
            ("sweep_interval_secs", self.sweep_interval_secs),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("bulk.{name} must be at least 1"));
        }

        if self.threads > MAX_THREADS {
            return invalid(format!("bulk.threads must be at most {MAX_THREADS}; 0 means one per CPU"));
        }
        for (name, value) in [("max_concurrent_operations", self.max_concurrent_operations), ("queue_capacity", self.queue_capacity)] {
            if value > MAX_PERMITS {
                return invalid(format!("bulk.{name} must be at most {MAX_PERMITS}"));
            }
        }

        if self.stream_max_in_flight_records > MAX_IN_FLIGHT_RECORDS {
            return invalid(format!("bulk.stream_max_in_flight_records must be at most {MAX_IN_FLIGHT_RECORDS}"));
        }
        if self.stream_max_in_flight_records < self.stream_chunk_records {
            return invalid(format!(
                "bulk.stream_max_in_flight_records ({}) must be at least bulk.stream_chunk_records ({})",
                self.stream_max_in_flight_records, self.stream_chunk_records
            ));
        }

        // An invalid line is echoed in its error line, and JSON escaping can
        // make each byte up to 6 bytes long (\u0000), so the longest output
        // line must still fit in one DownloadOperationOutput message.
        let longest_output = self.max_line_bytes.saturating_mul(6).saturating_add(1024);
        if longest_output > max_response_bytes as u64 {
            return invalid(format!(
                "bulk.max_line_bytes ({}) is too large for limits.max_response_bytes ({max_response_bytes}); \
                 an error line can be 6 times as long as its input line, so keep max_line_bytes at most \
                 (max_response_bytes - 1024) / 6",
                self.max_line_bytes
            ));
        }

        for (name, secs) in [("upload_timeout_secs", self.upload_timeout_secs), ("retention_secs", self.retention_secs)] {
            if secs > MAX_DURATION_SECS {
                return invalid(format!("bulk.{name} must be at most {MAX_DURATION_SECS} (100 years)"));
            }
        }
        Ok(())
    }
}

/// Upper bound of `bulk.threads`. Each thread is an OS thread started at
/// launch, and with 100,000 a test server spent over ten minutes starting
/// them and did not stop on SIGTERM.
const MAX_THREADS: usize = 1024;

/// Upper bound of the settings that size a tokio semaphore or channel,
/// which panic above `usize::MAX >> 3` permits. The bound is far above any
/// useful value and keeps the checks simple.
const MAX_PERMITS: usize = 1_000_000;

/// Upper bound of `bulk.stream_max_in_flight_records`, which keeps a
/// stream's read-ahead buffer at a few hundred megabytes at most.
const MAX_IN_FLIGHT_RECORDS: usize = 1_000_000;

/// Upper bound of configured durations, which keeps them within chrono's range.
const MAX_DURATION_SECS: u64 = 100 * 365 * 24 * 3600;

/// The clock of the operation store when [`BulkConfig::clock`] replaces the
/// system clock. Two values are equal when they share the same clock.
#[derive(Clone)]
pub struct StoreClock(pub Arc<dyn occoder_operations::Clock>);

impl fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreClock")
    }
}

impl PartialEq for StoreClock {
    fn eq(&self, other: &StoreClock) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A configuration that cannot be used, with the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read the configuration file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("invalid configuration file {path}: {cause}")]
    Parse { path: PathBuf, cause: Box<toml::de::Error> },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Reads a TOML configuration file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|cause| ConfigError::Read { path: path.to_path_buf(), cause })?;
        ServerConfig::from_toml(&text).map_err(|cause| ConfigError::Parse { path: path.to_path_buf(), cause })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<ServerConfig, Box<toml::de::Error>> {
        toml::from_str(text).map_err(Box::new)
    }

    /// Checks the values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        self.auth.validate().map_err(|error| ConfigError::Invalid(format!("[auth]: {error}")))?;
        if self.limits.max_message_bytes < 1024 || self.limits.max_response_bytes < 1024 {
            return invalid("limits.max_message_bytes and limits.max_response_bytes must be at least 1024".into());
        }
        if self.limits.concurrency_limit_per_connection == 0 || self.limits.max_concurrent_streams == 0 {
            return invalid(
                "limits.concurrency_limit_per_connection and limits.max_concurrent_streams must be at least 1".into(),
            );
        }
        for (name, value) in [
            ("concurrency_limit_per_connection", self.limits.concurrency_limit_per_connection),
            ("max_concurrent_batches", self.limits.max_concurrent_batches),
        ] {
            if value > MAX_PERMITS {
                return invalid(format!("limits.{name} must be at most {MAX_PERMITS}"));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("set both tls.cert_file and tls.key_file to enable TLS, or neither".into());
        }
        if !self.security.contact.is_empty() && self.security.expires.is_none() {
            return invalid("security.expires (RFC 3339 time) is required when security.contact is set".into());
        }
        self.bulk.validate(self.limits.max_response_bytes)?;
        if self.dev && !self.listen.ip().is_loopback() {
            return invalid(format!(
                "development mode listens on loopback only, but the listen address is {}; \
                 use 127.0.0.1 or [::1], or leave out --dev",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = ServerConfig::from_toml("").unwrap();

        assert_eq!(config, ServerConfig::default());
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn example_file_lists_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("occoder.example.toml");
        let config = ServerConfig::from_file(&path).unwrap();

        assert_eq!(config, ServerConfig::default());
    }

    #[test]
    fn example_file_has_every_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("occoder.example.toml");
        let example: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();

        for table in ["limits", "tls", "logging", "security", "auth", "bulk"] {
            assert!(example.get(table).is_some_and(toml::Value::is_table), "occoder.example.toml has no [{table}] table");
        }
    }

    #[test]
    fn sections_parse_with_units() {
        let config = ServerConfig::from_toml(
            r#"
            listen = "127.0.0.1:0"
            [limits]
            drain_timeout_secs = 5
            [logging]
            format = "json"
            [auth]
            daily_limit_public = 3
            [security]
            contact = ["mailto:security@example.org"]
            expires = "2030-01-01T00:00:00Z"
            "#,
        )
        .unwrap();

        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.limits.drain_timeout(), Duration::from_secs(5));
        assert_eq!(config.logging.format, LogFormat::Json);
        assert_eq!(config.auth.daily_limit_public, 3);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = ServerConfig::from_toml("[limits]\ndrain_timeout = 5\n").unwrap_err();

        assert!(error.to_string().contains("drain_timeout"), "{error}");
    }

    #[test]
    fn half_tls_is_invalid() {
        let mut config = ServerConfig::default();
        config.tls.cert_file = Some("cert.pem".into());

        assert!(config.validate().unwrap_err().to_string().contains("tls.key_file"));
    }

    #[test]
    fn dev_mode_rejects_public_address() {
        let mut config = ServerConfig { dev: true, ..ServerConfig::default() };
        assert!(config.validate().is_ok());

        config.listen = "0.0.0.0:50051".parse().unwrap();
        assert!(config.validate().unwrap_err().to_string().contains("loopback"));
    }

    /// A named change to a configuration and a fragment of the error it must cause.
    type InvalidCase = (&'static str, fn(&mut ServerConfig), &'static str);

    /// Checks that each case's change makes the default configuration
    /// invalid, with an error that contains the case's fragment.
    fn assert_each_rejected(cases: &[InvalidCase]) {
        for (case, change, fragment) in cases {
            let mut config = ServerConfig::default();
            change(&mut config);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(fragment), "{case}: {error}");
        }
    }

    #[test]
    fn bulk_limits_are_checked() {
        let cases: [InvalidCase; 7] = [
            ("zero chunk", |config| config.bulk.chunk_lines = 0, "bulk.chunk_lines"),
            ("long lines", |config| config.bulk.max_line_bytes = 1 << 20, "bulk.max_line_bytes"),
            ("in flight below chunk", |config| config.bulk.stream_max_in_flight_records = 10, "stream_chunk_records"),
            ("huge read-ahead", |config| config.bulk.stream_max_in_flight_records = 2_000_000, "at most 1000000"),
            ("huge pool", |config| config.bulk.threads = 100_000, "bulk.threads must be at most 1024"),
            ("huge operations", |config| config.bulk.max_concurrent_operations = usize::MAX, "bulk.max_concurrent_operations"),
            ("huge queue", |config| config.bulk.queue_capacity = usize::MAX, "bulk.queue_capacity"),
        ];
        assert_each_rejected(&cases);
    }

    #[test]
    fn semaphore_sizes_are_bounded() {
        let cases: [InvalidCase; 2] = [
            ("connection calls", |config| config.limits.concurrency_limit_per_connection = usize::MAX, "limits.concurrency_limit_per_connection"),
            ("coding slots", |config| config.limits.max_concurrent_batches = usize::MAX, "limits.max_concurrent_batches"),
        ];
        assert_each_rejected(&cases);
    }

    #[test]
    fn bulk_table_parses() {
        let config = ServerConfig::from_toml("[bulk]\nretention_secs = 60\nthreads = 1\n").unwrap();

        assert_eq!(config.bulk.retention_secs, 60);
        assert_eq!(config.bulk.thread_count(), 1);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn contact_needs_expiry() {
        let mut config = ServerConfig::default();
        config.security.contact = vec!["mailto:a@example.org".into()];

        assert!(config.validate().unwrap_err().to_string().contains("security.expires"));
    }
}
