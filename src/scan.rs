//! Antivirus scanning of uploaded files.
//!
//! The pipeline depends only on the small [`Scanner`] trait. [`ClamdScanner`] is the
//! real implementation: it streams a file from disk (or an entry from memory) to
//! ClamAV's `clamd` with the `zINSTREAM` command, over TCP or a Unix socket, with
//! bounded memory and a deadline that grows with the file's size. Connections are
//! reused: each is a clamd session (`zIDSESSION`, replies tagged with the request's
//! number), kept in a small pool between scans, so that a job scanning thousands of
//! small files does not open a connection (and a clamd thread hand-off) for each.
//!
//! The verdict is fail-closed: only clamd's exact `stream: OK` reply means
//! [`Verdict::Clean`]; any reply that is neither that nor `stream: <name> FOUND` is
//! an error, never clean.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a scanner concluded about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The scanner looked at the whole file and found nothing.
    Clean,
    /// The scanner matched a signature (or a heuristic, such as
    /// `Heuristics.Limits.Exceeded.MaxFileSize`).
    Infected {
        /// The scanner's name for what it found, e.g. `Eicar-Test-Signature`.
        signature: String,
    },
}

/// Why a scan produced no verdict. None of these means the file is clean.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The scanner could not be connected to (refused, no route, no such socket).
    #[error("scanner unavailable at {addr}: {source}")]
    Unavailable {
        /// The address that was tried.
        addr: String,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// A step did not finish within its deadline.
    #[error("scanner timed out: {stage} took longer than {after:?}")]
    Timeout {
        /// Which step timed out: `connect`, `ping` or `scan`.
        stage: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The file is larger than the scanner accepts in one stream (clamd's
    /// `StreamMaxLength`, reply `INSTREAM size limit exceeded`).
    #[error("file exceeds the scanner's stream size limit")]
    SizeLimitExceeded,
    /// The scanner answered something other than a verdict, including clamd's own
    /// `... ERROR` replies, or closed the connection without a complete reply.
    #[error("unexpected reply from scanner: {0}")]
    Protocol(String),
    /// Reading the file, or talking to the scanner after connecting, failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ScanError {
    /// Whether trying the same scan again later may succeed: true for
    /// [`Unavailable`](Self::Unavailable), [`Timeout`](Self::Timeout) and
    /// [`Io`](Self::Io); false for a size limit or a reply we do not understand.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::Io { .. }
        )
    }

    fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Scans files for malware. Implementations must never report
/// [`Verdict::Clean`] for a file they did not scan completely.
#[async_trait]
pub trait Scanner: Send + Sync {
    /// Scans the file at `path` and returns the verdict.
    async fn scan_file(&self, path: &Path) -> Result<Verdict, ScanError>;

    /// Scans `bytes` (an entry held in memory; `name` is for logs and errors only).
    async fn scan_bytes(&self, name: &str, bytes: &[u8]) -> Result<Verdict, ScanError>;

    /// Scans the stream `open` gives (called again for each attempt: a stream
    /// cannot be rewound), `size` bytes long; `name` is for logs and errors only.
    async fn scan_reader(
        &self,
        name: &str,
        size: u64,
        open: OpenReader<'_>,
    ) -> Result<Verdict, ScanError>;

    /// Checks that the scanner is up and answering.
    async fn ping(&self) -> Result<(), ScanError>;
}

/// A stream to scan, from its start, each time it is called.
pub type OpenReader<'a> = &'a (dyn Fn() -> Box<dyn AsyncRead + Unpin + Send> + Send + Sync);

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddr {
    /// `tcp://host:port`; the host may be a name, an IPv4 or a bracketed IPv6 address.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `unix:///absolute/path/to/clamd.sock`.
    Unix(PathBuf),
}

impl fmt::Display for ClamdAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A clamd address string that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid clamd address {addr:?}: {reason} (expected tcp://host:port or unix:///path/to/clamd.sock)"
)]
pub struct InvalidClamdAddr {
    /// The address as given.
    pub addr: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::str::FromStr for ClamdAddr {
    type Err = InvalidClamdAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidClamdAddr {
            addr: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix://") {
            // Taken verbatim (no percent-decoding) so any socket path can be named.
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute (unix:///...)"));
            }
            if path.len() < 2 {
                return Err(bad("the unix socket path is empty"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if !s.starts_with("tcp://") {
            return Err(bad("the scheme must be tcp:// or unix://"));
        }
        let url = url::Url::parse(s).map_err(|_| bad("not a valid URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials are not supported"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a tcp address takes no path, query or fragment"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad("the host is missing")),
        };
        let port = url.port().ok_or_else(|| bad("the port is missing"))?;
        if port == 0 {
            return Err(bad("port 0 is not a valid port"));
        }
        Ok(Self::Tcp { host, port })
    }
}

/// Deadlines for talking to clamd. Every network step has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClamdTimeouts {
    /// Connecting, including resolving a host name.
    pub connect: Duration,
    /// Sending `PING` and reading `PONG`, after connecting.
    pub ping: Duration,
    /// Fixed part of a scan's deadline (sending the file and waiting for the
    /// verdict, after connecting); covers clamd's per-scan overhead.
    pub scan_base: Duration,
    /// Added to the scan deadline for each started MiB of the file.
    pub scan_per_mib: Duration,
}

impl Default for ClamdTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            ping: Duration::from_secs(5),
            scan_base: Duration::from_secs(30),
            scan_per_mib: Duration::from_secs(1),
        }
    }
}

impl ClamdTimeouts {
    /// The deadline for scanning a file of `size` bytes: `scan_base` plus
    /// `scan_per_mib` for each started MiB.
    pub fn scan_deadline(&self, size: u64) -> Duration {
        let mib = u32::try_from(size.div_ceil(MIB)).unwrap_or(u32::MAX);
        self.scan_base
            .saturating_add(self.scan_per_mib.saturating_mul(mib))
    }
}

const MIB: u64 = 1 << 20;

/// Largest chunk sent in one `zINSTREAM` frame; also the scan's memory bound.
const CHUNK_SIZE: usize = 1 << 20;

/// clamd's replies are one short line; anything longer is not clamd.
const MAX_REPLY_LEN: usize = 4096;

/// How long to wait for clamd's explanation after it stopped accepting the stream.
const EARLY_REPLY_WAIT: Duration = Duration::from_secs(2);

/// Idle sessions kept for reuse; more scans at once open more, which are then closed.
const POOL_MAX: usize = 16;

/// How long an idle session is kept: well under clamd's `IdleTimeout` (30 s by
/// default), after which clamd closes it.
const SESSION_IDLE_MAX: Duration = Duration::from_secs(10);

/// Scans in one session before it is closed and a new one opened (clamd numbers
/// its replies; a long-lived session also pins one clamd connection slot).
const SESSION_SCANS_MAX: u32 = 10_000;

/// A [`Scanner`] backed by ClamAV's clamd, with a pool of idle sessions.
#[derive(Clone)]
pub struct ClamdScanner {
    addr: ClamdAddr,
    timeouts: ClamdTimeouts,
    idle: Arc<Mutex<Vec<Session>>>,
}

impl fmt::Debug for ClamdScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClamdScanner")
            .field("addr", &self.addr)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// One clamd connection in session mode (`zIDSESSION` sent).
struct Session {
    conn: Conn,
    /// The number clamd gives the session's next reply (its first is 1).
    next: u32,
    /// When it was last put back in the pool.
    idle_since: Instant,
}

/// What is scanned, opened again when a scan is retried on a fresh connection.
enum Source<'a> {
    File(&'a Path),
    Bytes(&'a str, &'a [u8]),
    Reader(&'a str, u64, OpenReader<'a>),
}

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Bytes(name, _) | Self::Reader(name, ..) => (*name).to_owned(),
        }
    }

    async fn open(&self) -> Result<(Box<dyn AsyncRead + Unpin + Send + '_>, u64), ScanError> {
        match self {
            Self::File(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| ScanError::io(format!("opening {}", path.display()), e))?;
                let size = file
                    .metadata()
                    .await
                    .map_err(|e| {
                        ScanError::io(format!("reading metadata of {}", path.display()), e)
                    })?
                    .len();
                Ok((Box::new(file), size))
            }
            Self::Bytes(_, bytes) => Ok((Box::new(*bytes), bytes.len() as u64)),
            Self::Reader(_, size, open) => Ok((open(), *size)),
        }
    }
}

