//! The one clamd probe of the tests, shared by `tests/clamd.rs` and the api tests.
//!
//! The real clamd is the one `.ci/clamd.sh` starts, at `INTAKE_TEST_CLAMD_ADDR`
//! (default `tcp://127.0.0.1:3310`). When it cannot be reached, a test that needs
//! it fails if `CI=true` (CI must provide clamd) and otherwise prints a "skipping"
//! line and passes.

// Each test crate that includes this file uses part of it.
#![allow(dead_code)]

use intake::scan::{ClamdScanner, Scanner};

/// The address of the test clamd.
pub fn clamd_test_addr() -> String {
    std::env::var("INTAKE_TEST_CLAMD_ADDR").unwrap_or_else(|_| "tcp://127.0.0.1:3310".to_owned())
}

/// The real clamd, if it answers PING; see the module docs for what happens if not.
pub async fn live_clamd() -> Option<ClamdScanner> {
    let addr = clamd_test_addr();
    let scanner = ClamdScanner::from_addr(&addr)
        .unwrap_or_else(|e| panic!("INTAKE_TEST_CLAMD_ADDR is not a valid address: {e}"));
    reachable_or_skip(scanner, &addr).await
}

/// The address of the real clamd, if it answers PING (for an app's settings).
pub async fn clamd_addr() -> Option<String> {
    live_clamd().await.map(|_| clamd_test_addr())
}

/// `scanner` (at `addr`) if it answers PING; see the module docs for what happens if not.
pub async fn reachable_or_skip(scanner: ClamdScanner, addr: &str) -> Option<ClamdScanner> {
    match scanner.ping().await {
        Ok(()) => Some(scanner),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "clamd not reachable at {addr} ({e}); CI=true requires it: run `bash .ci/clamd.sh` first"
        ),
        Err(e) => {
            eprintln!(
                "skipping: clamd not reachable at {addr} ({e}); run `bash .ci/clamd.sh` to start one"
            );
            None
        }
    }
}
