//! Verified tokens, keyed by the SHA-256 of the whole token. An entry lives until the token
//! expires or `max_ttl` passes, whichever is first; the cache belongs to one bundle, so a
//! reload (new keys) starts an empty one. Failures are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::digest::{digest, SHA256};

use super::Verified;

const SHARDS: usize = 16;

pub(crate) type Key = [u8; 32];

struct Entry {
    verified: Arc<Verified>,
    until: i64,
}

pub(crate) struct Cache {
    shards: Vec<Mutex<HashMap<Key, Entry>>>,
    per_shard: usize,
    max_ttl: i64,
}

impl Cache {
    pub(crate) fn new(max_entries: usize, max_ttl_seconds: u64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_entries.div_ceil(SHARDS),
            max_ttl: i64::try_from(max_ttl_seconds).unwrap_or(i64::MAX),
        }
    }

    /// Whether entries are kept at all (`max_entries` above 0).
    pub(crate) fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    pub(crate) fn key(token: &str) -> Key {
        let mut key = [0u8; 32];
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        key
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic elsewhere cannot leave an entry half-written: entries are inserted whole.
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, key: &Key, now: i64) -> Option<Arc<Verified>> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(entry) if now < entry.until => Some(Arc::clone(&entry.verified)),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: Key, verified: Arc<Verified>, now: i64) {
        let until = now
            .saturating_add(self.max_ttl)
            .min(verified.valid_until.unwrap_or(i64::MAX));
        if until <= now {
            return;
        }
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.until > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(key, Entry { verified, until });
    }
}
