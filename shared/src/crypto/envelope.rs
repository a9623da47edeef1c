//! The cipher that writes and reads the sealed format (see [`super::format`]).
//!
//! Why Keyport's own envelope over aws-lc-rs AES-256-GCM rather than the AWS Encryption SDK
//! for Rust (crate `aws-esdk`) and its hierarchical keyring, which also cuts KMS calls by
//! reusing key material:
//!
//! - The keyring keeps its branch keys in a DynamoDB key store: a second table to provision,
//!   grant, back up and never delete (without it nothing decrypts).
//! - A cold process first reads the active branch key from that table and asks KMS to decrypt
//!   it, so a cold token read is two DynamoDB requests and one KMS request, where Keyport's is
//!   one of each (README benchmark row 3).
//! - Its KMS calls carry the branch key's own encryption context, not `keyport:purpose`, so
//!   the IAM conditions in `infra/template.yaml` would have to be rewritten around it.
//! - The crate is Dafny-generated code with its own runtime (`dafny-runtime`, plus `dashmap`,
//!   `pem`, `rand`, `cpu-time`), and every function's bootstrap has an 8 MB budget (README
//!   benchmark row 5) that the build already fills; its size was not measured here.
//! - Its message format (algorithm suites, key commitment, signed headers) would be a third
//!   format beside versions 1 and 2, which must stay readable anyway.
//!
//! What Keyport needs is small: one data key per purpose reused for a bounded time and count,
//! its KMS context naming only purpose and epoch (so the IAM condition on `keyport:purpose`
//! holds), and the item binding in the associated data.

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use zeroize::Zeroizing;

use super::format::{self, Parsed, TAG_LEN};
use super::key_cache::{DataKeyCache, KeyCacheLimits};
use super::random_bytes;
use super::sealing_key::{SealingKeys, SealingLimits, aead_key};
use crate::domain::TokenSecrets;
use crate::ports::{DataKeyProvider, KeyContext, KeyError, TokenKey};

const AAD_LABEL: &[u8] = b"keyport-envelope";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("the sealed value uses format version {0}, which this Keyport does not read")]
    UnsupportedVersion(u8),
    #[error("integrity check failed: the sealed value does not belong to this item or was altered")]
    Integrity,
    #[error("the key service failed: {0}")]
    KeyService(String),
    #[error("the decrypted value is not valid token material")]
    Plaintext,
}

impl From<KeyError> for CryptoError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Integrity => CryptoError::Integrity,
            other => CryptoError::KeyService(other.to_string()),
        }
    }
}

fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + header.len() + context.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

/// The context the data key of `parsed` was wrapped under: the item's own in version 1, its
/// purpose and epoch in version 2.
fn data_key_context(item: &KeyContext, parsed: &Parsed<'_>) -> KeyContext {
    match parsed.epoch {
        Some(epoch) => item.data_key(epoch),
        None => item.clone(),
    }
}

/// Seals with a data key per purpose from a [`DataKeyProvider`], reused within
/// [`SealingLimits`], and opens with unwrapped keys remembered in a bounded cache.
pub struct EnvelopeCipher {
    keys: Arc<dyn DataKeyProvider>,
    cache: DataKeyCache,
    sealing: SealingKeys,
}

impl EnvelopeCipher {
    pub fn new(keys: Arc<dyn DataKeyProvider>, limits: KeyCacheLimits) -> Self {
        Self::with_sealing_limits(keys, limits, SealingLimits::default())
    }

    pub fn with_sealing_limits(
        keys: Arc<dyn DataKeyProvider>,
        limits: KeyCacheLimits,
        sealing: SealingLimits,
    ) -> Self {
        Self {
            keys,
            cache: DataKeyCache::new(limits),
            sealing: SealingKeys::new(sealing),
        }
    }

    /// Asks the key service for a data key and discards it: a readiness check must reach the
    /// service itself, which sealing, served by a reused key, does not.
    pub async fn check_key_service(&self) -> Result<(), CryptoError> {
        self.keys
            .generate_data_key(&KeyContext::readiness_probe())
            .await?;
        Ok(())
    }