impl ClamdScanner {
    /// A scanner for clamd at `addr`, with default timeouts.
    pub fn new(addr: ClamdAddr) -> Self {
        Self {
            addr,
            timeouts: ClamdTimeouts::default(),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Parses `tcp://host:port` or `unix:///path/to/clamd.sock`, with default timeouts.
    pub fn from_addr(addr: &str) -> Result<Self, InvalidClamdAddr> {
        Ok(Self::new(addr.parse()?))
    }

    /// Replaces the timeouts.
    pub fn with_timeouts(mut self, timeouts: ClamdTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Where this scanner connects.
    pub fn addr(&self) -> &ClamdAddr {
        &self.addr
    }

    /// The timeouts in use.
    pub fn timeouts(&self) -> &ClamdTimeouts {
        &self.timeouts
    }

    async fn connect(&self) -> Result<Conn, ScanError> {
        let after = self.timeouts.connect;
        let connecting = async {
            match &self.addr {
                ClamdAddr::Tcp { host, port } => {
                    let stream = match host.parse::<IpAddr>() {
                        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, *port)).await,
                        Err(_) => TcpStream::connect((host.as_str(), *port)).await,
                    }?;
                    // Frames are written whole; no reason to delay the small ones.
                    stream.set_nodelay(true)?;
                    Ok(Conn::Tcp(stream))
                }
                ClamdAddr::Unix(path) => {
                    #[cfg(unix)]
                    {
                        Ok(Conn::Unix(tokio::net::UnixStream::connect(path).await?))
                    }
                    #[cfg(not(unix))]
                    {
                        let _ = path;
                        Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "unix sockets are not supported on this platform",
                        ))
                    }
                }
            }
        };
        match tokio::time::timeout(after, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(ScanError::Unavailable {
                addr: self.addr.to_string(),
                source,
            }),
            Err(_) => Err(ScanError::Timeout {
                stage: "connect",
                after,
            }),
        }
    }
}

