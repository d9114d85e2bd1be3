//! The root cause of a failure, in words a person can act on: "connection refused",
//! "DNS lookup failed: Name or service not known", "TLS: invalid peer certificate:
//! UnknownIssuer". Client libraries (sqlx, the AWS SDK, hyper) wrap the one fact that
//! matters in several layers of context; start-up errors and the object store's
//! transient failures show this one line instead of the whole chain.

use std::error::Error;
use std::io;

/// The errors of `err`'s chain, outermost first. `io::Error` hides the error it
/// wraps from `source()` (it returns that error's source), so it is unwrapped here.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        };
        if out.len() > 32 {
            break;
        }
    }
    out
}

/// The one-line cause of `err`: the innermost I/O failure in plain words, a DNS or
/// TLS failure, else the innermost message that says something.
pub fn root_cause(err: &(dyn Error + 'static)) -> String {
    let chain = chain(err);
    let texts: Vec<String> = chain.iter().map(|e| e.to_string()).collect();
    // DNS failures are io::Errors of no particular kind; their text says it.
    if let Some(dns) = texts.iter().find(|t| {
        t.contains("failed to lookup address")
            || t.contains("Name or service not known")
            || t.contains("nodename nor servname")
            || t.contains("No address associated with hostname")
            || t.contains("Temporary failure in name resolution")
    }) {
        let reason = dns.rsplit(": ").next().unwrap_or(dns);
        return format!("DNS lookup failed: {}", strip_os_error(reason));
    }
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return format!("TLS: {tls}");
    }
    for e in chain.iter().rev() {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(words) = io_words(io)
        {
            return words.to_string();
        }
    }
    if let Some(tls) = texts
        .iter()
        .find(|t| t.contains("certificate") || t.contains("tls handshake"))
    {
        return format!("TLS: {}", strip_os_error(tls));
    }
    texts
        .iter()
        .rev()
        .map(|t| strip_os_error(t))
        .find(|t| !t.trim().is_empty() && !is_vague(t))
        .unwrap_or_else(|| strip_os_error(&texts[0]))
}

/// The root cause of an `anyhow::Error` (its chain includes the context layers).
pub fn root_cause_of(err: &anyhow::Error) -> String {
    root_cause(err.as_ref())
}

/// Plain words for the I/O failures a person can act on.
fn io_words(e: &io::Error) -> Option<&'static str> {
    use io::ErrorKind::*;
    Some(match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by the server",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        AddrInUse => "address already in use",
        AddrNotAvailable => "address not available on this machine",
        PermissionDenied => "permission denied",
        NotFound => "no such file or directory",
        NotADirectory => "not a directory",
        ReadOnlyFilesystem => "read-only file system",
        StorageFull => "no space left on device",
        _ => return None,
    })
}

/// Layers that only say that something failed, not why.
fn is_vague(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "dispatch failure",
        "io error",
        "error trying to connect",
        "client error (connect)",
        "other",
    ]
    .iter()
    .any(|v| t == *v)
}

/// `text` without the `(os error N)` tail.
fn strip_os_error(text: &str) -> String {
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] io::Error);

    #[test]
    fn the_innermost_io_failure_is_named() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "tcp connect error");
        let wrapped = io::Error::other(Outer(refused));
        assert_eq!(root_cause(&wrapped), "connection refused");
    }

    #[test]
    fn dns_and_os_error_tails() {
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(
            root_cause(&Outer(dns)),
            "DNS lookup failed: Name or service not known"
        );
        let other = io::Error::other("something odd (os error 99)");
        assert_eq!(root_cause(&other), "something odd");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
