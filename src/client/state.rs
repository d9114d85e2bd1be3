//! Resuming across processes: a small JSON state file per upload, so that a rerun
//! of the same command (same server, class, field and archive path) goes on with
//! the same upload instead of starting over. It holds the upload id, the file's
//! identity (path, size, mtime, SHA-256 of its first and last MiB), the file
//! session, the part size and the parts completed so far. The parts the store
//! really holds are asked of the server on resume (the parts endpoint, see
//! `docs/PROTOCOL.md`); the file's list is only what this client saw.
//!
//! Files live in `$XDG_STATE_HOME/intake/uploads/` (else
//! `~/.local/state/intake/uploads/`), or `<--state-dir>/uploads/`. Each is written
//! whole to a temp file and renamed into place, so a kill never leaves half a file.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ClientError;
use super::progress::{Progress, StepUpdate};

/// Bytes hashed at each end of the file.
const EDGE: u64 = 1 << 20;

/// The platform's usual state directory for intake: `$XDG_STATE_HOME/intake`, else
/// `~/.local/state/intake`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("intake"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/intake"))
}

/// What makes a file the same file: a rerun refuses to resume with any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// The absolute path.
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, epoch milliseconds.
    pub mtime_ms: i64,
    /// SHA-256 of the first MiB (or the whole file when shorter), hex.
    pub head_sha256: String,
    /// SHA-256 of the last MiB (or the whole file when shorter), hex.
    pub tail_sha256: String,
}

impl FileIdentity {
    /// Reads the identity of `path` (blocking: it hashes up to 2 MiB).
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let path = std::path::absolute(path)?;
        let mut f = std::fs::File::open(&path)?;
        let meta = f.metadata()?;
        let mtime_ms = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let size = meta.len();
        let mut edge = |from: u64| -> std::io::Result<String> {
            f.seek(SeekFrom::Start(from))?;
            let mut buf = Vec::with_capacity(EDGE.min(size) as usize);
            (&mut f).take(EDGE).read_to_end(&mut buf)?;
            Ok(hex::encode(Sha256::digest(&buf)))
        };
        let head_sha256 = edge(0)?;
        let tail_sha256 = edge(size.saturating_sub(EDGE))?;
        Ok(FileIdentity {
            path,
            size,
            mtime_ms,
            head_sha256,
            tail_sha256,
        })
    }

    /// What differs from `now`, for the refusal; `None` when it is the same file.
    pub fn differs(&self, now: &FileIdentity) -> Option<&'static str> {
        if self.size != now.size {
            Some("its size changed")
        } else if self.mtime_ms != now.mtime_ms {
            Some("its modification time changed")
        } else if self.head_sha256 != now.head_sha256 || self.tail_sha256 != now.tail_sha256 {
            Some("its content changed")
        } else {
            None
        }
    }
}

/// The saved state of one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// Format version of this file.
    pub version: u32,
    pub server: String,
    pub class: i64,
    pub field: i64,
    pub file: FileIdentity,
    /// The upload transaction.
    pub upload_id: String,
    /// The file session, once `presigned_url_ready` gave one.
    pub session_id: Option<String>,
    pub multipart: bool,
    /// Part size of a multipart session.
    pub chunk_size: Option<u64>,
    pub total_parts: u64,
    /// Parts this client saw stored: part number → ETag.
    pub parts: BTreeMap<u32, String>,
}

/// Where one command's state lives.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file of uploading `file` to `server`'s `class`/`field`, under `dir`.
    pub fn new(dir: &Path, server: &str, class: i64, field: i64, file: &Path) -> StateFile {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let key = Sha256::digest(
            format!(
                "{}\n{class}\n{field}\n{}",
                server.trim_end_matches('/'),
                file.display()
            )
            .as_bytes(),
        );
        StateFile {
            path: dir
                .join("uploads")
                .join(format!("{}.json", &hex::encode(key)[..32])),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, if any. A file that does not parse is treated as absent
    /// (and replaced by the next save).
    pub fn load(&self) -> Result<Option<ResumeState>, ClientError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::File(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Writes `state` atomically (temp file, then rename).
    pub fn save(&self, state: &ResumeState) -> Result<(), ClientError> {
        let fail = |e: std::io::Error| ClientError::File(format!("{}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_vec_pretty(state).expect("serializable");
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }

    /// Forgets the upload (it ended, or `--fresh`).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Passes every report on to `inner` and saves each stored part into the state
/// file as it lands, so that a kill at any moment loses at most the parts in flight.
pub struct Persisting {
    pub inner: std::sync::Arc<dyn Progress>,
    pub file: StateFile,
    pub state: Mutex<ResumeState>,
}

impl Progress for Persisting {
    fn transfer_started(&self, total: u64, parts: u64, done: u64) {
        self.inner.transfer_started(total, parts, done)
    }
    fn bytes(&self, delta: i64) {
        self.inner.bytes(delta)
    }
    fn part_done(&self, part: u32, e_tag: &str) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.parts.insert(part, e_tag.to_string());
            if let Err(e) = self.file.save(&state) {
                tracing::warn!(error = %e, "saving the resume state");
            }
        }
        self.inner.part_done(part, e_tag)
    }
    fn part_refused(&self, part: u32, why: &str) {
        self.inner.part_refused(part, why)
    }
    fn transfer_done(&self) {
        self.inner.transfer_done()
    }
    fn reconnecting(&self, attempt: u32, reason: &str) {
        self.inner.reconnecting(attempt, reason)
    }
    fn step(&self, update: &StepUpdate) {
        self.inner.step(update)
    }
    fn finished(&self) {
        self.inner.finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sees_a_changed_byte_in_either_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.zip");
        let mut data = vec![7u8; 3 * EDGE as usize];
        std::fs::write(&p, &data).unwrap();
        let before = FileIdentity::of(&p).unwrap();
        assert_eq!(before.differs(&FileIdentity::of(&p).unwrap()), None);
        let last = data.len() - 1;
        data[last] = 8;
        std::fs::write(&p, &data).unwrap();
        let mut after = FileIdentity::of(&p).unwrap();
        after.mtime_ms = before.mtime_ms;
        assert_eq!(before.differs(&after), Some("its content changed"));
    }
}
