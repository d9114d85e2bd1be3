//! Presigned URLs for the hot paths (the Event History API's `upload-url` and
//! download URLs), signed here with `aws-sigv4`, the SDK's own SigV4 signer, instead
//! of through the SDK's presigning orchestrator.
//!
//! Measured (docs/PERFORMANCE.md): the orchestrator builds and runs a whole operation
//! (endpoint resolution, a dozen interceptors, a request and its headers) for every
//! URL, which was most of the endpoint's cost. What it resolves is the same for every
//! key of the bucket, so it runs once: the first URL is presigned by the SDK for a
//! probe key, and its address up to the key (scheme, host, path-style or
//! virtual-hosted bucket, exactly as the SDK addresses it for this configuration) is
//! kept. Each URL after that is that base, the key encoded as the SDK encodes it,
//! and the query parameters `aws-sigv4` computes with the settings the SDK uses for
//! S3 presigning. A test checks that both give the same URL, byte for byte, for the
//! same time.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::OnceCell;

use super::{Result, StoreError};

/// The probe key whose SDK-presigned URL gives the base address.
const PROBE_KEY: &str = "intake-presign-probe";

/// Bytes of a key the SDK leaves as they are in the path (RFC 3986 unreserved, and
/// `/` between segments); everything else is percent-encoded.
const KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Bytes of a query value left as they are: the unreserved set only.
const QUERY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Signs `GET`/`PUT` URLs of one bucket with static credentials.
#[derive(Debug)]
pub(super) struct QueryPresigner {
    identity: Identity,
    region: String,
    /// `scheme://host[:port][/bucket]`, from the SDK's first URL.
    base: OnceCell<String>,
}

impl QueryPresigner {
    pub(super) fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "intake-config",
        );
        QueryPresigner {
            identity: credentials.into(),
            region: region.to_owned(),
            base: OnceCell::new(),
        }
    }

    /// The base address, from `probe` (the SDK's URL for [`PROBE_KEY`]) the first
    /// time.
    pub(super) async fn base<F, Fut>(&self, probe: F) -> Result<&str>
    where
        F: FnOnce(&'static str) -> Fut,
        Fut: std::future::Future<Output = Result<String>>,
    {
        self.base
            .get_or_try_init(|| async {
                let url = probe(PROBE_KEY).await?;
                base_of(&url).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "the SDK presigned {url:?}, which does not end in the probe key"
                    ))
                })
            })
            .await
            .map(String::as_str)
    }

    /// `base` + `key`, presigned for `method` from `now` for `expires`, with the
    /// extra query parameters `query` (signed too).
    pub(super) fn sign(
        &self,
        base: &str,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        expires: Duration,
        now: SystemTime,
    ) -> Result<String> {
        let mut url = String::with_capacity(base.len() + key.len() + 64 + 320);
        url.push_str(base);
        url.push('/');
        url.extend(utf8_percent_encode(key, KEY_KEEP));
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.extend(utf8_percent_encode(name, QUERY_KEEP));
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY_KEEP));
        }
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| StoreError::Invalid(format!("presigning {key:?}: {e}")))?
            .into();
        let request = SignableRequest::new(
            method,
            url.as_str(),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| StoreError::Invalid(format!("presigning {key:?}: {e}")))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| StoreError::Invalid(format!("presigning {key:?}: {e}")))?
            .into_parts();
        let (_, params) = instructions.into_parts();
        let mut first = query.is_empty();
        for (name, value) in params {
            url.push(if first { '?' } else { '&' });
            first = false;
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(&value, QUERY_KEEP));
        }
        Ok(url)
    }
}

/// The address of a presigned URL of [`PROBE_KEY`] up to the key.
fn base_of(url: &str) -> Option<String> {
    let path = url.split('?').next()?;
    let base = path.strip_suffix(PROBE_KEY)?.strip_suffix('/')?;
    Some(base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_of_strips_the_key_and_the_query() {
        assert_eq!(
            base_of("http://127.0.0.1:9000/bucket/intake-presign-probe?X-Amz-Date=1").as_deref(),
            Some("http://127.0.0.1:9000/bucket")
        );
        assert_eq!(
            base_of("https://b.s3.eu-west-1.amazonaws.com/intake-presign-probe?x").as_deref(),
            Some("https://b.s3.eu-west-1.amazonaws.com")
        );
        assert_eq!(base_of("http://h/other?x"), None);
    }
}
