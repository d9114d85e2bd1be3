//! Live and replayable upload messages. Every message for an upload's sockets is
//! appended to the upload's log in the database first; sockets tail that log, so a
//! socket on any node sees what a worker on any other node wrote. A process-wide
//! wake-up makes local delivery immediate; a short poll covers other nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use crate::db::Db;

/// Wakes local socket tails when a message is appended.
#[derive(Debug)]
pub struct Hub {
    tx: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: watch::channel(0).0,
        }
    }
}

impl Hub {
    /// Signals that some upload's log grew.
    pub fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes on every append in this process.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// Appends `message` to `upload_id`'s log and wakes local tails.
pub async fn publish(
    db: &Db,
    hub: &Hub,
    upload_id: &str,
    message: &Value,
) -> Result<i64, sqlx::Error> {
    let id = db.append_message(upload_id, &message.to_string()).await?;
    hub.notify();
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

/// Counts open sockets per user on this node and enforces the cap.
#[derive(Debug, Default)]
pub struct SocketLimiter {
    counts: Mutex<HashMap<i64, u32>>,
}

/// Holds one socket slot; released on drop.
#[derive(Debug)]
pub struct SocketSlot {
    limiter: Arc<SocketLimiter>,
    user_id: i64,
}

impl SocketLimiter {
    /// Takes a slot for `user_id` unless the user already holds `max`.
    pub fn acquire(self: &Arc<Self>, user_id: i64, max: u32) -> Option<SocketSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(user_id).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        crate::telemetry::socket_open(1.0);
        Some(SocketSlot {
            limiter: self.clone(),
            user_id,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self
            .limiter
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.user_id) {
            *n -= 1;
            crate::telemetry::socket_open(-1.0);
            if *n == 0 {
                counts.remove(&self.user_id);
            }
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

    #[test]
    fn limiter_caps_and_releases() {
        let limiter = Arc::new(SocketLimiter::default());
        let a = limiter.acquire(1, 2).unwrap();
        let _b = limiter.acquire(1, 2).unwrap();
        assert!(limiter.acquire(1, 2).is_none());
        assert!(limiter.acquire(2, 2).is_some());
        drop(a);
        assert!(limiter.acquire(1, 2).is_some());
    }
}
