//! The object store against a real embedded S3 endpoint: presigned URLs are
//! exercised with a plain HTTP client, as a browser would.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use intake::store::{EmbeddedS3, ObjectStore, RangedObject, S3Config, S3Store};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG};
use tempfile::TempDir;

const ACCESS_KEY: &str = "test-access";
const SECRET_KEY: &str = "test-secret-key";
const MIB: usize = 1024 * 1024;
const HOUR: Duration = Duration::from_secs(3600);

/// One test's own store: data directory, endpoint and bucket.
struct Harness {
    store: S3Store,
    http: reqwest::Client,
    dir: TempDir,
    s3: EmbeddedS3,
}

impl Harness {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let s3 = EmbeddedS3::start(
            dir.path().join("s3"),
            "127.0.0.1:0".parse()?,
            ACCESS_KEY,
            SECRET_KEY,
        )
        .await?;
        let store = S3Store::connect(&config(&s3, "uploads")).await?;
        Ok(Self {
            store,
            http: reqwest::Client::new(),
            dir,
            s3,
        })
    }

    /// PUTs `data` as part `number` of `upload_id` through a presigned URL; its ETag.
    async fn put_part(&self, key: &str, upload_id: &str, number: i32, data: Vec<u8>) -> String {
        let len = data.len() as u64;
        let url = self
            .store
            .presign_part(key, upload_id, number, len, HOUR)
            .await
            .unwrap();
        let resp = self.http.put(&url).body(data).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let etag = resp.headers().get(ETAG).expect("part ETag");
        etag.to_str().unwrap().to_owned()
    }

    /// Whether the multipart upload is gone (completed or aborted).
    async fn upload_is_gone(&self, key: &str, upload_id: &str) -> bool {
        let parts = self.store.list_parts(key, upload_id).await;
        parts.is_err_and(|e| e.is_not_found())
    }
}

fn config(s3: &EmbeddedS3, bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(s3.endpoint()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        force_path_style: true,
        public_url: None,
    }
}

/// Status and S3 error code (`<Code>` of the XML body) of a response.
async fn s3_error(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

/// Deterministic, non-repeating-looking test data.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

#[tokio::test]
async fn presigned_put_binds_length_and_type() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let body = pattern(1000, 1);
    let url = h
        .store
        .presign_put("in/a.zip", body.len() as u64, "application/zip", HOUR)
        .await?;
    let signed = url::Url::parse(&url)?
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-SignedHeaders")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        signed.contains("content-length") && signed.contains("content-type"),
        "signed headers: {signed}"
    );

    let put = |body: Vec<u8>, content_type: &'static str| {
        h.http
            .put(&url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };

    let mismatch = (StatusCode::FORBIDDEN, "SignatureDoesNotMatch".to_owned());
    let longer = put(pattern(1001, 1), "application/zip").await?;
    assert_eq!(s3_error(longer).await, mismatch);
    let shorter = put(pattern(999, 1), "application/zip").await?;
    assert_eq!(s3_error(shorter).await, mismatch);
    let wrong_type = put(body.clone(), "text/html").await?;
    assert_eq!(s3_error(wrong_type).await, mismatch);
    let wrong_method = h.http.post(&url).body(body.clone()).send().await?;
    assert_eq!(wrong_method.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.store.head("in/a.zip").await?, None);

    let ok = put(body.clone(), "application/zip").await?;
    assert_eq!(ok.status(), StatusCode::OK, "{}", ok.text().await?);

    let meta = h.store.head("in/a.zip").await?.expect("object exists");
    assert_eq!(meta.size, 1000);
    assert_eq!(meta.content_type.as_deref(), Some("application/zip"));
    assert!(meta.etag.is_some());
    assert_eq!(
        h.store.get_bytes("in/a.zip").await?,
        Bytes::from(body.clone())
    );
    let file = h.dir.path().join("a.zip");
    assert_eq!(h.store.get_to_file("in/a.zip", &file).await?, 1000);
    assert_eq!(tokio::fs::read(&file).await?, body);
    Ok(())
}

