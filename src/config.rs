//! Layered configuration: built-in defaults, then an optional `intake.toml`, then
//! `INTAKE_*` environment variables. Settings are grouped by the part of the system
//! that reads them (`Settings::s3`, `Settings::jobs`, …), but every name stays flat:
//! the file uses `s3_bucket = …` and the environment `INTAKE_S3_BUCKET`, exactly
//! the names of `docs/CONFIGURATION.md` (they are part of the public contract).
//! Each flat name belongs to one group; loading maps it there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Every setting of the service, with its default. See `docs/CONFIGURATION.md`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the process keeps its files and listens.
    pub server: ServerSettings,
    /// The metadata database.
    pub database: DatabaseSettings,
    /// The object store.
    pub s3: S3Settings,
    /// Tokens and tickets.
    pub auth: AuthSettings,
    /// What the upload socket accepts and how long its URLs live.
    pub uploads: UploadSettings,
    /// The antivirus scanner.
    pub scan: ScanSettings,
    /// The upload socket's connections.
    pub socket: SocketSettings,
    /// Limits on an archive's contents.
    pub archive: ArchiveSettings,
    /// Pipeline workers and their job queue.
    pub jobs: JobSettings,
    /// The Event History API.
    pub history: HistorySettings,
}

/// Where the process keeps its files and listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where the embedded database, embedded S3 objects and generated secrets live.
    pub data_dir: PathBuf,
    /// Address of the HTTP/WebSocket API.
    pub http_addr: SocketAddr,
}

/// The metadata database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…` (may hold a password); default:
    /// `sqlite://<data_dir>/intake.db`.
    #[serde(rename = "database_url", serialize_with = "redacted")]
    pub url: Option<SecretString>,
    /// Maximum database connections in the pool.
    #[serde(rename = "database_max_connections")]
    pub max_connections: u32,
}

/// The object store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// External S3 endpoint; when unset the process serves its own at `s3_embedded_addr`.
    #[serde(rename = "s3_endpoint")]
    pub endpoint: Option<String>,
    /// S3 region used for signing.
    #[serde(rename = "s3_region")]
    pub region: String,
    /// Bucket holding every object (created at start-up when missing).
    #[serde(rename = "s3_bucket")]
    pub bucket: String,
    /// Access key id; default for the embedded endpoint: generated and kept in the data dir.
    #[serde(rename = "s3_access_key_id")]
    pub access_key_id: Option<String>,
    /// Secret access key; default for the embedded endpoint: generated and kept in the data dir.
    #[serde(rename = "s3_secret_access_key", serialize_with = "redacted")]
    pub secret_access_key: Option<SecretString>,
    /// Path-style addressing (`http://host/bucket/key`); needed by most self-hosted S3 servers.
    #[serde(rename = "s3_force_path_style")]
    pub force_path_style: bool,
    /// Address of the embedded S3-compatible endpoint (used only without `s3_endpoint`).
    #[serde(rename = "s3_embedded_addr")]
    pub embedded_addr: SocketAddr,
    /// Base URL put into presigned URLs when clients reach S3 at another address.
    pub public_s3_url: Option<String>,
}

/// Tokens and tickets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Secret for signing JWTs; default: generated and kept in the data dir.
    /// Several nodes must share one.
    #[serde(serialize_with = "redacted")]
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token, seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, seconds.
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of a one-time WebSocket ticket, seconds.
    pub ws_ticket_ttl_secs: u64,
}

/// What the upload socket accepts and how long its URLs live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadSettings {
    /// Largest accepted upload, in GB (10^9 bytes).
    pub max_upload_gb: u64,
    /// Uploads of at least this many bytes use multipart.
    pub multipart_threshold_bytes: u64,
    /// Fixed multipart chunk size; default: 16 MiB, grown so there are at most 10,000 parts.
    pub multipart_chunk_bytes: Option<u64>,
    /// Lifetime of presigned upload URLs, seconds.
    pub presign_ttl_secs: u64,
    /// Lifetime of presigned download URLs, seconds.
    pub download_url_ttl_secs: u64,
    /// How long an upload id stays usable after creation, seconds.
    pub upload_ttl_secs: u64,
}