impl ClamdScanner {
    /// An idle session that is still open, or none.
    fn take_idle(&self) -> Option<Session> {
        let mut idle = self.idle.lock().expect("pool lock");
        // The others are closed as they are dropped.
        while let Some(session) = idle.pop() {
            if session.idle_since.elapsed() < SESSION_IDLE_MAX && session.conn.is_open() {
                return Some(session);
            }
        }
        None
    }

    fn put_back(&self, mut session: Session) {
        if session.next > SESSION_SCANS_MAX {
            return;
        }
        session.idle_since = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < POOL_MAX {
            idle.push(session);
        }
    }

    /// A new session: connected, `zIDSESSION` sent (clamd does not answer it).
    async fn open_session(&self) -> Result<Session, ScanError> {
        let mut conn = self.connect().await?;
        conn.send(b"zIDSESSION\0")
            .await
            .map_err(|e| ScanError::io("starting a clamd session", e))?;
        Ok(Session {
            conn,
            next: 1,
            idle_since: Instant::now(),
        })
    }

    /// Streams `source` to clamd in a session: a pooled one when there is one (and,
    /// should clamd have closed it meanwhile, once more on a fresh one), else a new
    /// one. The session goes back to the pool after a verdict.
    async fn scan_source(&self, source: Source<'_>) -> Result<Verdict, ScanError> {
        let started = Instant::now();
        let what = source.name();
        let mut reused = self.take_idle();
        let result = loop {
            let (mut reader, size) = match source.open().await {
                Ok(opened) => opened,
                Err(e) => {
                    if let Some(session) = reused.take() {
                        self.put_back(session);
                    }
                    break Err(e);
                }
            };
            let was_reused = reused.is_some();
            let mut session = match reused.take() {
                Some(session) => session,
                None => match self.open_session().await {
                    Ok(session) => session,
                    Err(e) => break Err(e),
                },
            };
            let deadline = self.timeouts.scan_deadline(size);
            let scanned =
                tokio::time::timeout(deadline, session.conn.instream(&mut reader, &what)).await;
            let reply = match scanned {
                Ok(Ok(reply)) => reply,
                // A reused session that fails before a reply was most likely closed
                // by clamd (restart, idle timeout): once more, on a new connection.
                Ok(Err(e)) if was_reused && (e.is_transient() || closed_without_reply(&e)) => {
                    continue;
                }
                Ok(Err(e)) => break Err(e),
                Err(_) => {
                    break Err(ScanError::Timeout {
                        stage: "scan",
                        after: deadline,
                    });
                }
            };
            let verdict = session_reply(&reply, session.next).and_then(parse_scan_reply);
            if verdict.is_ok() {
                session.next += 1;
                self.put_back(session);
            }
            break verdict.map(|v| (v, size));
        };
        crate::telemetry::scan(
            match &result {
                Ok((Verdict::Clean, _)) => "clean",
                Ok(_) => "infected",
                Err(_) => "error",
            },
            started.elapsed(),
        );
        match &result {
            Ok((verdict, size)) => tracing::debug!(
                source = what,
                size,
                elapsed_ms = started.elapsed().as_millis() as u64,
                ?verdict,
                "clamd scan finished"
            ),
            Err(error) => tracing::warn!(
                source = what,
                elapsed_ms = started.elapsed().as_millis() as u64,
                %error,
                "clamd scan failed"
            ),
        }
        result.map(|(verdict, _)| verdict)
    }
}