#[tokio::test]
async fn presigned_put_expires() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let url = h
        .store
        .presign_put("in/late.zip", 3, "application/zip", Duration::from_secs(1))
        .await?;
    // Expiry is about the wall clock; nothing to wait for but time itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resp = h
        .http
        .put(&url)
        .header(CONTENT_TYPE, "application/zip")
        .body(vec![1, 2, 3])
        .send()
        .await?;
    assert_eq!(
        s3_error(resp).await,
        (StatusCode::FORBIDDEN, "AccessDenied".to_owned())
    );
    assert_eq!(h.store.head("in/late.zip").await?, None);
    Ok(())
}

#[tokio::test]
async fn multipart_upload_through_presigned_parts() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let key = "in/big.zip";
    let upload_id = h.store.create_multipart(key, "application/zip").await?;
    let chunks: Vec<Vec<u8>> = (1..=3).map(|seed| pattern(5 * MIB, seed)).collect();

    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let number = i as i32 + 1;
        let url = h
            .store
            .presign_part(key, &upload_id, number, chunk.len() as u64, HOUR)
            .await?;
        // A part of another length is refused too.
        let wrong = h.http.put(&url).body(chunk[1..].to_vec()).send().await?;
        assert_eq!(
            s3_error(wrong).await,
            (StatusCode::FORBIDDEN, "SignatureDoesNotMatch".to_owned())
        );
        let resp = h.http.put(&url).body(chunk.clone()).send().await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let etag = resp
            .headers()
            .get(ETAG)
            .expect("part ETag")
            .to_str()?
            .to_owned();
        parts.push((number, etag));
    }

    let listed = h.store.list_parts(key, &upload_id).await?;
    let expected: Vec<(i32, String, u64)> = parts
        .iter()
        .map(|(n, etag)| (*n, etag.clone(), 5 * MIB as u64))
        .collect();
    assert_eq!(listed, expected);

    // Any order is fine; the store sorts.
    let mut shuffled = parts.clone();
    shuffled.reverse();
    h.store
        .complete_multipart(key, &upload_id, &shuffled)
        .await?;

    let meta = h.store.head(key).await?.expect("assembled object");
    assert_eq!(meta.size, 15 * MIB as u64);
    assert_eq!(meta.content_type.as_deref(), Some("application/zip"));
    let file = h.dir.path().join("big.zip");
    assert_eq!(h.store.get_to_file(key, &file).await?, 15 * MIB as u64);
    let whole = chunks.concat();
    assert!(tokio::fs::read(&file).await? == whole);

    // Ranged reads across the parts' boundaries (the embedded store keeps the parts
    // as the object's extents rather than copying them into one file).
    let url = h.store.presign_get(key, HOUR, None).await?;
    let at = 5 * MIB;
    for (first, last) in [
        (at - 3, at + 2),
        (2 * at - 1, 2 * at),
        (0, 0),
        (3 * at - 4, 3 * at - 1),
    ] {
        let resp = h
            .http
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes={first}-{last}"))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            resp.headers()
                .get(reqwest::header::CONTENT_RANGE)
                .map(|v| v.to_str().unwrap().to_owned()),
            Some(format!("bytes {first}-{last}/{}", 15 * MIB))
        );
        assert_eq!(resp.bytes().await?.as_ref(), &whole[first..=last]);
    }

    // The upload is gone once completed.
    assert!(h.upload_is_gone(key, &upload_id).await);
    Ok(())
}

