//! PUTs the archive to presigned URLs: one PUT, or the parts of a multipart upload,
//! a bounded number at once, each streamed from the file (never the whole archive
//! in memory). A part that fails on the network or with a 5xx is sent again after a
//! pause; a part that S3 refuses (4xx: signature, expiry) ends the upload. Parts
//! already stored are skipped, so a resumed transfer sends only what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::progress::Progress;
use super::{ClientError, error_chain};

/// Attempts per part before the upload gives up.
const ATTEMPTS: u32 = 5;
/// First pause before sending a part again (doubles each time).
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Time allowed for one PUT (a 16 MiB part at under 20 KiB/s would not make it).
const PUT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Size of the reads streamed into a request body.
const READ_CHUNK: usize = 256 * 1024;

/// One PUT: a byte range of the file to one presigned URL.
#[derive(Debug, Clone)]
pub struct Piece {
    /// Part number, from 1 (1 for a single PUT).
    pub part: u32,
    /// The presigned URL.
    pub url: String,
    /// Where the range starts in the file.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
    /// The Content-Type the URL was signed with (single PUTs only).
    pub content_type: Option<String>,
    /// The CRC32C (base64) the URL was signed with, sent as `x-amz-checksum-crc32c`.
    pub checksum: Option<String>,
}

/// The part ETags stored so far, by part number.
#[derive(Debug, Default)]
pub struct Stored(Mutex<BTreeMap<u32, String>>, std::sync::atomic::AtomicU64);

impl Stored {
    /// Whether `part` is stored.
    pub fn has(&self, part: u32) -> bool {
        self.lock().contains_key(&part)
    }

    /// Records a stored part.
    pub fn insert(&self, part: u32, e_tag: String) {
        self.lock().insert(part, e_tag);
    }

