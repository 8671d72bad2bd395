//! The model file format.
//!
//! A model file is a 24-byte header followed by the payload:
//!
//! | bytes | content |
//! | --- | --- |
//! | 0..8 | magic `OCCODER` followed by a zero byte |
//! | 8..12 | format version, little-endian `u32` (currently 1) |
//! | 12..20 | payload length in bytes, little-endian `u64` |
//! | 20..24 | CRC-32 (IEEE) of the payload, little-endian `u32` |
//! | 24.. | [`ModelParts`] serialised with postcard |
//!
//! postcard is a maintained, compact serde format. bincode, the usual
//! choice, is unmaintained: its 3.0.0 release is a deliberate compile error
//! (advisory RUSTSEC-2025-0141).
//!
//! Files are written to a temporary file in the same directory, synced and
//! renamed into place, so a crash never leaves a half-written model under
//! the final name.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{InvalidModel, Model, ModelParts};

const MAGIC: &[u8; 8] = b"OCCODER\0";
/// Version of the layout of [`ModelParts`] that this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LENGTH: usize = 24;

/// Conventional extension of model files.
pub const EXTENSION: &str = "occm";

/// Why a model file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("failed to read model file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("failed to write model file {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not an occoder model file: it does not start with the occoder magic bytes")]
    NotAModel { path: PathBuf },
    #[error(
        "model file {path} has format version {found}, but this build of occoder reads version {supported}; \
         retrain the model with this build (occoder train) or use a matching occoder release"
    )]
    UnsupportedVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("model file {path} is truncated: expected {expected} bytes, found {found}; copy the file again")]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    #[error("model file {path} is corrupt: its checksum does not match its contents; copy the file again")]
    ChecksumMismatch { path: PathBuf },
    #[error("model file {path} is corrupt: {message}; copy the file again or retrain")]
    Corrupt { path: PathBuf, message: String },
}

/// Writes `model` to `path` atomically and returns the number of bytes written.
pub fn save(model: &Model, path: &Path) -> Result<u64, ModelFileError> {
    let bytes = encode(model.parts()).map_err(|message| ModelFileError::Corrupt { path: path.into(), message })?;
    let io_error = |cause| ModelFileError::Write { path: path.to_path_buf(), cause };

    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(directory).map_err(io_error)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let temporary = directory.join(format!(".{file_name}.{}.tmp", std::process::id()));

    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        if let Ok(dir) = fs::File::open(directory) {
            dir.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|cause| {
        let _ = fs::remove_file(&temporary);
        io_error(cause)
    })?;
    Ok(bytes.len() as u64)
}

/// Reads and checks a model file.
pub fn load(path: &Path) -> Result<Model, ModelFileError> {
    let bytes = fs::read(path).map_err(|cause| ModelFileError::Read { path: path.to_path_buf(), cause })?;
    let parts = decode(&bytes, path)?;
    Model::from_parts(parts).map_err(|InvalidModel(message)| ModelFileError::Corrupt { path: path.into(), message })
}

/// Serialises model parts with the header.
pub fn encode(parts: &ModelParts) -> Result<Vec<u8>, String> {
    let payload = postcard::to_stdvec(parts).map_err(|error| error.to_string())?;
    let mut bytes = Vec::with_capacity(HEADER_LENGTH + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Checks the header and deserialises the payload. `path` only names the
/// file in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<ModelParts, ModelFileError> {
    let path = path.to_path_buf();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(ModelFileError::NotAModel { path });
    }
    if bytes.len() < HEADER_LENGTH {
        return Err(ModelFileError::Truncated { path, expected: HEADER_LENGTH as u64, found: bytes.len() as u64 });
    }

    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("slice of 4 bytes"));
    if version != FORMAT_VERSION {
        return Err(ModelFileError::UnsupportedVersion { path, found: version, supported: FORMAT_VERSION });
    }
    let payload_length = u64::from_le_bytes(bytes[12..20].try_into().expect("slice of 8 bytes"));
    let checksum = u32::from_le_bytes(bytes[20..24].try_into().expect("slice of 4 bytes"));
    let payload = &bytes[HEADER_LENGTH..];
    if (payload.len() as u64) < payload_length {
        return Err(ModelFileError::Truncated {
            path,
            expected: HEADER_LENGTH as u64 + payload_length,
            found: bytes.len() as u64,
        });
    }
    if payload.len() as u64 > payload_length {
        return Err(ModelFileError::Corrupt {
            path,
            message: format!("{} bytes follow the payload", payload.len() as u64 - payload_length),
        });
    }
    if crc32fast::hash(payload) != checksum {
        return Err(ModelFileError::ChecksumMismatch { path });
    }

    postcard::from_bytes(payload).map_err(|error| ModelFileError::Corrupt { path, message: error.to_string() })
}
