//! A connection's client credentials kept per process for a bounded time, so a refresh does
//! not read the secret store (a Secrets Manager GetSecretValue per secret on AWS) every time.
//!
//! An entry belongs to one version of its connection: a PATCH that changes a secret bumps the
//! version, so a changed secret is never served from here. A secret rotated outside Keyport is
//! found when the provider answers `invalid_client`, which drops the entry. The age bound
//! caps how long a secret rotated outside Keyport, at a provider that keeps accepting the old
//! one, goes unseen. Values stay in their `secrecy` wrappers.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::domain::{Connection, ConnectionId};
use crate::oauth::ClientCredentials;

#[derive(Debug, Clone, Copy)]
pub struct CredentialCacheLimits {
    pub max_entries: NonZeroUsize,
    pub max_age: Duration,
}

impl Default for CredentialCacheLimits {
    fn default() -> Self {
        Self {
            max_entries: NonZeroUsize::new(1_000).expect("non-zero"),
            max_age: Duration::from_secs(5 * 60),
        }
    }
}

struct Entry {
    version: u64,
    credentials: Arc<ClientCredentials>,
    loaded: Instant,
}

pub(crate) struct CredentialCache {
    limits: CredentialCacheLimits,
    entries: Mutex<LruCache<ConnectionId, Entry>>,
    /// One gate per connection whose credentials are being read right now, so that the many
    /// refreshes of a cold process that need one connection's secret at once wait for one read
    /// instead of each reading it.
    loading: Mutex<HashMap<ConnectionId, Weak<tokio::sync::Mutex<()>>>>,
}

impl CredentialCache {
    pub(crate) fn new(limits: CredentialCacheLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(LruCache::new(limits.max_entries)),
            loading: Mutex::new(HashMap::new()),
        }
    }

    /// The gate that readers of `id`'s credentials pass one at a time: whoever holds it reads
    /// and caches, whoever waited finds the cache filled.
    pub(crate) fn loading_gate(&self, id: &ConnectionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut loading = self
            .loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(gate) = loading.get(id).and_then(Weak::upgrade) {
            return gate;
        }
        // Only reads in progress hold a gate: the others' leftovers go, so this stays small.
        loading.retain(|_, gate| gate.strong_count() > 0);
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        loading.insert(id.clone(), Arc::downgrade(&gate));
        gate
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<ConnectionId, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The credentials loaded for this very version of the connection, if still fresh.
    pub(crate) fn get(&self, connection: &Connection) -> Option<Arc<ClientCredentials>> {
        let mut entries = self.entries();
        let entry = entries.get(&connection.id)?;
        if entry.version == connection.version && entry.loaded.elapsed() < self.limits.max_age {
            return Some(entry.credentials.clone());
        }
        entries.pop(&connection.id);
        None
    }

    pub(crate) fn insert(&self, connection: &Connection, credentials: Arc<ClientCredentials>) {
        self.entries().put(
            connection.id.clone(),
            Entry {
                version: connection.version,
                credentials,
                loaded: Instant::now(),
            },
        );
    }

    pub(crate) fn forget(&self, id: &ConnectionId) {
        self.entries().pop(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientSecret, ConnectionInput, UrlPolicy};

    fn connection() -> Connection {
        let input: ConnectionInput = serde_json::from_value(serde_json::json!({
            "name": "cached", "grant_type": "client_credentials", "client_id": "abc",
            "client_secret": "s0", "token_url": "https://idp.example/token",
        }))
        .unwrap();
        Connection::create(input, chrono::Utc::now(), UrlPolicy::Production)
            .unwrap()
            .0
    }

    fn credentials(secret: &str) -> Arc<ClientCredentials> {
        Arc::new(ClientCredentials {
            client_secret: Some(ClientSecret::new(secret)),
            ..ClientCredentials::default()
        })
    }

    fn secret_of(credentials: &ClientCredentials) -> &str {
        credentials.client_secret.as_ref().unwrap().expose_secret()
    }

    fn cache() -> CredentialCache {
        CredentialCache::new(CredentialCacheLimits {
            max_entries: NonZeroUsize::new(2).unwrap(),
            max_age: Duration::from_secs(300),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_max_age() {
        let cache = cache();
        let connection = connection();
        cache.insert(&connection, credentials("s1"));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(secret_of(&cache.get(&connection).unwrap()), "s1");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&connection).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped");
    }

    #[tokio::test]
    async fn another_version_of_the_connection_misses() {
        let cache = cache();
        let mut connection = connection();
        cache.insert(&connection, credentials("s1"));
        connection.version += 1;
        assert!(cache.get(&connection).is_none());
        cache.insert(&connection, credentials("s2"));
        assert_eq!(secret_of(&cache.get(&connection).unwrap()), "s2");
        connection.version -= 1;
        assert!(
            cache.get(&connection).is_none(),
            "nor is an older one served"
        );
    }

    #[tokio::test]
    async fn readers_of_one_connection_share_a_gate_while_it_is_held() {
        let cache = cache();
        let (one, other) = (connection(), connection());
        let gate = cache.loading_gate(&one.id);
        assert!(Arc::ptr_eq(&gate, &cache.loading_gate(&one.id)));
        assert!(!Arc::ptr_eq(&gate, &cache.loading_gate(&other.id)));
        let held = gate.clone().lock_owned().await;
        assert!(
            cache.loading_gate(&one.id).try_lock().is_err(),
            "the read in progress"
        );
        drop(held);
        drop(gate);
        let _fresh = cache.loading_gate(&other.id);
        assert_eq!(
            cache.loading.lock().unwrap().len(),
            1,
            "a gate nobody holds is dropped"
        );
    }

    #[tokio::test]
    async fn forgetting_drops_the_entry() {
        let cache = cache();
        let connection = connection();
        cache.insert(&connection, credentials("s1"));
        cache.forget(&connection.id);
        assert!(cache.get(&connection).is_none());
    }

    #[tokio::test]
    async fn the_least_recently_used_connection_goes_first() {
        let cache = cache();
        let (a, b, c) = (connection(), connection(), connection());
        cache.insert(&a, credentials("a"));
        cache.insert(&b, credentials("b"));
        assert!(cache.get(&a).is_some());
        cache.insert(&c, credentials("c"));
        assert!(cache.get(&b).is_none());
        assert!(cache.get(&a).is_some() && cache.get(&c).is_some());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn cached_credentials_do_not_print_their_secrets() {
        let printed = format!("{:?}", credentials("very-secret-value"));
        assert!(!printed.contains("very-secret-value"), "{printed}");
    }
}