/// The antivirus scanner.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanSettings {
    /// clamd address, `tcp://host:port` or `unix:///path`; unset: scanning is skipped.
    pub clamd_addr: Option<String>,
    /// Refuse to start without `clamd_addr`.
    pub require_scan: bool,
}

/// The upload socket's connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketSettings {
    /// Allowed `Origin` values for WebSocket upgrades; empty: any origin (and none).
    pub allowed_origins: Vec<String>,
    /// Maximum concurrent upload sockets per user.
    pub max_sockets_per_user: u32,
    /// Close a socket that has been silent (no pong or message) this long, seconds.
    #[serde(rename = "ws_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

/// Limits on an archive's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Maximum number of entries in an archive.
    pub max_archive_entries: u64,
    /// Maximum inflated size of one entry, bytes.
    pub max_entry_bytes: u64,
    /// Maximum inflated size of a whole archive, bytes.
    pub max_archive_bytes: u64,
    /// Maximum compression ratio of one entry.
    pub max_compression_ratio: u64,
}

/// Pipeline workers and their job queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Number of pipeline jobs one node runs at once.
    pub worker_concurrency: u32,
    /// Whether this node runs pipeline workers.
    pub run_workers: bool,
    /// First retry delay of a job after a transient failure, ms (doubles per attempt, with jitter, capped at 5 min).
    #[serde(rename = "job_retry_base_ms")]
    pub retry_base_ms: u64,
    /// How often a running job refreshes its heartbeat, seconds.
    #[serde(rename = "job_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// A running job whose heartbeat is older than this is rescued, seconds.
    #[serde(rename = "job_stale_secs")]
    pub stale_secs: u64,
    /// How often idle workers look for jobs enqueued by other nodes, ms.
    #[serde(rename = "job_poll_ms")]
    pub poll_ms: u64,
    /// Uploads to the object store run at most this many at once per job.
    pub save_concurrency: u32,
}

/// The Event History API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySettings {
    /// Lifetime of Event History presigned upload URLs, seconds.
    #[serde(rename = "history_upload_url_ttl_secs")]
    pub upload_url_ttl_secs: u64,
    /// How long a node trusts its cached API keys and tenants, seconds: the longest a
    /// key revoked or a tenant deleted elsewhere keeps working on this node. 0: no cache.
    #[serde(rename = "history_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// Pepper keying the stored hashes of Event History API keys (at least 32
    /// characters); default: generated and kept in the data dir. Several nodes must
    /// share one, and changing it invalidates every key.
    #[serde(rename = "history_api_key_pepper", serialize_with = "redacted")]
    pub api_key_pepper: Option<SecretString>,
}

/// Secrets never leave the process through `Serialize` (defaults have none).
fn redacted<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./intake-data"),
            http_addr: "127.0.0.1:8080".parse().expect("valid default"),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
        }
    }
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: "intake".into(),
            access_key_id: None,
            secret_access_key: None,
            force_path_style: true,
            embedded_addr: "127.0.0.1:9000".parse().expect("valid default"),
            public_s3_url: None,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            ws_ticket_ttl_secs: 60,
        }
    }
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            max_upload_gb: 5,
            multipart_threshold_bytes: 100 * 1024 * 1024,
            multipart_chunk_bytes: None,
            presign_ttl_secs: 3600,
            download_url_ttl_secs: 300,
            upload_ttl_secs: 24 * 3600,
        }
    }
}

impl Default for SocketSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_sockets_per_user: 16,
            idle_timeout_secs: 120,
        }
    }
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self {
            max_archive_entries: 100_000,
            max_entry_bytes: 5 * 1024 * 1024 * 1024,
            max_archive_bytes: 20 * 1024 * 1024 * 1024,
            max_compression_ratio: 200,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            worker_concurrency: 2,
            run_workers: true,
            retry_base_ms: 1000,
            heartbeat_secs: 5,
            stale_secs: 60,
            poll_ms: 1000,
            save_concurrency: 8,
        }
    }
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self {
            upload_url_ttl_secs: 15 * 60,
            cache_ttl_secs: 30,
            api_key_pepper: None,
        }
    }
}

