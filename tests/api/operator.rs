//! The operator and integrator surface: `/metrics` scraped and parsed, the OpenAPI
//! document validated and compared with the router, upload listing and detail,
//! signed webhooks (received by a test server, retried after a 500), readiness
//! with clamd, CORS, 413, and the access and failed-login log lines of the binary.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use intake::domain::AccountType;
use intake_archive::testkit;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::socket::Socket;

/// Uploads `zip` over the socket into a fresh upload of `token`; the upload id and
/// the messages up to the final one.
async fn upload_zip(app: &TestApp, token: &str, zip: &[u8]) -> (String, Vec<Value>) {
    let (class, field) = app.class_with_document_field(token).await;
    let upload = app.create_upload(token, class, field).await;
    let mut sock = Socket::connect(app, token, &upload).await;
    sock.upload(app, class, field, "batch.zip", zip).await;
    let msgs = sock.until_final().await;
    (upload, msgs)
}

/// One sample of the exposition: name, labels, value.
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses Prometheus text exposition strictly: every line is a `#` comment or
/// `name{label="value",…} value`, label values with their escapes. Hand-written
/// because `prometheus-parse` splits label values at `,`/`}`, and routes such as
/// `/api/object-classes/{id}/` contain braces.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            name.starts_with("intake_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let mut labels = HashMap::new();
        let mut rest = &line[name_end..];
        if let Some(mut l) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = l.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = l.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                let mut value = String::new();
                let mut chars = after.char_indices();
                let close = loop {
                    match chars.next().unwrap_or_else(|| panic!("unclosed: {line}")) {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.trim_start_matches(',').to_string(), value);
                l = &after[close + 1..];
            }
        }
        let value = rest
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{line}"));
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum::<f64>()
        + 0.0
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let r = app.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse_exposition(&r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_are_scraped_and_parsed() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let before = scrape(&app).await;
    let zip = testkit::zip_of(&[("a.txt", b"alpha"), ("b.txt", b"beta")]);
    let (upload, msgs) = upload_zip(&app, &token, &zip).await;
    assert_eq!(msgs.last().unwrap()["message"]["status"], "success");
    assert_eq!(app.get("/api/nope/", None).await.status(), 404);
    let detail = format!("/api/object-records/uploads/{upload}/");
    assert_eq!(app.get(&detail, Some(&token)).await.status(), 200);

    let after = scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (a, b) = (
            sample_value(&before, name, labels),
            sample_value(&after, name, labels),
        );
        assert!(b - a >= by, "{name}{labels:?}: {a} -> {b}");
    };
    // Requests by matched route (the id is not in the label) and status.
    grew(
        "intake_http_requests_total",
        &[
            ("route", "/api/object-records/uploads/{id}/"),
            ("status", "200"),
            ("method", "GET"),
        ],
        1.0,
    );
    grew(
        "intake_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
        1.0,
    );
    grew(
        "intake_http_request_duration_seconds_count",
        &[("route", "/api/object-records/uploads/")],
        1.0,
    );
    // The pipeline: steps, bytes, files and records.
    for step in [
        "open",
        "validate",
        "antivirus_scan",
        "extracting_file",
        "saving_files",
        "creating_records",
    ] {
        grew(
            "intake_step_duration_seconds_count",
            &[("step", step), ("outcome", "ok")],
            1.0,
        );
    }
    grew(
        "intake_processed_bytes_total",
        &[("kind", "archive")],
        zip.len() as f64,
    );
    grew("intake_records_created_total", &[], 2.0);
    grew(
        "intake_jobs_finished_total",
        &[("kind", "process_upload_file"), ("outcome", "succeeded")],
        1.0,
    );
    // Gauges read from this app's own database.
    assert_eq!(
        sample_value(&after, "intake_uploads", &[("state", "succeeded")]),
        1.0
    );
    assert_eq!(
        sample_value(
            &after,
            "intake_jobs",
            &[("kind", "process_upload_file"), ("state", "succeeded")]
        ),
        1.0
    );
    // The socket was counted while open (it is closed now or soon).
    assert!(after.iter().any(|s| s.name == "intake_open_sockets"));
}

