//! Settings: ONE table (`schema!` below) lists every setting — its flat name, Rust
//! type, kind (which carries the unit), default, example and doc line. From it come
//! the `Settings` structs and their defaults, the loader (defaults, then an optional
//! `intake.toml`, then `INTAKE_*` variables), the warning for a variable that names no
//! setting ("did you mean …?"), and the table of `docs/CONFIGURATION.md` (a test
//! compares it; `UPDATE_DOCS=1 cargo test --lib config` rewrites it).
//!
//! Settings are grouped by the part of the system that reads them (`Settings::s3`,
//! `Settings::jobs`, …), but every name stays flat: the file uses `s3_bucket = …`
//! and the environment `INTAKE_S3_BUCKET` (they are part of the public contract).
//! Sizes and durations take human units (`100 MiB`, `15m`); a plain number is bytes
//! or seconds, and the older `*_secs` / `*_ms` / `max_upload_gb` names keep working.

// The explicit path resolves the same whether this file is the crate's `config`
// module or compiled on its own by `fuzz/` (`#[path]`, which looks beside the file).
#[path = "config/schema.rs"]
mod schema;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use schema::{Addr, Bool, Dur, FsPath, Int, List, OneOf, Optional, Secret, Size, Text};
pub use schema::{Spec, closest, markdown_table};

/// How log lines are written (`INTAKE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl schema::Choice for LogFormat {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
    const NAME: &'static str = "`text` or `json` (any case)";
}

