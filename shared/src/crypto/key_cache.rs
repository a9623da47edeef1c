//! A bounded cache of unwrapped data keys, so a warm read decrypts without calling KMS.
//! Bounded in count (least recently used goes first) and in age (a key is re-fetched from the
//! key service after `max_age`, which bounds how long a revoked KMS grant keeps working).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::LessSafeKey;
use lru::LruCache;

#[derive(Debug, Clone, Copy)]
pub struct KeyCacheLimits {
    pub max_entries: NonZeroUsize,
    pub max_age: Duration,
}

impl Default for KeyCacheLimits {
    fn default() -> Self {
        Self {
            max_entries: NonZeroUsize::new(10_000).expect("non-zero"),
            max_age: Duration::from_secs(15 * 60),
        }
    }
}

struct Entry {
    key: Arc<LessSafeKey>,
    inserted: Instant,
}

/// Keyed by the wrapped key *and* its context: the same wrapped bytes presented for another
/// item are a miss, and go to the key service, which refuses them.
pub(crate) struct DataKeyCache {
    limits: KeyCacheLimits,
    entries: Mutex<LruCache<Vec<u8>, Entry>>,
}

impl DataKeyCache {
    pub(crate) fn new(limits: KeyCacheLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(LruCache::new(limits.max_entries)),
        }
    }

    pub(crate) fn cache_key(context: &[u8], wrapped: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(4 + context.len() + wrapped.len());
        key.extend_from_slice(&(context.len() as u32).to_be_bytes());
        key.extend_from_slice(context);
        key.extend_from_slice(wrapped);
        key
    }

    pub(crate) fn get(&self, cache_key: &[u8], now: Instant) -> Option<Arc<LessSafeKey>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh = entries
            .get(cache_key)
            .map(|entry| now.saturating_duration_since(entry.inserted) < self.limits.max_age)?;
        if fresh {
            entries.get(cache_key).map(|entry| entry.key.clone())
        } else {
            entries.pop(cache_key);
            None
        }
    }

    pub(crate) fn insert(&self, cache_key: Vec<u8>, key: Arc<LessSafeKey>, now: Instant) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.put(cache_key, Entry { key, inserted: now });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{AES_256_GCM, UnboundKey};

    fn key() -> Arc<LessSafeKey> {
        Arc::new(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap(),
        ))
    }

    #[test]
    fn entries_expire_after_max_age() {
        let cache = DataKeyCache::new(KeyCacheLimits {
            max_entries: NonZeroUsize::new(4).unwrap(),
            max_age: Duration::from_secs(60),
        });
        let start = Instant::now();
        cache.insert(b"k".to_vec(), key(), start);
        assert!(cache.get(b"k", start + Duration::from_secs(59)).is_some());
        assert!(cache.get(b"k", start + Duration::from_secs(60)).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped");
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = DataKeyCache::new(KeyCacheLimits {
            max_entries: NonZeroUsize::new(2).unwrap(),
            max_age: Duration::from_secs(60),
        });
        let now = Instant::now();
        cache.insert(b"a".to_vec(), key(), now);
        cache.insert(b"b".to_vec(), key(), now);
        assert!(cache.get(b"a", now).is_some());
        cache.insert(b"c".to_vec(), key(), now);
        assert!(cache.get(b"b", now).is_none());
        assert!(cache.get(b"a", now).is_some());
        assert!(cache.get(b"c", now).is_some());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_context_is_part_of_the_key() {
        assert_ne!(
            DataKeyCache::cache_key(b"ab", b"c"),
            DataKeyCache::cache_key(b"a", b"bc")
        );
    }
}
