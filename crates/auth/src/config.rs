//! Settings of [`AccessControl`](crate::AccessControl), embeddable in the server's TOML file.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{AuthError, Role};

/// Access-control settings. Every field has a default, so an empty TOML table is valid.
///
/// ```toml
/// [auth]
/// token_ttl_secs = 3600
/// daily_limit_public = 1000
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of an access token in seconds. Default 3600 (60 minutes).
    pub token_ttl_secs: u64,
    /// Maximum number of token requests per client within
    /// `token_request_window_secs`; one more starts a cool-down. Default 10.
    pub token_requests_per_window: u32,
    /// Length in seconds of the sliding window for token requests. Default 3600.
    pub token_request_window_secs: u64,
    /// Time in seconds during which a throttled client's token requests are rejected. Default 900.
    pub token_cooldown_secs: u64,
    /// Sustained request rate per client, in requests per second. Default 1.0.
    pub requests_per_second: f64,
    /// Number of requests a client may send at once before the per-second rate
    /// applies. Default 1, which spaces every request by `1 / requests_per_second`.
    pub burst: u32,
    /// Maximum requests per UTC day for a `public` client. Default 1000.
    pub daily_limit_public: u64,
    /// Maximum requests per UTC day for a `partner` client. Default 10000.
    pub daily_limit_partner: u64,
    /// Number of counted requests after which the daily counters are written to
    /// disk inside the request that reaches it. Default 100.
    pub quota_flush_every: u64,
    /// Interval in milliseconds at which the background flusher started by
    /// [`AccessControl::spawn_quota_flusher`](crate::AccessControl::spawn_quota_flusher)
    /// writes changed daily counters. Default 1000.
    pub quota_flush_interval_ms: u64,
    /// Path of the token signing key. A relative path is resolved against the
    /// data directory. Default `token-key` in the data directory. Replicas that
    /// must accept each other's tokens need the same key file content.
    pub token_key_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 3600,
            token_requests_per_window: 10,
            token_request_window_secs: 3600,
            token_cooldown_secs: 900,
            requests_per_second: 1.0,
            burst: 1,
            daily_limit_public: 1000,
            daily_limit_partner: 10_000,
            quota_flush_every: 100,
            quota_flush_interval_ms: 1000,
            token_key_file: None,
        }
    }
}

impl AuthConfig {
    /// Checks that every value is in range.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), AuthError> {
        // Upper bounds keep every duration within chrono's TimeDelta range.
        const MAX_SECS: u64 = 100 * 365 * 24 * 3600;
        let checks: [(bool, &str); 9] = [
            (
                (1..=MAX_SECS).contains(&self.token_ttl_secs),
                "token_ttl_secs must be between 1 and 3153600000",
            ),
            (
                self.token_requests_per_window >= 1,
                "token_requests_per_window must be at least 1",
            ),
            (
                (1..=MAX_SECS).contains(&self.token_request_window_secs),
                "token_request_window_secs must be between 1 and 3153600000",
            ),
            (
                self.token_cooldown_secs <= MAX_SECS,
                "token_cooldown_secs must be at most 3153600000",
            ),
            (
                self.requests_per_second.is_finite()
                    && (0.001..=1_000_000.0).contains(&self.requests_per_second),
                "requests_per_second must be between 0.001 and 1000000",
            ),
            (
                (1..=1_000_000).contains(&self.burst),
                "burst must be between 1 and 1000000",
            ),
            (
                self.daily_limit_public >= 1 && self.daily_limit_partner >= 1,
                "daily_limit_public and daily_limit_partner must be at least 1",
            ),
            (
                self.quota_flush_every >= 1,
                "quota_flush_every must be at least 1",
            ),
            (
                self.quota_flush_interval_ms >= 1,
                "quota_flush_interval_ms must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(AuthError::InvalidConfig((*message).to_owned())),
            None => Ok(()),
        }
    }

    /// Returns the daily request ceiling for `role`.
    pub fn daily_limit(&self, role: Role) -> u64 {
        match role {
            Role::Public => self.daily_limit_public,
            Role::Partner => self.daily_limit_partner,
        }
    }

    /// Returns `token_ttl_secs` as a [`Duration`].
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    /// Returns `quota_flush_interval_ms` as a [`Duration`].
    pub fn quota_flush_interval(&self) -> Duration {
        Duration::from_millis(self.quota_flush_interval_ms)
    }
}