    pub async fn seal(
        &self,
        context: &KeyContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let (sealing, new) = self.sealing.take(context, self.keys.as_ref()).await?;
        if new {
            // The writer is often the next reader, and so are the other values sealed under
            // this key: remember it so their reads are warm.
            self.cache.insert(
                DataKeyCache::cache_key(&sealing.context.canonical_bytes(), &sealing.wrapped),
                sealing.key.clone(),
                Instant::now(),
            );
        }
        let mut sealed = format::header_v2(&sealing.wrapped, &sealing.epoch)?;
        sealed.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
        let aad = associated_data(&sealed, &context.canonical_bytes());
        let nonce = random_bytes::<NONCE_LEN>();
        sealed.extend_from_slice(&nonce);
        let mut in_out = plaintext.to_vec();
        sealing
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    pub async fn open(
        &self,
        context: &KeyContext,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let parsed = format::parse(sealed)?;
        let key = self.unwrap_key(context, &parsed).await?;
        let aad = associated_data(parsed.header, &context.canonical_bytes());
        let mut in_out = Zeroizing::new(parsed.ciphertext.to_vec());
        let len = key
            .open_in_place(
                Nonce::assume_unique_for_key(parsed.nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Integrity)?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }

    async fn unwrap_key(
        &self,
        item: &KeyContext,
        parsed: &Parsed<'_>,
    ) -> Result<Arc<LessSafeKey>, CryptoError> {
        let context = data_key_context(item, parsed);
        let cache_key = DataKeyCache::cache_key(&context.canonical_bytes(), parsed.wrapped);
        let key = self
            .cache
            .get_or_unwrap(cache_key, || async {
                let plaintext = self.keys.decrypt_data_key(parsed.wrapped, &context).await?;
                Ok(aead_key(&plaintext))
            })
            .await?;
        Ok(key)
    }

    pub async fn seal_token(
        &self,
        key: &TokenKey,
        secrets: &TokenSecrets,
    ) -> Result<Vec<u8>, CryptoError> {
        self.seal(&KeyContext::token(key), &secrets.to_plaintext())
            .await
    }

    pub async fn open_token(
        &self,
        key: &TokenKey,
        sealed: &[u8],
    ) -> Result<TokenSecrets, CryptoError> {
        let plaintext = self.open(&KeyContext::token(key), sealed).await?;
        TokenSecrets::from_plaintext(&plaintext).map_err(|_| CryptoError::Plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::format::FORMAT_VERSION;
    use super::*;
    use crate::domain::{ConnectionId, Owner, Subject};
    use crate::ports::DataKey;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A key provider that "wraps" by XOR with a fixed pad and binds the context by appending
    /// it; enough to exercise the envelope without a real key service. It counts its calls,
    /// keeps the contexts it generated under, and yields inside each call so that concurrent
    /// callers really overlap.
    #[derive(Default)]
    struct TestKeys {
        generated: Mutex<Vec<KeyContext>>,
        decrypts: AtomicUsize,
    }

    impl TestKeys {
        fn generates(&self) -> usize {
            self.generated.lock().unwrap().len()
        }

        fn decrypts(&self) -> usize {
            self.decrypts.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl DataKeyProvider for TestKeys {
        async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
            tokio::task::yield_now().await;
            self.generated.lock().unwrap().push(context.clone());
            let plaintext = random_bytes::<32>();
            let mut wrapped: Vec<u8> = plaintext.iter().map(|b| b ^ 0x5a).collect();
            wrapped.extend_from_slice(&context.canonical_bytes());
            Ok(DataKey {
                plaintext: Zeroizing::new(plaintext),
                wrapped,
            })
        }

        async fn decrypt_data_key(
            &self,
            wrapped: &[u8],
            context: &KeyContext,
        ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
            tokio::task::yield_now().await;
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            if wrapped.len() < 32 || wrapped[32..] != context.canonical_bytes()[..] {
                return Err(KeyError::Integrity);
            }
            let mut key = [0u8; 32];
            for (out, b) in key.iter_mut().zip(&wrapped[..32]) {
                *out = b ^ 0x5a;
            }
            Ok(Zeroizing::new(key))
        }
    }

    /// A key provider whose wrap binds nothing: it unwraps the same data key for any
    /// context. With it, only the AEAD's associated data stands between a ciphertext and
    /// another item, so a test over it sees that binding alone.
    struct UnboundKeys;

    #[async_trait]
    impl DataKeyProvider for UnboundKeys {
        async fn generate_data_key(&self, _context: &KeyContext) -> Result<DataKey, KeyError> {
            let plaintext = random_bytes::<32>();
            Ok(DataKey {
                wrapped: plaintext.iter().map(|b| b ^ 0x5a).collect(),
                plaintext: Zeroizing::new(plaintext),
            })
        }

        async fn decrypt_data_key(
            &self,
            wrapped: &[u8],
            _context: &KeyContext,
        ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
            let mut key = [0u8; 32];
            for (out, b) in key.iter_mut().zip(wrapped) {
                *out = b ^ 0x5a;
            }
            Ok(Zeroizing::new(key))
        }
    }

    fn unbound_cipher() -> EnvelopeCipher {
        EnvelopeCipher::new(Arc::new(UnboundKeys), KeyCacheLimits::default())
    }

    fn cipher_over(keys: &Arc<TestKeys>, sealing: SealingLimits) -> EnvelopeCipher {
        EnvelopeCipher::with_sealing_limits(keys.clone(), KeyCacheLimits::default(), sealing)
    }

    fn cipher() -> (EnvelopeCipher, Arc<TestKeys>) {
        let keys = Arc::new(TestKeys::default());
        (cipher_over(&keys, SealingLimits::default()), keys)
    }

    fn token_key() -> TokenKey {
        TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        }
    }

    /// Written by the format version 1 cipher (before data keys were reused) over
    /// [`TestKeys`], for connection `con_0123456789abcdef0123456789abcdef`, shared owner.
    const V1_SEALED: &str = "0100954e3a141a52ef77eec453ec5f1d459c27bb19dac1c6a971b563b17bd147f125a4000000126b6579706f72743a636f6e6e656374696f6e00000024636f6e5f30313233343536373839616263646566303132333435363738396162636465660000000d6b6579706f72743a6f776e6572000000067368617265640000000f6b6579706f72743a707572706f736500000005746f6b656ef771f49ded5a413f96218c5f98a6ba3905d2066ae8ac0a12bab4943917f8f9c002c0d204b6fbe7d0787b3685a0d1fdf3f3f2161077d0eb";
    const V1_PLAINTEXT: &[u8] = b"written by format version 1";

    fn v1_key() -> TokenKey {
        TokenKey {
            connection_id: ConnectionId::parse("con_0123456789abcdef0123456789abcdef").unwrap(),
            owner: Owner::Shared,
        }
    }

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn format_version_1_still_opens_under_its_own_context_only() {
        let sealed = from_hex(V1_SEALED);
        assert_eq!(sealed[0], 1);
        let (cipher, keys) = cipher();
        let context = KeyContext::token(&v1_key());
        assert_eq!(
            &cipher.open(&context, &sealed).await.unwrap()[..],
            V1_PLAINTEXT
        );
        assert_eq!(
            &cipher.open(&context, &sealed).await.unwrap()[..],
            V1_PLAINTEXT
        );
        assert_eq!(keys.decrypts(), 1, "the second open is warm");
        // Its data key is bound to the item: another token's context fails at the key service.
        let err = cipher
            .open(&KeyContext::token(&token_key()), &sealed)
            .await
            .unwrap_err();
        assert!(matches!(err, CryptoError::Integrity), "{err:?}");
        assert_eq!(keys.generates(), 0, "opening never generates");
    }

    #[tokio::test]
    async fn sealed_values_open_with_their_context() {
        let (cipher, _) = cipher();
        let context = KeyContext::token(&token_key());
        let sealed = cipher.seal(&context, b"hello").await.unwrap();
        assert_eq!(sealed[0], FORMAT_VERSION);
        assert_eq!(FORMAT_VERSION, 2);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(&cipher.open(&context, &sealed).await.unwrap()[..], b"hello");
        // And in another process, whose cache is cold.
        let (reader, _) = cipher_with_same_keys(&cipher);
        assert_eq!(&reader.open(&context, &sealed).await.unwrap()[..], b"hello");
    }

    /// Another cipher over the same key provider (a second process, sharing KMS).
    fn cipher_with_same_keys(cipher: &EnvelopeCipher) -> (EnvelopeCipher, ()) {
        (
            EnvelopeCipher::new(cipher.keys.clone(), KeyCacheLimits::default()),
            (),
        )
    }

    #[tokio::test]
    async fn the_data_key_context_names_purpose_and_epoch_not_the_item() {
        let (cipher, keys) = cipher();
        cipher
            .seal(&KeyContext::token(&token_key()), b"a")
            .await
            .unwrap();
        cipher
            .seal(&KeyContext::secret("con_x/client-secret"), b"b")
            .await
            .unwrap();
        let generated = keys.generated.lock().unwrap().clone();
        assert_eq!(generated.len(), 2, "one data key per purpose");
        for (context, purpose) in generated.iter().zip(["token", "client_secret"]) {
            let map = context.as_map();
            assert_eq!(
                map.keys().map(String::as_str).collect::<Vec<_>>(),
                ["keyport:epoch", "keyport:purpose"]
            );
            assert_eq!(map["keyport:purpose"], purpose);
        }
        assert_ne!(
            generated[0].as_map()["keyport:epoch"],
            generated[1].as_map()["keyport:epoch"]
        );
    }

    #[tokio::test]
    async fn a_v2_ciphertext_moved_to_another_token_fails_though_the_data_key_is_shared() {
        let (cipher, keys) = cipher();
        let (victim, thief) = (token_key(), token_key());
        let sealed = cipher
            .seal(&KeyContext::token(&victim), b"hello")
            .await
            .unwrap();
        // The thief's own token is sealed under the very same data key...
        let own = cipher
            .seal(&KeyContext::token(&thief), b"mine")
            .await
            .unwrap();
        assert_eq!(keys.generates(), 1);
        assert_eq!(
            format::parse(&own).unwrap().wrapped,
            format::parse(&sealed).unwrap().wrapped
        );
        // ...so the key unwraps for it, warm or cold; the associated data still refuses.
        let err = cipher
            .open(&KeyContext::token(&thief), &sealed)
            .await
            .unwrap_err();
        assert!(matches!(err, CryptoError::Integrity), "{err:?}");
        let (cold, _) = cipher_with_same_keys(&cipher);
        let err = cold
            .open(&KeyContext::token(&thief), &sealed)
            .await
            .unwrap_err();
        assert!(matches!(err, CryptoError::Integrity), "{err:?}");
        assert_eq!(
            &cold.open(&KeyContext::token(&thief), &own).await.unwrap()[..],
            b"mine"
        );
    }

    #[tokio::test]
    async fn the_associated_data_alone_binds_a_ciphertext_to_its_item() {
        let victim = token_key();
        let other_connection = token_key();
        let other_owner = TokenKey {
            connection_id: victim.connection_id.clone(),
            owner: Owner::User(Subject::parse("mallory").unwrap()),
        };
        for (what, thief) in [
            ("another connection", other_connection),
            ("another owner", other_owner),
        ] {
            let cipher = unbound_cipher();
            let sealed = cipher
                .seal(&KeyContext::token(&victim), b"hello")
                .await
                .unwrap();
            // The key provider hands back the very data key it sealed with: the wrap checks
            // nothing, so this open reaches the tag.
            let err = cipher
                .open(&KeyContext::token(&thief), &sealed)
                .await
                .unwrap_err();
            assert!(matches!(err, CryptoError::Integrity), "{what}: {err:?}");
            // A fresh cipher (cold cache, the unwrap path) refuses it as well.
            let err = unbound_cipher()
                .open(&KeyContext::token(&thief), &sealed)
                .await
                .unwrap_err();
            assert!(matches!(err, CryptoError::Integrity), "{what}: {err:?}");
            // And the ciphertext is sound: it opens in its own item.
            let opened = cipher.open(&KeyContext::token(&victim), &sealed).await;
            assert_eq!(&opened.unwrap()[..], b"hello", "{what}");
        }
    }

    #[tokio::test]
    async fn tampering_anywhere_is_detected() {
        let (cipher, _) = cipher();
        let context = KeyContext::token(&token_key());
        let sealed = cipher.seal(&context, b"hello world").await.unwrap();
        for index in 1..sealed.len() {
            let mut altered = sealed.clone();
            altered[index] ^= 1;
            assert!(
                cipher.open(&context, &altered).await.is_err(),
                "byte {index}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_and_foreign_versions_are_clear_errors() {
        let (cipher, _) = cipher();
        let context = KeyContext::token(&token_key());
        for malformed in [&[][..], &[1, 0], &[2, 0], &[2, 0, 1, 7]] {
            assert!(
                matches!(
                    cipher.open(&context, malformed).await,
                    Err(CryptoError::Malformed(_))
                ),
                "{malformed:?}"
            );
        }
        assert!(matches!(
            cipher.open(&context, &[9, 0, 0]).await,
            Err(CryptoError::UnsupportedVersion(9))
        ));
    }

    #[tokio::test]
    async fn a_cold_reader_decrypts_a_shared_data_key_once() {
        let (writer, _) = cipher();
        let keys = Arc::new(TestKeys::default());
        let reader = cipher_over(&keys, SealingLimits::default());
        let mut sealed = Vec::new();
        for _ in 0..20 {
            let key = token_key();
            sealed.push((writer.seal_token_for_tests(&key).await, key));
        }
        for _ in 0..3 {
            for (value, key) in &sealed {
                reader.open(&KeyContext::token(key), value).await.unwrap();
            }
        }
        assert_eq!(keys.decrypts(), 1);
    }

    #[tokio::test]
    async fn concurrent_cold_opens_of_one_data_key_decrypt_once() {
        let (writer, _) = cipher();
        let keys = Arc::new(TestKeys::default());
        let reader = Arc::new(cipher_over(&keys, SealingLimits::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let key = token_key();
            let value = writer.seal_token_for_tests(&key).await;
            let reader = reader.clone();
            tasks.spawn(async move { reader.open(&KeyContext::token(&key), &value).await });
        }
        while let Some(opened) = tasks.join_next().await {
            assert_eq!(&opened.unwrap().unwrap()[..], b"x");
        }
        assert_eq!(keys.decrypts(), 1);
    }

    #[tokio::test]
    async fn a_data_key_seals_at_most_max_messages_values() {
        let keys = Arc::new(TestKeys::default());
        let cipher = cipher_over(
            &keys,
            SealingLimits {
                max_age: Duration::from_secs(3600),
                max_messages: 3,
            },
        );
        let mut wrapped = Vec::new();
        for _ in 0..7 {
            let sealed = cipher.seal_token_for_tests(&token_key()).await;
            wrapped.push(format::parse(&sealed).unwrap().wrapped.to_vec());
        }
        assert_eq!(keys.generates(), 3, "7 values, 3 per key");
        assert!(wrapped[0] == wrapped[2] && wrapped[2] != wrapped[3]);
        assert!(wrapped[3] == wrapped[5] && wrapped[5] != wrapped[6]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_data_key_seals_for_at_most_max_age() {
        let keys = Arc::new(TestKeys::default());
        let cipher = cipher_over(
            &keys,
            SealingLimits {
                max_age: Duration::from_secs(300),
                max_messages: u64::MAX,
            },
        );
        cipher.seal_token_for_tests(&token_key()).await;
        tokio::time::advance(Duration::from_secs(299)).await;
        cipher.seal_token_for_tests(&token_key()).await;
        assert_eq!(keys.generates(), 1, "still young");
        tokio::time::advance(Duration::from_secs(1)).await;
        cipher.seal_token_for_tests(&token_key()).await;
        assert_eq!(keys.generates(), 2, "replaced at max_age");
    }

    #[tokio::test]
    async fn concurrent_sealers_share_one_new_data_key() {
        let keys = Arc::new(TestKeys::default());
        let cipher = Arc::new(cipher_over(&keys, SealingLimits::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let cipher = cipher.clone();
            tasks.spawn(async move { cipher.seal_token_for_tests(&token_key()).await });
        }
        let mut epochs = std::collections::BTreeSet::new();
        while let Some(sealed) = tasks.join_next().await {
            let sealed = sealed.unwrap();
            epochs.insert(format::parse(&sealed).unwrap().epoch.unwrap().to_owned());
        }
        assert_eq!(keys.generates(), 1);
        assert_eq!(epochs.len(), 1);
    }

    #[tokio::test]
    async fn warm_opens_do_not_call_the_key_service() {
        let (writer, _) = cipher();
        let (reader, keys) = cipher();
        let context = KeyContext::token(&token_key());
        let sealed = writer.seal(&context, b"x").await.unwrap();
        for _ in 0..10 {
            reader.open(&context, &sealed).await.unwrap();
        }
        assert_eq!(keys.decrypts(), 1, "the first open is cold, the rest warm");
    }

    #[tokio::test]
    async fn the_readiness_check_reaches_the_key_service_every_time() {
        let (cipher, keys) = cipher();
        cipher.seal_token_for_tests(&token_key()).await;
        cipher.check_key_service().await.unwrap();
        cipher.check_key_service().await.unwrap();
        assert_eq!(keys.generates(), 3);
    }

    impl EnvelopeCipher {
        async fn seal_token_for_tests(&self, key: &TokenKey) -> Vec<u8> {
            self.seal(&KeyContext::token(key), b"x").await.unwrap()
        }
    }
}
