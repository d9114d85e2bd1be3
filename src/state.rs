//! The shared state of a running node, built by `app` and handed to the HTTP and
//! socket edges (cloned per request). The services below the edges never take it
//! whole: each gets the narrow handles it needs ([`Uploads`], [`History`], [`Db`]).

use std::sync::Arc;

use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::db::Db;
use crate::history::History;
use crate::live::SocketLimiter;
use crate::store::ObjectStore;
use crate::uploads::Uploads;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The settings in force.
    pub settings: Arc<Settings>,
    /// The metadata database.
    pub db: Db,
    /// The object store (embedded or external S3).
    pub store: Arc<dyn ObjectStore>,
    /// The Object Record upload flow (socket messages, workers).
    pub uploads: Uploads,
    /// The Event History API service.
    pub history: Arc<History>,
    /// JWT keys.
    pub jwt: Arc<JwtKeys>,
    /// Per-user cap on open upload sockets (across the cluster).
    pub sockets: Arc<SocketLimiter>,
}
