//! Layered configuration: built-in defaults, then an optional `intake.toml`, then
//! `INTAKE_*` environment variables. Every setting is flat so that its environment
//! name is exactly `INTAKE_<FIELD>` (the names are part of the public contract).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting of the service, with its default. See `docs/CONFIGURATION.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded database, embedded S3 objects and generated secrets live.
    pub data_dir: PathBuf,
    /// Address of the HTTP/WebSocket API.
    pub http_addr: SocketAddr,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/intake.db`.
    pub database_url: Option<String>,
    /// Maximum database connections in the pool.
    pub database_max_connections: u32,

    /// External S3 endpoint; when unset the process serves its own at `s3_embedded_addr`.
    pub s3_endpoint: Option<String>,
    /// S3 region used for signing.
    pub s3_region: String,
    /// Bucket holding every object (created at start-up when missing).
    pub s3_bucket: String,
    /// Access key id; default for the embedded endpoint: generated and kept in the data dir.
    pub s3_access_key_id: Option<String>,
    /// Secret access key; default for the embedded endpoint: generated and kept in the data dir.
    pub s3_secret_access_key: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`); needed by most self-hosted S3 servers.
    pub s3_force_path_style: bool,
    /// Address of the embedded S3-compatible endpoint (used only without `s3_endpoint`).
    pub s3_embedded_addr: SocketAddr,
    /// Base URL put into presigned URLs when clients reach S3 at another address.
    pub public_s3_url: Option<String>,

    /// Secret for signing JWTs; default: generated and kept in the data dir.
    /// Several nodes must share one.
    pub jwt_secret: Option<String>,
    /// Lifetime of an access token, seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, seconds.
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of a one-time WebSocket ticket, seconds.
    pub ws_ticket_ttl_secs: u64,

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

    /// clamd address, `tcp://host:port` or `unix:///path`; unset: scanning is skipped.
    pub clamd_addr: Option<String>,
    /// Refuse to start without `clamd_addr`.
    pub require_scan: bool,

    /// Allowed `Origin` values for WebSocket upgrades; empty: any origin (and none).
    pub allowed_origins: Vec<String>,
    /// Maximum concurrent upload sockets per user.
    pub max_sockets_per_user: u32,
    /// Close a socket that has been silent (no pong or message) this long, seconds.
    pub ws_idle_timeout_secs: u64,

    /// Maximum number of entries in an archive.
    pub max_archive_entries: u64,
    /// Maximum inflated size of one entry, bytes.
    pub max_entry_bytes: u64,
    /// Maximum inflated size of a whole archive, bytes.
    pub max_archive_bytes: u64,
    /// Maximum compression ratio of one entry.
    pub max_compression_ratio: u64,
    /// Number of pipeline jobs one node runs at once.
    pub worker_concurrency: u32,
    /// Whether this node runs pipeline workers.
    pub run_workers: bool,
    /// First retry delay of a job after a transient failure, ms (doubles per attempt, with jitter, capped at 5 min).
    pub job_retry_base_ms: u64,
    /// How often a running job refreshes its heartbeat, seconds.
    pub job_heartbeat_secs: u64,
    /// A running job whose heartbeat is older than this is rescued, seconds.
    pub job_stale_secs: u64,
    /// How often idle workers look for jobs enqueued by other nodes, ms.
    pub job_poll_ms: u64,
    /// Uploads to the object store run at most this many at once per job.
    pub save_concurrency: u32,

    /// Lifetime of Event History presigned upload URLs, seconds.
    pub history_upload_url_ttl_secs: u64,
    /// How long a node trusts its cached API keys and tenants, seconds: the longest a
    /// key revoked or a tenant deleted elsewhere keeps working on this node. 0: no cache.
    pub history_cache_ttl_secs: u64,
    /// Pepper keying the stored hashes of Event History API keys (at least 32
    /// characters); default: generated and kept in the data dir. Several nodes must
    /// share one, and changing it invalidates every key.
    pub history_api_key_pepper: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./intake-data"),
            http_addr: "127.0.0.1:8080".parse().expect("valid default"),
            database_url: None,
            database_max_connections: 16,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_bucket: "intake".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_force_path_style: true,
            s3_embedded_addr: "127.0.0.1:9000".parse().expect("valid default"),
            public_s3_url: None,
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            ws_ticket_ttl_secs: 60,
            max_upload_gb: 5,
            multipart_threshold_bytes: 100 * 1024 * 1024,
            multipart_chunk_bytes: None,
            presign_ttl_secs: 3600,
            download_url_ttl_secs: 300,
            upload_ttl_secs: 24 * 3600,
            clamd_addr: None,
            require_scan: false,
            allowed_origins: Vec::new(),
            max_sockets_per_user: 16,
            ws_idle_timeout_secs: 120,
            max_archive_entries: 100_000,
            max_entry_bytes: 5 * 1024 * 1024 * 1024,
            max_archive_bytes: 20 * 1024 * 1024 * 1024,
            max_compression_ratio: 200,
            worker_concurrency: 2,
            run_workers: true,
            job_retry_base_ms: 1000,
            job_heartbeat_secs: 5,
            job_stale_secs: 60,
            job_poll_ms: 1000,
            save_concurrency: 8,
            history_upload_url_ttl_secs: 15 * 60,
            history_cache_ttl_secs: 30,
            history_api_key_pepper: None,
        }
    }
}

