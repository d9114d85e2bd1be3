//! Check before sending: the server's own archive validator (`intake-archive`'s
//! [`SafeArchive::open`] with the server's default [`ExtractLimits`]) run on the
//! local file before anything is sent, so that an archive the server would refuse
//! is refused here with the same code and text, without an upload transaction or a
//! byte on the wire. A multi-GiB upload should not be how one learns that a name in
//! the archive is unsafe.
//!
//! What it cannot see: the server's antivirus verdict, and what only inflating shows
//! (an entry whose data does not match its CRC or declared size); those still come
//! back from the server. A server configured with other limits than the defaults may
//! refuse what passes here (or accept what is refused here: `--no-check`).

use std::path::Path;

use intake_archive::{ExtractError, ExtractLimits, SafeArchive};
use serde::Serialize;

use super::ClientError;

/// Validates the archive at `path` as the server's `extracting_file` step opens it.
/// Returns how many entries it holds. An empty file is left to the server, which
/// refuses it by size (`ERR_FILE_EMPTY`) before any byte is sent.
pub async fn check_archive(path: &Path) -> Result<usize, ClientError> {
    let path = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Ok(0);
        }
        SafeArchive::open(&path, ExtractLimits::default()).map(|a| a.entries().len())
    })
    .await
    .map_err(|e| ClientError::File(format!("checking the archive: {e}")))?;
    match opened {
        Ok(n) => Ok(n),
        Err(e) if e.is_final() => Err(ClientError::Refused {
            code: e.code().to_string(),
            // The text the server's pipeline would give (long names shortened).
            detail: crate::protocol::fit_error_text(&e.to_string()),
        }),
        Err(e) => Err(ClientError::File(e.to_string())),
    }
}

/// One accepted file of an archive, as `intake archive check` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedEntry {
    /// Its name in the archive.
    pub name: String,
    /// Its size, inflated.
    pub size: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// What `intake archive check` found in one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CheckReport {
    /// Accepted: every file, inflated and hashed exactly as the server would.
    Accepted {
        /// The archive's path as given.
        file: String,
        /// Its files, in archive order.
        entries: Vec<CheckedEntry>,
    },
    /// Refused with the server's code and text.
    Refused {
        /// The archive's path as given.
        file: String,
        /// The server's stable code (`ERR_ARCHIVE_…`).
        error_code: String,
        /// The server's message.
        message: String,
    },
}

/// Validates the archive at `path` and inflates every file (into a scratch file
/// under `scratch`, removed as it goes), as the server's extraction would: the
/// CRCs, sizes and deflate streams are checked too, not only the directory.
pub fn inspect(path: &Path, scratch: &Path) -> CheckReport {
    let file = path.display().to_string();
    match inflate_all(path, scratch) {
        Ok(entries) => CheckReport::Accepted { file, entries },
        Err(e) => CheckReport::Refused {
            file,
            error_code: e.code().to_string(),
            message: crate::protocol::fit_error_text(&e.to_string()),
        },
    }
}

fn inflate_all(path: &Path, scratch: &Path) -> Result<Vec<CheckedEntry>, ExtractError> {
    let mut archive = SafeArchive::open(path, ExtractLimits::default())?;
    let dest = scratch.join("entry");
    let mut entries = Vec::with_capacity(archive.entries().len());
    for entry in archive.entries().to_vec() {
        let extracted = archive.extract_to(&entry, &dest);
        let _ = std::fs::remove_file(&dest);
        let extracted = extracted?;
        entries.push(CheckedEntry {
            name: entry.name,
            size: extracted.size,
            sha256: extracted.sha256,
        });
    }
    Ok(entries)
}
