//! The cross-node wake-up of upload sockets on PostgreSQL: `LISTEN/NOTIFY` on one
//! channel, one listening connection per node (not per socket).
//!
//! A notice is sent after the write that grew the log committed, on its own
//! autocommitted statement, never inside the record, file or job transactions (a
//! transaction with a pending `NOTIFY` takes a database-wide lock at commit).
//! Notices are coalesced to at most one per upload per [`COALESCE`]; the last one of
//! a burst is sent at the end of its interval, so nothing is lost, only merged.
//! Each carries the sending node's id, so a node ignores its own. When the
//! listening connection drops, the node reconnects and wakes all its sockets (it
//! may have missed notices); every socket also reads its log on a slow fallback
//! poll (`INTAKE_SOCKET_POLL`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::live::{Bus, Hub};

/// The channel every node listens on.
pub const CHANNEL: &str = "intake_upload_log";

/// At most one notice per upload per this interval. Not the 250 ms progress
/// throttle: a monitoring and a progress message often follow each other within a
/// few milliseconds, and at 250 ms the second one waited ~220 ms (measured: median
/// A→B delivery 213 ms); at 50 ms an upload costs at most 20 notices a second and a
/// message waits at most 50 ms.
pub const COALESCE: Duration = Duration::from_millis(50);

/// The PostgreSQL bus of one node.
#[derive(Debug)]
pub struct PgBus {
    tx: mpsc::UnboundedSender<String>,
}

impl Bus for PgBus {
    fn publish(&self, upload_id: &str) {
        let _ = self.tx.send(upload_id.to_string());
    }
}

impl PgBus {
    /// Starts the node's listener (on `url`) and publisher (on `db`'s pool), both
    /// until `shutdown`, and puts the bus under `hub`.
    pub fn start(url: String, db: Db, hub: Arc<Hub>, shutdown: CancellationToken) {
        let node = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(publish(db, node.clone(), rx, shutdown.clone()));
        tokio::spawn(listen(url, node, hub.clone(), shutdown));
        hub.set_bus(Arc::new(PgBus { tx }));
    }
}

/// Sends the queued notices, coalesced per upload.
async fn publish(
    db: Db,
    node: String,
    mut rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            got = rx.recv() => match got {
                Some(upload) => {
                    let now = Instant::now();
                    match sent.get(&upload) {
                        Some(at) if now.duration_since(*at) < COALESCE => {
                            pending.entry(upload).or_insert(*at + COALESCE);
                        }
                        _ => {
                            notify(&db, &node, &upload).await;
                            sent.insert(upload, now);
                            // Only the last interval matters: the map stays as small
                            // as the set of uploads active in it.
                            if sent.len() > 1024 {
                                sent.retain(|_, at| now.duration_since(*at) < COALESCE);
                            }
                        }
                    }
                }
                None => return,
            },
            () = async {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(u, _)| u.clone())
                    .collect();
                for upload in due {
                    pending.remove(&upload);
                    notify(&db, &node, &upload).await;
                    sent.insert(upload, now);
                }
                sent.retain(|_, at| now.duration_since(*at) < COALESCE);
            }
            () = shutdown.cancelled() => return,
        }
    }
}

async fn notify(db: &Db, node: &str, upload: &str) {
    let payload = format!("{node}:{upload}");
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&db.pool)
        .await
    {
        tracing::debug!(error = %e, "sending a socket wake-up");
    }
}

/// Listens for other nodes' notices and wakes the sockets of their uploads;
/// reconnects (waking every socket) when the connection drops.
async fn listen(url: String, node: String, hub: Arc<Hub>, shutdown: CancellationToken) {
    let own = format!("{node}:");
    let mut first = true;
    while !shutdown.is_cancelled() {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "connecting the socket wake-up listener");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "listening for socket wake-ups");
            continue;
        }
        if !first {
            hub.wake_all();
        }
        first = false;
        loop {
            tokio::select! {
                got = listener.try_recv() => match got {
                    Ok(Some(n)) => {
                        if let Some((from, upload)) = n.payload().split_once(':')
                            && !n.payload().starts_with(&own)
                            && !from.is_empty()
                        {
                            hub.wake(upload);
                        }
                    }
                    // The connection dropped (and was re-established by sqlx
                    // for the next call): notices may be lost.
                    Ok(None) => hub.wake_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "socket wake-up listener failed");
                        break;
                    }
                },
                () = shutdown.cancelled() => return,
            }
        }
    }
}
