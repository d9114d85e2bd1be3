//! Object store errors, split by what the caller should do about them:
//! nothing there ([`StoreError::NotFound`]), retry later
//! ([`StoreError::is_transient`]) or give up.

use std::path::PathBuf;

use bytes::Bytes;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Result of an object store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why an object store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key, multipart upload or bucket does not exist.
    #[error("{op} {target}: not found")]
    NotFound {
        /// Operation that failed, e.g. `GetObject`.
        op: &'static str,
        /// Key, upload id or bucket the operation was about.
        target: String,
    },
    /// The store understood the request and refused it; retrying the same
    /// request will not help (bad ETag, too-small part, access denied, ...).
    #[error("{op} {target}: rejected by the object store (HTTP {status}, {code}): {message}")]
    Rejected {
        /// Operation that failed.
        op: &'static str,
        /// Key, upload id or bucket the operation was about.
        target: String,
        /// HTTP status of the response.
        status: u16,
        /// S3 error code, e.g. `InvalidPart`, `AccessDenied`.
        code: String,
        /// S3 error message.
        message: String,
    },
    /// A failure that may go away by itself: timeout, broken connection,
    /// throttling, 5xx. The SDK has already retried a few times.
    #[error("{op} {target}: transient object store failure: {detail}")]
    Transient {
        /// Operation that failed.
        op: &'static str,
        /// Key, upload id or bucket the operation was about.
        target: String,
        /// The SDK's description of the failure.
        detail: String,
    },
    /// Any other failure talking to the store (e.g. a request the SDK could
    /// not build).
    #[error("{op} {target}: object store failure: {detail}")]
    Other {
        /// Operation that failed.
        op: &'static str,
        /// Key, upload id or bucket the operation was about.
        target: String,
        /// The SDK's description of the failure.
        detail: String,
    },
    /// Reading or writing a local file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// Operation that failed.
        op: &'static str,
        /// Local file involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The request or configuration is invalid before anything was sent.
    #[error("invalid object store request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the same call may succeed if retried later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Whether the object, upload or bucket does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// The failure's kind as the metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Transient { .. } => "transient",
            _ => "other",
        }
    }

    /// The S3 error code, when the store answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A copy of a failure shared by several readers: the same variant and fields (a
    /// local I/O error keeps its kind and text).
    pub fn duplicate(&self) -> Self {
        match self {
            Self::NotFound { op, target } => Self::NotFound {
                op,
                target: target.clone(),
            },
            Self::Rejected {
                op,
                target,
                status,
                code,
                message,
            } => Self::Rejected {
                op,
                target: target.clone(),
                status: *status,
                code: code.clone(),
                message: message.clone(),
            },
            Self::Transient { op, target, detail } => Self::Transient {
                op,
                target: target.clone(),
                detail: detail.clone(),
            },
            Self::Other { op, target, detail } => Self::Other {
                op,
                target: target.clone(),
                detail: detail.clone(),
            },
            Self::Io { op, path, source } => Self::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::Invalid(why) => Self::Invalid(why.clone()),
        }
    }

    /// A pinned read of `key` whose object was replaced since it was opened: the pass
    /// over it starts again, on the new version.
    pub(crate) fn changed(key: &str) -> Self {
        Self::transient(
            "GetObject",
            key,
            "the object changed while it was being read",
        )
    }

    /// `data`, if it is all of the `len` bytes from `start` of `key` that a ranged GET
    /// asked for (a short body is a broken transfer, retried).
    pub(crate) fn exact_range(key: &str, start: u64, len: u64, data: Bytes) -> Result<Bytes> {
        if data.len() as u64 == len {
            return Ok(data);
        }
        Err(Self::transient(
            "GetObject",
            key,
            format!("bytes={start}+{len} answered {} bytes", data.len()),
        ))
    }

    pub(crate) fn transient(op: &'static str, target: &str, detail: impl Into<String>) -> Self {
        Self::Transient {
            op,
            target: target.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// Classifies an SDK failure.
    pub(crate) fn from_sdk<E>(
        op: &'static str,
        target: &str,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let target = target.to_owned();
        // The SDK's own text is a multi-line dump of every layer; the log and the
        // start-up error want the cause ("connection refused", "DNS lookup failed:
        // …", "TLS: …"). The full chain still goes to the debug log.
        tracing::debug!(op, %target, error = %DisplayErrorContext(&err), "object store call failed");
        let detail = crate::cause::root_cause(&err);
        match &err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or_default().to_owned();
                let message = ctx.err().message().unwrap_or_default().to_owned();
                classify_service_error(op, target, status, code, message)
            }
            // No usable answer arrived: the request may not even have reached
            // the store, or the answer was cut off.
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                Self::Transient { op, target, detail }
            }
            SdkError::DispatchFailure(failure) if !failure.is_user() => {
                Self::Transient { op, target, detail }
            }
            _ => Self::Other { op, target, detail },
        }
    }
}

/// S3 error codes that mean "try again later", whatever the HTTP status
/// (CompleteMultipartUpload can report them inside a `200 OK`).
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "OperationAborted",
];

const NOT_FOUND_CODES: &[&str] = &["NoSuchKey", "NoSuchUpload", "NoSuchBucket", "NotFound"];

fn classify_service_error(
    op: &'static str,
    target: String,
    status: u16,
    code: String,
    message: String,
) -> StoreError {
    if status == 404 || NOT_FOUND_CODES.contains(&code.as_str()) {
        StoreError::NotFound { op, target }
    } else if status >= 500
        || status == 429
        || status == 408
        || TRANSIENT_CODES.contains(&code.as_str())
    {
        StoreError::Transient {
            op,
            target,
            detail: format!("HTTP {status} {code}: {message}"),
        }
    } else {
        StoreError::Rejected {
            op,
            target,
            status,
            code,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified_by_status_and_code() {
        let c = |status, code: &str| {
            classify_service_error("Op", "k".into(), status, code.into(), String::new())
        };
        assert!(c(404, "").is_not_found());
        assert!(c(400, "NoSuchUpload").is_not_found());
        assert!(c(503, "SlowDown").is_transient());
        assert!(c(500, "").is_transient());
        assert!(c(200, "InternalError").is_transient());
        let rejected = c(400, "InvalidPart");
        assert!(!rejected.is_transient() && !rejected.is_not_found());
        assert_eq!(rejected.code(), Some("InvalidPart"));
        assert!(!c(403, "AccessDenied").is_transient());
    }
}
