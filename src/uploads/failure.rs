//! Why processing an uploaded file stopped, as one table: each failure's stable
//! code, the step it is reported under, the message a person reads, and whether a
//! retry can help (a dependency failed) or not (the input is bad, or gone). The way
//! `WsError` carries the socket's table, this carries the pipeline's.

use serde_json::{Map, Value, json};

use crate::domain::{AvStatus, Step};
use crate::scan::ScanError;
use crate::store::StoreError;
use intake_archive::ExtractError;

/// Every way a job can stop before its records exist.
#[derive(Debug, thiserror::Error)]
pub enum PipelineFailure {
    /// The database failed (transient).
    #[error("database: {0}")]
    Database(String),
    /// The object store failed (transient).
    #[error("object store: {0}")]
    Storage(String),
    /// clamd failed or did not answer (transient).
    #[error("antivirus: {0}")]
    Scanner(String),
    /// The local scratch disk failed (transient).
    #[error("{0}")]
    LocalIo(String),
    /// Something unexpected, such as a task that panicked (transient).
    #[error("{0}")]
    Internal(String),
    /// The upload transaction was deleted.
    #[error("The upload no longer exists.")]
    UploadGone,
    /// The document field was deleted.
    #[error("The document field no longer exists.")]
    FieldGone,
    /// The uploaded object vanished from the store.
    #[error("The uploaded file is no longer in the object store.")]
    FileMissing,
    /// A file (or the archive) is larger than clamd accepts.
    #[error("{what} is larger than the antivirus scanner accepts, so it cannot be verified.")]
    ScanTooLarge {
        /// Where it happened.
        step: Step,
        /// "The archive", or "File “name”".
        what: String,
    },
    /// clamd found a threat; the archive is quarantined.
    #[error("{}", infected_message(.signature, .member.as_deref()))]
    Infected {
        /// clamd's signature name.
        signature: String,
        /// The archive entry it was found in (none: the archive as a whole).
        member: Option<String>,
    },
    /// A retry found the archive already quarantined by an earlier attempt.
    #[error("The uploaded file was quarantined as infected. No records were created.")]
    AlreadyQuarantined,
    /// The archive is refused by the validator (final) or its scratch disk failed.
    #[error("{0}")]
    Archive(ExtractError),
    /// A job of a kind this version does not run.
    #[error("unknown job kind {0}")]
    UnknownJob(String),
    /// A job whose payload does not parse.
    #[error("{0}")]
    BadJob(String),
    /// Transient failures until the attempts ran out.
    #[error("Processing failed after {attempts} attempts ({code}: {last}).")]
    OutOfAttempts {
        /// Attempts made.
        attempts: i64,
        /// The code of the last transient failure.
        code: &'static str,
        /// Its message.
        last: String,
    },
    /// The node running the job stopped heartbeating (killed, crashed, cut off) and
    /// another node took the job over (transient: the attempt is counted, so a job
    /// that crashes its process every time ends with `OutOfAttempts`).
    #[error("The node processing this file stopped before finishing.")]
    WorkerLost,
    /// The server's local scratch disk (`<data_dir>/tmp`) is full (transient: space
    /// may be freed). Not the object store, which is what an operator would
    /// otherwise go and look at.
    #[error("The server's local disk is full ({0}).")]
    DiskFull(String),
}

/// Whether `e` is "no space left on device" (or over a disk quota).
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn infected_message(signature: &str, member: Option<&str>) -> String {
    match member {
        Some(m) => format!(
            "Threat \u{201c}{signature}\u{201d} found in \u{201c}{m}\u{201d}. No records were created."
        ),
        None => format!(
            "Threat \u{201c}{signature}\u{201d} found in the uploaded file. No records were created."
        ),
    }
}

