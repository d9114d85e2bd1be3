//! Live and replayable upload messages. Every message for an upload's sockets is
//! appended to the upload's log in the database first; sockets tail that log, so a
//! socket on any node sees what a worker on any other node wrote. A process-wide
//! wake-up makes local delivery immediate, the [`Bus`] carries it to other nodes,
//! and one slow poll per node ([`poll_log`]) covers a lost notice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::db::Db;

/// Carries "upload X's log grew" to the other nodes (PostgreSQL `LISTEN/NOTIFY`
/// in [`crate::bus`]); a deployment could put NATS or Redis pub/sub behind it.
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Tells the other nodes; never blocks, never fails the caller (a lost
    /// notice costs a socket one fallback poll).
    fn publish(&self, upload_id: &str);
}

/// Wakes the sockets of an upload when its log grows: at once for this node's
/// writes, through the [`Bus`] for other nodes'. Only the sockets of that upload
/// wake; an idle socket costs one map entry and one watch receiver.
#[derive(Debug, Default)]
pub struct Hub {
    uploads: Mutex<HashMap<String, watch::Sender<u64>>>,
    bus: std::sync::OnceLock<Arc<dyn Bus>>,
}

impl Hub {
    /// Sends this node's notices to the other nodes through `bus` from now on.
    pub fn set_bus(&self, bus: Arc<dyn Bus>) {
        let _ = self.bus.set(bus);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signals that `upload_id`'s log grew (committed): its sockets here wake, and
    /// the other nodes are told.
    pub fn notify(&self, upload_id: &str) {
        self.wake(upload_id);
        if let Some(bus) = self.bus.get() {
            bus.publish(upload_id);
        }
    }

    /// Wakes this node's sockets of `upload_id` (a notice from another node).
    pub fn wake(&self, upload_id: &str) {
        let mut map = self.map();
        if let Some(tx) = map.get(upload_id) {
            if tx.receiver_count() == 0 {
                map.remove(upload_id);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every socket of this node (notices may have been missed: the bus
    /// reconnected).
    pub fn wake_all(&self) {
        let mut map = self.map();
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A receiver that changes whenever `upload_id`'s log grows.
    pub fn subscribe(&self, upload_id: &str) -> watch::Receiver<u64> {
        let mut map = self.map();
        // Sockets come and go: forget uploads nobody follows any more.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        map.entry(upload_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// The fallback for a lost wake-up: every `every`, one query for the uploads whose
/// log grew, and a wake for each that has sockets here. Its cost is one query per
/// node per interval, whatever the number of sockets (a poll per socket was 2,000
/// queries a second for 10,000 idle sockets at 5 s).
///
/// Each query looks back to the highest id seen two polls ago, not one: on
/// PostgreSQL ids are taken before commit, so a message may become visible after a
/// higher id did. A message whose transaction commits more than one interval after
/// taking its id is left to the hub and the bus (message writes are single short
/// statements).
pub async fn poll_log(
    db: Db,
    hub: Arc<Hub>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // What was written before this node started is replayed by each socket's
    // greeting, not by this poll.
    let mut seen = loop {
        match db.last_message_id().await {
            Ok(id) => break id,
            Err(e) => tracing::warn!(error = %e, "reading the upload log's last id"),
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
    };
    let mut from = seen;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match db.log_growth(from).await {
            Ok(grown) => {
                let before = seen;
                for (upload_id, last) in grown {
                    hub.wake(&upload_id);
                    seen = seen.max(last);
                }
                from = before;
            }
            Err(e) => tracing::warn!(error = %e, "polling the upload log"),
        }
    }
}

/// Appends `message` to `upload_id`'s log and wakes its sockets.
pub async fn publish(
    db: &Db,
    hub: &Hub,
    upload_id: &str,
    message: &Value,
) -> Result<i64, sqlx::Error> {
    let id = db.append_message(upload_id, &message.to_string()).await?;
    hub.notify(upload_id);
    Ok(id)
}

/// The key under which a message supersedes an earlier one when replaying the
/// current state: its type, step and file session.
fn replay_key(v: &Value) -> (String, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/type"), s("/message/step_name"), s("/message/upload_id"))
}

/// Reduces a log to the current state: the last message of each (type, step,
/// session), in log order.
pub fn current_state(log: Vec<(i64, String)>) -> Vec<(i64, Value)> {
    let parsed: Vec<(i64, Value)> = log
        .into_iter()
        .filter_map(|(id, text)| serde_json::from_str(&text).ok().map(|v| (id, v)))
        .collect();
    let mut last: HashMap<(String, String, String), i64> = HashMap::new();
    for (id, v) in &parsed {
        last.insert(replay_key(v), *id);
    }
    parsed
        .into_iter()
        .filter(|(id, v)| last.get(&replay_key(v)) == Some(id))
        .collect()
}

/// Counts open sockets per user and enforces the cap across the cluster: each
/// node's count per user is mirrored in the database under a lease of two thirds of
/// a heartbeat that the node renews every third ([`SocketLimiter::renew`]), so a
/// killed node's sockets stop counting within one heartbeat.
#[derive(Debug)]
pub struct SocketLimiter {
    db: Db,
    /// This process's id in `socket_leases` (a restarted node is a new one).
    node: String,
    /// How long a lease runs without renewal (two thirds of the heartbeat).
    lease: Duration,
    counts: Mutex<HashMap<i64, u32>>,
}

/// Holds one socket slot; released on drop.
#[derive(Debug)]
pub struct SocketSlot {
    limiter: Arc<SocketLimiter>,
    user_id: i64,
}

impl SocketLimiter {
    /// A limiter for this node, its leases running `lease`.
    pub fn new(db: Db, lease: Duration) -> SocketLimiter {
        SocketLimiter {
            db,
            node: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease,
            counts: Mutex::default(),
        }
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Takes a slot for `user_id` unless the user already holds `max` sockets on
    /// any node of the cluster.
    pub async fn acquire(
        self: &Arc<Self>,
        user_id: i64,
        max: u32,
    ) -> Result<Option<SocketSlot>, sqlx::Error> {
        let here = self.counts().get(&user_id).copied().unwrap_or(0);
        if here >= max {
            return Ok(None);
        }
        if !self
            .db
            .take_socket(&self.node, user_id, i64::from(max), self.lease_ms())
            .await?
        {
            return Ok(None);
        }
        *self.counts().entry(user_id).or_insert(0) += 1;
        crate::telemetry::socket_open(1.0);
        Ok(Some(SocketSlot {
            limiter: self.clone(),
            user_id,
        }))
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<i64, u32>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews this node's leases twice a lease until `shutdown`, then
    /// forgets this node's sockets at once.
    pub async fn renew(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval((self.lease / 2).max(Duration::from_millis(100)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A node without sockets writes nothing (after one pass that forgets its
        // emptied rows): an idle node costs the database no writes.
        let mut idle_cleaned = false;
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let idle = self.counts().is_empty();
                    if idle && idle_cleaned {
                        continue;
                    }
                    match self.db.renew_socket_leases(&self.node, self.lease_ms()).await {
                        Ok(()) => idle_cleaned = idle,
                        Err(e) => tracing::warn!(error = %e, "renewing the socket leases"),
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        if let Err(e) = self.db.release_node_sockets(&self.node).await {
            tracing::warn!(error = %e, "releasing the socket leases");
        }
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        if let Some(n) = counts.get_mut(&self.user_id) {
            *n -= 1;
            crate::telemetry::socket_open(-1.0);
            if *n == 0 {
                counts.remove(&self.user_id);
            }
        }
        drop(counts);
        // The database's count follows. Were this write lost (the database down
        // just then), the user would count one socket too many on this node until
        // it restarts: the cap errs on the side of refusing.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (limiter, user_id) = (self.limiter.clone(), self.user_id);
            rt.spawn(async move {
                if let Err(e) = limiter.db.release_socket(&limiter.node, user_id).await {
                    tracing::warn!(error = %e, "releasing a socket lease");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn current_state_keeps_the_last_of_each_step() {
        let log = vec![
            (1, json!({"type": "monitoring_update", "message": {"step_name": "antivirus_scan", "upload_id": "a", "status": "in_progress"}}).to_string()),
            (2, json!({"type": "progress_update", "message": {"step_name": "saving_files", "upload_id": "a", "progress_count": 1}}).to_string()),
            (3, json!({"type": "progress_update", "message": {"step_name": "saving_files", "upload_id": "a", "progress_count": 2}}).to_string()),
            (4, json!({"type": "progress_update", "message": {"step_name": "saving_files", "upload_id": "b", "progress_count": 1}}).to_string()),
        ];
        let ids: Vec<i64> = current_state(log).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![1, 3, 4]);
    }

    #[tokio::test]
    async fn limiter_caps_and_releases() {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        db.migrate().await.unwrap();
        let limiter = Arc::new(SocketLimiter::new(db.clone(), Duration::from_secs(3)));
        let a = limiter.acquire(1, 2).await.unwrap().unwrap();
        let _b = limiter.acquire(1, 2).await.unwrap().unwrap();
        assert!(limiter.acquire(1, 2).await.unwrap().is_none());
        assert!(limiter.acquire(2, 2).await.unwrap().is_some());
        // Another node's sockets count while their lease runs, not after.
        let other = Arc::new(SocketLimiter::new(db.clone(), Duration::from_millis(300)));
        drop(a);
        tokio::time::sleep(Duration::from_millis(100)).await; // the release is written
        let c = other.acquire(1, 2).await.unwrap().unwrap();
        assert!(
            limiter.acquire(1, 2).await.unwrap().is_none(),
            "one per node"
        );
        std::mem::forget(c); // the other node dies with it
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            limiter.acquire(1, 2).await.unwrap().is_some(),
            "its lease ran out"
        );
    }
}
