//! Registry of API clients, stored as `clients.json` in the data directory.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::persist::{ensure_dir, io_error, read_optional, write_atomic};
use crate::{AuthError, Clock, Role, SystemClock, lock};

/// File name of the client registry inside the data directory.
pub const CLIENTS_FILE: &str = "clients.json";

/// Prefix of every generated client id.
pub const CLIENT_ID_PREFIX: &str = "occ-";

const FILE_VERSION: u32 = 1;
const MAX_NAME_CHARS: usize = 200;
const SECRET_BYTES: usize = 32;

/// Client secret. Its `Debug` output is redacted so it cannot end up in logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret received from a caller.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// Returns the secret text, for showing it once to the operator or sending it as a credential.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Generates 32 random bytes from the thread-local CSPRNG, encoded as
    /// unpadded URL-safe base64 (43 characters).
    fn generate() -> Self {
        let bytes: [u8; SECRET_BYTES] = rand::random();
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// Public record of a registered client; the secret hash is never exposed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Unique id, `occ-` followed by 16 lowercase hex digits.
    pub id: String,
    /// Human-readable name given by the operator.
    pub name: String,
    /// Access level.
    pub role: Role,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Counter incremented by each secret rotation. Tokens carry it, so a
    /// rotation revokes every token issued before it.
    pub secret_generation: u64,
}

/// Result of registering a client: the id and the secret, which is shown only here.
#[derive(Debug)]
pub struct NewClient {
    /// Generated client id.
    pub client_id: String,
    /// Generated secret; only its argon2 hash is stored.
    pub secret: ClientSecret,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredClient {
    #[serde(flatten)]
    info: ClientInfo,
    /// Argon2id hash of the secret in PHC string format.
    secret_hash: String,
}

#[derive(Serialize, Deserialize)]
struct RegistryFile {
    version: u32,
    clients: Vec<StoredClient>,
}

/// Identity of one version of the registry file, used to notice changes made by other processes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: u64,
}

struct Loaded {
    clients: BTreeMap<String, StoredClient>,
    stamp: Option<FileStamp>,
}

/// Client registry backed by `clients.json`.
///
/// Every read checks the file's size, modification time and inode and reloads
/// it when another process (such as the `clients` admin command) has replaced
/// it, so removals and rotations take effect on running servers at once.
///
/// Changes take an exclusive lock on `clients.json.lock` beside the file, so
/// concurrent changes from several processes, or from several registries in
/// one process, are applied one after another and none is lost.
pub struct ClientRegistry {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    loaded: Mutex<Loaded>,
}

