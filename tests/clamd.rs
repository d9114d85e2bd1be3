//! Tests of `ClamdScanner`: against the real clamd that `.ci/clamd.sh` starts
//! (found by the shared probe in `tests/common/clamd.rs`, which also says what
//! happens when it cannot be reached), and against fake servers in this process for
//! the replies a healthy clamd never gives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intake::scan::{ClamdAddr, ClamdScanner, ClamdTimeouts, ScanError, Scanner, Verdict};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

#[path = "common/clamd.rs"]
mod common_clamd;
use common_clamd::{live_clamd, reachable_or_skip};

/// The name `.ci/clamd.sh` gives its EICAR signature; clamd appends `.UNOFFICIAL`
/// because the database is not one of ClamAV's own.
const SIGNATURE_PREFIX: &str = "Eicar-Test-Signature-intake";

const MIB: usize = 1 << 20;

/// The 68-byte EICAR test string, put together at run time so that neither this
/// source file nor the test binary contains it whole.
fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-",
        "TEST-FILE!$H+H*",
    ]
    .concat()
    .into_bytes()
}

/// The real clamd and a directory for the files it scans.
struct Live {
    clamd: ClamdScanner,
    dir: TempDir,
}

/// The real clamd, if it answers (see the module docs for what happens if not).
async fn live() -> Option<Live> {
    Some(Live {
        clamd: live_clamd().await?,
        dir: tempfile::tempdir().unwrap(),
    })
}

impl Live {
    /// Writes `content` to a file `name` and scans it.
    async fn scan(&self, name: &str, content: &[u8]) -> Verdict {
        let path = write_file(self.dir.path(), name, content);
        self.clamd.scan_file(&path).await.unwrap()
    }