#[tokio::test]
async fn completing_with_a_wrong_etag_fails() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let key = "in/bad.zip";
    let upload_id = h.store.create_multipart(key, "application/zip").await?;
    let data = pattern(5 * MIB, 7);
    let good = h.put_part(key, &upload_id, 1, data.clone()).await;

    let err = h
        .store
        .complete_multipart(
            key,
            &upload_id,
            &[(1, "\"0123456789abcdef0123456789abcdef\"".into())],
        )
        .await
        .expect_err("wrong ETag must fail");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.code(), Some("InvalidPart"), "{err}");
    let err = h
        .store
        .complete_multipart(key, &upload_id, &[(1, good.clone()), (2, good.clone())])
        .await
        .expect_err("missing part must fail");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(h.store.head(key).await?, None);

    // The failed attempts left the upload intact.
    h.store
        .complete_multipart(key, &upload_id, &[(1, good)])
        .await?;
    assert_eq!(h.store.get_bytes(key).await?, Bytes::from(data));
    Ok(())
}

#[tokio::test]
async fn aborted_upload_is_gone() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let key = "in/aborted.zip";
    let upload_id = h.store.create_multipart(key, "application/zip").await?;
    h.put_part(key, &upload_id, 1, vec![1, 2, 3, 4]).await;
    h.store.abort_multipart(key, &upload_id).await?;
    assert!(h.upload_is_gone(key, &upload_id).await);
    assert!(
        h.store
            .complete_multipart(key, &upload_id, &[(1, "\"x\"".into())])
            .await
            .unwrap_err()
            .is_not_found()
    );
    Ok(())
}

#[tokio::test]
async fn list_copy_delete_and_prefixes() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    for key in ["job/1/a", "job/1/b/c", "job/2/a", "other"] {
        h.store
            .put_bytes(key, Bytes::from(key.as_bytes().to_vec()), "text/plain")
            .await?;
    }
    assert_eq!(h.store.list("job/1/").await?, ["job/1/a", "job/1/b/c"]);
    assert_eq!(h.store.list("job/").await?.len(), 3);
    assert!(h.store.list("nothing/").await?.is_empty());

    h.store.copy("job/1/a", "copied/a").await?;
    assert_eq!(
        h.store.get_bytes("copied/a").await?,
        Bytes::from_static(b"job/1/a")
    );
    let meta = h.store.head("copied/a").await?.expect("copy exists");
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert!(
        h.store
            .copy("missing", "x")
            .await
            .unwrap_err()
            .is_not_found()
    );

    h.store.delete("other").await?;
    assert_eq!(h.store.head("other").await?, None);
    h.store.delete("other").await?; // missing keys delete fine

    assert_eq!(h.store.delete_prefix("job/1/").await?, 2);
    assert_eq!(h.store.list("job/").await?, ["job/2/a"]);
    assert!(h.store.delete_prefix("").await.is_err());

    assert_eq!(h.store.head("never/was").await?, None);
    let err = h.store.get_bytes("never/was").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = h
        .store
        .get_to_file("never/was", &h.dir.path().join("x"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!h.dir.path().join("x").exists());
    Ok(())
}

#[tokio::test]
async fn list_paginates() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    // One more than a ListObjectsV2 page.
    let keys: Vec<String> = (0..1001).map(|i| format!("many/{i:04}")).collect();
    let store = &h.store;
    futures::future::try_join_all(
        keys.iter()
            .map(|k| store.put_bytes(k, Bytes::from_static(b"x"), "text/plain")),
    )
    .await?;
    assert_eq!(h.store.list("many/").await?, keys);
    assert_eq!(h.store.delete_prefix("many/").await?, 1001);
    assert!(h.store.list("many/").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn put_file_and_presigned_get() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let data = pattern(3 * MIB + 17, 9);
    let src = h.dir.path().join("src.bin");
    tokio::fs::write(&src, &data).await?;
    h.store
        .put_file("files/report ä.pdf", &src, "application/pdf")
        .await?;

    let url = h
        .store
        .presign_get("files/report ä.pdf", HOUR, Some("Report ä.pdf"))
        .await?;
    let resp = h.http.get(&url).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let disposition = resp
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''Report%20%C3%A4.pdf"),
        "{disposition}"
    );
    assert!(resp.bytes().await? == data);

    let plain = h
        .store
        .presign_get("files/report ä.pdf", HOUR, None)
        .await?;
    assert_eq!(
        h.http.get(&plain).send().await?.bytes().await?,
        Bytes::from(data)
    );

    // Unsigned or tampered requests are refused.
    let tampered = plain.replace("report%20%C3%A4.pdf", "other.pdf");
    assert_eq!(
        h.http.get(&tampered).send().await?.status(),
        StatusCode::FORBIDDEN
    );
    let anonymous = format!("{}/uploads/files/report%20%C3%A4.pdf", h.s3.endpoint());
    assert_eq!(
        h.http.get(&anonymous).send().await?.status(),
        StatusCode::FORBIDDEN
    );
    Ok(())
}

