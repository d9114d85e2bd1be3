//! Start-up: builds every part from `Settings` (data dir, secrets, embedded or
//! external S3, database and migrations, the HTTP listener) and runs the server
//! until a shutdown signal. `Application::build` binds before returning, so tests
//! can ask for port 0 and read the real one.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;

use crate::auth::JwtKeys;
use crate::cause::{redact_url, root_cause, root_cause_of};
use crate::config::Settings;
use crate::db::Db;
use crate::history::History;
use crate::http::{self, Routes};
use crate::live::{Hub, SocketLimiter};
use crate::scan::{ClamdScanner, Scanner};
use crate::state::AppState;
use crate::store::{EmbeddedS3, ObjectStore, S3Config, S3Store, StoreError};
use crate::uploads::sweeper::Sweeper;
use crate::uploads::worker::Worker;
use crate::uploads::{FlowSettings, Uploads};

/// Secrets generated on first start and kept in the data dir (mode 0600).
#[derive(Debug, Serialize, Deserialize)]
struct Secrets {
    jwt_secret: String,
    s3_access_key_id: String,
    s3_secret_access_key: String,
    /// Added after the first release: files written before it lack this field and
    /// get one on their next load.
    #[serde(default)]
    history_api_key_pepper: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn load_or_create_secrets(data_dir: &Path) -> anyhow::Result<Secrets> {
    let path = data_dir.join("secrets.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut secrets: Secrets =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if secrets.history_api_key_pepper.is_empty() {
            secrets.history_api_key_pepper = random_hex(32);
            write_secrets(data_dir, &secrets)?;
        }
        return Ok(secrets);
    }
    let secrets = Secrets {
        jwt_secret: random_hex(32),
        s3_access_key_id: format!("INTAKE{}", random_hex(7).to_uppercase()),
        s3_secret_access_key: random_hex(20),
        history_api_key_pepper: random_hex(32),
    };
    write_secrets(data_dir, &secrets)?;
    Ok(secrets)
}

