//! Whether this instance can serve: its store answers a read and its key service issues a data
//! key. The check needs no bearer token, so its result is reused for a few seconds and one
//! check runs at a time: however often it is asked, it costs the store and the key service
//! (KMS on AWS back-ends) at most one call each per interval.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Keyport;
use crate::ports::PageRequest;

/// How long a check's result is served again.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// Which dependencies answered; nothing more (no error text: the check is unauthenticated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub store: bool,
    pub keys: bool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.store && self.keys
    }
}

/// The last check, and the lock that keeps checks one at a time.
#[derive(Default)]
pub(crate) struct ReadinessProbe {
    last: Mutex<Option<(Instant, Readiness)>>,
}

impl Keyport {
    pub async fn readiness(&self) -> Readiness {
        let mut last = self.readiness.last.lock().await;
        if let Some((at, readiness)) = *last
            && at.elapsed() < FRESH_FOR
        {
            return readiness;
        }
        let store = match self.store.list_connections(PageRequest::first(1)).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "readiness: the store does not answer");
                false
            }
        };
        let keys = match self.cipher.check_key_service().await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "readiness: the key service does not answer");
                false
            }
        };
        let readiness = Readiness { store, keys };
        *last = Some((Instant::now(), readiness));
        readiness
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use zeroize::Zeroizing;

    use super::*;
    use crate::crypto::{EnvelopeCipher, KeyCacheLimits};
    use crate::domain::UrlPolicy;
    use crate::ports::{DataKey, DataKeyProvider, KeyContext, KeyError};
    use crate::service::{KeyportSettings, keyport_for_tests};

    /// A key service that can be taken down, counting the data keys asked of it.
    #[derive(Default)]
    struct SwitchableKeys {
        down: AtomicBool,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl DataKeyProvider for SwitchableKeys {
        async fn generate_data_key(&self, _: &KeyContext) -> Result<DataKey, KeyError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(KeyError::Unavailable("switched off".into()));
            }
            Ok(DataKey {
                plaintext: Zeroizing::new([7; 32]),
                wrapped: vec![1, 2, 3],
            })
        }

        async fn decrypt_data_key(
            &self,
            _: &[u8],
            _: &KeyContext,
        ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
            unreachable!("readiness only seals")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_names_what_fails_and_asks_at_most_once_per_interval() {
        let data = tempfile::tempdir().unwrap();
        let mut backends = crate::config::embedded_backends(data.path()).unwrap();
        let keys = Arc::new(SwitchableKeys::default());
        backends.cipher = Arc::new(EnvelopeCipher::new(keys.clone(), KeyCacheLimits::default()));
        let keyport = keyport_for_tests(backends, KeyportSettings::new(UrlPolicy::Production));

        let ready = keyport.readiness().await;
        assert_eq!(
            ready,
            Readiness {
                store: true,
                keys: true
            }
        );
        assert!(ready.is_ready());
        keys.down.store(true, Ordering::SeqCst);
        // Asked again at once: the last answer, no new call.
        assert!(keyport.readiness().await.is_ready());
        assert_eq!(keys.asked.load(Ordering::SeqCst), 1);

        tokio::time::advance(FRESH_FOR).await;
        let not_ready = keyport.readiness().await;
        assert_eq!(
            not_ready,
            Readiness {
                store: true,
                keys: false
            }
        );
        assert!(!not_ready.is_ready());
        assert_eq!(keys.asked.load(Ordering::SeqCst), 2);
    }
}