#[tokio::test]
async fn public_url_is_used_for_presigning_only() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mut cfg = config(&h.s3, "uploads");
    cfg.public_url = Some("https://files.example.org".into());
    let store = S3Store::connect(&cfg).await?;
    store
        .put_bytes("k", Bytes::from_static(b"v"), "text/plain")
        .await?;
    let url = store.presign_get("k", HOUR, None).await?;
    assert!(
        url.starts_with("https://files.example.org/uploads/k?"),
        "{url}"
    );
    let url = store.presign_put("k2", 1, "text/plain", HOUR).await?;
    assert!(
        url.starts_with("https://files.example.org/uploads/k2?"),
        "{url}"
    );
    Ok(())
}

#[tokio::test]
async fn connect_creates_the_bucket_once_and_ping_checks_it() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    h.store.ping().await?;
    // Connecting again to the existing bucket is fine.
    S3Store::connect(&config(&h.s3, "uploads"))
        .await?
        .ping()
        .await?;

    let mut bad = config(&h.s3, "uploads");
    bad.secret_access_key = "wrong".into();
    let err = S3Store::connect(&bad).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");

    // A store that is not there is a transient failure.
    let addr = h.s3.local_addr();
    let h_dir = h.dir;
    h.s3.shutdown().await;
    let err = h.store.ping().await.unwrap_err();
    assert!(err.is_transient(), "{addr}: {err}");
    drop(h_dir);

    let mut invalid = config_for("not a url");
    invalid.bucket = "b".into();
    assert!(S3Store::new(&invalid).is_err());
    Ok(())
}

fn config_for(endpoint: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        bucket: "b".into(),
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        force_path_style: true,
        public_url: None,
    }
}

#[tokio::test]
async fn browsers_on_other_origins_may_use_presigned_urls() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let url = h
        .store
        .presign_put("in/cors.zip", 2, "application/zip", HOUR)
        .await?;

    let preflight = h
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example.org")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await?;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let header = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header(&preflight, "access-control-allow-origin"), "*");
    assert!(header(&preflight, "access-control-allow-methods").contains("PUT"));
    assert_eq!(
        header(&preflight, "access-control-allow-headers"),
        "content-type"
    );

    let put = h
        .http
        .put(&url)
        .header("origin", "https://app.example.org")
        .header(CONTENT_TYPE, "application/zip")
        .body(vec![1, 2])
        .send()
        .await?;
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(header(&put, "access-control-allow-origin"), "*");
    assert_eq!(header(&put, "access-control-expose-headers"), "ETag");
    Ok(())
}