/// A configuration problem found before start-up; names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Loads defaults, then `file` (or `./intake.toml` when present), then `INTAKE_*`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("intake.toml")),
        }
        // Only variables that name a setting: others share the prefix (INTAKE_LOG,
        // INTAKE_CONFIG, the CLI's INTAKE_EMAIL, tests' INTAKE_TEST_*).
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        figment = figment.merge(
            Env::prefixed("INTAKE_")
                .filter(move |k| known.iter().any(|f| k.as_str().eq_ignore_ascii_case(f))),
        );
        let settings: Settings = figment.extract().map_err(|e| {
            let e = e.to_string();
            ConfigError(
                e.replace("for key \"default.", "for setting \"")
                    .to_string(),
            )
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, why: &str| Err(ConfigError(format!("INTAKE_{name}: {why}")));
        if self.max_upload_gb == 0 {
            return bad("MAX_UPLOAD_GB", "must be at least 1");
        }
        if self.multipart_threshold_bytes < 5 * 1024 * 1024 {
            return bad(
                "MULTIPART_THRESHOLD_BYTES",
                "must be at least 5 MiB (S3's minimum part size)",
            );
        }
        if let Some(chunk) = self.multipart_chunk_bytes
            && !(5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&chunk)
        {
            return bad("MULTIPART_CHUNK_BYTES", "must be between 5 MiB and 5 GiB");
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return bad(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        for (name, url) in [
            ("S3_ENDPOINT", &self.s3_endpoint),
            ("PUBLIC_S3_URL", &self.public_s3_url),
        ] {
            if let Some(url) = url {
                match url::Url::parse(url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => return bad(name, "must be an http:// or https:// URL"),
                }
            }
        }
        if self.s3_endpoint.is_some()
            && (self.s3_access_key_id.is_none() || self.s3_secret_access_key.is_none())
        {
            return bad(
                "S3_ACCESS_KEY_ID",
                "an external S3 endpoint needs INTAKE_S3_ACCESS_KEY_ID and INTAKE_S3_SECRET_ACCESS_KEY",
            );
        }
        if self.s3_bucket.len() < 3
            || self.s3_bucket.len() > 63
            || !self
                .s3_bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return bad(
                "S3_BUCKET",
                "must be a valid bucket name (3-63 lowercase letters, digits, '-', '.')",
            );
        }
        if self.require_scan && self.clamd_addr.is_none() {
            return bad("REQUIRE_SCAN", "is true but INTAKE_CLAMD_ADDR is not set");
        }
        if self.ws_ticket_ttl_secs == 0
            || self.access_token_ttl_secs == 0
            || self.presign_ttl_secs == 0
        {
            return bad("WS_TICKET_TTL_SECS", "lifetimes must be at least 1 second");
        }
        if self.presign_ttl_secs > 7 * 24 * 3600 || self.history_upload_url_ttl_secs > 7 * 24 * 3600
        {
            return bad(
                "PRESIGN_TTL_SECS",
                "SigV4 presigned URLs live at most 7 days",
            );
        }
        if self.history_upload_url_ttl_secs == 0 {
            return bad("HISTORY_UPLOAD_URL_TTL_SECS", "must be at least 1 second");
        }
        if self.history_cache_ttl_secs > 3600 {
            return bad(
                "HISTORY_CACHE_TTL_SECS",
                "must be at most 3600 (it bounds how long a revoked key keeps working)",
            );
        }
        if self
            .history_api_key_pepper
            .as_ref()
            .is_some_and(|p| p.len() < 32)
        {
            return bad("HISTORY_API_KEY_PEPPER", "must be at least 32 characters");
        }
        if self.max_compression_ratio == 0 || self.max_archive_entries == 0 {
            return bad("MAX_COMPRESSION_RATIO", "archive limits must be at least 1");
        }
        if self.job_heartbeat_secs == 0 || self.job_stale_secs <= self.job_heartbeat_secs * 2 {
            return bad(
                "JOB_STALE_SECS",
                "must be more than twice INTAKE_JOB_HEARTBEAT_SECS (which must be at least 1)",
            );
        }
        if self.save_concurrency == 0 || self.job_poll_ms == 0 {
            return bad("SAVE_CONCURRENCY", "must be at least 1");
        }
        if self.worker_concurrency == 0 {
            return bad("WORKER_CONCURRENCY", "must be at least 1");
        }
        Ok(())
    }

    /// The database URL in force: the configured one or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}/intake.db?mode=rwc", self.data_dir.display()),
        }
    }

    /// Largest accepted upload in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_gb * 1_000_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.max_upload_gb, 5);
    }

    #[test]
    fn file_values_apply() {
        let s = load_toml("http_addr = \"0.0.0.0:9999\"\nmax_upload_gb = 2\nallowed_origins = [\"https://a.example\"]").unwrap();
        assert_eq!(s.http_addr.port(), 9999);
        assert_eq!(s.max_upload_bytes(), 2_000_000_000);
        assert_eq!(s.allowed_origins, vec!["https://a.example".to_string()]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = load_toml("http_addr = \"not an address\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http_addr"), "{e}");
        let e = load_toml("max_upload_gb = \"lots\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_upload_gb"), "{e}");
        let e = load_toml("max_upload_gb = 0").unwrap_err().to_string();
        assert!(e.contains("INTAKE_MAX_UPLOAD_GB"), "{e}");
        let e = load_toml("databse_url = \"x\"").unwrap_err().to_string();
        assert!(e.contains("databse_url"), "{e}");
        let e = load_toml("database_url = \"mysql://x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("INTAKE_DATABASE_URL"), "{e}");
        let e = load_toml("require_scan = true").unwrap_err().to_string();
        assert!(e.contains("INTAKE_REQUIRE_SCAN"), "{e}");
        let e = load_toml("s3_endpoint = \"http://s3.example\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("INTAKE_S3_ACCESS_KEY_ID"), "{e}");
        let e = load_toml("multipart_chunk_bytes = 1024")
            .unwrap_err()
            .to_string();
        assert!(e.contains("INTAKE_MULTIPART_CHUNK_BYTES"), "{e}");
    }

    #[test]
    fn history_settings_are_checked() {
        let s = load_toml("").unwrap();
        assert_eq!(s.history_upload_url_ttl_secs, 900);
        assert_eq!(s.history_cache_ttl_secs, 30);
        for (toml, name) in [
            (
                "history_upload_url_ttl_secs = 0",
                "INTAKE_HISTORY_UPLOAD_URL_TTL_SECS",
            ),
            (
                "history_upload_url_ttl_secs = 604801",
                "INTAKE_PRESIGN_TTL_SECS",
            ),
            (
                "history_cache_ttl_secs = 3601",
                "INTAKE_HISTORY_CACHE_TTL_SECS",
            ),
            (
                "history_api_key_pepper = \"short\"",
                "INTAKE_HISTORY_API_KEY_PEPPER",
            ),
        ] {
            let e = load_toml(toml).unwrap_err().to_string();
            assert!(e.contains(name), "{toml}: {e}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Settings::load(Some(Path::new("/nonexistent/intake.toml"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"));
    }
}
