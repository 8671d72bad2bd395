//! Errors of the access-control boundary and their gRPC statuses.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::{OperationClass, Role};

/// gRPC message for authentication failures and access denials, as worded by the
/// ABS Occupation Coding Service for its HTTP 403 response.
pub const DENY_MESSAGE: &str =
    "User is not authorized to access this resource with an explicit deny";

/// gRPC message when a client exceeds its per-second request rate.
pub const TOO_MANY_REQUESTS_MESSAGE: &str = "Too Many Requests";

/// gRPC message when a client reaches its daily request ceiling.
pub const LIMIT_EXCEEDED_MESSAGE: &str = "Limit Exceeded";

/// Domain of the `google.rpc.ErrorInfo` detail attached to statuses from this crate.
pub const ERROR_DOMAIN: &str = "occoder.auth";

/// Failure of authentication, authorization, rate limiting or of the auth state files.
///
/// The `Display` text is for logs and operators. Clients get the status from
/// [`AuthError::to_status`], whose message is fixed per kind and leaks neither
/// paths nor whether a client id exists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request has no `authorization: Bearer <token>` header.
    #[error("missing bearer token in the authorization header")]
    MissingToken,

    /// The token is malformed or its signature does not match.
    #[error("invalid access token: {0}")]
    InvalidToken(&'static str),

    /// The token's expiry time has passed.
    #[error("access token expired at {expired_at}")]
    ExpiredToken {
        /// Expiry time carried by the token.
        expired_at: DateTime<Utc>,
    },

    /// The token's client was removed, its secret rotated or its role changed since issue.
    #[error(
        "access token of client {client_id} is revoked: the client was removed or its secret rotated"
    )]
    RevokedToken {
        /// Client id carried by the token.
        client_id: String,
    },

    /// The client id is unknown or the secret does not match.
    #[error("invalid credentials for client {client_id}")]
    InvalidCredentials {
        /// Client id presented by the caller.
        client_id: String,
    },

    /// An `Authorization: Basic` header value could not be parsed.
    #[error("invalid Basic authorization header: {0}")]
    InvalidBasicHeader(&'static str),

    /// The client sent too many token requests and is in its cool-down.
    #[error(
        "token requests of client {client_id} are rejected until {until} after more than {limit} requests within {window_secs} s"
    )]
    TokenRequestsThrottled {
        /// Client id presented by the caller.
        client_id: String,
        /// Token requests allowed within `window_secs`.
        limit: u32,
        /// Length of the sliding window, in seconds.
        window_secs: u64,
        /// End of the cool-down.
        until: DateTime<Utc>,
        /// Time from the rejected request until the end of the cool-down.
        retry_after: Duration,
    },

    /// The client's role may not call this class of operation.
    #[error("client {client_id} with role {role} may not call {class} operations")]
    RoleDenied {
        /// Client id of the caller.
        client_id: String,
        /// Role of the caller.
        role: Role,
        /// Class of the rejected operation.
        class: OperationClass,
    },

    /// The client exceeded its per-second request rate.
    #[error(
        "client {client_id} exceeded its rate of {requests_per_second} requests per second; retry after {retry_after:?}"
    )]
    RateLimited {
        /// Client id of the caller.
        client_id: String,
        /// Sustained rate allowed per client.
        requests_per_second: f64,
        /// Requests a client may send at once before the rate applies.
        burst: u32,
        /// Time after which the next request will be accepted.
        retry_after: Duration,
    },

    /// The client reached its request ceiling for the current UTC day.
    #[error(
        "client {client_id} reached its daily limit of {limit} requests; the count resets at {resets_at}"
    )]
    DailyLimitExceeded {
        /// Client id of the caller.
        client_id: String,
        /// Daily ceiling of the client's role.
        limit: u64,
        /// Next UTC midnight.
        resets_at: DateTime<Utc>,
        /// Time from the rejected request until `resets_at`.
        retry_after: Duration,
    },

    /// No registered client has this id.
    #[error("client {0} not found")]
    ClientNotFound(String),

    /// A client name is empty, too long or contains control characters.
    #[error("invalid client name {name:?}: {reason}")]
    InvalidClientName {
        /// Name as given.
        name: String,
        /// Rule that the name breaks.
        reason: &'static str,
    },

    /// A role name is neither `public` nor `partner`.
    #[error("invalid role {0:?}: expected public or partner")]
    InvalidRole(String),

    /// An [`AuthConfig`](crate::AuthConfig) value is out of range.
    #[error("invalid auth configuration: {0}")]
    InvalidConfig(String),

    /// Reading or writing a state file failed.
    #[error("failed to {action} {path}: {cause}")]
    Io {
        /// Operation that failed, such as `read` or `rename into place`.
        action: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error, shown in the message and so not returned by
        /// `Error::source`.
        cause: io::Error,
    },

    /// A state file exists but cannot be parsed.
    #[error("corrupt file {path}: {reason}; restore it from a backup or remove it")]
    CorruptFile {
        /// File that failed to parse.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },

    /// Hashing a new client secret with argon2 failed.
    #[error("failed to hash client secret: {0}")]
    Hashing(String),
}

