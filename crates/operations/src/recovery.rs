//! Startup scan of the operations directory after a clean stop or a crash.

use std::fs;
use std::path::Path;

use uuid::Uuid;

use crate::error::{IoContext, OperationError};
use crate::fsutil::{self, TEMP_SUFFIX};
use crate::inner::{INPUT_FILE, Inner, OUTPUT_FILE, STATE_FILE};
use crate::state::{OperationRecord, OperationState, STATE_FORMAT_VERSION};

/// Counts from the startup scan of [`OperationStore::open`](crate::OperationStore::open).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Operations loaded from `state.json`, in any state.
    pub loaded: usize,
    /// In-progress operations queued to resume from their checkpoint.
    pub resumed: usize,
    /// In-progress operations failed because their input was missing.
    pub failed: usize,
    /// Temporary files deleted (unfinished uploads and state writes).
    pub removed_temp_files: usize,
    /// Directories without `state.json` deleted (a crash during create).
    pub removed_incomplete_dirs: usize,
    /// Input files deleted from operations still awaiting input (a crash
    /// after the upload's rename but before its state write, so the client
    /// never got a success reply).
    pub removed_unacknowledged_inputs: usize,
    /// Entries skipped because they could not be read or parsed; they stay
    /// on disk for inspection and their operations return NOT_FOUND.
    pub unreadable: usize,
}

/// Loads every operation into `inner` and returns the ids to resume, oldest
/// upload first.
pub(crate) fn recover(inner: &Inner) -> Result<(RecoveryReport, Vec<Uuid>), OperationError> {
    let dir = &inner.operations_dir;
    let mut report = RecoveryReport::default();
    let mut to_resume: Vec<(chrono::DateTime<chrono::Utc>, Uuid)> = Vec::new();

    let entries = fs::read_dir(dir).context(|| format!("failed to list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("failed to list {}", dir.display()))?;
        let path = entry.path();
        let id = match entry.file_name().to_str().map(Uuid::parse_str) {
            Some(Ok(id)) if path.is_dir() => id,
            _ => {
                tracing::warn!(path = %path.display(), "skipping an entry that is not an operation directory");
                report.unreadable += 1;
                continue;
            }
        };
        match recover_operation(inner, id, &path, &mut report) {
            Ok(Some(record)) => {
                report.loaded += 1;
                if record.state == OperationState::InProgress {
                    report.resumed += 1;
                    to_resume.push((record.uploaded_at.unwrap_or(record.created_at), id));
                }
                inner.insert(record);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(operation_id = %id, %error, "skipping an operation that could not be recovered");
                report.unreadable += 1;
            }
        }
    }

    fsutil::sync_dir(dir).context(|| format!("failed to fsync {}", dir.display()))?;
    to_resume.sort();
    Ok((report, to_resume.into_iter().map(|(_, id)| id).collect()))
}

/// Cleans one operation directory and returns its record, or `None` when
/// the directory was an unfinished create and has been deleted.
fn recover_operation(
    inner: &Inner,
    id: Uuid,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Option<OperationRecord>, OperationError> {
    report.removed_temp_files += remove_temp_files(dir)?;

    let state_path = dir.join(STATE_FILE);
    if !state_path.exists() {
        fs::remove_dir_all(dir).context(|| format!("failed to delete {}", dir.display()))?;
        tracing::info!(operation_id = %id, "deleted an operation directory without a state file");
        report.removed_incomplete_dirs += 1;
        return Ok(None);
    }

    let bytes =
        fs::read(&state_path).context(|| format!("failed to read {}", state_path.display()))?;
    let mut record: OperationRecord =
        serde_json::from_slice(&bytes).map_err(|source| OperationError::StateFormat {
            context: format!("failed to parse {}", state_path.display()),
            cause: source,
        })?;
    if record.id != id {
        return Err(OperationError::Internal(format!(
            "{} records operation {} but its directory is named {id}",
            state_path.display(),
            record.id
        )));
    }
    if record.format_version != STATE_FORMAT_VERSION {
        return Err(OperationError::Internal(format!(
            "{} has format version {} but this build reads version {STATE_FORMAT_VERSION}",
            state_path.display(),
            record.format_version
        )));
    }

    let input_path = dir.join(INPUT_FILE);
    match record.state {
        OperationState::AwaitingInput => {
            if fsutil::remove_if_exists(&input_path)
                .context(|| format!("failed to delete {}", input_path.display()))?
            {
                report.removed_unacknowledged_inputs += 1;
                tracing::info!(operation_id = %id, "deleted an upload that finished without a state change");
            }
        }
        OperationState::InProgress if !input_path.exists() => {
            record.state = OperationState::Failed;
            record.error = Some("the input file was missing when the server restarted".to_owned());
            record.completed_at = Some(inner.clock.now());
            crate::inner::write_record(&state_path, &record)?;
            remove_data_files(dir)?;
            report.failed += 1;
            tracing::error!(operation_id = %id, "failed an in-progress operation whose input is missing");
        }
        OperationState::InProgress | OperationState::Complete => {
            if record.expired_at.is_some() {
                remove_data_files(dir)?;
            }
        }
        // Failed and timed-out operations never keep data files; a crash
        // between the state write and the delete can leave them behind.
        OperationState::Failed | OperationState::TimedOut => remove_data_files(dir)?,
    }
    Ok(Some(record))
}

fn remove_temp_files(dir: &Path) -> Result<usize, OperationError> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).context(|| format!("failed to list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("failed to list {}", dir.display()))?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).context(|| format!("failed to delete {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn remove_data_files(dir: &Path) -> Result<(), OperationError> {
    for file in [INPUT_FILE, OUTPUT_FILE] {
        let path = dir.join(file);
        fsutil::remove_if_exists(&path)
            .context(|| format!("failed to delete {}", path.display()))?;
    }
    fsutil::sync_dir(dir).context(|| format!("failed to fsync {}", dir.display()))
}
