//! Prometheus metrics: every metric name in one place (each is described in
//! `docs/OPERATIONS.md`), the process-wide recorder of the `metrics` facade, and
//! the small functions the code calls to record. Counters and histograms live in
//! the recorder; the gauges of uploads and jobs by state are read from the database
//! at scrape time (`GET /metrics`), so every node reports the cluster's queue as the
//! database holds it, not a count that drifts.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HTTP requests by `method`, matched `route` and `status`.
pub const HTTP_REQUESTS: &str = "intake_http_requests_total";
/// HTTP request latency, seconds, by `method` and `route`.
pub const HTTP_DURATION: &str = "intake_http_request_duration_seconds";
/// Upload sockets open on this node.
pub const OPEN_SOCKETS: &str = "intake_open_sockets";
/// Upload transactions by `state` (a gauge read from the database).
pub const UPLOADS: &str = "intake_uploads";
/// Durable jobs by `kind` and `state` (a gauge read from the database).
pub const JOBS: &str = "intake_jobs";
/// Jobs that ended an attempt, by `kind` and `outcome` (`succeeded`, `retried`, `failed`).
pub const JOBS_FINISHED: &str = "intake_jobs_finished_total";
/// Duration of each processing step, seconds, by `step` and `outcome` (`ok`, `error`).
pub const STEP_DURATION: &str = "intake_step_duration_seconds";
/// Bytes processed, by `kind` (`archive`: archives fetched for processing).
pub const PROCESSED_BYTES: &str = "intake_processed_bytes_total";
/// Files extracted from archives and saved.
pub const PROCESSED_FILES: &str = "intake_processed_files_total";
/// Records created by uploads.
pub const RECORDS_CREATED: &str = "intake_records_created_total";
/// Antivirus verdicts, by `verdict` (`clean`, `infected`, `error`).
pub const SCAN_VERDICTS: &str = "intake_scan_verdicts_total";
/// Latency of one clamd scan, seconds.
pub const CLAMD_DURATION: &str = "intake_clamd_scan_duration_seconds";
/// Failed object store calls, by `op` and `kind` (`not_found`, `rejected`, `transient`, `other`).
pub const S3_ERRORS: &str = "intake_s3_errors_total";
/// Database errors, by `source` (`api`, `pipeline`).
pub const DB_ERRORS: &str = "intake_db_errors_total";
/// Webhook delivery attempts, by `outcome` (`delivered`, `retried`, `failed`).
pub const WEBHOOK_DELIVERIES: &str = "intake_webhook_deliveries_total";
/// Notices sent to clients whose job's worker went quiet (`ERR_WORKER_SILENT`).
pub const SILENT_WORKER_NOTICES: &str = "intake_silent_worker_notices_total";
/// Actions of the sweeper of abandoned uploads, by `action`.
pub const SWEEPER_ACTIONS: &str = "intake_sweeper_actions_total";

/// Histogram buckets, seconds: from a fast HTTP answer to a long scan.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// The process-wide recorder, installed on first use. When the embedding program
/// installed another recorder first, this one renders nothing but its own gauges.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only gauges");
        }
        handle
    })
}

/// The Prometheus text exposition: the recorder's metrics, then `gauges`.
pub fn render(gauges: &[Gauge]) -> String {
    let mut text = recorder().render();
    let mut last = "";
    for g in gauges {
        if g.name != last {
            text.push_str(&format!(
                "# HELP {} {}\n# TYPE {} gauge\n",
                g.name, g.help, g.name
            ));
            last = g.name;
        }
        let labels: Vec<String> = g
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        text.push_str(&format!("{}{{{}}} {}\n", g.name, labels.join(","), g.value));
    }
    text
}

/// One gauge sample computed at scrape time.
#[derive(Debug, Clone)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: i64,
}

/// One answered HTTP request.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let (method, route) = (method.to_string(), route.to_string());
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}

/// A socket opened (`+1`) or closed (`-1`) on this node.
pub fn socket_open(delta: f64) {
    metrics::gauge!(OPEN_SOCKETS).increment(delta);
}

/// A processing step ended.
pub fn step(step: &'static str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(STEP_DURATION, "step" => step, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Runs a processing step and records its duration.
pub async fn timed<T, E>(
    name: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = std::time::Instant::now();
    let result = work.await;
    step(name, result.is_ok(), start.elapsed());
    result
}

/// An archive of `bytes` fetched, and the files and records it produced.
pub fn processed(archive_bytes: u64, files: u64, records: u64) {
    metrics::counter!(PROCESSED_BYTES, "kind" => "archive").increment(archive_bytes);
    metrics::counter!(PROCESSED_FILES).increment(files);
    metrics::counter!(RECORDS_CREATED).increment(records);
}

/// A clamd scan ended with `verdict` after `elapsed`.
pub fn scan(verdict: &'static str, elapsed: Duration) {
    metrics::counter!(SCAN_VERDICTS, "verdict" => verdict).increment(1);
    metrics::histogram!(CLAMD_DURATION).record(elapsed.as_secs_f64());
}

/// An object store call failed.
pub fn s3_error(op: &'static str, kind: &'static str) {
    metrics::counter!(S3_ERRORS, "op" => op, "kind" => kind).increment(1);
}

/// A database call failed in `source`.
pub fn db_error(source: &'static str) {
    metrics::counter!(DB_ERRORS, "source" => source).increment(1);
}

/// A job attempt ended.
pub fn job_finished(kind: &'static str, outcome: &'static str) {
    metrics::counter!(JOBS_FINISHED, "kind" => kind, "outcome" => outcome).increment(1);
}

/// A client was told its job's worker went quiet.
pub fn silent_worker_notice() {
    metrics::counter!(SILENT_WORKER_NOTICES).increment(1);
}

/// A webhook delivery attempt ended.
pub fn webhook(outcome: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// The sweeper did `action` (e.g. `expire_upload`, `abort_multipart`) `n` times.
pub fn sweeper(action: &'static str, n: u64) {
    metrics::counter!(SWEEPER_ACTIONS, "action" => action).increment(n);
}