impl AuthError {
    /// Returns the gRPC status code for this error.
    ///
    /// Token and credential problems map to `UNAUTHENTICATED`, role and token
    /// throttle denials to `PERMISSION_DENIED`, rate and daily limits to
    /// `RESOURCE_EXHAUSTED`, and state file failures to `INTERNAL`.
    pub fn code(&self) -> Code {
        match self {
            AuthError::MissingToken
            | AuthError::InvalidToken(_)
            | AuthError::ExpiredToken { .. }
            | AuthError::RevokedToken { .. }
            | AuthError::InvalidCredentials { .. }
            | AuthError::InvalidBasicHeader(_) => Code::Unauthenticated,
            AuthError::TokenRequestsThrottled { .. } | AuthError::RoleDenied { .. } => {
                Code::PermissionDenied
            }
            AuthError::RateLimited { .. } | AuthError::DailyLimitExceeded { .. } => {
                Code::ResourceExhausted
            }
            AuthError::ClientNotFound(_) => Code::NotFound,
            AuthError::InvalidClientName { .. }
            | AuthError::InvalidRole(_)
            | AuthError::InvalidConfig(_) => Code::InvalidArgument,
            AuthError::Io { .. } | AuthError::CorruptFile { .. } | AuthError::Hashing(_) => {
                Code::Internal
            }
        }
    }