impl fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRegistry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ClientRegistry {
    /// Opens the registry in `data_dir`, creating the directory (mode 0700) if
    /// missing. A missing `clients.json` means no clients yet.
    ///
    /// # Errors
    /// [`AuthError::Io`] if the directory or file cannot be read, and
    /// [`AuthError::CorruptFile`] if the file cannot be parsed.
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        Self::open_with_clock(data_dir, Arc::new(SystemClock))
    }

    /// Opens the registry like [`ClientRegistry::open`], taking creation times from `clock`.
    ///
    /// # Errors
    /// As [`ClientRegistry::open`].
    pub fn open_with_clock(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, AuthError> {
        ensure_dir(data_dir)?;
        let registry = Self {
            path: data_dir.join(CLIENTS_FILE),
            clock,
            loaded: Mutex::new(Loaded {
                clients: BTreeMap::new(),
                stamp: None,
            }),
        };
        registry.refresh(&mut lock(&registry.loaded))?;
        Ok(registry)
    }

    /// Returns the path of `clients.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers a client and returns its new id and secret.
    ///
    /// The secret is generated from 32 random bytes and only its argon2id hash
    /// is stored, so the caller must show the returned secret to the operator now.
    ///
    /// # Errors
    /// [`AuthError::InvalidClientName`] if `name` is empty after trimming,
    /// longer than 200 characters or contains control characters;
    /// [`AuthError::Io`] or [`AuthError::CorruptFile`] if the file cannot be updated.
    pub fn add(&self, name: &str, role: Role) -> Result<NewClient, AuthError> {
        let name = validate_name(name)?;
        let secret = ClientSecret::generate();
        let secret_hash = hash_secret(&secret)?;
        let created_at = self.clock.now();

        let client_id = self.modify(|clients| {
            let id = loop {
                let candidate = format!("{CLIENT_ID_PREFIX}{:016x}", rand::random::<u64>());
                if !clients.contains_key(&candidate) {
                    break candidate;
                }
            };
            let info = ClientInfo {
                id: id.clone(),
                name,
                role,
                created_at,
                secret_generation: 0,
            };
            clients.insert(id.clone(), StoredClient { info, secret_hash });
            Ok(id)
        })?;

        tracing::info!(client_id = %client_id, %role, "registered client");
        Ok(NewClient { client_id, secret })
    }

    /// Returns every registered client, ordered by id.
    ///
    /// # Errors
    /// [`AuthError::Io`] or [`AuthError::CorruptFile`] if a changed file cannot be reloaded.
    pub fn list(&self) -> Result<Vec<ClientInfo>, AuthError> {
        let mut loaded = lock(&self.loaded);
        self.refresh(&mut loaded)?;
        Ok(loaded.clients.values().map(|c| c.info.clone()).collect())
    }

    /// Returns the client with id `client_id`, or `None` if it is not registered.
    ///
    /// # Errors
    /// [`AuthError::Io`] or [`AuthError::CorruptFile`] if a changed file cannot be reloaded.
    pub fn get(&self, client_id: &str) -> Result<Option<ClientInfo>, AuthError> {
        let mut loaded = lock(&self.loaded);
        self.refresh(&mut loaded)?;
        Ok(loaded.clients.get(client_id).map(|c| c.info.clone()))
    }

    /// Removes a client and returns its record. Its tokens are rejected from now on.
    ///
    /// # Errors
    /// [`AuthError::ClientNotFound`] if no client has this id, and
    /// [`AuthError::Io`] or [`AuthError::CorruptFile`] if the file cannot be updated.
    pub fn remove(&self, client_id: &str) -> Result<ClientInfo, AuthError> {
        let removed = self.modify(|clients| {
            clients
                .remove(client_id)
                .map(|c| c.info)
                .ok_or_else(|| AuthError::ClientNotFound(client_id.to_owned()))
        })?;
        tracing::info!(client_id, "removed client");
        Ok(removed)
    }

    /// Replaces a client's secret and returns the new one, shown only here.
    ///
    /// Increments the client's `secret_generation`, which revokes every token
    /// issued with the old secret.
    ///
    /// # Errors
    /// [`AuthError::ClientNotFound`] if no client has this id, and
    /// [`AuthError::Io`] or [`AuthError::CorruptFile`] if the file cannot be updated.
    pub fn rotate_secret(&self, client_id: &str) -> Result<ClientSecret, AuthError> {
        let secret = ClientSecret::generate();
        let secret_hash = hash_secret(&secret)?;
        let generation = self.modify(|clients| {
            let client = clients
                .get_mut(client_id)
                .ok_or_else(|| AuthError::ClientNotFound(client_id.to_owned()))?;
            client.secret_hash = secret_hash;
            client.info.secret_generation += 1;
            Ok(client.info.secret_generation)
        })?;
        tracing::info!(client_id, generation, "rotated client secret");
        Ok(secret)
    }

    /// Checks `secret` against the stored argon2 hash and returns the client's record.
    ///
    /// Takes tens of milliseconds of CPU by design (argon2id with the `argon2`
    /// crate's default cost), so async callers should run it on a blocking thread.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] if the id is unknown or the secret
    /// does not match, and [`AuthError::CorruptFile`] if the stored hash cannot be parsed.
    pub fn verify_secret(
        &self,
        client_id: &str,
        secret: &ClientSecret,
    ) -> Result<ClientInfo, AuthError> {
        let stored = {
            let mut loaded = lock(&self.loaded);
            self.refresh(&mut loaded)?;
            loaded.clients.get(client_id).cloned()
        };
        let invalid = || AuthError::InvalidCredentials {
            client_id: client_id.to_owned(),
        };
        let stored = stored.ok_or_else(invalid)?;

        let hash =
            PasswordHash::new(&stored.secret_hash).map_err(|error| AuthError::CorruptFile {
                path: self.path.clone(),
                reason: format!("secret hash of client {client_id} is invalid: {error}"),
            })?;
        Argon2::default()
            .verify_password(secret.expose().as_bytes(), &hash)
            .map_err(|_| invalid())?;
        Ok(stored.info)
    }

    /// Reloads the file if it changed since it was last read.
    fn refresh(&self, loaded: &mut Loaded) -> Result<(), AuthError> {
        let stamp = self.stamp()?;
        if stamp == loaded.stamp {
            return Ok(());
        }
        loaded.clients = self.read_file()?;
        loaded.stamp = stamp;
        Ok(())
    }

    /// Applies `change` to the freshly reloaded client map and writes the result atomically.
    ///
    /// The in-memory map is replaced only after the write succeeded.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, StoredClient>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let mut loaded = lock(&self.loaded);
        let lock_path = self.path.with_extension("json.lock");
        let lock_error = |source| AuthError::Io { action: "lock", path: lock_path.clone(), cause: source };
        let lock_file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(lock_error)?;
        lock_file.lock().map_err(lock_error)?;
        self.refresh(&mut loaded)?;

        let mut clients = loaded.clients.clone();
        let output = change(&mut clients)?;
        let file = RegistryFile {
            version: FILE_VERSION,
            clients: clients.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("registry serializes to JSON");
        write_atomic(&self.path, &bytes)?;

        loaded.clients = clients;
        loaded.stamp = self.stamp()?;
        Ok(output)
    }

    fn read_file(&self) -> Result<BTreeMap<String, StoredClient>, AuthError> {
        let Some(bytes) = read_optional(&self.path)? else {
            return Ok(BTreeMap::new());
        };
        let corrupt = |reason: String| AuthError::CorruptFile {
            path: self.path.clone(),
            reason,
        };
        let file: RegistryFile =
            serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        if file.version != FILE_VERSION {
            return Err(corrupt(format!(
                "unsupported version {}, expected {FILE_VERSION}",
                file.version
            )));
        }

        let mut clients = BTreeMap::new();
        for client in file.clients {
            let id = client.info.id.clone();
            if clients.insert(id.clone(), client).is_some() {
                return Err(corrupt(format!("client id {id} appears twice")));
            }
        }
        Ok(clients)
    }

    fn stamp(&self) -> Result<Option<FileStamp>, AuthError> {
        match fs::metadata(&self.path) {
            Ok(metadata) => Ok(Some(FileStamp {
                len: metadata.len(),
                modified: metadata.modified().ok(),
                #[cfg(unix)]
                inode: std::os::unix::fs::MetadataExt::ino(&metadata),
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error("read metadata of", &self.path, source)),
        }
    }
}

fn validate_name(name: &str) -> Result<String, AuthError> {
    let trimmed = name.trim();
    let reason = if trimmed.is_empty() {
        Some("the name is empty")
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        Some("the name is longer than 200 characters")
    } else if trimmed.chars().any(char::is_control) {
        Some("the name contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AuthError::InvalidClientName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(trimmed.to_owned()),
    }
}

/// Hashes a secret with argon2id at the `argon2` crate's default cost
/// (version 0.5: 19 MiB of memory, 2 passes, 1 lane) and a random 16-byte salt.
fn hash_secret(secret: &ClientSecret) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|error| AuthError::Hashing(error.to_string()))?;
    Argon2::default()
        .hash_password(secret.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AuthError::Hashing(error.to_string()))
}
