//! The access-control facade that the server opens once and shares.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::persist::{ensure_dir, read_optional, write_atomic};
use crate::quota::{QuotaFlusher, Quotas};
use crate::registry::{ClientRegistry, ClientSecret};
use crate::throttle::{TokenRequestThrottle, seconds};
use crate::token::{IssuedToken, TOKEN_KEY_FILE, TokenClaims, TokenKey};
use crate::{AuthConfig, AuthError, Clock, OperationClass, Principal, Role, SystemClock};

/// File name of the development client's credentials inside the data directory.
pub const DEV_CLIENT_FILE: &str = "dev-client.json";

/// Registry name of the development client created by [`AccessControl::ensure_dev_client`].
pub const DEV_CLIENT_NAME: &str = "development";

/// Client id and secret presented to obtain an access token.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Registered client id.
    pub client_id: String,
    /// Client secret; `Debug` output is redacted.
    pub secret: ClientSecret,
}

impl Credentials {
    /// Creates credentials from separate id and secret fields.
    pub fn new(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: ClientSecret::new(secret),
        }
    }

    /// Parses an `Authorization` header value of the form `Basic base64(client_id:secret)`.
    ///
    /// The scheme name is case-insensitive and the base64 may be padded or
    /// unpadded (standard alphabet, RFC 7617). The id ends at the first colon,
    /// so the secret may contain colons.
    ///
    /// # Errors
    /// [`AuthError::InvalidBasicHeader`] if the scheme is not `Basic`, the
    /// payload is not base64 or not UTF-8, the colon is missing, or the id or
    /// secret is empty.
    pub fn from_basic_header(value: &str) -> Result<Self, AuthError> {
        let (scheme, encoded) =
            value
                .trim()
                .split_once(' ')
                .ok_or(AuthError::InvalidBasicHeader(
                    "expected `Basic <base64 of client_id:secret>`",
                ))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::InvalidBasicHeader("the scheme is not Basic"));
        }

        let encoded = encoded.trim();
        let decoded = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| AuthError::InvalidBasicHeader("the credentials are not valid base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| AuthError::InvalidBasicHeader("the credentials are not UTF-8"))?;

        let (client_id, secret) = text.split_once(':').ok_or(AuthError::InvalidBasicHeader(
            "missing colon between client id and secret",
        ))?;
        if client_id.is_empty() {
            return Err(AuthError::InvalidBasicHeader("the client id is empty"));
        }
        if secret.is_empty() {
            return Err(AuthError::InvalidBasicHeader("the secret is empty"));
        }
        Ok(Self::new(client_id, secret))
    }
}

/// Credentials of the development client, for printing by `serve --dev`.
#[derive(Clone, Debug)]
pub struct DevCredentials {
    /// Client id of the development client.
    pub client_id: String,
    /// Its secret, also stored in plain text in `dev-client.json`.
    pub secret: ClientSecret,
    /// Whether the client was registered or its secret replaced by this call.
    pub created: bool,
}

#[derive(Serialize, Deserialize)]
struct DevClientFile {
    client_id: String,
    secret: String,
}

/// Owner of the client registry, the token key, the token request throttle
/// and the quotas of one server process.
///
/// Open it once with [`AccessControl::open`], wrap it in an [`Arc`] and share
/// it between the gRPC layer ([`AuthLayer`](crate::AuthLayer)) and the token RPC handler.
pub struct AccessControl {
    config: AuthConfig,
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    registry: ClientRegistry,
    key: TokenKey,
    throttle: TokenRequestThrottle,
    quotas: Quotas,
}