    /// Writes a ZIP of `members` to a file `name` and scans it.
    async fn scan_zip(&self, name: &str, members: &[(&str, &[u8], CompressionMethod)]) -> Verdict {
        let path = write_zip(self.dir.path(), name, members);
        self.clamd.scan_file(&path).await.unwrap()
    }
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn write_zip(dir: &Path, name: &str, members: &[(&str, &[u8], CompressionMethod)]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (member, content, method) in members {
        zip.start_file(
            *member,
            SimpleFileOptions::default().compression_method(*method),
        )
        .unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn assert_infected(verdict: Verdict) {
    match verdict {
        Verdict::Infected { signature } => assert!(
            signature.starts_with(SIGNATURE_PREFIX),
            "unexpected signature {signature:?}"
        ),
        Verdict::Clean => panic!("EICAR was reported clean"),
    }
}

/// Zeros followed by the EICAR string: the match lies beyond the first stream chunk.
fn zeros_then_eicar(zeros: usize) -> Vec<u8> {
    let mut content = vec![0u8; zeros];
    content.extend_from_slice(&eicar());
    content
}

#[tokio::test]
async fn ping_answers() {
    let Some(clamd) = live_clamd().await else {
        return;
    };
    clamd.ping().await.unwrap();
}

#[tokio::test]
async fn clean_file_is_clean() {
    let Some(live) = live().await else {
        return;
    };
    let verdict = live.scan("notes.txt", b"Minutes of the meeting.\n").await;
    assert_eq!(verdict, Verdict::Clean);
}

#[tokio::test]
async fn empty_file_is_clean() {
    let Some(live) = live().await else {
        return;
    };
    assert_eq!(live.scan("empty", b"").await, Verdict::Clean);
}

#[tokio::test]
async fn clean_zip_of_several_chunks_is_clean() {
    let Some(live) = live().await else {
        return;
    };
    // Stored, so the upload itself spans several 1 MiB chunks.
    let data: Vec<u8> = (0..3 * MIB + 12345).map(|i| (i % 251) as u8).collect();
    let members: &[(&str, &[u8], CompressionMethod)] = &[
        ("a.bin", &data, CompressionMethod::Stored),
        ("b.txt", b"hello", CompressionMethod::Deflated),
    ];
    assert_eq!(live.scan_zip("clean.zip", members).await, Verdict::Clean);
    let size = std::fs::metadata(live.dir.path().join("clean.zip"))
        .unwrap()
        .len();
    assert!(size > 3 * MIB as u64);
}

#[tokio::test]
async fn eicar_is_infected() {
    let Some(live) = live().await else {
        return;
    };
    assert_infected(live.scan("eicar.com", &eicar()).await);
}

#[tokio::test]
async fn eicar_after_3_mib_of_zeros_is_infected() {
    let Some(live) = live().await else {
        return;
    };
    assert_infected(live.scan("padded.bin", &zeros_then_eicar(3 * MIB)).await);
}

#[tokio::test]
async fn eicar_zipped_is_infected() {
    let Some(live) = live().await else {
        return;
    };
    let eicar = eicar();
    let members: &[(&str, &[u8], CompressionMethod)] = &[
        ("readme.txt", b"nothing to see", CompressionMethod::Deflated),
        ("eicar.com", &eicar, CompressionMethod::Deflated),
    ];
    assert_infected(live.scan_zip("eicar.zip", members).await);
}

#[tokio::test]
async fn eicar_in_zip_member_after_3_mib_of_zeros_is_infected() {
    let Some(live) = live().await else {
        return;
    };
    let content = zeros_then_eicar(3 * MIB);
    for method in [CompressionMethod::Deflated, CompressionMethod::Stored] {
        let name = format!("padded-{method:?}.zip");
        match live
            .scan_zip(&name, &[("data/padded.bin", &content, method)])
            .await
        {
            Verdict::Infected { signature } => assert!(
                signature.starts_with(SIGNATURE_PREFIX),
                "{method:?}: unexpected signature {signature:?}"
            ),
            Verdict::Clean => panic!("{method:?}: EICAR after 3 MiB in a ZIP member was clean"),
        }
    }
}

#[tokio::test]
async fn eicar_over_unix_socket_is_infected() {
    // `.ci/clamd.sh` also opens this socket; a clamd it did not start may not have it.
    let addr = std::env::var("INTAKE_TEST_CLAMD_UNIX_ADDR")
        .unwrap_or_else(|_| "unix:///run/intake-clamav/clamd.sock".to_owned());
    let scanner = ClamdScanner::from_addr(&addr).unwrap();
    let ClamdAddr::Unix(socket) = scanner.addr() else {
        panic!("INTAKE_TEST_CLAMD_UNIX_ADDR must be a unix:// address");
    };
    if !socket.exists() {
        eprintln!("skipping: no clamd unix socket at {}", socket.display());
        return;
    }
    let Some(clamd) = reachable_or_skip(scanner, &addr).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "eicar.com", &eicar());
    assert_infected(clamd.scan_file(&path).await.unwrap());
    let path = write_file(dir.path(), "clean.txt", b"clean");
    assert_eq!(clamd.scan_file(&path).await.unwrap(), Verdict::Clean);
}

#[tokio::test]
async fn unreachable_address_is_unavailable_and_transient() {
    // A port that was just free: bind, note it, release it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let scanner = ClamdScanner::from_addr(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let err = scanner.ping().await.unwrap_err();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());

    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f", b"data");
    let err = scanner.scan_file(&path).await.unwrap_err();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());

    let missing = ClamdScanner::from_addr("unix:///nonexistent/intake/clamd.sock").unwrap();
    let err = missing.ping().await.unwrap_err();
    assert!(matches!(err, ScanError::Unavailable { .. }), "{err:?}");
}

#[test]
fn malformed_addresses_are_rejected() {
    for addr in [
        "",
        "localhost:3310",
        "tcp://",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:notaport",
        "tcp://127.0.0.1:70000",
        "udp://127.0.0.1:3310",
        "unix://clamd.sock",
    ] {
        let err = ClamdScanner::from_addr(addr).expect_err(addr);
        let message = err.to_string();
        assert!(
            message.contains("invalid clamd address") && message.contains("tcp://host:port"),
            "{addr:?}: unclear error {message:?}"
        );
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scanner = ClamdScanner::from_addr("tcp://127.0.0.1:9").unwrap();
    let err = rt
        .block_on(scanner.scan_file(Path::new("/nonexistent/intake/upload.zip")))
        .unwrap_err();
    assert!(matches!(err, ScanError::Io { .. }), "{err:?}");
}

// ---- fake clamd servers -------------------------------------------------------

/// Short deadlines so that the fake servers that hang make the tests fail fast.
fn short_timeouts() -> ClamdTimeouts {
    ClamdTimeouts {
        connect: Duration::from_secs(2),
        ping: Duration::from_millis(500),
        scan_base: Duration::from_millis(700),
        scan_per_mib: Duration::ZERO,
    }
}

/// Serves one connection on a fresh port with `serve` and returns a scanner for it.
async fn fake_clamd<F, Fut>(serve: F) -> (ClamdScanner, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream).await;
    });
    let scanner = ClamdScanner::from_addr(&format!("tcp://127.0.0.1:{port}"))
        .unwrap()
        .with_timeouts(short_timeouts());
    (scanner, server)
}

/// Reads the command up to its NUL.
async fn read_command(stream: &mut TcpStream) -> Vec<u8> {
    let mut command = Vec::new();
    loop {
        let byte = stream.read_u8().await.unwrap();
        if byte == 0 {
            return command;
        }
        command.push(byte);
    }
}

