//! An S3-compatible endpoint served from inside the process, for
//! deployments without an external store (and for tests).
//!
//! `s3s` does the protocol and SigV4 checks (header and presigned-query
//! auth, expiry, signed headers); [`backend`] maps the S3 operations intake
//! uses onto intake's own storage, [`disk`] (an index in SQLite, small objects
//! inside it, big ones and multipart parts as files; its layout and durability
//! rule are documented there); [`Cors`] lets browsers on other origins use
//! presigned URLs. Only path-style addressing (`http://host:port/bucket/key`)
//! is served.

mod backend;
mod direct;
pub(crate) mod disk;

pub use direct::DirectStore;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderValue, ORIGIN,
};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running embedded S3 endpoint. Dropping it stops accepting connections
/// and lets in-flight requests finish in the background; [`EmbeddedS3::shutdown`]
/// also waits for them.
#[derive(Debug)]
pub struct EmbeddedS3 {
    local_addr: SocketAddr,
    disk: disk::Disk,
    stop: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl EmbeddedS3 {
    /// Serves the objects under `root` (created if missing; each top-level
    /// directory is a bucket) on `addr`, accepting requests signed with the
    /// single key pair `access_key`/`secret_key`. Port 0 picks a free port.
    pub async fn start(
        root: PathBuf,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<EmbeddedS3> {
        anyhow::ensure!(
            !access_key.is_empty() && !secret_key.is_empty(),
            "embedded S3 needs an access key and a secret key"
        );
        tokio::fs::create_dir_all(&root)
            .await
            .with_context(|| format!("creating embedded S3 root {}", root.display()))?;
        let disk = disk::Disk::open(&root, disk::DEFAULT_INLINE_MAX)
            .await
            .with_context(|| format!("opening embedded S3 root {}", root.display()))?;
        let backend = backend::Backend::new(disk.clone());

        let mut builder = S3ServiceBuilder::new(backend);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = Cors(builder.build());

        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding embedded S3 to {addr}"))?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, service, stop.clone()));
        info!(%local_addr, root = %root.display(), "embedded S3 listening");
        Ok(EmbeddedS3 {
            local_addr,
            disk,
            stop,
            server: Some(server),
        })
    }

    /// Base URL for clients on this machine, e.g. `http://127.0.0.1:9000`
    /// (loopback when listening on all interfaces).
    pub fn endpoint(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// The server's own handle on what the endpoint serves, for calls that need not
    /// go through HTTP ([`DirectStore`]).
    pub async fn direct(&self, urls: super::S3Store, bucket: &str) -> super::Result<DirectStore> {
        DirectStore::new(urls, self.disk.clone(), bucket).await
    }

    /// Address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits (up to 10 s) for in-flight
    /// requests to finish.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take()
            && let Err(e) = server.await
        {
            warn!(error = %e, "embedded S3 server task failed");
        }
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accept loop: one task per connection, all told to finish their current
/// request when `stop` fires.
async fn serve(listener: TcpListener, service: Cors, stop: CancellationToken) {
    let mut conn_builder = ConnBuilder::new(TokioExecutor::new());
    conn_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = TaskTracker::new();

    loop {
        let (socket, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "embedded S3 accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let conn_builder = conn_builder.clone();
        let service = service.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let conn = conn_builder.serve_connection(TokioIo::new(socket), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "embedded S3 connection ended with an error");
            }
        });
    }

    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = connections.len(),
            "embedded S3 stopped with requests still running"
        );
    }
    info!("embedded S3 stopped");
}

/// Lets web pages on any origin use presigned URLs: answers CORS preflights
/// and exposes `ETag`, which the browser needs to report multipart parts.
/// A wildcard origin grants nothing: every request still needs a valid
/// signature, and S3 uses no cookies or other ambient credentials.
#[derive(Clone)]
struct Cors(S3Service);

impl hyper::service::Service<Request<Incoming>> for Cors {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let headers = req.headers();
        if !headers.contains_key(ORIGIN) {
            return hyper::service::Service::call(&self.0, req);
        }
        if req.method() == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            let requested = headers.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            return Box::pin(std::future::ready(Ok(preflight(requested))));
        }
        let response = hyper::service::Service::call(&self.0, req);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("ETag"),
            );
            Ok(response)
        })
    }
}

fn preflight(requested_headers: Option<HeaderValue>) -> s3s::HttpResponse {
    let mut response = Response::new(s3s::Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        requested_headers.unwrap_or_else(|| HeaderValue::from_static("content-type")),
    );
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
    response
}