impl fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessControl")
            .field("data_dir", &self.data_dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AccessControl {
    /// Opens the access-control state in `data_dir` with the system clock.
    ///
    /// Creates the directory (mode 0700) and the token key file (mode 0600)
    /// if missing, loads `clients.json` and today's counts from `quota-usage.json`.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfig`] if `config` is out of range,
    /// [`AuthError::Io`] if a file cannot be read or created, and
    /// [`AuthError::CorruptFile`] if a file cannot be parsed.
    pub fn open(data_dir: &Path, config: AuthConfig) -> Result<Self, AuthError> {
        Self::open_with_clock(data_dir, config, Arc::new(SystemClock))
    }

    /// Opens the state like [`AccessControl::open`], reading time from `clock`.
    ///
    /// # Errors
    /// As [`AccessControl::open`].
    pub fn open_with_clock(
        data_dir: &Path,
        config: AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthError> {
        config.validate()?;
        ensure_dir(data_dir)?;

        let key_path = match &config.token_key_file {
            Some(path) => data_dir.join(path),
            None => data_dir.join(TOKEN_KEY_FILE),
        };
        let key = TokenKey::load_or_create(&key_path)?;
        let registry = ClientRegistry::open_with_clock(data_dir, Arc::clone(&clock))?;
        let quotas = Quotas::open(data_dir, &config, clock.now())?;
        let throttle = TokenRequestThrottle::new(&config);

        tracing::info!(data_dir = %data_dir.display(), "opened access control");
        Ok(Self {
            config,
            data_dir: data_dir.to_path_buf(),
            clock,
            registry,
            key,
            throttle,
            quotas,
        })
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Returns the client registry, for the client administration commands.
    pub fn registry(&self) -> &ClientRegistry {
        &self.registry
    }

    /// Returns the current time of the clock that this instance uses.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Verifies the credentials and issues an access token valid for `token_ttl_secs`.
    ///
    /// The request is first counted by the token request throttle (only for
    /// registered client ids, so unknown ids cannot fill its memory), then the
    /// secret is checked with argon2, which costs tens of milliseconds of
    /// CPU: async callers should use `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] (`UNAUTHENTICATED`) if the id is
    /// unknown or the secret wrong, [`AuthError::TokenRequestsThrottled`]
    /// (`PERMISSION_DENIED`) during a cool-down, and [`AuthError::Io`] or
    /// [`AuthError::CorruptFile`] if a changed registry file cannot be reloaded.
    pub fn issue_token(&self, credentials: &Credentials) -> Result<IssuedToken, AuthError> {
        let client_id = credentials.client_id.as_str();
        let now = self.clock.now();

        if self.registry.get(client_id)?.is_none() {
            // Debug level, because unknown ids are not throttled and could
            // flood the log. The id comes from the caller and may be of any
            // length, so logs and the error show at most its start.
            let shortened = shortened_id(client_id);
            tracing::debug!(client_id = %shortened, "rejected token request of unknown client");
            return Err(AuthError::InvalidCredentials {
                client_id: shortened,
            });
        }
        self.throttle.record(client_id, now)?;
        let client = match self.registry.verify_secret(client_id, &credentials.secret) {
            Ok(client) => client,
            Err(error) => {
                tracing::info!(client_id, %error, "rejected token request");
                return Err(error);
            }
        };

        // Tokens carry whole seconds, so the expiry is rounded down to the
        // second that verification enforces.
        let exact_expiry = now + seconds(self.config.token_ttl_secs);
        let expires_at =
            DateTime::from_timestamp(exact_expiry.timestamp(), 0).unwrap_or(exact_expiry);
        let claims = TokenClaims {
            sub: client.id,
            role: client.role,
            generation: client.secret_generation,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4(),
        };
        let token = self.key.sign(&claims);

        tracing::info!(client_id, token_id = %claims.jti, %expires_at, "issued access token");
        Ok(IssuedToken {
            token,
            expires_at,
            token_id: claims.jti,
        })
    }

    /// Verifies an access token and returns the caller's identity.
    ///
    /// Checks the signature (constant-time), the expiry against this
    /// instance's clock, and that the client is still registered with the same
    /// role and secret generation as when the token was issued.
    ///
    /// # Errors
    /// All errors map to `UNAUTHENTICATED`. [`AuthError::InvalidToken`] means a
    /// malformed or tampered token, [`AuthError::ExpiredToken`] an expired one,
    /// and [`AuthError::RevokedToken`] a token whose client was removed or whose
    /// secret was rotated.
    pub fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self.key.verify(token)?;
        let expires_at = claims
            .expires_at()
            .ok_or(AuthError::InvalidToken("the expiry time is out of range"))?;
        if self.clock.now() >= expires_at {
            return Err(AuthError::ExpiredToken {
                expired_at: expires_at,
            });
        }

        let current = self.registry.get(&claims.sub)?;
        match current {
            Some(client)
                if client.secret_generation == claims.generation && client.role == claims.role =>
            {
                Ok(Principal {
                    client_id: claims.sub,
                    role: client.role,
                    token_id: claims.jti,
                    expires_at,
                })
            }
            _ => Err(AuthError::RevokedToken {
                client_id: claims.sub,
            }),
        }
    }

    /// Checks the role, then counts one request against the per-second rate
    /// and the daily ceiling of the principal's role. A rejected request is not counted.
    ///
    /// # Errors
    /// [`AuthError::RoleDenied`] (`PERMISSION_DENIED`) if the role may not
    /// call `class`, [`AuthError::RateLimited`] (`RESOURCE_EXHAUSTED`, "Too
    /// Many Requests") with the delay until the next accepted request, and
    /// [`AuthError::DailyLimitExceeded`] (`RESOURCE_EXHAUSTED`, "Limit Exceeded").
    pub fn admit(&self, principal: &Principal, class: OperationClass) -> Result<(), AuthError> {
        principal.require(class)?;
        self.quotas
            .admit(&principal.client_id, principal.role, self.clock.now())
    }

    /// Verifies `token` and admits one request of `class`: [`AccessControl::verify_token`]
    /// followed by [`AccessControl::admit`].
    ///
    /// # Errors
    /// Any error of those two functions.
    pub fn authorize(&self, token: &str, class: OperationClass) -> Result<Principal, AuthError> {
        let principal = self.verify_token(token)?;
        self.admit(&principal, class)?;
        Ok(principal)
    }

    /// Returns how many requests of `client_id` were admitted on the current UTC day.
    pub fn daily_usage(&self, client_id: &str) -> u64 {
        self.quotas.daily_usage(client_id, self.clock.now())
    }

    /// Writes the daily request counts to disk if they changed. Call it at clean shutdown.
    ///
    /// # Errors
    /// [`AuthError::Io`] if the file cannot be written; the counts stay in
    /// memory and the next flush retries.
    pub fn flush(&self) -> Result<(), AuthError> {
        self.quotas.flush()
    }

    /// Starts a thread that writes changed daily counts every `quota_flush_interval_ms`.
    ///
    /// Keep the returned guard for the server's lifetime; dropping it stops the
    /// thread after a final write. Without it, counts are written every
    /// `quota_flush_every` requests, on [`AccessControl::flush`] and on drop.
    pub fn spawn_quota_flusher(&self) -> QuotaFlusher {
        self.quotas
            .spawn_flusher(self.config.quota_flush_interval())
    }

    /// Creates or reuses the development client for `serve --dev` and returns its credentials.
    ///
    /// The client is a `partner` named `development`. Its id and secret are
    /// stored in plain text in `dev-client.json` (mode 0600), so the same
    /// credentials work across restarts. The secret is replaced when the file
    /// is missing, unreadable or no longer matches the registry.
    /// Never call this outside development mode: anyone who can read the data
    /// directory can use the stored secret.
    ///
    /// # Errors
    /// [`AuthError::Io`] or [`AuthError::CorruptFile`] if the registry or the
    /// credentials file cannot be read or written.
    pub fn ensure_dev_client(&self) -> Result<DevCredentials, AuthError> {
        let path = self.data_dir.join(DEV_CLIENT_FILE);
        let stored = read_optional(&path)?
            .and_then(|bytes| serde_json::from_slice::<DevClientFile>(&bytes).ok());

        if let Some(stored) = stored
            && self.registry.get(&stored.client_id)?.is_some()
        {
            let secret = ClientSecret::new(stored.secret);
            let created = match self.registry.verify_secret(&stored.client_id, &secret) {
                Ok(_) => {
                    tracing::warn!(client_id = %stored.client_id, "development mode: reusing development client");
                    return Ok(DevCredentials {
                        client_id: stored.client_id,
                        secret,
                        created: false,
                    });
                }
                Err(AuthError::InvalidCredentials { .. }) => {
                    let secret = self.registry.rotate_secret(&stored.client_id)?;
                    DevCredentials {
                        client_id: stored.client_id,
                        secret,
                        created: true,
                    }
                }
                Err(error) => return Err(error),
            };
            self.write_dev_file(&path, &created)?;
            tracing::warn!(client_id = %created.client_id, "development mode: replaced development client secret");
            return Ok(created);
        }

        let new_client = self.registry.add(DEV_CLIENT_NAME, Role::Partner)?;
        let created = DevCredentials {
            client_id: new_client.client_id,
            secret: new_client.secret,
            created: true,
        };
        self.write_dev_file(&path, &created)?;
        tracing::warn!(client_id = %created.client_id, "development mode: registered development client");
        Ok(created)
    }

    fn write_dev_file(&self, path: &Path, credentials: &DevCredentials) -> Result<(), AuthError> {
        let file = DevClientFile {
            client_id: credentials.client_id.clone(),
            secret: credentials.secret.expose().to_owned(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("dev client file serializes to JSON");
        write_atomic(path, &bytes)
    }
}

/// Maximum length, in characters, of a client id that logs and errors
/// repeat in full. Registered ids are far shorter, so only an unknown id is
/// ever cut.
const MAX_SHOWN_CLIENT_ID: usize = 64;

/// Returns `client_id`, cut to [`MAX_SHOWN_CLIENT_ID`] characters with "..."
/// appended when it is longer.
fn shortened_id(client_id: &str) -> String {
    match client_id.char_indices().nth(MAX_SHOWN_CLIENT_ID) {
        Some((cut, _)) => format!("{}...", &client_id[..cut]),
        None => client_id.to_owned(),
    }
}