#[tokio::test]
async fn s3_errors_are_counted() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    // A HEAD of a key that does not exist is a not-found failure of the store.
    assert!(app.state.store.head("no/such/key").await.unwrap().is_none());
    let after = scrape(&app).await;
    let labels = [("op", "HeadObject"), ("kind", "not_found")];
    assert!(
        sample_value(&after, "intake_s3_errors_total", &labels)
            > sample_value(&before, "intake_s3_errors_total", &labels)
    );
}

/// `(path, method)` of every `.route("…", get(…).post(…))` in the router sources.
fn router_routes() -> BTreeSet<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.join("ws/mod.rs")];
    for e in std::fs::read_dir(root.join("http")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for chunk in text.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            let Some(rest) = chunk.strip_prefix('"') else {
                continue;
            };
            let (path, tail) = rest.split_once('"').unwrap();
            // The method routers up to the end of this `.route(…)` call.
            let mut depth = 1;
            let mut end = tail.len();
            for (i, c) in tail.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &tail[..end];
            for method in ["get_only", "get", "post", "put", "patch", "delete"] {
                let found = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if found {
                    let m = if method == "get_only" { "get" } else { method };
                    out.insert((path.to_string(), m.to_string()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn openapi_document_validates_and_names_every_route() {
    let app = TestApp::spawn().await;
    let r = app.get("/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    // A 3.1 parser accepts it.
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(!spec.paths.as_ref().unwrap().is_empty());

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let routes = router_routes();
    assert!(routes.len() > 20, "{routes:?}");
    // Not REST: the upload socket (docs/PROTOCOL.md) and the upload page's files.
    let not_rest = [
        "/ws",
        "/ws/",
        "/ws/{*path}",
        "/",
        "/ui/app.js",
        "/ui/app.css",
    ];
    let missing: Vec<_> = routes
        .iter()
        .filter(|(p, _)| !not_rest.contains(&p.as_str()))
        .filter(|r| !documented.contains(*r))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    let stale: Vec<_> = documented.iter().filter(|d| !routes.contains(*d)).collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:?}");
    // Every documented operation is routed with that method (no 405).
    for (path, method) in &documented {
        let url = format!("{}{}", app.base, path.replace(['{', '}'], ""));
        let r = app
            .client
            .request(method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 405, "{method} {path}");
    }
    // The reference page renders it without outside scripts.
    let r = app.get("/docs/", None).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    assert!(!page.contains("<script src"), "no outside scripts");
}

#[tokio::test]
async fn uploads_are_listed_for_their_creator_and_filtered_by_state() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.user(AccountType::ConfigAdmin).await;
    let (_, bob) = app.user(AccountType::ConfigAdmin).await;
    let (class, field) = app.class_with_document_field(&alice).await;
    let first = app.create_upload(&alice, class, field).await;
    let second = app.create_upload(&alice, class, field).await;
    app.create_upload(&bob, class, field).await;
    let zip = testkit::zip_of(&[("one.txt", b"one")]);
    let (done, _) = upload_zip(&app, &alice, &zip).await;

    let list = |token: String, query: &'static str| {
        let app = &app;
        async move {
            let r = app
                .get(
                    &format!("/api/object-records/uploads/{query}"),
                    Some(&token),
                )
                .await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, all) = list(alice.clone(), "").await;
    assert_eq!(status, 200);
    assert_eq!(all["total_count"], 3);
    let ids: Vec<&str> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["upload_id"].as_str().unwrap())
        .collect();
    // Newest first, only Alice's.
    assert_eq!(ids, [done.as_str(), second.as_str(), first.as_str()]);
    assert_eq!(all["results"][0]["state"], "succeeded");
    assert_eq!(all["results"][0]["record_count"], 1);
    assert_eq!(all["results"][0]["file_count"], 1);

    let (_, open) = list(alice.clone(), "?state=open").await;
    assert_eq!(open["total_count"], 2);
    let (_, page) = list(alice.clone(), "?state=open&limit=1").await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    assert!(
        page["next"]
            .as_str()
            .unwrap()
            .ends_with("/api/object-records/uploads/?state=open&limit=1&offset=1"),
        "{page}"
    );
    let (_, bobs) = list(bob.clone(), "").await;
    assert_eq!(bobs["total_count"], 1);
    let (status, bad) = list(alice.clone(), "?state=nope").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["state"].is_array());
    assert_eq!(
        app.get("/api/object-records/uploads/", None).await.status(),
        401
    );

    // The detail carries each file's final message as the socket sent it.
    let detail = app.upload_detail(&alice, &done).await;
    let file = &detail["files"][0];
    assert_eq!(file["final_message"]["type"], "monitoring_update");
    assert_eq!(file["final_message"]["message"]["status"], "success");
    assert_eq!(
        file["final_message"]["message"]["upload_id"],
        file["upload_id"]
    );
}

/// What the webhook receiver saw: headers and body of each POST.
type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver that answers 500 to the first `fail_first` POSTs, then 200.
async fn webhook_receiver(fail_first: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let mut seen = s.lock().unwrap();
                seen.push((headers, body.to_vec()));
                if seen.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Waits (without a deadline of its own: the test runner's applies) until the
/// receiver saw `n` POSTs.
async fn wait_for(seen: &Seen, n: usize) -> Vec<(HeaderMap, Vec<u8>)> {
    loop {
        {
            let s = seen.lock().unwrap();
            if s.len() >= n {
                return s.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) {
    use hmac::{Hmac, Mac};
    let ts = headers["x-intake-timestamp"].to_str().unwrap();
    let sig = headers["x-intake-signature"].to_str().unwrap();
    let hex_sig = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(hex_sig).unwrap())
        .expect("a valid signature");
}

#[tokio::test]
async fn a_signed_webhook_is_sent_when_an_upload_settles_and_retried_after_a_500() {
    let (url, seen) = webhook_receiver(1).await;
    let secret = "webhook-secret-for-tests";
    let app = TestApp::spawn_with(|s| {
        s.webhooks.webhook_urls = vec![url.clone()];
        s.webhooks.webhook_secret = Some(secret.into());
        s.jobs.retry_base = std::time::Duration::from_millis(20);
        s.jobs.poll = std::time::Duration::from_millis(50);
    })
    .await;
    let (user, token) = app.user(AccountType::ConfigAdmin).await;
    let zip = testkit::zip_of(&[("a.txt", b"alpha"), ("b.txt", b"beta")]);
    let (upload, msgs) = upload_zip(&app, &token, &zip).await;
    assert_eq!(msgs.last().unwrap()["message"]["status"], "success");

    let got = wait_for(&seen, 2).await;
    for (headers, body) in &got {
        verify_signature(secret, headers, body);
        assert_eq!(headers["x-intake-event"], "upload.settled");
        assert_eq!(headers["content-type"], "application/json");
    }
    // The retry is the same delivery, with the same body.
    assert_eq!(got[0].0["x-intake-delivery"], got[1].0["x-intake-delivery"]);
    let body: Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(body["event"], "upload.settled");
    assert_eq!(body["outcome"], "success");
    assert_eq!(body["upload_id"], upload);
    assert_eq!(body["state"], "succeeded");
    assert_eq!(body["created_by"], user);
    assert_eq!(body["record_count"], 2);
    assert_eq!(body["files"][0]["state"], "processed");
    // A tampered body fails the check.
    let tampered = std::panic::catch_unwind(|| verify_signature(secret, &got[1].0, b"{}"));
    assert!(tampered.is_err());
    // Delivered: the job succeeded after two attempts, and no third POST follows.
    let key = format!("deliver_webhook:{upload}:{url}");
    loop {
        let job = app.state.db.job_status(&key).await.unwrap().unwrap();
        if job.state == intake::domain::JobState::Succeeded {
            assert_eq!(job.attempts, 2);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_upload_sends_a_failure_webhook() {
    let (url, seen) = webhook_receiver(0).await;
    let app = TestApp::spawn_with(|s| {
        s.webhooks.webhook_urls = vec![url.clone()];
        s.webhooks.webhook_secret = Some("s".into());
    })
    .await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let (upload, msgs) = upload_zip(&app, &token, &testkit::zip_traversal()).await;
    assert_eq!(msgs.last().unwrap()["message"]["status"], "error");
    let got = wait_for(&seen, 1).await;
    verify_signature("s", &got[0].0, &got[0].1);
    let body: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(body["upload_id"], upload);
    assert_eq!(body["outcome"], "failure");
    assert_eq!(body["state"], "failed");
    assert_eq!(body["files"][0]["error_code"], "ERR_ARCHIVE_UNSAFE_PATH");
}

#[tokio::test]
async fn readyz_includes_clamd_when_it_is_configured() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = TestApp::spawn_with(|s| {
        s.scan.clamd_addr = Some(format!("tcp://{closed}"));
        s.scan.require_scan = true;
    })
    .await;
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "status": "unavailable", "database": "ok", "object_store": "ok", "clamd": "unavailable" })
    );
    if let Some(addr) = crate::helpers::clamd::clamd_addr().await {
        let app = TestApp::spawn_with(|s| s.scan.clamd_addr = Some(addr)).await;
        let r = app.get("/readyz", None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["clamd"], "ok");
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let app = TestApp::spawn_with(|s| {
        s.server.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/object-classes/", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A simple request from the allowed origin carries the header too.
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    // Without the setting no origin is allowed.
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/object-classes/", app.base),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn a_3_mb_body_is_answered_413() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(3 * 1024 * 1024));
    for (path, token) in [
        ("/api/auth/token/", None),
        ("/api/object-classes/", Some(token.as_str())),
    ] {
        let mut req = app
            .client
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(big.clone());
        if let Some(t) = token {
            req = req.header("authorization", format!("JWT {t}"));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 413, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({ "detail": "Request body is larger than 2097152 bytes." })
        );
    }
    // The Event History API's raw bodies too.
    let key = app.state.history.create_api_key("big").await.unwrap();
    let r = app
        .client
        .post(format!("{}/api/initialize-tenant", app.base))
        .header("x-api-key", key)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// The binary at its default log level writes an access line per request and a
/// line per failed login (without the password).
#[tokio::test]
async fn the_binary_logs_each_request_and_failed_logins() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.arg("serve")
        .env("INTAKE_DATA_DIR", dir.path())
        .env("INTAKE_HTTP_ADDR", "127.0.0.1:0")
        .env("INTAKE_S3_EMBEDDED_ADDR", "127.0.0.1:0")
        .env_remove("INTAKE_LOG")
        .env_remove("INTAKE_LOG_FORMAT")
        .env_remove("INTAKE_DATABASE_URL")
        .env_remove("INTAKE_CONFIG")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut base = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("intake listening")
            && let Some(addr) = line.split("addr=").nth(1)
        {
            base = Some(format!(
                "http://{}",
                addr.split_whitespace().next().unwrap()
            ));
            break;
        }
    }
    let base = base.expect("the server says where it listens");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/auth/token/"))
        .json(&json!({ "email": "mallory@example.com", "password": "hunter2-guess" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{base}/readyz?uuid=secret-ticket"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut seen: HashMap<&str, String> = HashMap::new();
    while seen.len() < 3 {
        let line = lines.next_line().await.unwrap().expect("more log lines");
        assert!(!line.contains("hunter2"), "a password in the log: {line}");
        assert!(
            !line.contains("secret-ticket"),
            "a query in the log: {line}"
        );
        if line.contains("failed login") && line.contains("mallory@example.com") {
            seen.insert("login", line);
        } else if line.contains("request") && line.contains("route=/api/auth/token/") {
            assert!(line.contains("status=401"), "{line}");
            seen.insert("token", line);
        } else if line.contains("request") && line.contains("route=/readyz") {
            assert!(
                line.contains("status=200") && line.contains("latency_ms="),
                "{line}"
            );
            seen.insert("readyz", line);
        }
    }
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_infected_upload_sends_an_infected_webhook() {
    let Some(clamd) = crate::helpers::clamd::clamd_addr().await else {
        return;
    };
    let (url, seen) = webhook_receiver(0).await;
    let app = TestApp::spawn_with(|s| {
        s.scan.clamd_addr = Some(clamd);
        s.webhooks.webhook_urls = vec![url.clone()];
        s.webhooks.webhook_secret = Some("s".into());
    })
    .await;
    let (_, token) = app.user(AccountType::ConfigAdmin).await;
    // EICAR, assembled at run time so that no source holds the whole string.
    let mut eicar = String::from(r"X5O!P%@AP[4\PZX54(P^)7CC)7}$");
    eicar.push_str("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    let zip = testkit::zip_of(&[("clean.txt", b"ok"), ("eicar.com", eicar.as_bytes())]);
    let (upload, msgs) = upload_zip(&app, &token, &zip).await;
    assert_eq!(msgs.last().unwrap()["message"]["status"], "error");
    let got = wait_for(&seen, 1).await;
    verify_signature("s", &got[0].0, &got[0].1);
    let body: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(body["upload_id"], upload);
    assert_eq!(body["outcome"], "infected");
    assert_eq!(body["files"][0]["error_code"], "ERR_INFECTED");
}
