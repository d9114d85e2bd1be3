//! Webhooks: when an upload settles (succeeded, failed, or failed because a file
//! was infected) every configured URL gets a signed `POST`. Each delivery is a
//! durable `deliver_webhook` job, one per (upload, URL), so it survives restarts,
//! is retried with the pipeline's backoff and is never sent twice as a new event
//! (a repeated settle finds the job already there). The body is built from the
//! database when the job runs: the same facts as the upload's detail.
//!
//! Signature (the scheme of Stripe and Standard Webhooks): `X-Intake-Signature:
//! sha256=<hex>` is HMAC-SHA256 keyed by `webhook_secret` over
//! `<X-Intake-Timestamp>.<body>`; receivers recompute it, compare in constant time
//! and refuse old timestamps. `X-Intake-Delivery` is the job id, the same on
//! every retry, so a receiver can drop duplicates.

use std::sync::OnceLock;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Uploads;
use super::outcome;
use super::worker::backoff_ms;
use crate::db::jobs::{Job, JobEnd, JobSettlement, NewJob};
use crate::db::{Db, now_ms};
use crate::domain::{JobKind, UploadState};
use crate::telemetry;

/// The event name sent in `X-Intake-Event` and the body's `event`.
pub const EVENT: &str = "upload.settled";
/// Delivery attempts before a webhook fails for good.
pub const MAX_ATTEMPTS: i64 = 8;
/// How long one delivery may take: well under the job's stale time, so a delivery
/// needs no heartbeat.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The payload of a `deliver_webhook` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// The settled upload.
    pub upload_id: String,
    /// Where to send it.
    pub url: String,
}

impl WebhookPayload {
    /// The kind of job this payload belongs to.
    pub const KIND: JobKind = JobKind::DeliverWebhook;

    /// One delivery per upload and URL.
    pub fn new_job(&self) -> NewJob {
        NewJob {
            kind: Self::KIND,
            dedupe_key: format!("{}:{}:{}", Self::KIND.as_str(), self.upload_id, self.url),
            payload: serde_json::to_string(self).expect("a payload of strings serializes"),
            max_attempts: MAX_ATTEMPTS,
        }
    }
}

/// Queues one delivery per configured URL for `upload_id`, which just settled.
/// Safe to call again for the same upload.
pub async fn enqueue(up: &Uploads, upload_id: &str) -> Result<(), sqlx::Error> {
    let urls = &up.settings.webhooks.webhook_urls;
    for url in urls {
        let payload = WebhookPayload {
            upload_id: upload_id.to_string(),
            url: url.clone(),
        };
        up.db.enqueue_job(&payload.new_job()).await?;
    }
    if !urls.is_empty() {
        up.wake_workers();
    }
    Ok(())
}

/// `enqueue` when `settled` says the upload finished; errors are logged (the
/// upload's own state is what matters, and a rescue re-settles it).
pub async fn on_settled(up: &Uploads, upload_id: &str, settled: Option<UploadState>) {
    if settled.is_some()
        && let Err(e) = enqueue(up, upload_id).await
    {
        tracing::warn!(error = %e, upload_id, "queueing webhooks");
    }
}

/// The body of the webhook for `upload_id`: its state, how it ended
/// (`success`, `failure` or `infected`), each file's result and the records.
pub async fn body(db: &Db, upload_id: &str) -> Result<Option<Value>, sqlx::Error> {
    let Some(upload) = db.upload_by_id(upload_id).await? else {
        return Ok(None);
    };
    let files = db.upload_files(upload_id).await?;
    let mut results = Vec::with_capacity(files.len());
    let mut infected = false;
    for f in &files {
        let failure = outcome::failure(db, f).await?;
        infected |= failure
            .as_ref()
            .is_some_and(|x| x.error_code == "ERR_INFECTED");
        results.push(json!({
            "upload_id": f.id,
            "file_name": f.file_name,
            "file_size": f.file_size,
            "state": f.state,
            "error_code": failure.as_ref().map(|x| &x.error_code),
            "error_message": failure.as_ref().map(|x| &x.message),
        }));
    }
    let records = db.upload_record_ids(upload_id).await?;
    let outcome = match upload.state {
        UploadState::Succeeded => "success",
        _ if infected => "infected",
        _ => "failure",
    };
    Ok(Some(json!({
        "event": EVENT,
        "outcome": outcome,
        "upload_id": upload.id,
        "state": upload.state,
        "created_by": upload.creator_id,
        "object_class": upload.object_class_id,
        "object_class_field": upload.class_field_id,
        "files": results,
        "record_count": records.len(),
        "records": records,
    })))
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `<timestamp>.<body>`).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS")
    })
}

/// Sends one delivery; `Err` says why it did not arrive.
async fn deliver(up: &Uploads, job: &Job) -> Result<(), String> {
    let payload: WebhookPayload =
        serde_json::from_str(&job.payload).map_err(|e| format!("bad payload: {e}"))?;
    let Some(body) = body(&up.db, &payload.upload_id)
        .await
        .map_err(|e| format!("database: {e}"))?
    else {
        return Ok(()); // The upload is gone: nothing to tell.
    };
    let body = serde_json::to_vec(&body).expect("JSON serializes");
    let secret = up
        .settings
        .webhooks
        .webhook_secret
        .as_ref()
        .map(|s| s.expose_secret().as_bytes().to_vec())
        .unwrap_or_default();
    let timestamp = now_ms() / 1000;
    let response = client()
        .post(&payload.url)
        .header("content-type", "application/json")
        .header("x-intake-event", EVENT)
        .header("x-intake-delivery", job.id.to_string())
        .header("x-intake-timestamp", timestamp.to_string())
        .header("x-intake-signature", signature(&secret, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {}: {e}", payload.url))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("POST {}: HTTP {}", payload.url, response.status()))
    }
}

/// Runs a claimed `deliver_webhook` job and settles it: delivered, retried with
/// backoff, or failed for good after [`MAX_ATTEMPTS`].
pub async fn run(up: &Uploads, worker: &str, job: &Job) -> Result<(), sqlx::Error> {
    let db = &up.db;
    match deliver(up, job).await {
        Ok(()) => {
            telemetry::webhook("delivered");
            tracing::info!(job = job.id, "webhook delivered");
            db.finish_job(job.id, worker, true, None).await?;
        }
        Err(error) if job.attempts < job.max_attempts => {
            telemetry::webhook("retried");
            let delay = backoff_ms(up.settings.jobs.retry_base.as_millis() as u64, job.attempts);
            tracing::warn!(job = job.id, attempt = job.attempts, %error, delay_ms = delay, "webhook not delivered; will retry");
            let end = JobEnd::Requeue {
                run_at: now_ms() + delay as i64,
                refund: false,
            };
            db.settle_job(job.id, worker, end, Some(&error), JobSettlement::none())
                .await?;
        }
        Err(error) => {
            telemetry::webhook("failed");
            tracing::warn!(job = job.id, attempt = job.attempts, %error, "webhook not delivered; giving up");
            db.finish_job(job.id, worker, false, Some(&error)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently (Python's hmac module).
        let s = signature(b"secret", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(s, signature(b"other", 1_700_000_000, b"{}"));
        assert_ne!(s, signature(b"secret", 1_700_000_001, b"{}"));
    }
}
