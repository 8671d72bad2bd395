//! Crash-safe writes of the small state files in the data directory.
//!
//! Every file is written to a temporary file in the same directory and
//! flushed with `fsync`. It is then renamed over the target, or hard-linked
//! to it when the target must not be replaced, and the directory is synced so
//! the new name survives a power loss. Files are created with mode 0600 on Unix
//! because they contain password hashes, the token signing key or usage data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::AuthError;

/// Creates `dir` and its parents if missing; a new directory gets mode 0700 on Unix.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|source| io_error("create directory", dir, source))
}

/// Reads `path`, returning `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AuthError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error("read", path, source)),
    }
}

/// Replaces `path` with `bytes` atomically: readers see the old or the new content, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let temp = write_temp(path, bytes)?;
    if let Err(source) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io_error("rename into place", path, source));
    }
    sync_parent(path)
}

/// Writes `bytes` to `path` only if `path` does not exist yet.
///
/// Returns `false` when another process created the file first, in which case
/// the existing file is left untouched. The check and the creation are one
/// atomic `link` call, so two processes racing here never both win.
pub(crate) fn create_atomic(path: &Path, bytes: &[u8]) -> Result<bool, AuthError> {
    let temp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(io_error("create", path, source)),
    }
}

fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, AuthError> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("state");
    let temp = path.with_file_name(format!(
        ".{file_name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }

    let result = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match result {
        Ok(()) => Ok(temp),
        Err(source) => {
            let _ = fs::remove_file(&temp);
            Err(io_error("write", &temp, source))
        }
    }
}

fn sync_parent(path: &Path) -> Result<(), AuthError> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| io_error("sync directory", parent, source))
}

pub(crate) fn io_error(action: &'static str, path: &Path, source: io::Error) -> AuthError {
    AuthError::Io {
        action,
        path: path.to_path_buf(),
        cause: source,
    }
}
