//! Load benchmark of `GET /api/files/upload-url` (the Event History API seed page).
//!
//! Starts the real application on its embedded defaults (SQLite and the embedded S3
//! endpoint in a temporary data dir, loopback ports chosen by the OS), creates one
//! API key and one tenant, then keeps `BENCH_CONNECTIONS` (default 64) keep-alive
//! connections busy for `BENCH_SECS` (default 10) seconds after a one-second
//! warm-up, and prints requests/s and latency percentiles. Every answer must be a
//! 200 with an `upload_url`; anything else is counted as an error.
//!
//! ```sh
//! CARGO_TARGET_DIR=… cargo bench --bench history_upload_url
//! BENCH_CACHE_TTL_SECS=0 cargo bench --bench history_upload_url   # no key/tenant cache
//! BENCH_BASELINE=1 cargo bench --bench history_upload_url        # GET /healthz instead
//! ```
//!
//! The baseline drives `GET /healthz` through the same harness: the cost of HTTP,
//! the load generator and the router alone, to compare the endpoint against.
//!
//! The server and the load generator run in one process on separate runtimes and
//! share the machine's cores; the figures are a floor for a dedicated server.

use std::time::{Duration, Instant};

use intake::app::Application;
use intake::config::Settings;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value at quantile `q` of sorted `samples`.
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let connections: usize = env_or("BENCH_CONNECTIONS", 64);
    let secs: u64 = env_or("BENCH_SECS", 10);
    let cache_ttl: u64 = env_or(
        "BENCH_CACHE_TTL_SECS",
        Settings::default().history.cache_ttl.as_secs(),
    );
    let server_threads: usize = env_or("BENCH_SERVER_THREADS", 2);
    let client_threads: usize = env_or("BENCH_CLIENT_THREADS", 2);
    let baseline = std::env::var("BENCH_BASELINE").is_ok_and(|v| v == "1");
    let path = if baseline {
        "/healthz"
    } else {
        "/api/files/upload-url"
    };

    let dir = tempfile::tempdir()?;
    let mut settings = Settings::ephemeral(dir.path().to_path_buf());
    settings.history.cache_ttl = std::time::Duration::from_secs(cache_ttl);

    // The server on its own runtime and threads.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("server")
        .enable_all()
        .build()?;
    let (base, key, client_id) = server_rt.block_on(async {
        let app = Application::build(settings).await?;
        let base = format!("http://{}", app.local_addr());
        let history = app.state().history.clone();
        tokio::spawn(app.run_until(std::future::pending()));
        let key = history.create_api_key("bench").await?;
        let tenant = history
            .create_tenant(
                &intake::history::DatabaseName::parse("bench_tenant")
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                "bench",
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok((base, key, tenant.client_id))
    })?;
    let url = format!("{base}{path}");

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name("client")
        .enable_all()
        .build()?;
    let (mut latencies, errors, elapsed) = client_rt.block_on(async move {
        // One client per connection: each keeps exactly one keep-alive connection.
        let clients: Vec<reqwest::Client> = (0..connections)
            .map(|_| reqwest::Client::builder().pool_max_idle_per_host(1).build())
            .collect::<Result<_, _>>()?;
        let first = clients[0]
            .get(&url)
            .header("X-API-Key", &key)
            .header("X-Client-Id", &client_id)
            .send()
            .await?;
        anyhow::ensure!(first.status() == 200, "first request: {}", first.status());
        let body: serde_json::Value = first.json().await?;
        anyhow::ensure!(
            baseline || body["upload_url"].is_string(),
            "first request: {body}"
        );

        let start = Instant::now();
        let warm_until = start + Duration::from_secs(1);
        let stop_at = warm_until + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for client in clients {
            let (url, key, client_id) = (url.clone(), key.clone(), client_id.clone());
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::with_capacity(64 * 1024);
                let mut errors = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= stop_at {
                        break;
                    }
                    let ok = match client
                        .get(&url)
                        .header("X-API-Key", &key)
                        .header("X-Client-Id", &client_id)
                        .header("Content-Type", "application/json")
                        .send()
                        .await
                    {
                        Ok(r) => {
                            r.status() == 200
                                && r.bytes().await.is_ok_and(|b| {
                                    baseline
                                        || std::str::from_utf8(&b)
                                            .is_ok_and(|s| s.contains("\"upload_url\""))
                                })
                        }
                        Err(_) => false,
                    };
                    if sent < warm_until {
                        continue;
                    }
                    if ok {
                        samples.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
                (samples, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (samples, e) = t.await?;
            all.extend(samples);
            errors += e;
        }
        anyhow::Ok((all, errors, stop_at.saturating_duration_since(warm_until)))
    })?;
    latencies.sort_unstable();
    let n = latencies.len();
    let ms = |us: u32| us as f64 / 1000.0;
    println!(
        "GET {path}: {connections} connections, {secs} s (after 1 s warm-up), cache TTL {cache_ttl} s"
    );
    println!("requests: {n} ok, {errors} errors");
    println!(
        "throughput: {:.0} requests/s",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or(0)),
    );
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