/// Peak resident memory of this process (Linux).
fn peak_rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// A 1 GiB object goes up through a presigned PUT and through `put_file`
/// (multipart), and comes back through `get_to_file`, with the whole
/// process (client and embedded server) staying far below 1 GiB.
/// Slow in debug builds: `cargo test --test store -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves several GiB through the disk"]
async fn one_gib_streams_with_bounded_memory() -> anyhow::Result<()> {
    const GIB: u64 = 1024 * 1024 * 1024;
    let h = Harness::start().await?;
    let src = h.dir.path().join("big.bin");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut f = tokio::fs::File::create(&src).await?;
        let block = pattern(MIB, 3);
        for _ in 0..1024 {
            f.write_all(&block).await?;
        }
        f.flush().await?;
    }

    let url = h
        .store
        .presign_put("big/presigned", GIB, "application/zip", HOUR)
        .await?;
    let file = tokio::fs::File::open(&src).await?;
    let resp = h
        .http
        .put(&url)
        .header(CONTENT_TYPE, "application/zip")
        .header(reqwest::header::CONTENT_LENGTH, GIB)
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::new(file),
        ))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        h.store.head("big/presigned").await?.map(|m| m.size),
        Some(GIB)
    );

    h.store.put_file("big/put", &src, "application/zip").await?;
    let out = h.dir.path().join("out.bin");
    assert_eq!(h.store.get_to_file("big/put", &out).await?, GIB);
    assert_eq!(h.store.get_to_file("big/presigned", &out).await?, GIB);

    let peak = peak_rss_bytes()?;
    eprintln!(
        "peak RSS after 3 GiB through the store: {} MiB",
        peak / MIB as u64
    );
    assert!(
        peak < 256 * MIB as u64,
        "peak RSS {} MiB",
        peak / MIB as u64
    );
    Ok(())
}

fn crc32c_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

fn sha256_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

/// A URL bound to a checksum: the header must be sent as signed, and a body whose
/// bytes differ from what was hashed is refused (400 BadDigest) and not stored,
/// for parts (CRC32C and SHA-256) and for a single PUT.
#[tokio::test]
async fn checksum_bound_urls_refuse_altered_bytes() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    checksum_checks(&h.store, &h.http, "in").await
}

/// The same against Garage, with the variables `.ci/garage.sh` exports
/// (`INTAKE_TEST_S3_ENDPOINT`, `_REGION`, `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY`; bucket
/// `intake-ci`, or `INTAKE_TEST_S3_BUCKET`). `.ci/run` runs it in its Garage step:
/// `cargo test --test store -- --ignored garage`.
#[tokio::test]
#[ignore = "needs a Garage server (.ci/run starts one and runs this)"]
async fn checksum_bound_urls_refuse_altered_bytes_on_garage() -> anyhow::Result<()> {
    let (store, prefix) = garage().await?;
    // Garage closes the connection after refusing a body; a pooled connection reused
    // right after may be that one ("connection closed before message completed").
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    checksum_checks(&store, &http, &prefix).await
}

/// The Garage bucket `.ci/garage.sh` describes, and a prefix of this test's own.
async fn garage() -> anyhow::Result<(S3Store, String)> {
    let var = |k: &str| std::env::var(format!("INTAKE_TEST_S3_{k}")).expect(k);
    let store = S3Store::connect(&S3Config {
        endpoint: Some(var("ENDPOINT")),
        region: var("REGION"),
        bucket: std::env::var("INTAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "intake-ci".into()),
        access_key_id: var("ACCESS_KEY_ID"),
        secret_access_key: var("SECRET_ACCESS_KEY"),
        force_path_style: true,
        public_url: None,
    })
    .await?;
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    Ok((store, prefix))
}

/// 400 `BadDigest` (S3, the embedded store) or `InvalidDigest` (Garage).
fn assert_refused_as_corrupt((status, code): (StatusCode, String)) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{code}");
    assert!(
        ["BadDigest", "InvalidDigest"].contains(&code.as_str()),
        "{code}"
    );
}

