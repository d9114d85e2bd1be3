//! The sweeper: nothing abandoned stays. One node of the cluster at a time (a
//! leased row, `Db::take_lease`) sweeps every `sweep_interval`:
//!
//! - a file session still `pending` once its upload expired (`upload_ttl`) and
//!   its URLs lapsed (`presign_ttl` after it was created): its multipart upload
//!   aborted by the id intake recorded (works on every store), every other multipart
//!   upload under its key aborted where the store lists them (`ListMultipartUploads`),
//!   its objects deleted (the archive and anything under `uploads/<upload>/<session>`),
//!   its row deleted, and its upload settled (`expired` when nothing else was in it);
//! - an `open` upload past its expiry that never had a file: `expired`;
//! - an `expired` upload, `expired_retention` after it expired: its row and its
//!   message log deleted, so an abandoned upload leaves nothing behind;
//! - objects under `quarantine/` older than `quarantine_ttl`: deleted.
//!
//! Every node also removes its own leftover job temp dirs (`<data_dir>/tmp/job-*`):
//! all of them at start-up (no job of this process runs yet; a data dir belongs to
//! one process), and those older than `tmp_ttl` on every pass.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Uploads;
use crate::db::now_ms;
use crate::db::uploads::UploadFileRow;
use crate::telemetry;

/// The lease that makes a node the cluster's sweeper.
const LEASE: &str = "sweeper";

/// File sessions handled per pass (the next pass takes the rest).
const BATCH: i64 = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Abandoned file sessions removed.
    pub files: u64,
    /// Multipart uploads aborted.
    pub multipart_aborted: u64,
    /// Objects deleted (abandoned uploads' and expired quarantine).
    pub objects_deleted: u64,
    /// Uploads that ended `expired`.
    pub uploads_expired: u64,
    /// Expired uploads deleted once `expired_retention` passed.
    pub uploads_purged: u64,
    /// Job temp dirs removed.
    pub tmp_dirs: u64,
}

/// The sweeper of one node.
pub struct Sweeper {
    up: Uploads,
    holder: String,
}

impl Sweeper {
    /// A sweeper with a unique lease holder id.
    pub fn new(up: Uploads) -> Sweeper {
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Sweeper { up, holder }
    }

    /// The time between passes: `sweep_interval`, at least a second.
    fn interval(&self) -> Duration {
        self.up
            .settings
            .uploads
            .sweep_interval
            .max(Duration::from_secs(1))
    }

    /// Sweeps every `sweep_interval` until `shutdown` (the lease permitting),
    /// then gives the lease up so another node takes over at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.interval();
        loop {
            match self.sweep_if_leader().await {
                Ok(Some(s)) if s != Swept::default() => tracing::info!(?s, "sweeper pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeper pass failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => break,
            }
        }
        let _ = self.up.db.release_lease(LEASE, &self.holder).await;
    }

    /// One pass, if this node holds (or takes) the lease; `None` when another
    /// node is the sweeper. This node's temp dirs are swept either way.
    pub async fn sweep_if_leader(&self) -> anyhow::Result<Option<Swept>> {
        let mut swept = Swept {
            tmp_dirs: remove_tmp_dirs(
                &self.up.settings.tmp_dir,
                Some(self.up.settings.uploads.tmp_ttl),
            ),
            ..Swept::default()
        };
        // The lease outlives two intervals, so a live sweeper keeps it.
        let every = self.interval();
        let ttl_ms = (every.as_millis() * 2) as i64;
        if !self.up.db.take_lease(LEASE, &self.holder, ttl_ms).await? {
            return Ok(None);
        }
        self.sweep_abandoned(&mut swept).await?;
        self.sweep_quarantine(&mut swept).await?;
        Ok(Some(swept))
    }

