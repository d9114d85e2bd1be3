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

use intake_archive::{ExtractLimits, SafeArchive};

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
            detail: e.to_string(),
        }),
        Err(e) => Err(ClientError::File(e.to_string())),
    }
}