fn write_secrets(data_dir: &Path, secrets: &Secrets) -> anyhow::Result<()> {
    let tmp = data_dir.join("secrets.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(secrets)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, data_dir.join("secrets.json"))?;
    Ok(())
}

/// The pepper of Event History API key hashes: `history_api_key_pepper`, or the one
/// generated and kept in the data dir.
pub fn history_pepper(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(pepper) = &settings.history.api_key_pepper {
        return Ok(pepper.expose_secret().as_bytes().to_vec());
    }
    let data_dir = &settings.server.data_dir;
    prepare_data_dir(data_dir)?;
    Ok(load_or_create_secrets(data_dir)?
        .history_api_key_pepper
        .into_bytes())
}

/// Why the process cannot start, in one line: the setting, its value, what failed
/// and the root cause (`INTAKE_DATABASE_URL="postgres://…": cannot connect to the
/// database: connection refused`).
#[derive(Debug, thiserror::Error)]
#[error("{setting}={value:?}: {what}: {cause}")]
pub struct StartupError {
    /// The variable to look at.
    pub setting: &'static str,
    /// Its value in force (passwords redacted).
    pub value: String,
    /// What could not be done.
    pub what: &'static str,
    /// Why, as the system or the server said it.
    pub cause: String,
}

impl StartupError {
    fn new(
        setting: &'static str,
        value: impl Into<String>,
        what: &'static str,
        cause: impl Into<String>,
    ) -> Self {
        Self {
            setting,
            value: value.into(),
            what,
            cause: cause.into(),
        }
    }
}

/// Creates the data dir when missing and checks that it is writable, so that a
/// directory we cannot write is reported as that (not as a database error).
pub fn prepare_data_dir(dir: &Path) -> Result<(), StartupError> {
    let fail = |what, e: std::io::Error| {
        StartupError::new(
            "INTAKE_DATA_DIR",
            dir.display().to_string(),
            what,
            root_cause(&e),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the data directory", e))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| fail("cannot write in the data directory", e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Connects to the configured database and applies migrations.
pub async fn connect_database(settings: &Settings) -> anyhow::Result<Db> {
    prepare_data_dir(&settings.server.data_dir)?;
    let url = settings.effective_database_url();
    let shown = redact_url(url.expose_secret());
    let db = Db::connect(url.expose_secret(), settings.database.max_connections)
        .await
        .map_err(|e| {
            StartupError::new(
                "INTAKE_DATABASE_URL",
                shown.clone(),
                "cannot connect to the database",
                match &e {
                    // The server's own words ("password authentication failed for
                    // user …", "database … does not exist").
                    sqlx::Error::Database(d) => d.message().to_string(),
                    other => root_cause(other),
                },
            )
        })?;
    db.migrate().await.map_err(|e| {
        StartupError::new(
            "INTAKE_DATABASE_URL",
            shown,
            "cannot apply the database migrations",
            root_cause(&e),
        )
    })?;
    Ok(db)
}

/// The setting a refusal of the external object store is about, by its S3 code.
fn s3_setting_for(code: &str) -> &'static str {
    match code {
        "InvalidAccessKeyId" | "AccessDenied" | "AllAccessDisabled" => "INTAKE_S3_ACCESS_KEY_ID",
        "SignatureDoesNotMatch" => "INTAKE_S3_SECRET_ACCESS_KEY",
        "AuthorizationHeaderMalformed"
        | "AuthorizationQueryParametersError"
        | "IllegalLocationConstraintException"
        | "InvalidLocationConstraint"
        | "InvalidRegion"
        | "PermanentRedirect" => "INTAKE_S3_REGION",
        "InvalidBucketName" | "BucketAlreadyExists" => "INTAKE_S3_BUCKET",
        _ => "INTAKE_S3_ENDPOINT",
    }
}

/// A failure of the first calls to the external object store, as a start-up error
/// naming the setting to fix.
fn store_startup_error(settings: &Settings, endpoint: &str, e: StoreError) -> StartupError {
    let s3 = &settings.s3;
    match e {
        StoreError::Rejected {
            op,
            status,
            code,
            message,
            ..
        } => {
            let setting = s3_setting_for(&code);
            let value = match setting {
                "INTAKE_S3_ACCESS_KEY_ID" => s3.access_key_id.clone().unwrap_or_default(),
                "INTAKE_S3_SECRET_ACCESS_KEY" => "[redacted]".into(),
                "INTAKE_S3_REGION" => s3.region.clone(),
                "INTAKE_S3_BUCKET" => s3.bucket.clone(),
                _ => endpoint.to_string(),
            };
            let reason = match (code.is_empty(), message.is_empty()) {
                (true, _) => format!("{op} answered HTTP {status} without a reason"),
                (false, true) => format!("{op}: {code} (HTTP {status})"),
                (false, false) => format!("{op}: {code}: {message}"),
            };
            StartupError::new(
                setting,
                value,
                "the object store refused the request",
                reason,
            )
        }
        StoreError::Transient { detail, .. } | StoreError::Other { detail, .. } => {
            StartupError::new(
                "INTAKE_S3_ENDPOINT",
                endpoint,
                "cannot reach the object store",
                detail,
            )
        }
        other => StartupError::new(
            "INTAKE_S3_ENDPOINT",
            endpoint,
            "cannot use the object store",
            other.to_string(),
        ),
    }
}

/// The object store: the external S3 of the settings, or the embedded endpoint
/// (started here, with keys from the data dir unless set).
async fn connect_store(
    settings: &Settings,
    secrets: &Secrets,
) -> anyhow::Result<(Option<EmbeddedS3>, Arc<dyn ObjectStore>)> {
    let s3 = &settings.s3;
    let secret_of = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
    let (embedded, endpoint, access_key, secret_key) = match &s3.endpoint {
        Some(endpoint) => (
            None,
            endpoint.clone(),
            s3.access_key_id.clone().unwrap_or_default(),
            secret_of(&s3.secret_access_key).unwrap_or_default(),
        ),
        None => {
            let access = s3
                .access_key_id
                .clone()
                .unwrap_or(secrets.s3_access_key_id.clone());
            let secret =
                secret_of(&s3.secret_access_key).unwrap_or(secrets.s3_secret_access_key.clone());
            let root = settings.server.data_dir.join("s3");
            std::fs::create_dir_all(&root).map_err(|e| {
                StartupError::new(
                    "INTAKE_DATA_DIR",
                    settings.server.data_dir.display().to_string(),
                    "cannot create the embedded S3 directory",
                    root_cause(&e),
                )
            })?;
            let server = EmbeddedS3::start(root.clone(), s3.embedded_addr, &access, &secret)
                .await
                .map_err(|e| {
                    StartupError::new(
                        "INTAKE_S3_EMBEDDED_ADDR",
                        s3.embedded_addr.to_string(),
                        "cannot start the embedded S3 endpoint",
                        root_cause_of(&e),
                    )
                })?;
            let endpoint = server.endpoint();
            tracing::info!(%endpoint, "embedded S3 endpoint serving {}", root.display());
            (Some(server), endpoint, access, secret)
        }
    };
    let shown = endpoint.clone();
    let store = S3Store::connect(&S3Config {
        endpoint: Some(endpoint),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        access_key_id: access_key,
        secret_access_key: secret_key,
        force_path_style: s3.force_path_style,
        public_url: s3.public_s3_url.clone(),
    })
    .await
    .map_err(|e| store_startup_error(settings, &shown, e))?;
    // The embedded store's server-side calls skip SigV4 and loopback HTTP.
    let store: Arc<dyn ObjectStore> = match &embedded {
        Some(server) => Arc::new(
            server
                .direct(store, &s3.bucket)
                .await
                .map_err(|e| store_startup_error(settings, &shown, e))?,
        ),
        None => Arc::new(store),
    };
    Ok((embedded, store))
}

/// clamd, when configured; a clamd that does not answer yet is not fatal (jobs
/// wait and retry until it does).
async fn connect_scanner(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Scanner>>> {
    let Some(addr) = &settings.scan.clamd_addr else {
        tracing::warn!(
            "no INTAKE_CLAMD_ADDR: uploads are NOT scanned for viruses (av-status \"skipped\")"
        );
        return Ok(None);
    };
    let scanner = ClamdScanner::from_addr(addr).map_err(|e| {
        StartupError::new(
            "INTAKE_CLAMD_ADDR",
            addr.clone(),
            "not a clamd address",
            e.to_string(),
        )
    })?;
    if let Err(e) = scanner.ping().await {
        tracing::warn!(error = %e, "clamd does not answer yet");
    }
    Ok(Some(Arc::new(scanner)))
}

/// A built, bound application, ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    embedded_s3: Option<EmbeddedS3>,
    routes: Routes,
}

impl Application {
    /// Builds every part and binds the HTTP listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        crate::telemetry::recorder();
        let db = connect_database(&settings).await?;
        let secrets = load_or_create_secrets(&settings.server.data_dir)?;
        let (embedded_s3, store) = connect_store(&settings, &secrets).await?;
        let jwt_secret = match &settings.auth.jwt_secret {
            Some(s) => s.expose_secret().to_string(),
            None => secrets.jwt_secret.clone(),
        };
        let jwt = JwtKeys::new(
            jwt_secret.as_bytes(),
            settings.auth.access_token_ttl.as_secs(),
            settings.auth.refresh_token_ttl.as_secs(),
        );
        let scanner = connect_scanner(&settings).await?;
        let http_addr = settings.server.http_addr;
        let listener = TcpListener::bind(http_addr).await.map_err(|e| {
            StartupError::new(
                "INTAKE_HTTP_ADDR",
                http_addr.to_string(),
                "cannot listen",
                root_cause(&e),
            )
        })?;
        let pepper = match &settings.history.api_key_pepper {
            Some(p) => p.expose_secret().as_bytes().to_vec(),
            None => secrets.history_api_key_pepper.clone().into_bytes(),
        };
        let history = History::new(db.clone(), store.clone(), pepper, &settings);
        let uploads = Uploads {
            db: db.clone(),
            store: store.clone(),
            scanner,
            hub: Arc::new(Hub::default()),
            workers: Arc::new(Notify::new()),
            settings: Arc::new(FlowSettings {
                uploads: settings.uploads.clone(),
                archive: settings.archive.clone(),
                jobs: settings.jobs.clone(),
                tmp_dir: settings.server.data_dir.join("tmp"),
                webhooks: settings.webhooks.clone(),
            }),
            memory: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(settings.jobs.memory_budget)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
        };
        // Leases of two thirds of a heartbeat, renewed every third: a killed node's
        // sockets stop counting within a heartbeat, one missed renewal is survived.
        let lease = settings.jobs.heartbeat * 2 / 3;
        let sockets = Arc::new(SocketLimiter::new(db.clone(), lease));
        let state = AppState {
            settings: Arc::new(settings),
            db,
            store,
            uploads,
            history: Arc::new(history),
            jwt: Arc::new(jwt),
            sockets,
        };
        Ok(Application {
            listener,
            state,
            embedded_s3,
            routes: Routes::All,
        })
    }

    /// Serves only `routes` (`intake serve --only …`); the default is all of them.
    pub fn serve_only(mut self, routes: Routes) -> Application {
        self.routes = routes;
        self
    }

    /// The address the HTTP API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The endpoint of the embedded S3 server, when one runs.
    pub fn embedded_s3_endpoint(&self) -> Option<String> {
        self.embedded_s3.as_ref().map(|s| s.endpoint())
    }

    /// The shared state (for tests and the admin CLI).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains connections.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = http::router_for(self.state.clone(), self.routes);
        tracing::info!(addr = %self.local_addr(), routes = ?self.routes, "intake listening");
        let stop_workers = CancellationToken::new();
        let mut workers = Vec::new();
        // Pipeline workers serve uploads; a history-only process runs none.
        let jobs = &self.state.settings.jobs;
        if self.routes.serves_api() {
            // Leftovers of a crashed run first: no job of this process runs yet.
            let tmp = &self.state.uploads.settings.tmp_dir;
            let removed = crate::uploads::sweeper::remove_tmp_dirs(tmp, None);
            if removed > 0 {
                tracing::warn!(removed, "removed job temp dirs left by an earlier run");
            }
            // Other nodes' writes wake this node's sockets (PostgreSQL; SQLite is
            // one node, where the hub alone suffices).
            if self.state.db.backend == crate::db::Backend::Postgres
                && self.state.settings.socket.socket_notify
            {
                let url = self.state.settings.effective_database_url();
                crate::bus::PgBus::start(
                    url.expose_secret().to_string(),
                    self.state.db.clone(),
                    self.state.uploads.hub.clone(),
                    stop_workers.clone(),
                );
            }
            // A lost wake-up is found by one slow poll of the log per node.
            workers.push(tokio::spawn(crate::live::poll_log(
                self.state.db.clone(),
                self.state.uploads.hub.clone(),
                self.state.settings.socket.socket_poll,
                stop_workers.clone(),
            )));
            // The cluster-wide socket cap: this node's leases.
            let sockets = self.state.sockets.clone();
            workers.push(tokio::spawn(sockets.renew(stop_workers.clone())));
            if !self.state.settings.uploads.sweep_interval.is_zero() {
                let sweeper = Sweeper::new(self.state.uploads.clone());
                workers.push(tokio::spawn(sweeper.run(stop_workers.clone())));
            }
        }
        if jobs.run_workers && self.routes.serves_api() {
            for _ in 0..jobs.worker_concurrency {
                let worker = Worker::new(self.state.uploads.clone());
                workers.push(tokio::spawn(worker.run(stop_workers.clone())));
            }
            let watch = Worker::new(self.state.uploads.clone());
            workers.push(tokio::spawn(watch.watch(stop_workers.clone())));
        }
        // Final purges of deleted tenants' files run where the history API does.
        let purge = self
            .routes
            .serves_history()
            .then(|| tokio::spawn(self.state.history.clone().purge_loop()));
        // On the signal, workers hand their running jobs back at once (another
        // node resumes them within its poll interval) while connections drain.
        let handing_back = stop_workers.clone();
        let shutdown = async move {
            shutdown.await;
            handing_back.cancel();
        };
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        if let Some(purge) = purge {
            purge.abort();
        }
        stop_workers.cancel();
        // Handing back is one database write per job; if the database does not
        // answer, the heartbeat goes stale and another node takes the job over.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::future::join_all(workers),
        )
        .await;
        drop(self.embedded_s3);
        served?;
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
