//! The uploading client behind `intake upload`: signs in over the REST API, creates
//! an upload, runs the upload socket's flow (presigned URL, parallel part PUTs,
//! completion), follows processing to the end, and reports the records created.
//!
//! It is a library so that the integration tests drive the same code the command
//! runs. The parts, in the order an upload uses them: `api` (REST), `socket` (the
//! upload WebSocket), `transfer` (PUTs to the presigned URLs), `upload` (the flow,
//! with reconnects) and `progress` (what the user sees while it runs).

pub mod api;
pub mod check;
pub mod checksum;
pub mod progress;
pub mod report;
pub mod socket;
pub mod state;
pub mod transfer;
pub mod upload;

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Serialize;

pub use progress::{Bars, Plain, Progress, Silent, StepUpdate};
pub use upload::upload;

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// E-mail and password, exchanged for tokens at `POST /api/auth/token/` (and
    /// again if the access token expires during a long upload).
    Password {
        email: String,
        password: SecretString,
    },
    /// An access token obtained elsewhere (`Authorization: JWT <token>`).
    Token(SecretString),
}

/// What to upload, where, and how.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub server: url::Url,
    /// Who uploads.
    pub credentials: Credentials,
    /// The object class the records are created in.
    pub class: i64,
    /// The document field of that class that receives each file.
    pub field: i64,
    /// The ZIP archive.
    pub file: PathBuf,
    /// How many parts are PUT at once (at least 1).
    pub parallel: usize,
    /// How many times a dropped socket is reconnected before giving up.
    pub max_reconnects: u32,
    /// Run the server's archive validator on the file before sending anything
    /// (`check::check_archive`); `--no-check` turns it off.
    pub check: bool,
    /// Where resume state files live (`state::StateFile`); `None` keeps no state,
    /// so a rerun starts over. The command uses `state::default_dir()`.
    pub state_dir: Option<PathBuf>,
    /// Forget any saved state of this upload and start a new one (the old
    /// session is cancelled, so the store drops its parts).
    pub fresh: bool,
    /// Hash each part (CRC32C) and have the server bind the checksums into the
    /// URLs (`checksum`), so the store refuses a part corrupted on its way.
    pub checksums: bool,
    /// The part size asked for when hashing (default: the server's default,
    /// `checksum::default_part_size`).
    pub part_size: Option<u64>,
}

impl UploadOptions {
    /// Options with the defaults: 4 parts at once, 10 reconnects, checked first.
    pub fn new(
        server: url::Url,
        credentials: Credentials,
        class: i64,
        field: i64,
        file: PathBuf,
    ) -> UploadOptions {
        UploadOptions {
            server,
            credentials,
            class,
            field,
            file,
            parallel: 4,
            max_reconnects: 10,
            check: true,
            state_dir: None,
            fresh: false,
            checksums: true,
            part_size: None,
        }
    }
}

/// The result of a successful upload.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The upload transaction (`POST /api/object-records/uploads/`).
    pub upload_id: String,
    /// The file session the socket issued (`presigned_url_ready`'s `upload_id`).
    pub session_id: String,
    /// The archive's name as sent.
    pub file_name: String,
    /// The archive's size in bytes.
    pub file_size: u64,
    /// Whether the archive went up in parts.
    pub multipart: bool,
    /// Number of parts (1 for a single PUT).
    pub parts: u64,
    /// How often the socket had to be reconnected.
    pub reconnects: u32,
    /// The server's closing message, e.g. "Done Extracted 3 files".
    pub message: String,
    /// The antivirus verdict reported with success ("clean", "skipped"), if any.
    pub av_status: Option<String>,
    /// Number of records created.
    pub record_count: u64,
    /// Their ids, in archive order.
    pub records: Vec<i64>,
    /// Whether this run went on with an upload an earlier process started.
    pub resumed: bool,
    /// Parts the store already held when this run started (not sent again).
    pub reused_parts: u64,
    /// Parts this run sent.
    pub sent_parts: u64,
    /// PUTs the store refused as corrupted on their way (each part was sent again).
    pub refused_parts: u64,
}

/// Why an upload failed. Each variant has a stable code for `--json` and exit
/// messages; server-side failures carry the server's own code and text.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused or failed the upload: a socket error message, a final
    /// `monitoring_update` with status "error", or a REST error answer
    /// (code `ERR_HTTP_<status>` unless the body names one).
    #[error("{code}: {detail}")]
    Server { code: String, detail: String },
    /// The local check refused the archive before anything was sent, with the code
    /// and text the server's validator gives (`check::check_archive`).
    #[error("{code}: {detail}")]
    Refused { code: String, detail: String },
    /// The server or the object store could not be reached, or kept dropping the
    /// connection beyond the retry budget.
    #[error("ERR_CONNECTION: {0}")]
    Connection(String),
    /// The server answered something this client does not understand.
    #[error("ERR_PROTOCOL: {0}")]
    Protocol(String),
    /// The local file could not be read.
    #[error("ERR_FILE: {0}")]
    File(String),
    /// The file is not the one an interrupted upload of the same command sent.
    #[error("ERR_FILE_CHANGED: {0}")]
    Changed(String),
    /// The interrupted upload to resume is gone from the server (expired, or its
    /// multipart upload aborted); its state was dropped, so a rerun starts over.
    #[error("ERR_RESUME_GONE: {0}")]
    ResumeGone(String),
}

impl ClientError {
    /// The machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Server { code, .. } | ClientError::Refused { code, .. } => code,
            ClientError::Connection(_) => "ERR_CONNECTION",
            ClientError::Protocol(_) => "ERR_PROTOCOL",
            ClientError::File(_) => "ERR_FILE",
            ClientError::Changed(_) => "ERR_FILE_CHANGED",
            ClientError::ResumeGone(_) => "ERR_RESUME_GONE",
        }
    }

    /// The human-readable text.
    pub fn detail(&self) -> &str {
        match self {
            ClientError::Server { detail, .. } | ClientError::Refused { detail, .. } => detail,
            ClientError::Connection(d)
            | ClientError::Protocol(d)
            | ClientError::File(d)
            | ClientError::Changed(d)
            | ClientError::ResumeGone(d) => d,
        }
    }

    /// Whether the upload is over for good, so its resume state is dropped: it
    /// succeeded or was refused. Network and local failures keep the state, and a
    /// rerun resumes.
    pub fn ends_upload(&self) -> bool {
        match self {
            // A REST refusal (a wrong password, an expired token) says nothing
            // about the upload.
            ClientError::Server { code, .. } => {
                !code.starts_with("ERR_HTTP_") && code != "token_not_valid"
            }
            ClientError::Refused { .. } | ClientError::ResumeGone(_) => true,
            _ => false,
        }
    }

    /// Whether nothing reached the server: the local check refused the archive.
    pub fn refused_before_upload(&self) -> bool {
        matches!(self, ClientError::Refused { .. })
    }

    /// A server-reported failure.
    pub fn server(code: impl Into<String>, detail: impl Into<String>) -> ClientError {
        ClientError::Server {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

/// An error and its sources on one line (reqwest's own text is only the outermost).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