async fn checksum_checks(
    store: &S3Store,
    http: &reqwest::Client,
    prefix: &str,
) -> anyhow::Result<()> {
    use intake::store::Checksum;
    struct H<'a> {
        store: &'a S3Store,
        http: &'a reqwest::Client,
    }
    let h = H { store, http };
    let key = &format!("{prefix}/checked.zip");
    let one = &format!("{prefix}/one.zip");
    let upload_id = h.store.create_multipart(key, "application/zip").await?;
    let data = pattern(5 * MIB, 9);
    let mut altered = data.clone();
    altered[MIB] ^= 0x01;
    for (number, checksum) in [
        (1, Checksum::Crc32c(crc32c_b64(&data))),
        (2, Checksum::Sha256(sha256_b64(&data))),
    ] {
        let url = h
            .store
            .presign_part_checked(key, &upload_id, number, data.len() as u64, &checksum, HOUR)
            .await?;
        assert!(url.contains(checksum.header()), "a signed header: {url}");
        // Refused: 403 SignatureDoesNotMatch (S3, embedded), 400 InvalidRequest
        // (Garage, which may also close the connection before reading the body).
        if let Ok(unsent) = h.http.put(&url).body(data.clone()).send().await {
            let (status, code) = s3_error(unsent).await;
            assert!(
                [StatusCode::FORBIDDEN, StatusCode::BAD_REQUEST].contains(&status),
                "the checksum header is required: {status} {code}"
            );
        }
        let put = |body: Vec<u8>| {
            h.http
                .put(&url)
                .header(checksum.header(), checksum.value())
                .body(body)
                .send()
        };
        let bad = put(altered.clone()).await?;
        assert_refused_as_corrupt(s3_error(bad).await);
        assert!(
            h.store.list_parts(key, &upload_id).await?.len() < number as usize,
            "the refused part is not stored"
        );
        assert_eq!(put(data.clone()).await?.status(), StatusCode::OK);
    }
    assert_eq!(h.store.list_parts(key, &upload_id).await?.len(), 2);

    let small = pattern(1000, 3);
    let checksum = Checksum::Crc32c(crc32c_b64(&small));
    let url = h
        .store
        .presign_put_checked(one, 1000, "application/zip", &checksum, HOUR)
        .await?;
    let put = |body: Vec<u8>| {
        h.http
            .put(&url)
            .header(CONTENT_TYPE, "application/zip")
            .header(checksum.header(), checksum.value())
            .body(body)
            .send()
    };
    let mut bad = small.clone();
    bad[10] ^= 0x80;
    assert_refused_as_corrupt(s3_error(put(bad).await?).await);
    assert!(h.store.head(one).await?.is_none(), "nothing stored");
    assert_eq!(put(small.clone()).await?.status(), StatusCode::OK);
    assert_eq!(h.store.head(one).await?.unwrap().size, 1000);
    Ok(())
}