schema::schema! {
    /// Where the process keeps its files and listens.
    server: ServerSettings {
        /// Where the embedded database, embedded S3 objects and generated secrets live.
        /// `serve` and `admin` print the directory they use.
        data_dir: PathBuf as FsPath = "data_dir",
            default Some("./intake-data"), example "/var/lib/intake";
        /// Address of the HTTP/WebSocket API.
        http_addr: SocketAddr as Addr = "http_addr",
            default Some("127.0.0.1:8080"), example "0.0.0.0:8080";
        /// Origins allowed to call the REST API from a browser (CORS); `*`: any;
        /// empty: none.
        cors_allowed_origins: Vec<String> as List = "cors_allowed_origins",
            default None, example "https://app.example";
    }
    /// What is logged and how.
    log: LogSettings {
        /// A `tracing` filter: a level, or per-module levels.
        filter: String as Text = "log",
            default Some("info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn"),
            example "debug,hyper=info";
        /// Log line format; text lines are coloured only when stderr is a terminal
        /// (and `NO_COLOR` is unset).
        format: LogFormat as OneOf<LogFormat> = "log_format",
            default Some("text"), example "json";
    }
    /// The metadata database.
    database: DatabaseSettings {
        /// `sqlite://…` or `postgres://…` (may hold a password); unset: the SQLite file
        /// `<data_dir>/intake.db`.
        url: Option<SecretString> as Optional<Secret> = "database_url",
            default None, example "postgres://intake:secret@db.internal:5432/intake";
        /// Maximum database connections in the pool.
        max_connections: u32 as Int<u32> = "database_max_connections",
            default Some("16"), example "32";
    }
    /// The object store.
    s3: S3Settings {
        /// External S3 endpoint; when unset the process serves its own at
        /// `s3_embedded_addr`.
        endpoint: Option<String> as Optional<Text> = "s3_endpoint",
            default None, example "https://s3.eu-west-1.amazonaws.com";
        /// S3 region used for signing.
        region: String as Text = "s3_region", default Some("us-east-1"), example "eu-west-1";
        /// Bucket holding every object (created at start-up when missing).
        bucket: String as Text = "s3_bucket", default Some("intake"), example "intake-prod";
        /// Access key id; default for the embedded endpoint: generated and kept in the
        /// data dir.
        access_key_id: Option<String> as Optional<Text> = "s3_access_key_id",
            default None, example "AKIAIOSFODNN7EXAMPLE";
        /// Secret access key; default for the embedded endpoint: generated and kept in
        /// the data dir.
        secret_access_key: Option<SecretString> as Optional<Secret> = "s3_secret_access_key",
            default None, example "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        /// Path-style addressing (`http://host/bucket/key`); needed by most self-hosted
        /// S3 servers.
        force_path_style: bool as Bool = "s3_force_path_style",
            default Some("true"), example "false";
        /// Address of the embedded S3-compatible endpoint (used only without
        /// `s3_endpoint`).
        embedded_addr: SocketAddr as Addr = "s3_embedded_addr",
            default Some("127.0.0.1:9000"), example "0.0.0.0:9000";
        /// Base URL put into presigned URLs when clients reach S3 at another address.
        public_s3_url: Option<String> as Optional<Text> = "public_s3_url",
            default None, example "https://files.example.com";
    }
    /// Tokens and tickets.
    auth: AuthSettings {
        /// Secret for signing JWTs; default: generated and kept in the data dir.
        /// Several nodes must share one.
        jwt_secret: Option<SecretString> as Optional<Secret> = "jwt_secret",
            default None, example "a-long-random-string";
        /// Lifetime of an access token.
        access_token_ttl: Duration as Dur = "access_token_ttl",
            default Some("15m"), example "30m", alias "access_token_ttl_secs" in Secs;
        /// Lifetime of a refresh token.
        refresh_token_ttl: Duration as Dur = "refresh_token_ttl",
            default Some("7d"), example "30d", alias "refresh_token_ttl_secs" in Secs;
        /// Lifetime of a one-time WebSocket ticket.
        ws_ticket_ttl: Duration as Dur = "ws_ticket_ttl",
            default Some("60s"), example "30s", alias "ws_ticket_ttl_secs" in Secs;
    }
    /// What the upload socket accepts and how long its URLs live.
    uploads: UploadSettings {
        /// Largest accepted upload (the socket's error text states it in GB, 10^9 bytes).
        max_upload_bytes: u64 as Size = "max_upload_bytes",
            default Some("5 GB"), example "50 GB", alias "max_upload_gb" in Gb;
        /// Uploads of at least this size use multipart.
        multipart_threshold_bytes: u64 as Size = "multipart_threshold_bytes",
            default Some("100 MiB"), example "64 MiB";
        /// Fixed multipart chunk size (5 MiB to 5 GiB); unset: 16 MiB, grown so there
        /// are at most 10,000 parts.
        multipart_chunk_bytes: Option<u64> as Optional<Size> = "multipart_chunk_bytes",
            default None, example "32 MiB";
        /// Lifetime of presigned upload URLs (at most 7 days).
        presign_ttl: Duration as Dur = "presign_ttl",
            default Some("1h"), example "15m", alias "presign_ttl_secs" in Secs;
        /// Lifetime of presigned download URLs (at most 7 days).
        download_url_ttl: Duration as Dur = "download_url_ttl",
            default Some("5m"), example "1m", alias "download_url_ttl_secs" in Secs;
        /// How long an upload id stays usable after creation.
        upload_ttl: Duration as Dur = "upload_ttl",
            default Some("24h"), example "2h", alias "upload_ttl_secs" in Secs;
        /// How often the sweeper (one node of the cluster at a time) removes abandoned
        /// uploads and expired quarantine; 0: this node never sweeps.
        sweep_interval: Duration as Dur = "sweep_interval", default Some("60s"), example "10m";
        /// How long an infected archive is kept under `quarantine/`.
        quarantine_ttl: Duration as Dur = "quarantine_ttl", default Some("30d"), example "7d";
        /// A job temp dir (`<data_dir>/tmp/job-*`) older than this is removed (all of
        /// them at start-up).
        tmp_ttl: Duration as Dur = "tmp_ttl", default Some("24h"), example "6h";
        /// How long an upload that ended `expired` keeps its row and its message log
        /// before the sweeper deletes them (a socket or request naming it then gets
        /// the answer for an unknown upload); 0: deleted in the pass that expires it.
        expired_retention: Duration as Dur = "expired_retention",
            default Some("1h"), example "0s";
    }
    /// The antivirus scanner.
    scan: ScanSettings {
        /// clamd address, `tcp://host:port` or `unix:///path`; unset: scanning is skipped.
        clamd_addr: Option<String> as Optional<Text> = "clamd_addr",
            default None, example "tcp://127.0.0.1:3310";
        /// Refuse to start without `clamd_addr`.
        require_scan: bool as Bool = "require_scan", default Some("false"), example "true";
    }
    /// The upload socket's connections.
    socket: SocketSettings {
        /// Allowed `Origin` values for WebSocket upgrades; empty: any origin (and none).
        allowed_origins: Vec<String> as List = "allowed_origins",
            default None, example "https://app.example,https://admin.example";
        /// Maximum concurrent upload sockets per user.
        max_sockets_per_user: u32 as Int<u32> = "max_sockets_per_user",
            default Some("16"), example "4";
        /// Close a socket that has been silent (no pong or message) this long.
        idle_timeout: Duration as Dur = "ws_idle_timeout",
            default Some("2m"), example "45s", alias "ws_idle_timeout_secs" in Secs;
        /// How often a node reads which uploads' logs grew, to wake their sockets:
        /// the bound on a lost wake-up (one query per node, whatever the number of
        /// sockets). Writes on this node wake its sockets at once, other nodes'
        /// through PostgreSQL `LISTEN/NOTIFY`.
        socket_poll: Duration as Dur = "socket_poll", default Some("5s"), example "1s";
        /// Wake sockets on other nodes through PostgreSQL `LISTEN/NOTIFY` (ignored on
        /// SQLite, one node). Off, another node's messages reach a socket within
        /// `INTAKE_SOCKET_POLL`.
        socket_notify: bool as Bool = "socket_notify", default Some("true"), example "false";
    }
    /// Limits on an archive's contents.
    archive: ArchiveSettings {
        /// Maximum number of entries in an archive.
        max_archive_entries: u64 as Int<u64> = "max_archive_entries",
            default Some("100000"), example "10000";
        /// Maximum inflated size of one entry.
        max_entry_bytes: u64 as Size = "max_entry_bytes", default Some("5 GiB"), example "1 GiB";
        /// Maximum inflated size of a whole archive.
        max_archive_bytes: u64 as Size = "max_archive_bytes",
            default Some("20 GiB"), example "100 MiB";
        /// Maximum compression ratio of one entry.
        max_compression_ratio: u64 as Int<u64> = "max_compression_ratio",
            default Some("200"), example "100";
    }
    /// Pipeline workers and their job queue.
    jobs: JobSettings {
        /// Number of pipeline jobs one node runs at once.
        worker_concurrency: u32 as Int<u32> = "worker_concurrency", default Some("2"), example "4";
        /// Whether this node runs pipeline workers.
        run_workers: bool as Bool = "run_workers", default Some("true"), example "false";
        /// First retry delay of a job after a transient failure (doubles per attempt,
        /// with jitter, capped at 5 min).
        retry_base: Duration as Dur = "job_retry_base",
            default Some("1s"), example "500ms", alias "job_retry_base_ms" in Millis;
        /// The longest a job's client goes without a word when the job's node dies or
        /// stalls. A running job writes its heartbeat three times per interval; each
        /// node looks at the running jobs six times per interval: a job whose heartbeat
        /// is older than two thirds of it gets an `ERR_WORKER_SILENT` notice to its
        /// client (again every interval while the silence lasts), a stale one
        /// (`job_stale`) is taken over.
        heartbeat: Duration as Dur = "job_heartbeat",
            default Some("3s"), example "10s", alias "job_heartbeat_secs" in Secs;
        /// A running job whose heartbeat is older than this is taken over by another
        /// worker (more than twice `job_heartbeat`).
        stale: Duration as Dur = "job_stale",
            default Some("10s"), example "2m", alias "job_stale_secs" in Secs;
        /// How often idle workers look for jobs enqueued by other nodes.
        poll: Duration as Dur = "job_poll",
            default Some("1s"), example "250ms", alias "job_poll_ms" in Millis;
        /// Entries in temp files are saved to the object store at most this many at
        /// once per job; entries held in memory, up to twice as many.
        save_concurrency: u32 as Int<u32> = "save_concurrency", default Some("8"), example "16";
        /// Entries up to this size are inflated into memory rather than a temp file
        /// (scanned and stored from there); 0: every entry goes through a temp file.
        memory_entry_max: u64 as Size = "memory_entry_max",
            default Some("1 MiB"), example "256 KiB";
        /// The most bytes of entries a node holds in memory at once, over all its jobs
        /// (at least `memory_entry_max`); an entry waits for room.
        memory_budget: u64 as Size = "memory_budget", default Some("32 MiB"), example "128 MiB";
    }
    /// The Event History API.
    history: HistorySettings {
        /// Lifetime of Event History presigned upload URLs (1 s to 7 days).
        upload_url_ttl: Duration as Dur = "history_upload_url_ttl",
            default Some("15m"), example "5m", alias "history_upload_url_ttl_secs" in Secs;
        /// How long a node trusts its cached Event History API keys and tenants (0 to 1
        /// hour; 0: no cache): the longest a key revoked or a tenant deleted elsewhere
        /// keeps working on this node.
        cache_ttl: Duration as Dur = "history_cache_ttl",
            default Some("30s"), example "0", alias "history_cache_ttl_secs" in Secs;
        /// Pepper keying the stored hashes of Event History API keys (at least 32
        /// characters); default: generated and kept in the data dir. Several nodes must
        /// share one; changing it invalidates every key.
        api_key_pepper: Option<SecretString> as Optional<Secret> = "history_api_key_pepper",
            default None, example "at-least-32-characters-of-random-text";
    }
    /// Webhooks sent when an upload settles (`docs/OPERATIONS.md`).
    webhooks: WebhookSettings {
        /// URLs that receive a signed POST when an upload settles; empty: none.
        webhook_urls: Vec<String> as List = "webhook_urls",
            default None, example "https://hooks.example/intake";
        /// Key of the webhooks' `X-Intake-Signature` (HMAC-SHA256); needed with
        /// `webhook_urls`.
        webhook_secret: Option<SecretString> as Optional<Secret> = "webhook_secret",
            default None, example "a-long-random-string";
    }
}

