//! HMAC-SHA256 signed access tokens.
//!
//! A token is `occ1.<payload>.<mac>`: `payload` is the unpadded URL-safe
//! base64 of the JSON [`TokenClaims`], and `mac` is the unpadded URL-safe
//! base64 of HMAC-SHA256 over the ASCII bytes `occ1.<payload>`, keyed with
//! the 32-byte server key.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::persist::{create_atomic, read_optional};
use crate::{AuthError, Role};

/// File name of the token signing key inside the data directory.
pub const TOKEN_KEY_FILE: &str = "token-key";

const TOKEN_PREFIX: &str = "occ1";
const KEY_BYTES: usize = 32;
const MAC_BYTES: usize = 32;
/// Upper bound on accepted token length, so oversized headers are rejected before decoding.
const MAX_TOKEN_CHARS: usize = 2048;

type HmacSha256 = Hmac<Sha256>;

/// Signed content of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Client id.
    pub sub: String,
    /// Client role when the token was issued.
    pub role: Role,
    /// Client's `secret_generation` when the token was issued.
    pub generation: u64,
    /// Issue time in Unix seconds.
    pub iat: i64,
    /// Expiry time in Unix seconds; the token is rejected from this second on.
    pub exp: i64,
    /// Unique token id, for logs.
    pub jti: Uuid,
}

impl TokenClaims {
    /// Returns the expiry time, or `None` if `exp` is outside chrono's range.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.exp, 0)
    }
}

/// Access token returned to a client, with its expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Token text to send as `authorization: Bearer <token>`.
    pub token: String,
    /// Time from which the token is rejected.
    pub expires_at: DateTime<Utc>,
    /// Unique token id, for logs.
    pub token_id: Uuid,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("token_id", &self.token_id)
            .finish()
    }
}

/// 32-byte HMAC-SHA256 key that signs and verifies access tokens.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; KEY_BYTES],
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Creates a key from raw bytes.
    pub fn from_bytes(key: [u8; KEY_BYTES]) -> Self {
        Self { key }
    }

    /// Generates a random key from the thread-local CSPRNG.
    pub fn generate() -> Self {
        Self {
            key: rand::random(),
        }
    }

    /// Loads the key stored at `path`, first creating it with a random key
    /// (mode 0600) if the file does not exist.
    ///
    /// The file contains the key as unpadded URL-safe base64 on one line.
    /// When several processes start at once, exactly one creates the file and
    /// all of them load that one key.
    ///
    /// # Errors
    /// [`AuthError::Io`] if the file cannot be read or created, and
    /// [`AuthError::CorruptFile`] if it does not contain a 32-byte key.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        if read_optional(path)?.is_none() {
            let encoded = format!("{}\n", URL_SAFE_NO_PAD.encode(Self::generate().key));
            if create_atomic(path, encoded.as_bytes())? {
                tracing::info!(path = %path.display(), "created token signing key");
            }
        }

        let bytes = read_optional(path)?.unwrap_or_default();
        let corrupt = |reason: &str| AuthError::CorruptFile {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("the key is not UTF-8 text"))?;
        let decoded = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| corrupt("the key is not unpadded URL-safe base64"))?;
        let key: [u8; KEY_BYTES] = decoded
            .try_into()
            .map_err(|_| corrupt("the key is not 32 bytes long"))?;
        Ok(Self { key })
    }

    /// Signs `claims` and returns the token text.
    pub fn sign(&self, claims: &TokenClaims) -> String {
        let payload = serde_json::to_vec(claims).expect("token claims serialize to JSON");
        let signed = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(payload));
        let mac = self.mac(signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks the token's format and signature and returns its claims.
    ///
    /// Checks neither expiry nor revocation; [`AccessControl::verify_token`](crate::AccessControl::verify_token)
    /// does both. The MAC comparison is constant-time.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] if the token is malformed or its signature does not match.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, AuthError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidToken("the token is too long"));
        }
        let (signed, mac_text) = token
            .rsplit_once('.')
            .ok_or(AuthError::InvalidToken("the token has no signature part"))?;
        let payload_text = signed
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or(AuthError::InvalidToken(
                "the token does not start with occ1.",
            ))?;

        let mac = URL_SAFE_NO_PAD
            .decode(mac_text)
            .map_err(|_| AuthError::InvalidToken("the signature is not base64"))?;
        if mac.len() != MAC_BYTES {
            return Err(AuthError::InvalidToken(
                "the signature has the wrong length",
            ));
        }
        self.mac(signed.as_bytes())
            .verify_slice(&mac)
            .map_err(|_| AuthError::InvalidToken("the signature does not match"))?;

        // The payload is parsed only after the signature matched, so forged
        // input never reaches the JSON parser.
        let payload = URL_SAFE_NO_PAD
            .decode(payload_text)
            .map_err(|_| AuthError::InvalidToken("the payload is not base64"))?;
        serde_json::from_slice(&payload)
            .map_err(|_| AuthError::InvalidToken("the payload is not valid claims JSON"))
    }

    fn mac(&self, bytes: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts a 32-byte key");
        mac.update(bytes);
        mac
    }
}