/// The server's direct calls on the embedded store ([`intake::store::DirectStore`]) and
/// the same calls over its S3 endpoint see one store: what one writes the other reads,
/// with the same sizes, types and ETags, and the same answers for what is missing.
#[tokio::test]
async fn direct_calls_and_the_endpoint_see_the_same_objects() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let direct =
        h.s3.direct(
            S3Store::connect(&config(&h.s3, "uploads")).await?,
            "uploads",
        )
        .await?;
    direct.ping().await?;

    // Small (kept in the index) and big (a file), from memory and from a file.
    let small = pattern(3_000, 1);
    direct
        .put_bytes("files/a", Bytes::from(small.clone()), "text/plain")
        .await?;
    let big = pattern(3 * MIB + 17, 2);
    let src = h.dir.path().join("big.bin");
    tokio::fs::write(&src, &big).await?;
    direct.put_file("files/b", &src, "image/png").await?;
    for (key, bytes, ct) in [
        ("files/a", &small, "text/plain"),
        ("files/b", &big, "image/png"),
    ] {
        assert_eq!(h.store.get_bytes(key).await?.as_ref(), bytes.as_slice());
        let (over_http, here) = (h.store.head(key).await?, direct.head(key).await?);
        let here = here.expect("head");
        assert_eq!(here.size, bytes.len() as u64);
        assert_eq!(here.content_type.as_deref(), Some(ct));
        let over_http = over_http.expect("head over HTTP");
        assert_eq!((over_http.size, &over_http.etag), (here.size, &here.etag));
        let out = h.dir.path().join("out");
        assert_eq!(direct.get_to_file(key, &out).await?, bytes.len() as u64);
        assert_eq!(&tokio::fs::read(&out).await?, bytes);
    }

    // A multipart upload begun here, its parts sent to presigned URLs, listed and
    // completed here; read back over HTTP.
    let upload = direct
        .create_multipart("files/c", "application/zip")
        .await?;
    let (p1, p2) = (pattern(5 * MIB, 3), pattern(1_234, 4));
    let e1 = h.put_part("files/c", &upload, 1, p1.clone()).await;
    let e2 = h.put_part("files/c", &upload, 2, p2.clone()).await;
    let listed = direct.list_parts("files/c", &upload).await?;
    assert_eq!(
        listed,
        vec![
            (1, e1.clone(), p1.len() as u64),
            (2, e2.clone(), p2.len() as u64)
        ]
    );
    assert_eq!(
        direct.list_multipart_uploads("files/").await?,
        Some(vec![("files/c".to_owned(), upload.clone())])
    );
    let wrong = direct
        .complete_multipart("files/c", &upload, &[(1, e2.clone()), (2, e2.clone())])
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some("InvalidPart"), "{wrong}");
    direct
        .complete_multipart("files/c", &upload, &[(2, e2), (1, e1)])
        .await?;
    assert_eq!(h.store.get_bytes("files/c").await?, [p1, p2].concat());
    assert!(
        direct
            .list_parts("files/c", &upload)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let etag = direct.head("files/c").await?.unwrap().etag.unwrap();
    assert!(etag.starts_with('"') && etag.ends_with("-2\""), "{etag}");

    // The SDK path's put_bytes, read back here.
    h.store
        .put_bytes("files/d", Bytes::from_static(b"over HTTP"), "text/csv")
        .await?;
    let d = direct.head("files/d").await?.expect("put over HTTP");
    assert_eq!((d.size, d.content_type.as_deref()), (9, Some("text/csv")));

    // Copies, listings by age, deletes.
    direct.copy("files/a", "kept/a").await?;
    assert_eq!(
        h.store.get_bytes("kept/a").await?.as_ref(),
        small.as_slice()
    );
    let future = std::time::SystemTime::now() + Duration::from_secs(5);
    let mut old = direct.list_older_than("files/", future).await?;
    old.sort();
    assert_eq!(old, ["files/a", "files/b", "files/c", "files/d"]);
    assert!(
        direct
            .list_older_than("files/", std::time::UNIX_EPOCH)
            .await?
            .is_empty()
    );
    assert_eq!(direct.delete_prefix("files/").await?, 4);
    assert!(h.store.head("files/b").await?.is_none());
    assert!(direct.head("files/b").await?.is_none());
    direct.delete("files/b").await?;
    let missing = direct.get_to_file("files/b", &h.dir.path().join("x")).await;
    assert!(missing.unwrap_err().is_not_found());
    assert!(!h.dir.path().join("x").exists());
    assert!(direct.delete_prefix("").await.is_err());
    Ok(())
}