impl PipelineFailure {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Database(_) => "ERR_DATABASE_UNAVAILABLE",
            Self::Storage(_) => "ERR_STORAGE_UNAVAILABLE",
            Self::Scanner(_) => "ERR_SCANNER_UNAVAILABLE",
            Self::LocalIo(_) => "ERR_LOCAL_IO",
            Self::Archive(e) if !e.is_final() => "ERR_LOCAL_IO",
            Self::Internal(_) => "ERR_INTERNAL",
            Self::UploadGone => "ERR_UPLOAD_GONE",
            Self::FieldGone => "ERR_FIELD_GONE",
            Self::FileMissing => "ERR_FILE_MISSING",
            Self::ScanTooLarge { .. } => "ERR_SCAN_TOO_LARGE",
            Self::Infected { .. } | Self::AlreadyQuarantined => "ERR_INFECTED",
            Self::Archive(e) => e.code(),
            Self::UnknownJob(_) => "ERR_UNKNOWN_JOB",
            Self::BadJob(_) => "ERR_BAD_JOB",
            Self::OutOfAttempts { .. } => "ERR_PROCESSING_FAILED",
            Self::DiskFull(_) => "ERR_LOCAL_DISK_FULL",
            Self::WorkerLost => "ERR_WORKER_LOST",
        }
    }

    /// The step a final failure is reported under.
    pub fn step(&self) -> Step {
        match self {
            Self::FieldGone => Step::CreatingRecords,
            Self::FileMissing | Self::Infected { .. } | Self::AlreadyQuarantined => {
                Step::AntivirusScan
            }
            Self::ScanTooLarge { step, .. } => *step,
            Self::Archive(_) => Step::ExtractingFile,
            _ => Step::UploadComplete,
        }
    }

    /// What a person reads: at most 1 KiB, long names shortened
    /// ([`crate::protocol::fit_error_text`]).
    pub fn message(&self) -> String {
        crate::protocol::fit_error_text(&self.to_string())
    }

    /// Whether a later attempt may succeed (a dependency failed).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(_)
            | Self::Storage(_)
            | Self::Scanner(_)
            | Self::LocalIo(_)
            | Self::DiskFull(_)
            | Self::Internal(_)
            | Self::WorkerLost => true,
            Self::Archive(e) => !e.is_final(),
            _ => false,
        }
    }

    /// The fields of the final `monitoring_update` beyond step, status, code and message.
    pub fn extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        match self {
            Self::Infected { signature, member } => {
                extra.insert("av-status".into(), json!(AvStatus::Infected.as_str()));
                extra.insert("signature".into(), json!(signature));
                if let Some(m) = member {
                    extra.insert("file_name".into(), json!(m));
                }
            }
            Self::AlreadyQuarantined => {
                extra.insert("av-status".into(), json!(AvStatus::Infected.as_str()));
            }
            _ => {}
        }
        extra
    }

    /// A store failure: the object is gone (final) or the store is down (transient).
    pub fn from_store(e: StoreError) -> Self {
        match &e {
            _ if e.is_not_found() => Self::FileMissing,
            // Writing the download to scratch space failed: a local disk problem.
            StoreError::Io { source, .. } if is_disk_full(source) => Self::DiskFull(e.to_string()),
            _ => Self::Storage(e.to_string()),
        }
    }

    /// A scanner failure at `step` on `what` ("The archive", "File “…”").
    pub fn from_scan(e: ScanError, step: Step, what: impl Into<String>) -> Self {
        match e {
            ScanError::SizeLimitExceeded => Self::ScanTooLarge {
                step,
                what: what.into(),
            },
            e => Self::Scanner(e.to_string()),
        }
    }

    /// A local disk failure.
    pub fn io(e: std::io::Error) -> Self {
        if is_disk_full(&e) {
            Self::DiskFull(e.to_string())
        } else {
            Self::LocalIo(e.to_string())
        }
    }

    /// The validator's refusal, or its local disk failure (a full disk named so).
    pub fn from_archive(e: ExtractError) -> Self {
        match &e {
            ExtractError::Io { source, .. } if is_disk_full(source) => {
                Self::DiskFull(e.to_string())
            }
            _ => Self::Archive(e),
        }
    }
}

impl From<ExtractError> for PipelineFailure {
    fn from(e: ExtractError) -> Self {
        Self::from_archive(e)
    }
}

impl From<sqlx::Error> for PipelineFailure {
    fn from(e: sqlx::Error) -> Self {
        crate::telemetry::db_error("pipeline");
        Self::Database(e.to_string())
    }
}

impl From<tokio::task::JoinError> for PipelineFailure {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_wire_texts() {
        let f = PipelineFailure::Infected {
            signature: "Eicar-Test-Signature".into(),
            member: Some("a/b.txt".into()),
        };
        assert_eq!(f.code(), "ERR_INFECTED");
        assert_eq!(f.step(), Step::AntivirusScan);
        assert_eq!(
            f.message(),
            "Threat \u{201c}Eicar-Test-Signature\u{201d} found in \u{201c}a/b.txt\u{201d}. No records were created."
        );
        assert_eq!(f.extra()["file_name"], "a/b.txt");
        assert!(!f.is_transient());
        let f = PipelineFailure::ScanTooLarge {
            step: Step::ExtractingFile,
            what: "The archive".into(),
        };
        assert_eq!(
            f.message(),
            "The archive is larger than the antivirus scanner accepts, so it cannot be verified."
        );
        assert_eq!(f.step(), Step::ExtractingFile);
        let f = PipelineFailure::OutOfAttempts {
            attempts: 8,
            code: "ERR_STORAGE_UNAVAILABLE",
            last: "object store: down".into(),
        };
        assert_eq!(
            f.message(),
            "Processing failed after 8 attempts (ERR_STORAGE_UNAVAILABLE: object store: down)."
        );
        assert!(PipelineFailure::Storage("x".into()).is_transient());
        assert_eq!(
            PipelineFailure::Storage("x".into()).message(),
            "object store: x"
        );
    }
}