/// Reads the start of a session and then a whole `zINSTREAM` request, as clamd
/// does, checking its framing; returns the streamed bytes.
async fn read_instream(stream: &mut TcpStream) -> Vec<u8> {
    assert_eq!(read_command(stream).await, b"zIDSESSION");
    read_next_instream(stream).await
}

/// Reads one `zINSTREAM` request of a session; the streamed bytes.
async fn read_next_instream(stream: &mut TcpStream) -> Vec<u8> {
    assert_eq!(read_command(stream).await, b"zINSTREAM");
    let mut data = Vec::new();
    loop {
        let len = stream.read_u32().await.unwrap() as usize;
        if len == 0 {
            return data;
        }
        assert!(len <= MIB, "chunk of {len} bytes is over 1 MiB");
        let start = data.len();
        data.resize(start + len, 0);
        stream.read_exact(&mut data[start..]).await.unwrap();
    }
}

async fn scan_with_fake<F, Fut>(content: &[u8], serve: F) -> Result<Verdict, ScanError>
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "upload.bin", content);
    let (scanner, server) = fake_clamd(serve).await;
    let result = scanner.scan_file(&path).await;
    server.abort();
    result
}

/// Scans one byte against a fake clamd that reads the stream, answers `reply`
/// and hangs up.
async fn scan_with_reply(reply: &'static [u8]) -> Result<Verdict, ScanError> {
    scan_with_fake(b"x", move |mut s| async move {
        read_instream(&mut s).await;
        s.write_all(reply).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn stream_framing_matches_the_protocol() {
    let content: Vec<u8> = (0..2 * MIB + 777).map(|i| (i % 253) as u8).collect();
    let expected = content.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let verdict = scan_with_fake(&content, |mut s| async move {
        let data = read_instream(&mut s).await;
        s.write_all(b"1: stream: OK\0").await.unwrap();
        tx.send(data).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(verdict, Verdict::Clean);
    assert!(rx.await.unwrap() == expected, "streamed bytes differ");
}

#[tokio::test]
async fn found_reply_is_infected_with_its_name() {
    let verdict = scan_with_reply(b"1: stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND\0")
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Infected {
            signature: "Heuristics.Limits.Exceeded.MaxScanSize".into()
        }
    );
}

#[tokio::test]
async fn error_reply_is_a_protocol_error() {
    let err = scan_with_reply(b"1: stream: ERROR\0").await.unwrap_err();
    assert!(
        matches!(&err, ScanError::Protocol(r) if r == "stream: ERROR"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn ok_without_terminator_is_not_clean() {
    // The fake hangs up after its reply, so the NUL never comes.
    let err = scan_with_reply(b"1: stream: OK").await.unwrap_err();
    assert!(matches!(err, ScanError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn early_close_is_an_error() {
    let err = scan_with_fake(&vec![7u8; 3 * MIB], |mut s| async move {
        read_command(&mut s).await;
        // Hang up without reading the stream or replying.
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, ScanError::Protocol(_) | ScanError::Io { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn size_limit_reply_mid_stream_is_size_limit_exceeded() {
    let err = scan_with_fake(&vec![7u8; 4 * MIB], |mut s| async move {
        // Like clamd over StreamMaxLength: read part of the stream, explain, hang up.
        assert_eq!(read_command(&mut s).await, b"zIDSESSION");
        assert_eq!(read_command(&mut s).await, b"zINSTREAM");
        let mut part = vec![0u8; 64 * 1024];
        s.read_exact(&mut part).await.unwrap();
        s.write_all(b"INSTREAM size limit exceeded. ERROR\0")
            .await
            .unwrap();
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ScanError::SizeLimitExceeded), "{err:?}");
    assert!(!err.is_transient());
}

/// Scans `content` against a fake clamd that (after reading the stream, when
/// `reads`) keeps the connection open and silent until the scan gave up; the error.
async fn scan_with_silent_fake(content: &[u8], reads: bool) -> ScanError {
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let err = scan_with_fake(content, move |mut s| async move {
        if reads {
            read_instream(&mut s).await;
        }
        let _ = hold_rx.await;
    })
    .await
    .unwrap_err();
    drop(hold_tx);
    err
}

#[tokio::test]
async fn no_reply_times_out() {
    let started = std::time::Instant::now();
    let err = scan_with_silent_fake(b"x", true).await;
    assert!(
        matches!(err, ScanError::Timeout { stage: "scan", .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn server_that_never_reads_times_out() {
    // The socket buffers fill up and writes block: the scan deadline still holds.
    let err = scan_with_silent_fake(&vec![1u8; 16 * MIB], false).await;
    assert!(
        matches!(err, ScanError::Timeout { stage: "scan", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn ping_needs_exact_pong() {
    let (scanner, server) = fake_clamd(|mut s| async move {
        assert_eq!(read_command(&mut s).await, b"zPING");
        s.write_all(b"PONG\0").await.unwrap();
    })
    .await;
    scanner.ping().await.unwrap();
    server.await.unwrap();

    let (scanner, server) = fake_clamd(|mut s| async move {
        read_command(&mut s).await;
        s.write_all(b"UNKNOWN COMMAND\0").await.unwrap();
    })
    .await;
    let err = scanner.ping().await.unwrap_err();
    assert!(matches!(err, ScanError::Protocol(_)), "{err:?}");
    server.await.unwrap();

    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let (scanner, server) = fake_clamd(|s| async move {
        let _keep_open = s;
        let _ = hold_rx.await;
    })
    .await;
    let err = scanner.ping().await.unwrap_err();
    assert!(
        matches!(err, ScanError::Timeout { stage: "ping", .. }),
        "{err:?}"
    );
    drop(hold_tx);
    server.abort();
}

/// Serves `connections` connections one after another on a fresh port, each with
/// `serve` (given the connection's number, from 0); a scanner for it and the task.
async fn fake_clamd_many<F, Fut>(
    connections: usize,
    serve: F,
) -> (ClamdScanner, tokio::task::JoinHandle<()>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        for n in 0..connections {
            let (stream, _) = listener.accept().await.unwrap();
            serve(n, stream).await;
        }
    });
    let scanner = ClamdScanner::from_addr(&format!("tcp://127.0.0.1:{port}"))
        .unwrap()
        .with_timeouts(short_timeouts());
    (scanner, server)
}

#[tokio::test]
async fn one_session_serves_scan_after_scan() {
    // One connection only: every scan after the first must come on it.
    let (scanner, server) = fake_clamd_many(1, |_, mut s| async move {
        assert_eq!(read_command(&mut s).await, b"zIDSESSION");
        for n in 1..=5u32 {
            let data = read_next_instream(&mut s).await;
            let verdict = if data == b"bad" {
                "stream: Test.Sig FOUND"
            } else {
                "stream: OK"
            };
            s.write_all(format!("{n}: {verdict}\0").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(read_command(&mut s).await, b"zINSTREAM", "a sixth scan");
    })
    .await;
    for content in [&b"a"[..], b"bad", b"c", b"", b"bad"] {
        let verdict = scanner.scan_bytes("entry", content).await.unwrap();
        assert_eq!(verdict == Verdict::Clean, content != b"bad", "{content:?}");
    }
    // The sixth scan times out on the fake; the fake saw it arrive on its one socket.
    let _ = scanner.scan_bytes("entry", b"x").await;
    server.await.unwrap();
}

#[tokio::test]
async fn a_session_clamd_closed_is_replaced_and_the_scan_sent_again() {
    let (scanner, server) = fake_clamd_many(2, |n, mut s| async move {
        assert_eq!(read_command(&mut s).await, b"zIDSESSION");
        let data = read_next_instream(&mut s).await;
        assert_eq!(data, if n == 0 { &b"first"[..] } else { b"second" });
        s.write_all(b"1: stream: OK\0").await.unwrap();
        if n == 0 {
            // clamd's IdleTimeout, or a restart: the next request finds it closed
            // (read what comes so the close is not a reset racing the write).
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(200), s.read_to_end(&mut rest)).await;
        }
    })
    .await;
    assert_eq!(
        scanner.scan_bytes("one", b"first").await.unwrap(),
        Verdict::Clean
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        scanner.scan_bytes("two", b"second").await.unwrap(),
        Verdict::Clean
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_reply_for_another_request_or_untagged_is_not_a_verdict() {
    for reply in [
        &b"2: stream: OK\0"[..],
        b"stream: OK\0",
        b"stream: Test.Sig FOUND\0",
        b"0: stream: OK\0",
    ] {
        let err = scan_with_reply(reply).await.unwrap_err();
        assert!(matches!(err, ScanError::Protocol(_)), "{reply:?}: {err:?}");
    }
}

#[tokio::test]
async fn concurrent_scans_on_pooled_sessions_get_their_own_verdicts() {
    let Some(live) = live().await else { return };
    let scanner = live.clamd;
    let eicar = eicar();
    // Rounds of scans in parallel on one scanner: the pooled sessions are reused
    // across rounds and each verdict is the one for its own bytes.
    for round in 0..4 {
        let scans = (0..24).map(|i| {
            let scanner = scanner.clone();
            let infected = (i + round) % 5 == 0;
            let content = if infected {
                eicar.clone()
            } else {
                format!("clean {round} {i}").into_bytes()
            };
            async move {
                let verdict = scanner.scan_bytes("entry", &content).await.unwrap();
                (infected, verdict)
            }
        });
        for (infected, verdict) in futures::future::join_all(scans).await {
            if infected {
                assert_infected(verdict);
            } else {
                assert_eq!(verdict, Verdict::Clean);
            }
        }
    }
}