/// Ranged GETs and [`RangedObject`] on `store`: exact bytes across a multipart
/// object's part boundary and a block boundary, empty and out-of-range reads, the
/// stream for the antivirus, and reads pinned to the version that was opened.
async fn ranged_reads(store: Arc<dyn ObjectStore>, prefix: &str) -> anyhow::Result<()> {
    let key = format!("{prefix}/ranged.zip");
    // Two parts: 5 MiB, then the rest; RangedObject blocks are 1 MiB.
    let data = pattern(5 * MIB + 777_777, 9);
    let upload = store.create_multipart(&key, "application/zip").await?;
    let http = reqwest::Client::new();
    let mut parts = Vec::new();
    for (number, chunk) in [(1, &data[..5 * MIB]), (2, &data[5 * MIB..])] {
        let url = store
            .presign_part(&key, &upload, number, chunk.len() as u64, HOUR)
            .await?;
        let resp = http.put(&url).body(chunk.to_vec()).send().await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let etag = resp.headers().get(ETAG).expect("ETag").to_str()?.to_owned();
        parts.push((number, etag));
    }
    store.complete_multipart(&key, &upload, &parts).await?;
    let etag = store.head(&key).await?.expect("head").etag;

    for (start, len) in [
        (0, 1),
        (5 * MIB as u64 - 10, 20),
        (MIB as u64 - 3, 2 * MIB as u64 + 6),
        (data.len() as u64 - 5, 5),
    ] {
        let got = store.get_range(&key, start, len, etag.as_deref()).await?;
        let (s, e) = (start as usize, (start + len) as usize);
        assert_eq!(got.as_ref(), &data[s..e], "bytes={start}+{len}");
    }
    assert!(store.get_range(&key, 3, 0, None).await?.is_empty());

    let object = Arc::new(
        RangedObject::open(Arc::clone(&store), &key)
            .await?
            .expect("the object exists"),
    );
    assert_eq!(object.len(), data.len() as u64);
    let reader = Arc::clone(&object);
    let expected = data.clone();
    tokio::task::spawn_blocking(move || {
        // Forward, backward, across blocks and parts, and past the end.
        for (offset, len) in [
            (0usize, 100usize),
            (MIB - 50, 100),
            (10, 64 * 1024),
            (5 * MIB - 1, 2),
            (2 * MIB, 3 * MIB + 700_000),
            (expected.len() - 1, 1),
        ] {
            let mut buf = vec![0u8; len];
            reader.read_exact_at(&mut buf, offset as u64).unwrap();
            assert_eq!(buf, &expected[offset..offset + len], "{offset}+{len}");
        }
        let mut past = [0u8; 2];
        let e = reader
            .read_exact_at(&mut past, expected.len() as u64 - 1)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    })
    .await?;
    let mut streamed = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object.reader(), &mut streamed).await?;
    assert!(streamed == data, "the stream differs from the object");
    assert!(object.take_failure().is_none());

    // Replaced after it was opened: a pinned read fails, retryably, and says why.
    store
        .put_bytes(
            &key,
            Bytes::from_static(b"another version"),
            "application/zip",
        )
        .await?;
    let changed = store
        .get_range(&key, 0, 4, etag.as_deref())
        .await
        .unwrap_err();
    assert!(changed.is_transient(), "{changed}");
    assert!(changed.to_string().contains("changed"), "{changed}");
    // Past the end of the new version: still "changed" (the precondition comes
    // before the range), not an invalid range.
    let past = store
        .get_range(&key, 2 * MIB as u64, 10, etag.as_deref())
        .await
        .unwrap_err();
    assert!(past.is_transient(), "{past}");
    assert!(past.to_string().contains("changed"), "{past}");
    let mut streamed = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut object.reader(), &mut streamed).await;
    assert!(read.is_err(), "a stream of the old version must fail");
    assert!(object.take_failure().is_some_and(|e| e.is_transient()));
    store.delete(&key).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_over_the_endpoint_and_direct() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let over_http: Arc<dyn ObjectStore> =
        Arc::new(S3Store::connect(&config(&h.s3, "uploads")).await?);
    ranged_reads(over_http, "http").await?;
    let direct: Arc<dyn ObjectStore> = Arc::new(
        h.s3.direct(
            S3Store::connect(&config(&h.s3, "uploads")).await?,
            "uploads",
        )
        .await?,
    );
    ranged_reads(direct, "direct").await
}

/// [`ranged_reads`] against Garage (see the test above for the variables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Garage server (.ci/run starts one and runs this)"]
async fn ranged_reads_on_garage() -> anyhow::Result<()> {
    let (store, prefix) = garage().await?;
    ranged_reads(Arc::new(store), &prefix).await
}
