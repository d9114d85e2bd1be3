//! What idle upload sockets cost a node: opens `BENCH_SOCKETS` (default 10,000)
//! authenticated upload sockets on one `intake serve` process, holds them idle, and
//! prints the server's memory per socket, its CPU while they idle, and the connect
//! rate.
//!
//! ```sh
//! cargo bench --bench idle_sockets                               # SQLite, embedded S3
//! BENCH_DB=postgres cargo bench --bench idle_sockets             # PostgreSQL
//! BENCH_BASELINE_BIN=/path/to/old/intake cargo bench --bench idle_sockets
//! ```
//!
//! The server is the real binary (`CARGO_BIN_EXE_intake`, or `BENCH_BIN`) in its own
//! process, so that its resident memory and CPU time are its own: they are read from
//! `/proc/<pid>/`. `BENCH_BASELINE_BIN` measures a second binary (a build of the
//! previous commit) first, in the same run, with the same steps.
//!
//! Steps, for each binary: a fresh data dir (and a fresh PostgreSQL database with
//! `BENCH_DB=postgres`), one user, one upload per socket; the server's RSS is read
//! after the uploads exist; then the sockets open, `BENCH_CONCURRENCY` (64) at a time,
//! each with its own one-time ticket, each waiting for `connection_established`; after
//! two seconds of quiet the RSS is read again (the difference over N is the memory
//! per socket), and the server's user + system CPU time is read over
//! `BENCH_IDLE_SECS` (10) of idling (clients answer pings; nothing else happens).
//! Every socket must still be open at the end. The server's open-file limit must
//! allow N sockets (`ulimit -n`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// A field of `/proc/<pid>/status` in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("a number")?
        .parse()?)
}

/// User + system CPU time of `pid` so far, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: fields after it.
    let rest = &stat[stat.rfind(')').context("stat format")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Ok(ticks as f64 / 100.0)
}

struct Server {
    child: Child,
    base: String,
    addr: String,
    _dir: tempfile::TempDir,
    db_url: String,
    pg_name: Option<String>,
}