/// The reply `reply` to request number `number` of a session, without its tag
/// (`"3: stream: OK"` is `"stream: OK"`). A verdict must carry the request's own
/// number; clamd may answer an error that ends the session without one, which is
/// returned whole to be classified as any reply.
fn session_reply(reply: &str, number: u32) -> Result<&str, ScanError> {
    match reply.split_once(": ") {
        Some((tag, rest)) if !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit()) => {
            if tag.parse::<u32>().ok() == Some(number) {
                Ok(rest)
            } else {
                Err(ScanError::Protocol(format!(
                    "reply {reply:?} in a session where request {number} was expected"
                )))
            }
        }
        _ if parse_scan_reply(reply).is_ok() => Err(ScanError::Protocol(format!(
            "verdict {reply:?} without its request number in a session"
        ))),
        _ => Ok(reply),
    }
}

#[async_trait]
impl Scanner for ClamdScanner {
    async fn scan_file(&self, path: &Path) -> Result<Verdict, ScanError> {
        self.scan_source(Source::File(path)).await
    }

    async fn scan_bytes(&self, name: &str, bytes: &[u8]) -> Result<Verdict, ScanError> {
        self.scan_source(Source::Bytes(name, bytes)).await
    }

    async fn scan_reader(
        &self,
        name: &str,
        size: u64,
        open: OpenReader<'_>,
    ) -> Result<Verdict, ScanError> {
        self.scan_source(Source::Reader(name, size, open)).await
    }

    async fn ping(&self) -> Result<(), ScanError> {
        let mut conn = self.connect().await?;
        let after = self.timeouts.ping;
        let reply = tokio::time::timeout(after, conn.command(b"zPING\0"))
            .await
            .map_err(|_| ScanError::Timeout {
                stage: "ping",
                after,
            })??;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(ScanError::Protocol(format!("expected PONG, got {reply:?}")))
        }
    }
}

/// One connection to clamd.
enum Conn {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Conn {
    async fn command(&mut self, command: &[u8]) -> Result<String, ScanError> {
        match self {
            Self::Tcp(s) => send_command(s, command).await,
            #[cfg(unix)]
            Self::Unix(s) => send_command(s, command).await,
        }
    }

    async fn instream<R>(&mut self, source: &mut R, what: &str) -> Result<String, ScanError>
    where
        R: AsyncRead + Unpin,
    {
        match self {
            Self::Tcp(s) => instream(s, source, what).await,
            #[cfg(unix)]
            Self::Unix(s) => instream(s, source, what).await,
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
            #[cfg(unix)]
            Self::Unix(s) => s.write_all(bytes).await,
        }
    }

    /// Whether the peer has not closed it (nor sent anything unasked), without
    /// waiting: an idle session has nothing to read.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let read = match self {
            Self::Tcp(s) => s.try_read(&mut probe),
            #[cfg(unix)]
            Self::Unix(s) => s.try_read(&mut probe),
        };
        matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

async fn send_command<S>(stream: &mut S, command: &[u8]) -> Result<String, ScanError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(command)
        .await
        .map_err(|e| ScanError::io("sending a command to clamd", e))?;
    read_reply(stream).await
}

