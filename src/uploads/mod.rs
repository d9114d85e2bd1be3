//! The Object Record upload flow of the seed page, one file per step:
//! [`presign`] answers `request_presigned_url`, [`complete`] takes
//! `upload_complete` / `complete_multipart_upload` and queues the job, the
//! [`worker`] claims it and runs [`process`] (verify, scan, extract, save, records),
//! and [`monitor`] reports every step to the upload's sockets. Failures of the
//! pipeline are one table, [`failure::PipelineFailure`]; the job's payload is one
//! type, [`job::JobPayload`].
//!
//! The socket edge (`crate::ws`) and the workers call in here with [`Uploads`], a
//! bundle of narrow handles: the database, the object store, the scanner, the live
//! hub and the settings of this flow. Nothing here knows about HTTP.

pub mod checksums;
pub mod complete;
pub mod failure;
pub mod job;
pub mod monitor;
pub mod outcome;
pub mod presign;
pub mod presign_request;
pub mod process;
pub mod resume;
pub mod sweeper;
pub mod webhook;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{ArchiveSettings, JobSettings, UploadSettings, WebhookSettings};
use crate::db::Db;
use crate::live::Hub;
use crate::scan::Scanner;
use crate::store::{Checksum, ObjectStore};

/// How many times a job is tried before it fails for good.
pub const MAX_ATTEMPTS: i64 = 8;

/// The settings the upload flow reads.
#[derive(Debug, Clone, Default)]
pub struct FlowSettings {
    /// What the socket accepts and how long URLs live.
    pub uploads: UploadSettings,
    /// Limits on an archive's contents.
    pub archive: ArchiveSettings,
    /// Workers and their queue.
    pub jobs: JobSettings,
    /// Scratch space for archives and entries in flight.
    pub tmp_dir: PathBuf,
    /// Where to tell that an upload settled.
    pub webhooks: WebhookSettings,
}

/// The handles of the upload flow; cheap to clone.
#[derive(Clone)]
pub struct Uploads {
    /// The metadata database (uploads, files, jobs, the message log).
    pub db: Db,
    /// Where archives and extracted files live.
    pub store: Arc<dyn ObjectStore>,
    /// The antivirus scanner; `None` when no clamd is configured (scans skipped).
    pub scanner: Option<Arc<dyn Scanner>>,
    /// Wakes local upload sockets when an upload's log grows.
    pub hub: Arc<Hub>,
    /// Wakes local workers when a job is enqueued.
    pub workers: Arc<Notify>,
    /// The settings of this flow.
    pub settings: Arc<FlowSettings>,
    /// Room for entries held in memory, in bytes (`memory_budget`), shared by every
    /// job of the node.
    pub memory: Arc<tokio::sync::Semaphore>,
}

/// The store's form of a client's checksums, which a presigned URL is bound to (here
/// rather than in `checksums.rs`, which `fuzz/` compiles without the store).
impl checksums::Checksums {
    /// Part `n`'s checksum (from 1).
    pub fn part(&self, n: u64) -> Checksum {
        store_checksum(self.algorithm, self.part_value(n))
    }

    /// The whole file's checksum.
    pub fn object(&self) -> Checksum {
        store_checksum(self.algorithm, self.object_value())
    }
}

fn store_checksum(algorithm: checksums::Algorithm, b64: &str) -> Checksum {
    match algorithm {
        checksums::Algorithm::Crc32c => Checksum::Crc32c(b64.to_owned()),
        checksums::Algorithm::Sha256 => Checksum::Sha256(b64.to_owned()),
    }
}

impl Uploads {
    /// Tells local workers a job is waiting (other nodes find it by polling).
    pub fn wake_workers(&self) {
        self.workers.notify_waiters();
    }
}