/// A configuration problem found before start-up; names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Each flat setting name and the group it belongs to, from the defaults' shape.
fn groups() -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    if let Ok(serde_json::Value::Object(groups)) = serde_json::to_value(Settings::default()) {
        for (group, fields) in groups {
            if let serde_json::Value::Object(fields) = fields {
                for name in fields.keys() {
                    names.insert(name.clone(), group.clone());
                }
            }
        }
    }
    names
}

/// The flat keys of a TOML file, each moved under its group; an unknown key is an error.
fn grouped_file(path: &Path, groups: &BTreeMap<String, String>) -> Result<Dict, ConfigError> {
    let flat: Dict = Figment::from(Toml::file(path))
        .extract()
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let mut nested = Dict::new();
    for (key, value) in flat {
        let Some(group) = groups.get(&key) else {
            return Err(ConfigError(format!(
                "unknown setting \"{key}\" in {} (see docs/CONFIGURATION.md)",
                path.display()
            )));
        };
        if let Value::Dict(_, fields) = nested
            .entry(group.clone())
            .or_insert_with(|| Value::from(Dict::new()))
        {
            fields.insert(key, value);
        }
    }
    Ok(nested)
}

/// Optional settings whose values are text, so that an environment value that
/// looks like a number (`INTAKE_S3_ACCESS_KEY_ID=0123`) stays the text it is.
const OPTIONAL_TEXT: [&str; 8] = [
    "database_url",
    "s3_endpoint",
    "s3_access_key_id",
    "s3_secret_access_key",
    "public_s3_url",
    "jwt_secret",
    "clamd_addr",
    "history_api_key_pepper",
];
/// Optional settings whose values are numbers (checked by a test).
#[cfg(test)]
const OPTIONAL_NUMBERS: [&str; 1] = ["multipart_chunk_bytes"];

/// Whether `name` holds text (its default is text, or it is optional text).
fn is_text(name: &str) -> bool {
    OPTIONAL_TEXT.contains(&name)
        || matches!(
            serde_json::to_value(Settings::default()),
            Ok(serde_json::Value::Object(groups))
                if groups.values().any(|g| g.get(name).is_some_and(serde_json::Value::is_string))
        )
}

/// An environment value as the setting `name` reads it: text stays text; other
/// values use TOML-like syntax (numbers, `true`, lists such as `["a", "b"]`).
fn env_value(name: &str, raw: &str) -> Value {
    if is_text(name) {
        Value::from(raw.to_string())
    } else {
        raw.parse().unwrap_or_else(|_| Value::from(raw.to_string()))
    }
}

/// The `INTAKE_*` variables that name a setting, each under its group. Others
/// share the prefix and are ignored (INTAKE_LOG, INTAKE_CONFIG, the CLI's
/// INTAKE_EMAIL, tests' INTAKE_TEST_*).
fn grouped_env(groups: &BTreeMap<String, String>) -> Dict {
    let mut nested = Dict::new();
    for (key, raw) in Env::prefixed("INTAKE_").iter() {
        let name = key.as_str().to_ascii_lowercase();
        let Some(group) = groups.get(&name) else {
            continue;
        };
        if let Value::Dict(_, fields) = nested
            .entry(group.clone())
            .or_insert_with(|| Value::from(Dict::new()))
        {
            fields.insert(name.clone(), env_value(&name, &raw));
        }
    }
    nested
}

