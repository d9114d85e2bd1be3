//! What the history targets compile of `src/history/`: the parser files themselves,
//! under a stand-in for the module's error type (the real one carries axum responses,
//! which the parsers never build).

/// The variants of `src/history/error.rs` the parser files construct.
#[allow(dead_code)]
#[derive(Debug)]
pub enum HistoryError {
    Invalid(String),
    TenantNotFound(String),
}

#[allow(dead_code)]
#[path = "../../src/history/events.rs"]
pub mod events;
#[allow(dead_code)]
#[path = "../../src/history/keys.rs"]
pub mod keys;
#[allow(dead_code)]
#[path = "../../src/history/tenants.rs"]
pub mod tenants;