/// Streams `source` with `zINSTREAM` and returns clamd's reply (without its NUL).
async fn instream<S, R>(stream: &mut S, source: &mut R, what: &str) -> Result<String, ScanError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    match send_stream(stream, source, what).await {
        Ok(()) => read_reply(stream).await,
        Err(SendError::File(e)) => Err(e),
        Err(SendError::Socket(e)) => {
            // clamd answers and hangs up mid-stream when it refuses the stream (size
            // limit, ERROR): its reply explains the failed write better than the
            // write error does, so prefer it when it is there.
            match tokio::time::timeout(EARLY_REPLY_WAIT, read_reply(stream)).await {
                Ok(Ok(reply)) => Ok(reply),
                _ => Err(ScanError::io("streaming the file to clamd", e)),
            }
        }
    }
}

/// Why sending a stream stopped: the local file or the connection.
enum SendError {
    File(ScanError),
    Socket(io::Error),
}

async fn send_stream<S, R>(stream: &mut S, source: &mut R, what: &str) -> Result<(), SendError>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let send_err = SendError::Socket;
    stream.write_all(b"zINSTREAM\0").await.map_err(send_err)?;
    // One frame buffer per scan: a 4-byte big-endian length, then up to CHUNK_SIZE bytes.
    let mut frame = vec![0u8; 4 + CHUNK_SIZE];
    loop {
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            let n = source
                .read(&mut frame[4 + filled..])
                .await
                .map_err(|e| SendError::File(ScanError::io(format!("reading {what}"), e)))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let len = u32::try_from(filled).expect("chunk fits in u32");
        frame[..4].copy_from_slice(&len.to_be_bytes());
        stream
            .write_all(&frame[..4 + filled])
            .await
            .map_err(send_err)?;
    }
    // A zero-length chunk ends the stream.
    stream.write_all(&[0, 0, 0, 0]).await.map_err(send_err)?;
    stream.flush().await.map_err(send_err)
}

const CLOSED_WITHOUT_REPLY: &str = "connection closed without a reply";

/// Whether clamd hung up before answering at all (as it does a session it closed).
fn closed_without_reply(e: &ScanError) -> bool {
    matches!(e, ScanError::Protocol(reply) if reply == CLOSED_WITHOUT_REPLY)
}

/// Reads one NUL-terminated reply.
async fn read_reply<S>(stream: &mut S) -> Result<String, ScanError>
where
    S: AsyncRead + Unpin,
{
    let mut reply = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| ScanError::io("reading clamd's reply", e))?;
        if n == 0 {
            return Err(ScanError::Protocol(if reply.is_empty() {
                CLOSED_WITHOUT_REPLY.to_owned()
            } else {
                format!(
                    "connection closed mid-reply: {:?}",
                    String::from_utf8_lossy(&reply)
                )
            }));
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            reply.extend_from_slice(&buf[..end]);
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() > MAX_REPLY_LEN {
            return Err(ScanError::Protocol(format!(
                "reply longer than {MAX_REPLY_LEN} bytes without a terminator"
            )));
        }
    }
    String::from_utf8(reply)
        .map_err(|e| ScanError::Protocol(format!("reply is not UTF-8: {:?}", e.as_bytes())))
}