impl Settings {
    /// Loads defaults, then `file` (or `./intake.toml` when present), then `INTAKE_*`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let groups = groups();
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let path = match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("intake.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = path {
            figment = figment.merge(Serialized::defaults(grouped_file(&path, &groups)?));
        }
        figment = figment.merge(Serialized::defaults(grouped_env(&groups)));
        let settings: Settings = figment.extract().map_err(|e| {
            // Name the flat setting, not its group path.
            let setting = e.path.last().cloned().unwrap_or_default();
            let why = e.kind.to_string();
            if setting.is_empty() {
                ConfigError(e.to_string())
            } else {
                ConfigError(format!(
                    "setting \"{setting}\" (INTAKE_{}): {why}",
                    setting.to_ascii_uppercase()
                ))
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense; the error names the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_urls()?;
        self.validate_lifetimes()?;
        self.validate_limits()?;
        self.validate_history()
    }

    fn validate_urls(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database.url {
            let url = url.expose_secret();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return bad(
                    "DATABASE_URL",
                    "must start with sqlite:, postgres:// or postgresql://",
                );
            }
        }
        for (name, url) in [
            ("S3_ENDPOINT", &self.s3.endpoint),
            ("PUBLIC_S3_URL", &self.s3.public_s3_url),
        ] {
            if let Some(url) = url {
                match url::Url::parse(url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => return bad(name, "must be an http:// or https:// URL"),
                }
            }
        }
        if self.s3.endpoint.is_some() {
            if self.s3.access_key_id.is_none() {
                return bad(
                    "S3_ACCESS_KEY_ID",
                    "an external S3 endpoint (INTAKE_S3_ENDPOINT) needs an access key id",
                );
            }
            if self.s3.secret_access_key.is_none() {
                return bad(
                    "S3_SECRET_ACCESS_KEY",
                    "an external S3 endpoint (INTAKE_S3_ENDPOINT) needs a secret access key",
                );
            }
        }
        let bucket = &self.s3.bucket;
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return bad(
                "S3_BUCKET",
                "must be a valid bucket name (3-63 lowercase letters, digits, '-', '.')",
            );
        }
        if self.scan.require_scan && self.scan.clamd_addr.is_none() {
            return bad("REQUIRE_SCAN", "is true but INTAKE_CLAMD_ADDR is not set");
        }
        Ok(())
    }

    fn validate_lifetimes(&self) -> Result<(), ConfigError> {
        const SIGV4_MAX: u64 = 7 * 24 * 3600;
        for (name, secs) in [
            ("ACCESS_TOKEN_TTL_SECS", self.auth.access_token_ttl_secs),
            ("REFRESH_TOKEN_TTL_SECS", self.auth.refresh_token_ttl_secs),
            ("WS_TICKET_TTL_SECS", self.auth.ws_ticket_ttl_secs),
            ("PRESIGN_TTL_SECS", self.uploads.presign_ttl_secs),
            ("DOWNLOAD_URL_TTL_SECS", self.uploads.download_url_ttl_secs),
            (
                "HISTORY_UPLOAD_URL_TTL_SECS",
                self.history.upload_url_ttl_secs,
            ),
            ("WS_IDLE_TIMEOUT_SECS", self.socket.idle_timeout_secs),
        ] {
            if secs == 0 {
                return bad(name, "must be at least 1 second");
            }
        }
        for (name, secs) in [
            ("PRESIGN_TTL_SECS", self.uploads.presign_ttl_secs),
            ("DOWNLOAD_URL_TTL_SECS", self.uploads.download_url_ttl_secs),
            (
                "HISTORY_UPLOAD_URL_TTL_SECS",
                self.history.upload_url_ttl_secs,
            ),
        ] {
            if secs > SIGV4_MAX {
                return bad(
                    name,
                    "must be at most 604800 (SigV4 presigned URLs live at most 7 days)",
                );
            }
        }
        let jobs = &self.jobs;
        if jobs.heartbeat_secs == 0 {
            return bad("JOB_HEARTBEAT_SECS", "must be at least 1");
        }
        if jobs.stale_secs <= jobs.heartbeat_secs * 2 {
            return bad(
                "JOB_STALE_SECS",
                "must be more than twice INTAKE_JOB_HEARTBEAT_SECS",
            );
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let u = &self.uploads;
        if u.multipart_threshold_bytes < 5 * 1024 * 1024 {
            return bad(
                "MULTIPART_THRESHOLD_BYTES",
                "must be at least 5 MiB (S3's minimum part size)",
            );
        }
        if let Some(chunk) = u.multipart_chunk_bytes
            && !(5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&chunk)
        {
            return bad("MULTIPART_CHUNK_BYTES", "must be between 5 MiB and 5 GiB");
        }
        let a = &self.archive;
        let j = &self.jobs;
        for (name, value) in [
            ("MAX_UPLOAD_GB", u.max_upload_gb),
            ("MAX_ARCHIVE_ENTRIES", a.max_archive_entries),
            ("MAX_ENTRY_BYTES", a.max_entry_bytes),
            ("MAX_ARCHIVE_BYTES", a.max_archive_bytes),
            ("MAX_COMPRESSION_RATIO", a.max_compression_ratio),
            ("WORKER_CONCURRENCY", u64::from(j.worker_concurrency)),
            ("SAVE_CONCURRENCY", u64::from(j.save_concurrency)),
            ("JOB_POLL_MS", j.poll_ms),
            (
                "DATABASE_MAX_CONNECTIONS",
                u64::from(self.database.max_connections),
            ),
            (
                "MAX_SOCKETS_PER_USER",
                u64::from(self.socket.max_sockets_per_user),
            ),
        ] {
            if value == 0 {
                return bad(name, "must be at least 1");
            }
        }
        Ok(())
    }

    fn validate_history(&self) -> Result<(), ConfigError> {
        if self.history.cache_ttl_secs > 3600 {
            return bad(
                "HISTORY_CACHE_TTL_SECS",
                "must be at most 3600 (it bounds how long a revoked key keeps working)",
            );
        }
        if self
            .history
            .api_key_pepper
            .as_ref()
            .is_some_and(|p| p.expose_secret().len() < 32)
        {
            return bad("HISTORY_API_KEY_PEPPER", "must be at least 32 characters");
        }
        Ok(())
    }

    /// The database URL in force: the configured one or the embedded SQLite file.
    pub fn effective_database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}/intake.db?mode=rwc",
                self.server.data_dir.display()
            )
            .into(),
        }
    }

    /// The defaults for a throwaway node in `data_dir` (tests, benchmarks): the
    /// API and the embedded S3 endpoint on ports the system picks.
    pub fn ephemeral(data_dir: PathBuf) -> Settings {
        let mut settings = Settings::default();
        settings.server.data_dir = data_dir;
        settings.server.http_addr = "127.0.0.1:0".parse().expect("valid address");
        settings.s3.embedded_addr = "127.0.0.1:0".parse().expect("valid address");
        settings
    }
}