impl Drop for Server {
    /// SIGTERM first (a server under a heap profiler writes its profile on exit),
    /// SIGKILL after 30 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(bin: &Path, db: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let addr = free_addr()?;
    let (db_url, pg_name) = if db == "postgres" {
        use sqlx::Connection;
        let base = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("intake_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        (format!("{base}/{name}"), Some(name))
    } else {
        (
            format!("sqlite://{}/intake.db?mode=rwc", dir.path().display()),
            None,
        )
    };
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(bin)
        .arg("serve")
        .env_remove("RUST_BACKTRACE")
        .env("INTAKE_DATA_DIR", dir.path())
        .env("INTAKE_HTTP_ADDR", &addr)
        .env("INTAKE_S3_EMBEDDED_ADDR", free_addr()?)
        .env("INTAKE_DATABASE_URL", &db_url)
        .env("INTAKE_MAX_SOCKETS_PER_USER", "1000000")
        .env("INTAKE_LOG", "warn")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut server = Server {
        child,
        base: format!("http://{addr}"),
        addr,
        _dir: dir,
        db_url,
        pg_name,
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("the server exited with {status}");
        }
        if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no /healthz in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = client.post(&url).json(&body);
    if let Some(t) = token {
        req = req.header("Authorization", format!("JWT {t}"));
    }
    let r = req.send().await?;
    ensure!(r.status().is_success(), "{url}: {}", r.status());
    Ok(r.json().await?)
}

/// The figures of one binary.
struct Figures {
    per_socket_kib: f64,
    idle_cores: f64,
    connects_per_sec: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
}

async fn measure(
    bin: &Path,
    db: &str,
    n: usize,
    concurrency: usize,
    idle: Duration,
) -> anyhow::Result<Figures> {
    let server = start(bin, db).await?;
    let pid = server.child.id();
    let client = reqwest::Client::new();

    // One configurator, one class with a document field, an upload per socket.
    let db_handle = intake::db::Db::connect(&server.db_url, 2).await?;
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let hash = intake::auth::hash_password("correct horse battery")?;
    db_handle
        .create_user(&email, &hash, intake::domain::AccountType::ConfigAdmin)
        .await?;
    db_handle.pool.close().await;
    let login = json!({ "email": email, "password": "correct horse battery" });
    let token = post(
        &client,
        format!("{}/api/auth/token/", server.base),
        None,
        login,
    )
    .await?["access"]
        .as_str()
        .context("a token")?
        .to_string();
    let t = Some(token.as_str());
    let class = post(
        &client,
        format!("{}/api/object-classes/", server.base),
        t,
        json!({ "name": "Idle" }),
    )
    .await?["id"]
        .as_i64()
        .context("a class")?;
    let field = json!({ "label": "File", "alias": "file", "type": "document" });
    let field = post(
        &client,
        format!("{}/api/object-classes/{class}/fields/", server.base),
        t,
        field,
    )
    .await?["id"]
        .as_i64()
        .context("a field")?;
    let body = json!({ "object_class": class, "object_class_field": field });
    let uploads: Vec<String> = futures::stream::iter(0..n)
        .map(|_| {
            let (client, body, url) = (
                client.clone(),
                body.clone(),
                format!("{}/api/object-records/uploads/", server.base),
            );
            let token = token.clone();
            async move {
                let v = post(&client, url, Some(&token), body).await?;
                anyhow::Ok(v["upload_id"].as_str().context("an upload id")?.to_string())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = status_kib(pid, "VmRSS:")?;

    // Open the sockets; each client task answers pings until told to stop.
    let open = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(uploads)
        .map(|upload| {
            let (client, base, addr, token) = (
                client.clone(),
                server.base.clone(),
                server.addr.clone(),
                token.clone(),
            );
            let (open, closed, stop) = (open.clone(), closed.clone(), stop.clone());
            async move {
                let r = client
                    .get(format!("{base}/api/users/ws-auth/"))
                    .header("Authorization", format!("JWT {token}"))
                    .send()
                    .await?;
                let ticket = r.json::<Value>().await?["uuid"]
                    .as_str()
                    .context("a ticket")?
                    .to_string();
                let url = format!("ws://{addr}/ws/object-records/uploads/{upload}/?uuid={ticket}");
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
                let first = ws.next().await.context("a first message")??;
                let first: Value = serde_json::from_str(first.to_text()?)?;
                ensure!(
                    first["type"] == "connection_established",
                    "refused: {first}"
                );
                open.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            frame = ws.next() => match frame {
                                Some(Ok(_)) => {}
                                _ => { closed.fetch_add(1, Ordering::Relaxed); return; }
                            },
                            () = stop.cancelled() => return,
                        }
                    }
                });
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let connect_time = started.elapsed();
    for r in results {
        r?;
    }
    let opened = open.load(Ordering::Relaxed);
    ensure!(opened == n, "{opened} of {n} sockets opened");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = status_kib(pid, "VmRSS:")?;
    let cpu0 = cpu_secs(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(idle).await;
    let cpu1 = cpu_secs(pid)?;
    let idle_cores = (cpu1 - cpu0) / t0.elapsed().as_secs_f64();
    let lost = closed.load(Ordering::Relaxed);
    ensure!(lost == 0, "{lost} sockets were closed while idle");
    stop.cancel();

    let figures = Figures {
        per_socket_kib: (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
        idle_cores,
        connects_per_sec: n as f64 / connect_time.as_secs_f64(),
        rss_before_mib: rss_before as f64 / 1024.0,
        rss_after_mib: rss_after as f64 / 1024.0,
    };
    if let Some(name) = server.pg_name.clone() {
        drop(server);
        use sqlx::Connection;
        let base = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
    }
    Ok(figures)
}

fn main() -> anyhow::Result<()> {
    let n: usize = env_or("BENCH_SOCKETS", 10_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 64);
    let idle = Duration::from_secs(env_or("BENCH_IDLE_SECS", 10));
    let db = std::env::var("BENCH_DB").unwrap_or_else(|_| "sqlite".into());
    let bin = std::env::var("BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_intake")));
    let mut bins = Vec::new();
    if let Ok(baseline) = std::env::var("BENCH_BASELINE_BIN") {
        bins.push(("baseline", PathBuf::from(baseline)));
    }
    bins.push(("this build", bin));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("{n} idle upload sockets on {db}, {concurrency} connecting at a time, idle {idle:?}");
    println!("| binary | RSS before | RSS with sockets | per socket | idle CPU | connects/s |");
    println!("|---|---|---|---|---|---|");
    for (label, bin) in bins {
        let f = rt.block_on(measure(&bin, &db, n, concurrency, idle))?;
        println!(
            "| {label} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.3} cores | {:.0} |",
            f.rss_before_mib, f.rss_after_mib, f.per_socket_kib, f.idle_cores, f.connects_per_sec
        );
    }
    Ok(())
}