/// A configuration problem found before start-up: one line naming the setting and
/// what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when cut.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Settings {
    /// Loads defaults, then `file` (or `./intake.toml` when present), then `INTAKE_*`,
    /// and validates. Warnings (unknown variables, old names) go to the log; use
    /// [`Settings::load_with_warnings`] to print them yourself.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let (settings, warnings) = Self::load_with_warnings(file)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(settings)
    }

    /// [`Settings::load`], returning the warnings instead of logging them (the log is
    /// set up from the settings, so it does not exist yet).
    pub fn load_with_warnings(file: Option<&Path>) -> Result<(Self, Vec<String>), ConfigError> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())));
        Self::load_from(file, env)
    }

    /// Loads from `file` and the variables `env` (a test's own environment).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let path = match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!(
                    "config file {} (--config / INTAKE_CONFIG) does not exist",
                    path.display()
                )));
            }
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("intake.toml")).filter(|p| p.exists()),
        };
        let text = match &path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "config file {}: {}",
                    path.display(),
                    schema::io_reason(&e)
                ))
            })?),
            None => None,
        };
        Self::load_text(path.as_deref().zip(text.as_deref()), env)
    }

    /// What [`Settings::load`] does once it has read the file, in memory: defaults,
    /// then `file` (the path its messages name and the file's text), then the
    /// `INTAKE_*` variables of `env` (nothing else of the process environment), and
    /// validates. Touches no file (the fuzz target's entry point).
    pub fn load_text(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let (settings, warnings) = schema::load(file, env)?;
        settings.validate()?;
        Ok((settings, warnings))
    }

    /// The settings of the schema, in order (for docs and tools).
    pub fn schema() -> &'static [Spec] {
        SCHEMA
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
        for url in &self.webhooks.webhook_urls {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return bad("WEBHOOK_URLS", "must be http:// or https:// URLs"),
            }
        }
        if !self.webhooks.webhook_urls.is_empty() && self.webhooks.webhook_secret.is_none() {
            return bad(
                "WEBHOOK_SECRET",
                "is needed to sign webhooks (INTAKE_WEBHOOK_URLS)",
            );
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
        const SIGV4_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
        let second = Duration::from_secs(1);
        for (name, ttl) in [
            ("ACCESS_TOKEN_TTL", self.auth.access_token_ttl),
            ("REFRESH_TOKEN_TTL", self.auth.refresh_token_ttl),
            ("WS_TICKET_TTL", self.auth.ws_ticket_ttl),
            ("PRESIGN_TTL", self.uploads.presign_ttl),
            ("DOWNLOAD_URL_TTL", self.uploads.download_url_ttl),
            ("HISTORY_UPLOAD_URL_TTL", self.history.upload_url_ttl),
            ("WS_IDLE_TIMEOUT", self.socket.idle_timeout),
            ("JOB_HEARTBEAT", self.jobs.heartbeat),
        ] {
            if ttl < second {
                return bad(name, "must be at least 1 second");
            }
        }
        for (name, ttl) in [
            ("PRESIGN_TTL", self.uploads.presign_ttl),
            ("DOWNLOAD_URL_TTL", self.uploads.download_url_ttl),
            ("HISTORY_UPLOAD_URL_TTL", self.history.upload_url_ttl),
        ] {
            if ttl > SIGV4_MAX {
                return bad(
                    name,
                    "must be at most 7d (SigV4 presigned URLs live at most 7 days)",
                );
            }
        }
        let jobs = &self.jobs;
        if jobs.stale <= jobs.heartbeat * 2 {
            return bad("JOB_STALE", "must be more than twice INTAKE_JOB_HEARTBEAT");
        }
        if self.socket.socket_poll < Duration::from_millis(100) {
            return bad("SOCKET_POLL", "must be at least 100ms");
        }
        if jobs.poll.is_zero() {
            return bad("JOB_POLL", "must be more than 0");
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        const MIB: u64 = 1024 * 1024;
        let u = &self.uploads;
        if u.multipart_threshold_bytes < 5 * MIB {
            return bad(
                "MULTIPART_THRESHOLD_BYTES",
                "must be at least 5 MiB (S3's minimum part size)",
            );
        }
        if let Some(chunk) = u.multipart_chunk_bytes
            && !(5 * MIB..=5 * 1024 * MIB).contains(&chunk)
        {
            return bad("MULTIPART_CHUNK_BYTES", "must be between 5 MiB and 5 GiB");
        }
        let a = &self.archive;
        let j = &self.jobs;
        if j.memory_entry_max > 1024 * MIB {
            return bad("MEMORY_ENTRY_MAX", "must be at most 1 GiB");
        }
        if j.memory_entry_max > j.memory_budget {
            return bad("MEMORY_BUDGET", "must be at least INTAKE_MEMORY_ENTRY_MAX");
        }
        for (name, value) in [
            ("MAX_UPLOAD_BYTES", u.max_upload_bytes),
            ("MAX_ARCHIVE_ENTRIES", a.max_archive_entries),
            ("MAX_ENTRY_BYTES", a.max_entry_bytes),
            ("MAX_ARCHIVE_BYTES", a.max_archive_bytes),
            ("MAX_COMPRESSION_RATIO", a.max_compression_ratio),
            ("WORKER_CONCURRENCY", u64::from(j.worker_concurrency)),
            ("SAVE_CONCURRENCY", u64::from(j.save_concurrency)),
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
        if self.history.cache_ttl > Duration::from_secs(3600) {
            return bad(
                "HISTORY_CACHE_TTL",
                "must be at most 1h (it bounds how long a revoked key keeps working)",
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

impl LogSettings {
    /// The log settings from the environment alone, for the commands that read no
    /// settings file (the uploader, `archive check`); a bad value keeps the default.
    pub fn from_env() -> LogSettings {
        let mut settings = Settings::default();
        for spec in SCHEMA.iter().filter(|s| s.group == "log") {
            let var = format!("INTAKE_{}", spec.name.to_ascii_uppercase());
            if let Ok(value) = std::env::var(var) {
                let _ = (spec.set)(&mut settings, &value);
            }
        }
        settings.log
    }
}

impl UploadSettings {
    /// The largest accepted upload in whole GB (10^9 bytes), as the socket's error
    /// text states it.
    pub fn max_upload_gb(&self) -> u64 {
        self.max_upload_bytes.div_ceil(1_000_000_000)
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
        Settings::load_from(Some(&path), []).map(|(s, _)| s)
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<(Settings, Vec<String>), ConfigError> {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("intake.toml");
        std::fs::write(&empty, "").unwrap();
        Settings::load_from(Some(&empty), env)
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
        let s = load_toml("").unwrap();
        assert_eq!(s.server.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.uploads.max_upload_bytes, 5_000_000_000);
        assert_eq!(s.uploads.presign_ttl, Duration::from_secs(3600));
        assert_eq!(s.archive.max_entry_bytes, 5 << 30);
        assert_eq!(s.log.format, LogFormat::Text);
    }

    #[test]
    fn file_values_apply() {
        let s = load_toml(
            "http_addr = \"0.0.0.0:9999\"\nmax_upload_bytes = \"2 GB\"\nallowed_origins = [\"https://a.example\"]\npresign_ttl = \"15m\"\njob_poll = 2",
        )
        .unwrap();
        assert_eq!(s.server.http_addr.port(), 9999);
        assert_eq!(s.uploads.max_upload_bytes, 2_000_000_000);
        assert_eq!(s.uploads.presign_ttl, Duration::from_secs(900));
        assert_eq!(s.jobs.poll, Duration::from_secs(2));
        assert_eq!(
            s.socket.allowed_origins,
            vec!["https://a.example".to_string()]
        );
    }

    #[test]
    fn human_units_and_old_plain_numbers() {
        let (s, warnings) = load_env(&[
            ("INTAKE_MAX_ARCHIVE_BYTES", "100 MiB"),
            ("INTAKE_MAX_ENTRY_BYTES", "1048576"),
            ("INTAKE_PRESIGN_TTL", "15m"),
            ("INTAKE_DOWNLOAD_URL_TTL", "90"),
            ("INTAKE_JOB_POLL_MS", "250"),
            ("INTAKE_JOB_STALE_SECS", "30"),
            ("INTAKE_MAX_UPLOAD_GB", "2"),
            ("INTAKE_MULTIPART_THRESHOLD_BYTES", "5MiB"),
            ("INTAKE_REFRESH_TOKEN_TTL", "1h 30m"),
        ])
        .unwrap();
        assert_eq!(s.archive.max_archive_bytes, 100 * 1024 * 1024);
        assert_eq!(s.archive.max_entry_bytes, 1_048_576);
        assert_eq!(s.uploads.presign_ttl, Duration::from_secs(900));
        assert_eq!(s.uploads.download_url_ttl, Duration::from_secs(90));
        assert_eq!(s.jobs.poll, Duration::from_millis(250));
        assert_eq!(s.jobs.stale, Duration::from_secs(30));
        assert_eq!(s.uploads.max_upload_bytes, 2_000_000_000);
        assert_eq!(s.uploads.max_upload_gb(), 2);
        assert_eq!(s.uploads.multipart_threshold_bytes, 5 * 1024 * 1024);
        assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(5400));
        // Old names work and say what the new one is.
        assert!(
            warnings
                .iter()
                .any(|w| w
                    == "INTAKE_JOB_POLL_MS is the old name of INTAKE_JOB_POLL; it still works"),
            "{warnings:?}"
        );
        // The current name wins over the old one, whatever the order.
        let (s, _) = load_env(&[
            ("INTAKE_PRESIGN_TTL", "10m"),
            ("INTAKE_PRESIGN_TTL_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(s.uploads.presign_ttl, Duration::from_secs(600));
    }

    #[test]
    fn unknown_variables_warn_with_a_suggestion() {
        let (_, warnings) = load_env(&[
            ("INTAKE_DATADIR", "/tmp/x"),
            ("INTAKE_ZZZ_QQQ", "1"),
            ("INTAKE_EMAIL", "a@b.c"),
            ("INTAKE_TEST_DB", "postgres"),
            ("HOME", "/root"),
        ])
        .unwrap();
        assert_eq!(
            warnings,
            vec![
                "INTAKE_DATADIR is not a setting; did you mean INTAKE_DATA_DIR?".to_string(),
                "INTAKE_ZZZ_QQQ is not a setting (see docs/CONFIGURATION.md); ignored".to_string(),
            ]
        );
        // An old name's typo suggests the current name.
        assert_eq!(closest("presign_ttl_sec"), Some("presign_ttl"));
        assert_eq!(closest("max_archive_byte"), Some("max_archive_bytes"));
    }

    #[test]
    fn enums_ignore_case() {
        let (s, _) = load_env(&[
            ("INTAKE_LOG_FORMAT", "JSON"),
            ("INTAKE_RUN_WORKERS", "False"),
        ])
        .unwrap();
        assert_eq!(s.log.format, LogFormat::Json);
        assert!(!s.jobs.run_workers);
        let e = load_env(&[("INTAKE_LOG_FORMAT", "yaml")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "INTAKE_LOG_FORMAT=\"yaml\" must be one of text, json"
        );
    }

    #[test]
    fn bad_values_name_the_setting_and_the_reason() {
        for (var, value, expected) in [
            (
                "INTAKE_MAX_ARCHIVE_BYTES",
                "lots",
                "INTAKE_MAX_ARCHIVE_BYTES=\"lots\" is not a size; write e.g. 100 MiB, 5 GB or a number of bytes",
            ),
            (
                "INTAKE_PRESIGN_TTL",
                "soon",
                "INTAKE_PRESIGN_TTL=\"soon\" is not a duration; write e.g. 30s, 15m, 2h, 7d or a number of seconds",
            ),
            (
                "INTAKE_HTTP_ADDR",
                "localhost",
                "INTAKE_HTTP_ADDR=\"localhost\" is not an address to listen on; write ip:port, e.g. 0.0.0.0:8080",
            ),
            (
                "INTAKE_PRESIGN_TTL",
                "8d",
                "INTAKE_PRESIGN_TTL: must be at most 7d (SigV4 presigned URLs live at most 7 days)",
            ),
            (
                "INTAKE_MEMORY_BUDGET",
                "512 KiB",
                "INTAKE_MEMORY_BUDGET: must be at least INTAKE_MEMORY_ENTRY_MAX",
            ),
            (
                "INTAKE_MEMORY_ENTRY_MAX",
                "2 GiB",
                "INTAKE_MEMORY_ENTRY_MAX: must be at most 1 GiB",
            ),
        ] {
            let e = load_env(&[(var, value)]).unwrap_err().to_string();
            assert_eq!(e, expected);
        }
        refused_naming(&[
            ("http_addr = \"not an address\"", "http_addr"),
            ("max_upload_bytes = \"lots\"", "max_upload_bytes"),
            ("max_upload_gb = 0", "INTAKE_MAX_UPLOAD_BYTES"),
            ("databse_url = \"x\"", "did you mean database_url?"),
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
            (
                "max_upload_gb = 1\n[section]\nx = 1",
                "\"section\" is not a setting",
            ),
            ("this is not toml", "not valid TOML"),
        ]);
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let e = load_env(&[("INTAKE_DATABASE_URL", "mysql://u:pw-123@h/db")])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw-123"), "{e}");
    }

    #[test]
    fn history_settings_are_checked() {
        let s = load_toml("").unwrap();
        assert_eq!(s.history.upload_url_ttl, Duration::from_secs(900));
        assert_eq!(s.history.cache_ttl, Duration::from_secs(30));
        assert!(load_toml("history_cache_ttl = 0").is_ok());
        refused_naming(&[
            (
                "history_upload_url_ttl_secs = 0",
                "INTAKE_HISTORY_UPLOAD_URL_TTL",
            ),
            (
                "history_upload_url_ttl = \"8d\"",
                "INTAKE_HISTORY_UPLOAD_URL_TTL",
            ),
            ("history_cache_ttl = \"61m\"", "INTAKE_HISTORY_CACHE_TTL"),
            (
                "history_api_key_pepper = \"short\"",
                "INTAKE_HISTORY_API_KEY_PEPPER",
            ),
        ]);
    }

    #[test]
    fn each_check_names_its_own_variable() {
        refused_naming(&[
            ("access_token_ttl_secs = 0", "INTAKE_ACCESS_TOKEN_TTL"),
            ("presign_ttl = 0", "INTAKE_PRESIGN_TTL"),
            ("download_url_ttl = \"500ms\"", "INTAKE_DOWNLOAD_URL_TTL"),
            ("presign_ttl_secs = 604801", "INTAKE_PRESIGN_TTL"),
            ("max_archive_entries = 0", "INTAKE_MAX_ARCHIVE_ENTRIES"),
            ("max_entry_bytes = 0", "INTAKE_MAX_ENTRY_BYTES"),
            ("job_poll_ms = 0", "INTAKE_JOB_POLL"),
            ("save_concurrency = 0", "INTAKE_SAVE_CONCURRENCY"),
            ("job_heartbeat_secs = 0", "INTAKE_JOB_HEARTBEAT"),
            ("job_stale = \"6s\"", "INTAKE_JOB_STALE"),
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
    fn environment_text_stays_text() {
        let (s, _) = load_env(&[
            ("INTAKE_S3_ACCESS_KEY_ID", "0123"),
            ("INTAKE_S3_REGION", "12"),
            (
                "INTAKE_ALLOWED_ORIGINS",
                r#"["https://a.example", "https://b.example"]"#,
            ),
        ])
        .unwrap();
        assert_eq!(s.s3.access_key_id.as_deref(), Some("0123"));
        assert_eq!(s.s3.region, "12");
        assert_eq!(s.socket.allowed_origins.len(), 2);
        let (s, _) = load_env(&[(
            "INTAKE_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        )])
        .unwrap();
        assert_eq!(s.socket.allowed_origins[1], "https://b.example");
        // Set but empty: an optional setting is unset.
        let (s, _) = load_env(&[("INTAKE_CLAMD_ADDR", "")]).unwrap();
        assert!(s.scan.clamd_addr.is_none());
    }

    #[test]
    fn names_are_unique_and_examples_parse() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in SCHEMA {
            for name in std::iter::once(spec.name).chain(spec.aliases.iter().map(|a| a.name)) {
                assert!(seen.insert(name), "{name} twice");
            }
            let mut s = Settings::default();
            (spec.set)(&mut s, spec.example)
                .unwrap_or_else(|e| panic!("example of {}: {e}", spec.name));
        }
    }

    /// docs/CONFIGURATION.md holds the table generated from the schema, verbatim.
    /// `UPDATE_DOCS=1 cargo test --lib config` rewrites it.
    #[test]
    fn configuration_doc_is_generated_from_the_schema() {
        const BEGIN: &str = "<!-- settings table: generated from src/config.rs -->\n";
        const END: &str = "<!-- end of settings table -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIGURATION.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = doc.find(END).expect("end marker");
        let table = schema::markdown_table();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert!(
            doc[start..end] == table,
            "docs/CONFIGURATION.md is out of date: run UPDATE_DOCS=1 cargo test --lib config"
        );
    }

    /// `load_from` is reading the file and then `load_text` (what the fuzz target
    /// calls): the same settings, warnings and errors.
    #[test]
    fn loading_in_memory_is_loading_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intake.toml");
        let env = [("INTAKE_JOB_POLL_MS", "250"), ("INTAKE_DATADIR", "/x")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        for text in [
            "",
            "presign_ttl_secs = 60\nmax_upload_bytes = \"2 GB\"",
            "databse_url = \"x\"",
            "this is not toml",
            "presign_ttl = \"8d\"",
        ] {
            std::fs::write(&path, text).unwrap();
            let shown = |r: Result<(Settings, Vec<String>), ConfigError>| match r {
                Ok((s, w)) => format!("{s:?} {w:?}"),
                Err(e) => e.to_string(),
            };
            assert_eq!(
                shown(Settings::load_from(Some(&path), env.clone())),
                shown(Settings::load_text(Some((&path, text)), env.clone())),
                "{text}"
            );
        }
        let e = Settings::load_from(Some(dir.path()), []).unwrap_err();
        assert!(e.to_string().starts_with("config file "), "{e}");
        assert!(!e.to_string().contains("os error"), "{e}");
    }

    /// `closest` skips candidates it need not measure; it answers as measuring every
    /// candidate does.
    #[test]
    fn closest_answers_as_measuring_every_name() {
        fn measured(name: &str) -> Option<&'static str> {
            let name = name.to_ascii_lowercase();
            SCHEMA
                .iter()
                .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().map(|a| a.name)))
                .map(|c| {
                    let score = strsim::jaro_winkler(&name, c);
                    (c, score, strsim::damerau_levenshtein(&name, c))
                })
                .filter(|(_, score, edits)| *edits <= 2 || *score >= 0.9)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(c, ..)| c)
                .map(|c| schema::find(c).map_or(c, |(spec, _)| spec.name))
        }
        let mut names = vec![String::new(), "x".into(), "ab".into(), "é".into()];
        for spec in SCHEMA {
            for name in std::iter::once(spec.name).chain(spec.aliases.iter().map(|a| a.name)) {
                let chars: Vec<char> = name.chars().collect();
                names.push(name.to_ascii_uppercase());
                names.push(format!("{name}{name}{name}{name}{name}x"));
                names.push(name.repeat(6));
                for i in 0..chars.len() {
                    let mut cut = chars.clone();
                    cut.remove(i);
                    names.push(cut.iter().collect());
                    let mut swapped = chars.clone();
                    swapped.swap(i, (i + 1) % chars.len());
                    names.push(swapped.iter().collect());
                    names.push(chars[..i].iter().collect());
                    names.push(chars[i..].iter().collect());
                }
            }
        }
        // And strings of the names' letters, of every length up to 60.
        let letters: Vec<char> = "abcdeghilmnoprstuwxyz_3é".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..1000 {
            let word: String = (0..i % 61)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    letters[(state % letters.len() as u64) as usize]
                })
                .collect();
            names.push(word);
        }
        for name in &names {
            assert_eq!(closest(name), measured(name), "{name:?}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Settings::load_from(Some(Path::new("/nonexistent/intake.toml")), []).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncated("abc", 5), "abc");
        assert_eq!(truncated("aéb", 2), "a…");
    }
}