impl UploadSettings {
    /// Largest accepted upload in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_gb * 1_000_000_000
    }
}

/// The error for `INTAKE_<name>`.
fn bad(name: &str, why: &str) -> Result<(), ConfigError> {
    Err(ConfigError(format!("INTAKE_{name}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `(file, name)`: loading the file fails with a message naming `name`.
    fn refused_naming(cases: &[(&str, &str)]) {
        for (toml, name) in cases {
            let e = load_toml(toml).unwrap_err().to_string();
            assert!(e.contains(name), "{toml}: {e}");
        }
    }

    fn load_toml(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intake.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(Some(&path))
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
        let s = load_toml("").unwrap();
        assert_eq!(s.server.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.uploads.max_upload_gb, 5);
    }

    #[test]
    fn file_values_apply() {
        let s = load_toml("http_addr = \"0.0.0.0:9999\"\nmax_upload_gb = 2\nallowed_origins = [\"https://a.example\"]").unwrap();
        assert_eq!(s.server.http_addr.port(), 9999);
        assert_eq!(s.uploads.max_upload_bytes(), 2_000_000_000);
        assert_eq!(
            s.socket.allowed_origins,
            vec!["https://a.example".to_string()]
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        refused_naming(&[
            ("http_addr = \"not an address\"", "http_addr"),
            ("max_upload_gb = \"lots\"", "max_upload_gb"),
            ("max_upload_gb = 0", "INTAKE_MAX_UPLOAD_GB"),
            ("databse_url = \"x\"", "databse_url"),
            ("database_url = \"mysql://x\"", "INTAKE_DATABASE_URL"),
            ("require_scan = true", "INTAKE_REQUIRE_SCAN"),
            (
                "s3_endpoint = \"http://s3.example\"",
                "INTAKE_S3_ACCESS_KEY_ID",
            ),
            (
                "multipart_chunk_bytes = 1024",
                "INTAKE_MULTIPART_CHUNK_BYTES",
            ),
        ]);
    }

    #[test]
    fn history_settings_are_checked() {
        let s = load_toml("").unwrap();
        assert_eq!(s.history.upload_url_ttl_secs, 900);
        assert_eq!(s.history.cache_ttl_secs, 30);
        refused_naming(&[
            (
                "history_upload_url_ttl_secs = 0",
                "INTAKE_HISTORY_UPLOAD_URL_TTL_SECS",
            ),
            (
                "history_upload_url_ttl_secs = 604801",
                "INTAKE_HISTORY_UPLOAD_URL_TTL_SECS",
            ),
            (
                "history_cache_ttl_secs = 3601",
                "INTAKE_HISTORY_CACHE_TTL_SECS",
            ),
            (
                "history_api_key_pepper = \"short\"",
                "INTAKE_HISTORY_API_KEY_PEPPER",
            ),
        ]);
    }

    #[test]
    fn each_check_names_its_own_variable() {
        refused_naming(&[
            ("access_token_ttl_secs = 0", "INTAKE_ACCESS_TOKEN_TTL_SECS"),
            ("presign_ttl_secs = 0", "INTAKE_PRESIGN_TTL_SECS"),
            ("download_url_ttl_secs = 0", "INTAKE_DOWNLOAD_URL_TTL_SECS"),
            ("presign_ttl_secs = 604801", "INTAKE_PRESIGN_TTL_SECS"),
            ("max_archive_entries = 0", "INTAKE_MAX_ARCHIVE_ENTRIES"),
            ("max_entry_bytes = 0", "INTAKE_MAX_ENTRY_BYTES"),
            ("job_poll_ms = 0", "INTAKE_JOB_POLL_MS"),
            ("save_concurrency = 0", "INTAKE_SAVE_CONCURRENCY"),
            ("job_heartbeat_secs = 0", "INTAKE_JOB_HEARTBEAT_SECS"),
            ("job_stale_secs = 10", "INTAKE_JOB_STALE_SECS"),
            ("max_sockets_per_user = 0", "INTAKE_MAX_SOCKETS_PER_USER"),
            (
                "s3_endpoint = \"http://s3.example\"\ns3_access_key_id = \"k\"",
                "INTAKE_S3_SECRET_ACCESS_KEY",
            ),
        ]);
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = load_toml(
            "jwt_secret = \"very-secret-value\"\ndatabase_url = \"postgres://u:pw-123@h/db\"",
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("pw-123"), "{shown}");
        assert_eq!(
            s.auth.jwt_secret.unwrap().expose_secret(),
            "very-secret-value"
        );
    }

    #[test]
    fn every_flat_name_has_one_group() {
        let names = groups();
        // And docs/CONFIGURATION.md documents exactly these.
        let doc = include_str!("../docs/CONFIGURATION.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `INTAKE_"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_ascii_lowercase)
            .collect();
        let known: std::collections::BTreeSet<String> = names.keys().cloned().collect();
        assert_eq!(documented, known);
        assert_eq!(names["s3_bucket"], "s3");
        assert_eq!(names["job_stale_secs"], "jobs");
    }

    #[test]
    fn environment_text_stays_text() {
        assert_eq!(
            env_value("s3_access_key_id", "0123"),
            Value::from("0123".to_string())
        );
        assert_eq!(env_value("s3_region", "12"), Value::from("12".to_string()));
        assert_eq!(env_value("max_upload_gb", "2"), Value::from(2u8));
        assert_eq!(env_value("run_workers", "false"), Value::from(false));
        let origins = env_value("allowed_origins", r#"["https://a.example"]"#);
        assert!(
            matches!(origins, Value::Array(_, ref a) if a.len() == 1),
            "{origins:?}"
        );
        // Every optional setting is classified, so a new one cannot be misread.
        if let Ok(serde_json::Value::Object(groups)) = serde_json::to_value(Settings::default()) {
            for (name, value) in groups.values().filter_map(|g| g.as_object()).flatten() {
                if value.is_null() {
                    assert!(
                        OPTIONAL_TEXT.contains(&name.as_str())
                            || OPTIONAL_NUMBERS.contains(&name.as_str()),
                        "classify {name} in OPTIONAL_TEXT or OPTIONAL_NUMBERS"
                    );
                }
            }
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Settings::load(Some(Path::new("/nonexistent/intake.toml"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"));
    }
}
