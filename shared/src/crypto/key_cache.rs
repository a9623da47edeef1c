//! A bounded cache of unwrapped data keys, so a warm read decrypts without calling KMS.
//! Bounded in count (least recently used goes first) and in age (a key is re-fetched from the
//! key service after `max_age`, which bounds how long a revoked KMS grant keeps working).
//! Since many values share one data key, concurrent misses for the same key wait for one
//! unwrap instead of each paying a Decrypt.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::LessSafeKey;
use lru::LruCache;

use crate::ports::KeyError;

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
/// context are a miss, and go to the key service, which refuses them.
pub(crate) struct DataKeyCache {
    limits: KeyCacheLimits,
    entries: Mutex<LruCache<Vec<u8>, Entry>>,
    /// One gate per cache key being unwrapped; gone when its last waiter is done.
    unwrapping: Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
}

impl DataKeyCache {
    pub(crate) fn new(limits: KeyCacheLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(LruCache::new(limits.max_entries)),
            unwrapping: Mutex::new(HashMap::new()),
        }
    }

    /// The cached key, or the one `unwrap` returns (then cached). Of concurrent callers
    /// missing the same key, one unwraps and the rest take its result.
    pub(crate) async fn get_or_unwrap<F, Fut>(
        &self,
        cache_key: Vec<u8>,
        unwrap: F,
    ) -> Result<Arc<LessSafeKey>, KeyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<LessSafeKey>, KeyError>>,
    {
        if let Some(key) = self.get(&cache_key, Instant::now()) {
            return Ok(key);
        }
        let gate = lock(&self.unwrapping)
            .entry(cache_key.clone())
            .or_default()
            .clone();
        let result = {
            let _turn = gate.lock().await;
            match self.get(&cache_key, Instant::now()) {
                Some(key) => Ok(key),
                None => unwrap().await.inspect(|key| {
                    self.insert(cache_key.clone(), key.clone(), Instant::now());
                }),
            }
        };
        let mut unwrapping = lock(&self.unwrapping);
        // The map's reference and this one: nobody else waits at this gate.
        if Arc::strong_count(&gate) == 2 {
            unwrapping.remove(&cache_key);
        }
        result
    }

    pub(crate) fn cache_key(context: &[u8], wrapped: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(4 + context.len() + wrapped.len());
        key.extend_from_slice(&(context.len() as u32).to_be_bytes());
        key.extend_from_slice(context);
        key.extend_from_slice(wrapped);
        key
    }

    pub(crate) fn get(&self, cache_key: &[u8], now: Instant) -> Option<Arc<LessSafeKey>> {
        let mut entries = lock(&self.entries);
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
        lock(&self.entries).put(cache_key, Entry { key, inserted: now });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    #[tokio::test]
    async fn concurrent_misses_for_one_key_unwrap_once() {
        let cache = Arc::new(DataKeyCache::new(KeyCacheLimits::default()));
        let unwraps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (cache, unwraps) = (cache.clone(), unwraps.clone());
            tasks.spawn(async move {
                cache
                    .get_or_unwrap(b"k".to_vec(), || async {
                        // Held long enough for every other task to arrive at the gate.
                        tokio::task::yield_now().await;
                        unwraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(key())
                    })
                    .await
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        assert_eq!(unwraps.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            cache.unwrapping.lock().unwrap().is_empty(),
            "no gate is left behind"
        );
    }

    #[tokio::test]
    async fn a_failed_unwrap_is_not_cached() {
        let cache = DataKeyCache::new(KeyCacheLimits::default());
        let failed = cache
            .get_or_unwrap(b"k".to_vec(), || async { Err(KeyError::Integrity) })
            .await;
        assert!(matches!(failed, Err(KeyError::Integrity)));
        assert_eq!(cache.len(), 0);
        assert!(
            cache
                .get_or_unwrap(b"k".to_vec(), || async { Ok(key()) })
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_context_is_part_of_the_key() {
        assert_ne!(
            DataKeyCache::cache_key(b"ab", b"c"),
            DataKeyCache::cache_key(b"a", b"bc")
        );
    }
}
