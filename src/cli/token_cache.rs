//! Access tokens of `occoder batch`, kept between runs so that repeated
//! commands do not request a token each time and trip the server's cool-down
//! on token requests.
//!
//! Each server and client id pair has its own file,
//! `$XDG_CACHE_HOME/occoder/token-<server>-<client id>.json` (or under
//! `~/.cache` when `XDG_CACHE_HOME` is unset), readable by its owner only.
//! A file also stores a SHA-256 digest of the client secret, so a token
//! is reused only with the secret that obtained it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Maximum length of the server and client id part of a cache file name,
/// well under the usual 255-byte limit of a file name.
const MAX_KEY_LENGTH: usize = 200;

/// A token as stored in the cache file.
#[derive(Serialize, Deserialize)]
struct CachedToken {
    server: String,
    client_id: String,
    /// Hex SHA-256 digest of the client id and the secret that obtained the
    /// token.
    secret_digest: String,
    access_token: String,
    /// Expiry time in seconds since the Unix epoch.
    expires_at: u64,
}

/// The cache file of one server and client id.
pub(crate) struct TokenCache {
    path: PathBuf,
    server: String,
    client_id: String,
    secret_digest: String,
}

impl TokenCache {
    /// Returns the cache of `client_id` with `secret` on `server` under the
    /// user's cache directory, or `None` when neither `XDG_CACHE_HOME` nor
    /// `HOME` is set.
    pub(crate) fn for_client(server: &str, client_id: &str, secret: &str) -> Option<TokenCache> {
        let directory = cache_dir()?.join("occoder");
        Some(TokenCache::in_dir(&directory, server, client_id, secret))
    }

    fn in_dir(directory: &Path, server: &str, client_id: &str, secret: &str) -> TokenCache {
        let mut key: String = format!("{server}-{client_id}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .collect();
        key.truncate(MAX_KEY_LENGTH);
        TokenCache {
            path: directory.join(format!("token-{key}.json")),
            server: server.to_owned(),
            client_id: client_id.to_owned(),
            secret_digest: secret_digest(client_id, secret),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the cached token and its expiry time, or `None` when the file
    /// is missing, unreadable or corrupt, belongs to another server or
    /// client id whose name maps to the same file, or was stored with
    /// another secret. A wrong or rotated secret therefore fails at once
    /// instead of when the cached token expires.
    pub(crate) fn load(&self) -> Option<(String, SystemTime)> {
        let bytes = fs::read(&self.path).ok()?;
        let cached: CachedToken = serde_json::from_slice(&bytes).ok()?;
        if cached.server != self.server || cached.client_id != self.client_id || cached.secret_digest != self.secret_digest {
            return None;
        }
        Some((cached.access_token, UNIX_EPOCH + Duration::from_secs(cached.expires_at)))
    }

    /// Writes the token to the cache file with mode 0600, through a
    /// temporary file renamed into place, so a reader never sees half a file.
    pub(crate) fn store(&self, access_token: &str, expires_at: SystemTime) -> io::Result<()> {
        let cached = CachedToken {
            server: self.server.clone(),
            client_id: self.client_id.clone(),
            secret_digest: self.secret_digest.clone(),
            access_token: access_token.to_owned(),
            expires_at: expires_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        };
        let directory = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(directory)?;

        let temporary = directory.join(format!(".token.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = create_private_file(&temporary)?;
            file.write_all(&serde_json::to_vec(&cached)?)?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    /// Deletes the cache file, for a token that the server no longer accepts.
    pub(crate) fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Returns the hex SHA-256 digest of `client_id`, a NUL byte and `secret`.
/// Client secrets are long random strings, so the digest does not reveal
/// them.
fn secret_digest(client_id: &str, secret: &str) -> String {
    let digest = Sha256::new().chain_update(client_id).chain_update([0u8]).chain_update(secret).finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `$XDG_CACHE_HOME` when it is an absolute path, as the XDG Base Directory
/// specification requires, or else `$HOME/.cache`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|dir| dir.is_absolute()) {
        return Some(dir);
    }
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(|home| PathBuf::from(home).join(".cache"))
}

#[cfg(unix)]
fn create_private_dir(directory: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(directory)
}

#[cfg(not(unix))]
fn create_private_dir(directory: &Path) -> io::Result<()> {
    fs::create_dir_all(directory)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

// NOTE: other platforms get the default permissions of a new file.
#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_token_loads_back() {
        let directory = tempfile::tempdir().unwrap();
        let cache = TokenCache::in_dir(directory.path(), "http://127.0.0.1:50051", "occ-1234", "secret");
        let expires_at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);

        cache.store("token-text", expires_at).unwrap();

        assert_eq!(cache.load(), Some(("token-text".to_owned(), expires_at)));
    }

    #[cfg(unix)]
    #[test]
    fn cache_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let cache = TokenCache::in_dir(&directory.path().join("occoder"), "http://host:1", "occ-1", "secret");

        cache.store("secret token", SystemTime::now()).unwrap();

        let file_mode = fs::metadata(cache.path()).unwrap().permissions().mode() & 0o777;
        let dir_mode = fs::metadata(directory.path().join("occoder")).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn other_client_in_same_file_is_ignored() {
        let directory = tempfile::tempdir().unwrap();
        // "a/b" and "a_b" map to the same file name.
        let first = TokenCache::in_dir(directory.path(), "http://host:1", "a/b", "secret");
        let second = TokenCache::in_dir(directory.path(), "http://host:1", "a_b", "secret");
        assert_eq!(first.path(), second.path());

        first.store("first token", SystemTime::now()).unwrap();

        assert_eq!(second.load(), None);
    }

    #[test]
    fn token_of_other_secret_is_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let right = TokenCache::in_dir(directory.path(), "http://host:1", "occ-1", "right secret");
        let wrong = TokenCache::in_dir(directory.path(), "http://host:1", "occ-1", "wrong secret");
        assert_eq!(right.path(), wrong.path());

        right.store("access token text", UNIX_EPOCH + Duration::from_secs(2_000_000_000)).unwrap();

        assert_eq!(wrong.load(), None);
        assert!(right.load().is_some());
        assert!(!fs::read_to_string(right.path()).unwrap().contains("right secret"));
    }
}