    /// How many PUTs the store refused as corrupted (each was sent again).
    pub fn refused(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every stored part, in order.
    pub fn all(&self) -> Vec<(u32, String)> {
        self.lock().iter().map(|(n, t)| (*n, t.clone())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends every piece not yet in `stored`, `parallel` at a time, recording each
/// ETag as its part is stored.
pub async fn send_missing(
    http: &reqwest::Client,
    file: &Path,
    pieces: &[Piece],
    stored: &Stored,
    parallel: usize,
    progress: &Arc<dyn Progress>,
) -> Result<(), ClientError> {
    let missing: Vec<&Piece> = pieces.iter().filter(|p| !stored.has(p.part)).collect();
    futures::stream::iter(missing.into_iter().map(Ok))
        .try_for_each_concurrent(parallel.max(1), |piece| async move {
            let e_tag = send_with_retries(http, file, piece, stored, progress).await?;
            stored.insert(piece.part, e_tag.clone());
            progress.part_done(piece.part, &e_tag);
            Ok(())
        })
        .await
}

/// One piece, tried up to [`ATTEMPTS`] times.
async fn send_with_retries(
    http: &reqwest::Client,
    file: &Path,
    piece: &Piece,
    stored: &Stored,
    progress: &Arc<dyn Progress>,
) -> Result<String, ClientError> {
    let mut attempt = 1;
    loop {
        match send_once(http, file, piece, progress).await {
            Ok(tag) => return Ok(tag),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Corrupt(why)) => {
                // The store hashed other bytes than we did. Still the file's bytes
                // (a flipped bit on the way)? Then send them again; else the file
                // changed under us, and no retry will help.
                let (path, signed) = (file.to_path_buf(), piece.checksum.clone());
                let (offset, len) = (piece.offset, piece.len);
                let now =
                    tokio::task::spawn_blocking(move || super::checksum::range(&path, offset, len))
                        .await
                        .map_err(|e| ClientError::File(e.to_string()))?
                        .map_err(|e| ClientError::File(format!("{}: {e}", file.display())))?;
                if Some(now) != signed {
                    return Err(ClientError::Changed(format!(
                        "{} changed while it was being sent (part {} no longer has the                          checksum it was hashed with); rerun with --fresh to upload it anew",
                        file.display(),
                        piece.part
                    )));
                }
                if attempt >= ATTEMPTS {
                    return Err(ClientError::server(
                        "ERR_S3_REJECTED",
                        format!(
                            "the object store refused part {} as corrupted {ATTEMPTS} times; last: {why}",
                            piece.part
                        ),
                    ));
                }
                tracing::warn!(part = piece.part, attempt, %why, "the store refused a corrupted part; sending it again");
                stored.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                progress.part_refused(piece.part, &why);
                attempt += 1;
            }
            Err(Failure::Retry(why)) if attempt >= ATTEMPTS => {
                return Err(ClientError::Connection(format!(
                    "part {} failed {ATTEMPTS} times; last: {why}",
                    piece.part
                )));
            }
            Err(Failure::Retry(why)) => {
                tracing::debug!(part = piece.part, attempt, %why, "part failed; sending again");
                tokio::time::sleep(RETRY_BASE * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
        }
    }
}

enum Failure {
    Retry(String),
    /// The store refused the bytes as not matching the signed checksum.
    Corrupt(String),
    Final(ClientError),
}

async fn send_once(
    http: &reqwest::Client,
    file: &Path,
    piece: &Piece,
    progress: &Arc<dyn Progress>,
) -> Result<String, Failure> {
    let body = range_body(file.to_path_buf(), piece.offset, piece.len)
        .await
        .map_err(|e| Failure::Final(ClientError::File(format!("{}: {e}", file.display()))))?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let reporter = progress.clone();
    let body = body.inspect_ok(move |chunk| {
        counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        reporter.bytes(chunk.len() as i64);
    });
    // The length is signed into part URLs; with it set, the body is not chunked.
    let mut req = http
        .put(&piece.url)
        .timeout(PUT_TIMEOUT)
        .header(reqwest::header::CONTENT_LENGTH, piece.len)
        .body(reqwest::Body::wrap_stream(body));
    if let Some(ct) = &piece.content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(sum) = &piece.checksum {
        req = req.header(super::checksum::HEADER, sum);
    }
    let rewind = || {
        let n = sent.load(std::sync::atomic::Ordering::Relaxed);
        progress.bytes(-(n as i64));
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            rewind();
            return Err(Failure::Retry(error_chain(&e)));
        }
    };
    let status = resp.status();
    if status.is_success() {
        let tag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return match tag {
            Some(t) => Ok(t),
            None => Err(Failure::Final(ClientError::Protocol(format!(
                "the object store stored part {} without an ETag",
                piece.part
            )))),
        };
    }
    rewind();
    let text = resp.text().await.unwrap_or_default();
    let why = format!("{status} {}", s3_error(&text));
    // S3 says BadDigest; Garage InvalidDigest.
    if piece.checksum.is_some()
        && status == StatusCode::BAD_REQUEST
        && (text.contains("<Code>BadDigest<") || text.contains("<Code>InvalidDigest<"))
    {
        return Err(Failure::Corrupt(why));
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(Failure::Retry(why))
    } else {
        Err(Failure::Final(ClientError::server(
            "ERR_S3_REJECTED",
            format!("the object store refused part {}: {why}", piece.part),
        )))
    }
}

/// The bytes `offset..offset+len` of `path` as a stream of reads.
async fn range_body(
    path: PathBuf,
    offset: u64,
    len: u64,
) -> std::io::Result<impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send> {
    let mut f = tokio::fs::File::open(&path).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let reader = f.take(len);
    Ok(tokio_util::io::ReaderStream::with_capacity(
        reader, READ_CHUNK,
    ))
}

/// The `<Code>` and `<Message>` of an S3 error body, or its start.
fn s3_error(body: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&close)? + start;
        Some(body[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
}

/// The pieces of a file of `size` bytes cut at `chunk` for `urls` (part, url).
pub fn pieces(size: u64, chunk: u64, urls: &[(u32, String)]) -> Vec<Piece> {
    urls.iter()
        .map(|(part, url)| {
            let offset = (*part as u64 - 1) * chunk;
            Piece {
                part: *part,
                url: url.clone(),
                offset,
                len: chunk.min(size.saturating_sub(offset)),
                content_type: None,
                checksum: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_file() {
        let urls: Vec<(u32, String)> = (1..=3).map(|n| (n, format!("u{n}"))).collect();
        let p = pieces(12, 5, &urls);
        let ranges: Vec<(u64, u64)> = p.iter().map(|p| (p.offset, p.len)).collect();
        assert_eq!(ranges, vec![(0, 5), (5, 5), (10, 2)]);
    }

    #[test]
    fn s3_errors_are_short() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>nope</Message></Error>";
        assert_eq!(s3_error(xml), "SignatureDoesNotMatch: nope");
        assert_eq!(s3_error("plain"), "plain");
    }
}