/// Turns clamd's reply to `zINSTREAM` into a verdict. Only an exact `stream: OK`
/// is clean.
fn parse_scan_reply(reply: &str) -> Result<Verdict, ScanError> {
    if reply == "stream: OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = reply
        .strip_prefix("stream: ")
        .and_then(|rest| rest.strip_suffix(" FOUND"))
    {
        let signature = signature.trim();
        if !signature.is_empty() {
            return Ok(Verdict::Infected {
                signature: signature.to_owned(),
            });
        }
    }
    if reply.contains("size limit exceeded") {
        return Err(ScanError::SizeLimitExceeded);
    }
    Err(ScanError::Protocol(reply.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_ok_is_clean() {
        assert_eq!(parse_scan_reply("stream: OK").unwrap(), Verdict::Clean);
        for reply in [
            "stream: OK ",
            " stream: OK",
            "stream:  OK",
            "stream: ok",
            "OK",
            "",
            "stream: ERROR",
            "stream: Can't allocate memory ERROR",
            "UNKNOWN COMMAND",
            "stream:  FOUND",
            "stream: OK\nstream: X FOUND",
        ] {
            assert!(
                !matches!(parse_scan_reply(reply), Ok(Verdict::Clean)),
                "{reply:?} must not be clean"
            );
        }
    }

    #[test]
    fn session_replies_carry_their_request_number() {
        assert_eq!(session_reply("1: stream: OK", 1).unwrap(), "stream: OK");
        assert_eq!(
            session_reply("12: stream: Eicar-Test-Signature FOUND", 12).unwrap(),
            "stream: Eicar-Test-Signature FOUND"
        );
        for (reply, number) in [
            ("2: stream: OK", 1),
            ("1: stream: OK", 2),
            ("stream: OK", 1),
            ("stream: X FOUND", 1),
        ] {
            assert!(
                matches!(session_reply(reply, number), Err(ScanError::Protocol(_))),
                "{reply:?} to request {number}"
            );
        }
        // Errors that end a session may come untagged.
        assert_eq!(
            session_reply("INSTREAM size limit exceeded. ERROR", 1).unwrap(),
            "INSTREAM size limit exceeded. ERROR"
        );
    }

    #[test]
    fn found_is_infected_with_the_name() {
        assert_eq!(
            parse_scan_reply("stream: Eicar-Test-Signature FOUND").unwrap(),
            Verdict::Infected {
                signature: "Eicar-Test-Signature".into()
            }
        );
        assert_eq!(
            parse_scan_reply("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND").unwrap(),
            Verdict::Infected {
                signature: "Heuristics.Limits.Exceeded.MaxFileSize".into()
            }
        );
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            parse_scan_reply("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::SizeLimitExceeded)
        ));
        assert!(matches!(
            parse_scan_reply("stream: ERROR"),
            Err(ScanError::Protocol(r)) if r == "stream: ERROR"
        ));
        assert!(!ScanError::SizeLimitExceeded.is_transient());
        assert!(!ScanError::Protocol(String::new()).is_transient());
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "tcp://127.0.0.1:3310".parse::<ClamdAddr>().unwrap(),
            ClamdAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 3310
            }
        );
        assert_eq!(
            "tcp://clamd.internal:3310/".parse::<ClamdAddr>().unwrap(),
            ClamdAddr::Tcp {
                host: "clamd.internal".into(),
                port: 3310
            }
        );
        let v6 = "tcp://[::1]:3310".parse::<ClamdAddr>().unwrap();
        assert_eq!(
            v6,
            ClamdAddr::Tcp {
                host: "::1".into(),
                port: 3310
            }
        );
        assert_eq!(v6.to_string(), "tcp://[::1]:3310");
        assert_eq!(
            "unix:///run/clamav/clamd.ctl".parse::<ClamdAddr>().unwrap(),
            ClamdAddr::Unix("/run/clamav/clamd.ctl".into())
        );
        for bad in [
            "",
            "127.0.0.1:3310",
            "http://127.0.0.1:3310",
            "tcp://127.0.0.1",
            "tcp://:3310",
            "tcp://127.0.0.1:99999",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:3310/scan",
            "tcp://user@127.0.0.1:3310",
            "unix://relative.sock",
            "unix://",
            "unix:///",
        ] {
            let err = bad.parse::<ClamdAddr>().unwrap_err();
            assert!(
                err.to_string().contains("expected tcp://"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn scan_deadline_grows_with_size() {
        let t = ClamdTimeouts {
            scan_base: Duration::from_secs(10),
            scan_per_mib: Duration::from_secs(2),
            ..ClamdTimeouts::default()
        };
        assert_eq!(t.scan_deadline(0), Duration::from_secs(10));
        assert_eq!(t.scan_deadline(1), Duration::from_secs(12));
        assert_eq!(t.scan_deadline(MIB), Duration::from_secs(12));
        assert_eq!(t.scan_deadline(MIB + 1), Duration::from_secs(14));
        // Saturates instead of overflowing.
        assert!(t.scan_deadline(u64::MAX) >= Duration::from_secs(2 * u64::from(u32::MAX)));
    }
}