    /// Returns the machine-readable reason sent in the `google.rpc.ErrorInfo` detail,
    /// such as `TOKEN_EXPIRED`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "TOKEN_MISSING",
            AuthError::InvalidToken(_) => "TOKEN_INVALID",
            AuthError::ExpiredToken { .. } => "TOKEN_EXPIRED",
            AuthError::RevokedToken { .. } => "TOKEN_REVOKED",
            AuthError::InvalidCredentials { .. } => "INVALID_CREDENTIALS",
            AuthError::InvalidBasicHeader(_) => "INVALID_BASIC_HEADER",
            AuthError::TokenRequestsThrottled { .. } => "TOKEN_REQUESTS_THROTTLED",
            AuthError::RoleDenied { .. } => "ROLE_NOT_PERMITTED",
            AuthError::RateLimited { .. } => "RATE_LIMITED",
            AuthError::DailyLimitExceeded { .. } => "DAILY_LIMIT_EXCEEDED",
            AuthError::ClientNotFound(_) => "CLIENT_NOT_FOUND",
            AuthError::InvalidClientName { .. } => "INVALID_CLIENT_NAME",
            AuthError::InvalidRole(_) => "INVALID_ROLE",
            AuthError::InvalidConfig(_) => "INVALID_CONFIG",
            AuthError::Io { .. } | AuthError::CorruptFile { .. } | AuthError::Hashing(_) => {
                "INTERNAL"
            }
        }
    }

    /// Converts this error into the gRPC status sent to the client.
    ///
    /// The message starts with [`DENY_MESSAGE`] for `UNAUTHENTICATED` and
    /// `PERMISSION_DENIED`, [`TOO_MANY_REQUESTS_MESSAGE`] for the per-second
    /// limit and [`LIMIT_EXCEEDED_MESSAGE`] for the daily ceiling, followed by
    /// the cause and the fix (see [`AuthError::client_message`]). Every status
    /// carries an `ErrorInfo` detail with [`AuthError::reason`]; rate limits,
    /// daily ceilings and token throttling also carry a `RetryInfo` detail
    /// with the delay until a retry can succeed.
    pub fn to_status(&self) -> tonic::Status {
        let message = self.client_message();

        let mut metadata = HashMap::new();
        let mut details = ErrorDetails::new();
        match self {
            AuthError::RateLimited {
                requests_per_second,
                burst,
                retry_after,
                ..
            } => {
                metadata.insert(
                    "requests_per_second".to_owned(),
                    requests_per_second.to_string(),
                );
                metadata.insert("burst".to_owned(), burst.to_string());
                details.set_retry_info(Some(*retry_after));
            }
            AuthError::DailyLimitExceeded {
                limit,
                resets_at,
                retry_after,
                ..
            } => {
                metadata.insert("limit".to_owned(), limit.to_string());
                metadata.insert("resets_at".to_owned(), resets_at.to_rfc3339());
                details.set_retry_info(Some(*retry_after));
            }
            AuthError::TokenRequestsThrottled {
                limit,
                window_secs,
                until,
                retry_after,
                ..
            } => {
                metadata.insert("until".to_owned(), until.to_rfc3339());
                metadata.insert("limit".to_owned(), limit.to_string());
                metadata.insert("window_secs".to_owned(), window_secs.to_string());
                details.set_retry_info(Some(*retry_after));
            }
            AuthError::RoleDenied { role, class, .. } => {
                metadata.insert("role".to_owned(), role.to_string());
                metadata.insert("operation_class".to_owned(), class.to_string());
            }
            _ => {}
        }
        details.set_error_info(self.reason(), ERROR_DOMAIN, metadata);

        tonic::Status::with_error_details(self.code(), message, details)
    }

    /// Returns the status message for the client: the coding service's
    /// message for the case, then the cause and what to do.
    ///
    /// Credential errors do not say whether the client id exists, and state
    /// file errors name no path.
    pub fn client_message(&self) -> String {
        let token_fix = "request a new token from Auth.CreateToken with the client id and secret";
        match self {
            AuthError::MissingToken => format!(
                "{DENY_MESSAGE}: the request has no `authorization: Bearer <token>` metadata; \
                 {token_fix} and send it in that metadata with every call"
            ),
            AuthError::InvalidToken(reason) => {
                format!("{DENY_MESSAGE}: the access token is invalid ({reason}); {token_fix}")
            }
            AuthError::ExpiredToken { expired_at } => format!(
                "{DENY_MESSAGE}: the access token expired at {}; {token_fix}",
                expired_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            AuthError::RevokedToken { .. } => format!(
                "{DENY_MESSAGE}: the access token is revoked because its client was removed, \
                 its secret rotated or its role changed; {token_fix}"
            ),
            AuthError::InvalidCredentials { .. } => format!(
                "{DENY_MESSAGE}: the client id or secret is wrong; use the values printed by \
                 `occoder clients add` or `occoder clients rotate-secret`"
            ),
            AuthError::InvalidBasicHeader(reason) => format!("{DENY_MESSAGE}: {reason}"),
            AuthError::TokenRequestsThrottled {
                limit,
                window_secs,
                until,
                retry_after,
                ..
            } => format!(
                "{DENY_MESSAGE}: this client sent more than {limit} token requests within \
                 {window_secs} s, so its token requests are rejected until {} (retry in {} s); \
                 reuse each token until it expires instead of requesting one per call",
                until.to_rfc3339_opts(SecondsFormat::Secs, true),
                whole_seconds(*retry_after)
            ),
            AuthError::RoleDenied {
                client_id,
                role,
                class,
            } => format!(
                "{DENY_MESSAGE}: client {client_id} has the {role} role, and {class} methods \
                 need the {} role; register a client for them with \
                 `occoder clients add --role {}`",
                Role::Partner,
                Role::Partner
            ),
            AuthError::RateLimited {
                requests_per_second,
                burst,
                retry_after,
                ..
            } => format!(
                "{TOO_MANY_REQUESTS_MESSAGE}: this client may send {requests_per_second} requests \
                 per second, in bursts of up to {burst}; retry after {} ms",
                retry_after.as_millis().max(1)
            ),
            AuthError::DailyLimitExceeded {
                limit, resets_at, ..
            } => format!(
                "{LIMIT_EXCEEDED_MESSAGE}: this client reached its daily limit of {limit} requests; \
                 the count resets at {} (UTC midnight)",
                resets_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            AuthError::ClientNotFound(_)
            | AuthError::InvalidClientName { .. }
            | AuthError::InvalidRole(_)
            | AuthError::InvalidConfig(_) => self.to_string(),
            AuthError::Io { .. } | AuthError::CorruptFile { .. } | AuthError::Hashing(_) => {
                "internal error in access control".to_owned()
            }
        }
    }
}

/// Rounds a delay up to whole seconds, so that a client waiting that long
/// is never early.
fn whole_seconds(delay: Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}
