//! intake: takes files into a records platform safely and fast.
//!
//! The modules follow the data's way through the system: `config` and `app` start
//! it and build the shared `state`; `http` is the REST edge and `ws` the upload
//! socket, speaking `protocol`; `uploads` is the seed's upload flow (presign,
//! complete, then the worker's `process` steps: verify, scan, extract, save,
//! records); `domain` holds the validated types and typed states; `live` carries
//! messages to sockets; `db`, `store` and `scan` are the adapters to the database,
//! the object store and clamd. `history` is the Event History API (tenants, their
//! files and events), served by `http::history`. `client` is the other side: the
//! uploader behind `intake upload`.

pub mod app;
pub mod auth;
pub mod bus;
pub mod cause;
pub mod client;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod history;
pub mod http;
pub mod live;
pub mod protocol;
pub mod scan;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod uploads;
pub mod ws;