    async fn sweep_abandoned(&self, swept: &mut Swept) -> anyhow::Result<()> {
        let db = &self.up.db;
        let settings = &self.up.settings.uploads;
        let now = now_ms();
        let urls_lapsed = now - settings.presign_ttl.as_millis() as i64;
        for file in db.abandoned_files(now, urls_lapsed, BATCH).await? {
            self.remove_session(&file, swept).await?;
            if let Some(state) = db.drop_abandoned_file(&file.id, &file.upload_id).await? {
                swept.files += 1;
                telemetry::sweeper("file_session_removed", 1);
                tracing::info!(action = "file_session_removed", upload = %file.upload_id, session = %file.id, "sweeper");
                if state == Some(crate::domain::UploadState::Expired) {
                    swept.uploads_expired += 1;
                    telemetry::sweeper("upload_expired", 1);
                    tracing::info!(action = "upload_expired", upload = %file.upload_id, "sweeper");
                }
            }
        }
        for upload in db.expire_empty_uploads(now).await? {
            swept.uploads_expired += 1;
            telemetry::sweeper("upload_expired", 1);
            tracing::info!(action = "upload_expired", %upload, "sweeper");
        }
        let retained_since = now_ms() - settings.expired_retention.as_millis() as i64;
        for upload in db.purge_expired_uploads(retained_since, BATCH).await? {
            swept.uploads_purged += 1;
            telemetry::sweeper("upload_purged", 1);
            tracing::info!(action = "upload_purged", %upload, "sweeper");
        }
        Ok(())
    }

    /// Removes what an abandoned session left in the store: its multipart uploads
    /// (the recorded one, and any other the store lists under its key) and its
    /// objects.
    async fn remove_session(&self, file: &UploadFileRow, swept: &mut Swept) -> anyhow::Result<()> {
        let store = &self.up.store;
        let mut uploads = Vec::new();
        if let Some(id) = &file.s3_upload_id {
            uploads.push((file.s3_key.clone(), id.clone()));
        }
        if let Some(listed) = store.list_multipart_uploads(&file.s3_key).await? {
            for u in listed {
                if !uploads.contains(&u) {
                    uploads.push(u);
                }
            }
        }
        for (key, id) in uploads {
            match store.abort_multipart(&key, &id).await {
                Ok(()) => {
                    swept.multipart_aborted += 1;
                    telemetry::sweeper("multipart_aborted", 1);
                    tracing::info!(action = "multipart_aborted", %key, upload_id = %id, "sweeper");
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        store.delete(&file.s3_key).await?;
        let session_prefix = format!("uploads/{}/{}/", file.upload_id, file.id);
        let n = store.delete_prefix(&session_prefix).await? + 1;
        swept.objects_deleted += n;
        telemetry::sweeper("objects_deleted", n);
        tracing::info!(action = "objects_deleted", key = %file.s3_key, count = n, "sweeper");
        Ok(())
    }

    async fn sweep_quarantine(&self, swept: &mut Swept) -> anyhow::Result<()> {
        let ttl = self.up.settings.uploads.quarantine_ttl;
        let before = SystemTime::now() - ttl;
        for key in self.up.store.list_older_than("quarantine/", before).await? {
            self.up.store.delete(&key).await?;
            swept.objects_deleted += 1;
            telemetry::sweeper("quarantine_expired", 1);
            tracing::info!(action = "quarantine_expired", %key, "sweeper");
        }
        Ok(())
    }
}

/// Removes job temp dirs under `tmp` (`job-*`): those last modified longer than
/// `older_than` ago, or all of them when `None` (start-up). Returns how many.
pub fn remove_tmp_dirs(tmp: &Path, older_than: Option<Duration>) -> u64 {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("job-") {
            continue;
        }
        let stale = match older_than {
            None => true,
            Some(age) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > age)),
        };
        if stale && std::fs::remove_dir_all(entry.path()).is_ok() {
            n += 1;
            telemetry::sweeper("tmp_dir_removed", 1);
            tracing::info!(action = "tmp_dir_removed", path = %entry.path().display(), "sweeper");
        }
    }
    n
}
