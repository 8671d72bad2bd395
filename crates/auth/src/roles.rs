//! Client roles, operation classes and the verified caller identity.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AuthError;

/// Access level of a registered client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Any registered user: synchronous operations only, 1,000 requests per UTC day by default.
    Public,
    /// Agreed partner: synchronous and bulk operations, 10,000 requests per UTC day by default.
    Partner,
}

impl Role {
    /// Returns whether this role may call operations of `class`.
    ///
    /// Both roles may call [`OperationClass::Synchronous`] operations; only
    /// [`Role::Partner`] may call [`OperationClass::Bulk`] operations.
    pub fn permits(self, class: OperationClass) -> bool {
        match class {
            OperationClass::Synchronous => true,
            OperationClass::Bulk => self == Role::Partner,
        }
    }

    /// Returns the lowercase name used in files, tokens and configuration (`public`, `partner`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Partner => "partner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;

    /// Parses `public` or `partner`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("public") {
            Ok(Role::Public)
        } else if s.eq_ignore_ascii_case("partner") {
            Ok(Role::Partner)
        } else {
            Err(AuthError::InvalidRole(s.to_owned()))
        }
    }
}

/// Kind of operation, used to decide which roles may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationClass {
    /// Listing topics and models, coding one record or a small batch.
    Synchronous,
    /// Streaming and asynchronous (job) operations.
    Bulk,
}

impl fmt::Display for OperationClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationClass::Synchronous => "synchronous",
            OperationClass::Bulk => "bulk",
        })
    }
}

/// Caller identity established from a verified access token.
///
/// The authentication layer inserts it into the request extensions, so a
/// tonic handler reads it with `request.extensions().get::<Principal>()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Registered client id, such as `occ-3f9a0c1d2b4e5f60`.
    pub client_id: String,
    /// Role recorded in the client registry when the token was verified.
    pub role: Role,
    /// Unique id of the access token, for correlating logs.
    pub token_id: Uuid,
    /// Time at which the access token expires.
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    /// Returns `Ok(())` if this principal's role may call `class`.
    ///
    /// # Errors
    /// [`AuthError::RoleDenied`] (gRPC `PERMISSION_DENIED`) otherwise.
    pub fn require(&self, class: OperationClass) -> Result<(), AuthError> {
        if self.role.permits(class) {
            Ok(())
        } else {
            Err(AuthError::RoleDenied {
                client_id: self.client_id.clone(),
                role: self.role,
                class,
            })
        }
    }
}
