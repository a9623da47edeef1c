//! The data key a process seals with, one per purpose, reused for a bounded time and a bounded
//! number of values, so sealing costs the key service one call per key lifetime instead of
//! one per write.
//!
//! Both bounds matter. The count keeps random 96-bit nonces far from colliding under one key
//! (NIST SP 800-38D allows 2^32 messages per key with random nonces; 2^20 leaves a collision
//! chance below 2^-57). The age bounds how long one process keeps writing under a data key
//! after its KMS key policy or grants change, and keeps epochs short-lived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::time::Instant;

use super::random_bytes;
use crate::ports::{DataKeyProvider, KeyContext, KeyError};

#[derive(Debug, Clone, Copy)]
pub struct SealingLimits {
    /// A sealing key is replaced after this long.
    pub max_age: Duration,
    /// A sealing key is replaced after sealing this many values.
    pub max_messages: u64,
}

impl Default for SealingLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(5 * 60),
            max_messages: 1 << 20,
        }
    }
}

/// A data key to seal with, and what a reader needs to unwrap it.
pub(crate) struct SealingKey {
    pub key: Arc<LessSafeKey>,
    pub wrapped: Vec<u8>,
    pub epoch: String,
    /// The context the key service bound `wrapped` to: purpose and epoch.
    pub context: KeyContext,
}

struct Current {
    key: Arc<SealingKey>,
    born: Instant,
    uses: u64,
}

/// The slot of one purpose. The async lock is held across the key service call, so concurrent
/// sealers wait for one refill instead of each asking for a key.
type Slot = Arc<tokio::sync::Mutex<Option<Current>>>;

pub(crate) struct SealingKeys {
    limits: SealingLimits,
    slots: Mutex<HashMap<String, Slot>>,
}

/// A key's one-line identity in its context: random, so no two processes share an epoch.
fn new_epoch() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

pub(crate) fn aead_key(plaintext: &[u8; 32]) -> Arc<LessSafeKey> {
    Arc::new(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, plaintext).expect("AES-256 takes a 32-byte key"),
    ))
}

impl SealingKeys {
    pub(crate) fn new(limits: SealingLimits) -> Self {
        Self {
            limits,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, purpose: &str) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(purpose.to_owned()).or_default().clone()
    }

    /// The key to seal one value of `item`'s purpose with, counted as used; `true` beside it
    /// when the key is new, for the caller to remember it for reading.
    pub(crate) async fn take(
        &self,
        item: &KeyContext,
        provider: &dyn DataKeyProvider,
    ) -> Result<(Arc<SealingKey>, bool), KeyError> {
        let slot = self.slot(item.purpose());
        let mut current = slot.lock().await;
        if let Some(live) = current.as_mut()
            && live.uses < self.limits.max_messages
            && live.born.elapsed() < self.limits.max_age
        {
            live.uses += 1;
            return Ok((live.key.clone(), false));
        }
        let epoch = new_epoch();
        let context = item.data_key(&epoch);
        let data_key = provider.generate_data_key(&context).await?;
        let key = Arc::new(SealingKey {
            key: aead_key(&data_key.plaintext),
            wrapped: data_key.wrapped,
            epoch,
            context,
        });
        *current = Some(Current {
            key: key.clone(),
            born: Instant::now(),
            uses: 1,
        });
        Ok((key, true))
    }
}
