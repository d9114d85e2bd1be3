//! A small in-memory cache with a time-to-live, so that authenticating a request and
//! resolving its tenant do not query the database every time. An entry is trusted for
//! at most the TTL; that is the bound on how long a change made elsewhere (another
//! node, the admin CLI) goes unseen here. A TTL of zero turns caching off.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Entries kept at most; beyond it expired entries are dropped, then all of them
/// (callers may put attacker-chosen keys in, so the size must stay bounded).
const MAX_ENTRIES: usize = 100_000;

/// A map from strings to `V` whose entries expire after a fixed time.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    map: RwLock<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> TtlCache<V> {
        TtlCache {
            ttl,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The value of `key` when present and younger than the TTL.
    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Remembers `value` for `key`.
    pub fn insert(&self, key: &str, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key.to_string(), (Instant::now(), value));
    }

    /// Forgets `key` (after a change made by this node).
    pub fn remove(&self, key: &str) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_ttl_caches_nothing() {
        let cache = TtlCache::new(Duration::from_secs(60));
        cache.insert("a", 1);
        assert_eq!(cache.get("a"), Some(1));
        cache.remove("a");
        assert_eq!(cache.get("a"), None);

        let off = TtlCache::new(Duration::ZERO);
        off.insert("a", 1);
        assert_eq!(off.get("a"), None);

        let short = TtlCache::new(Duration::from_millis(1));
        short.insert("a", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get("a"), None);
    }

    #[test]
    fn size_stays_bounded() {
        let cache = TtlCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            cache.insert(&i.to_string(), i);
        }
        assert!(cache.map.read().unwrap().len() <= MAX_ENTRIES);
    }
}
