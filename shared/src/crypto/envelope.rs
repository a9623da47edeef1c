//! The sealed format and the cipher that writes and reads it.
//!
//! Format version 1, all integers big-endian:
//!
//! ```text
//! [0]        format version (1)
//! [1..3]     length n of the wrapped data key
//! [3..3+n]   wrapped data key (a KMS ciphertext blob, or the local master key's wrap)
//! [..+12]    AES-256-GCM nonce
//! [..]       ciphertext followed by the 16-byte tag
//! ```
//!
//! The associated data is a label, the header (version and wrapped key) and the context's
//! canonical bytes, so a ciphertext moved to another item, or a header swapped, fails the tag.

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::key_cache::{DataKeyCache, KeyCacheLimits};
use super::random_bytes;
use crate::domain::TokenSecrets;
use crate::ports::{DataKeyProvider, KeyContext, KeyError, TokenKey};

pub const FORMAT_VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"keyport-envelope";
const TAG_LEN: usize = 16;

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

struct Parsed<'a> {
    header: &'a [u8],
    wrapped: &'a [u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    let (&version, rest) = sealed
        .split_first()
        .ok_or(CryptoError::Malformed("empty"))?;
    if version != FORMAT_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    let (len, rest) = rest
        .split_at_checked(2)
        .ok_or(CryptoError::Malformed("truncated header"))?;
    let wrapped_len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let (wrapped, rest) = rest
        .split_at_checked(wrapped_len)
        .ok_or(CryptoError::Malformed("truncated data key"))?;
    let (nonce, ciphertext) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(CryptoError::Malformed("truncated nonce"))?;
    if ciphertext.len() < TAG_LEN || wrapped.is_empty() {
        return Err(CryptoError::Malformed("truncated ciphertext"));
    }
    Ok(Parsed {
        header: &sealed[..3 + wrapped_len],
        wrapped,
        nonce: nonce
            .try_into()
            .map_err(|_| CryptoError::Malformed("nonce"))?,
        ciphertext,
    })
}

fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + header.len() + context.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

fn aead_key(plaintext: &[u8; 32]) -> Arc<LessSafeKey> {
    // A 32-byte key always fits AES-256-GCM.
    Arc::new(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, plaintext).expect("AES-256 takes a 32-byte key"),
    ))
}

/// Seals and opens values with per-item data keys from a [`DataKeyProvider`], remembering
/// unwrapped keys in a bounded cache.
pub struct EnvelopeCipher {
    keys: Arc<dyn DataKeyProvider>,
    cache: DataKeyCache,
}

impl EnvelopeCipher {
    pub fn new(keys: Arc<dyn DataKeyProvider>, limits: KeyCacheLimits) -> Self {
        Self {
            keys,
            cache: DataKeyCache::new(limits),
        }
    }

    pub async fn seal(
        &self,
        context: &KeyContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let data_key = self.keys.generate_data_key(context).await?;
        let wrapped_len = u16::try_from(data_key.wrapped.len())
            .map_err(|_| CryptoError::Malformed("wrapped data key too long"))?;
        let mut sealed =
            Vec::with_capacity(3 + data_key.wrapped.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&wrapped_len.to_be_bytes());
        sealed.extend_from_slice(&data_key.wrapped);
        let context_bytes = context.canonical_bytes();
        let aad = associated_data(&sealed, &context_bytes);
        let nonce = random_bytes::<NONCE_LEN>();
        sealed.extend_from_slice(&nonce);

        let key = aead_key(&data_key.plaintext);
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        sealed.extend_from_slice(&in_out);
        // The writer is often the next reader: remember the key so that read is warm.
        self.cache.insert(
            DataKeyCache::cache_key(&context_bytes, &data_key.wrapped),
            key,
            Instant::now(),
        );
        Ok(sealed)
    }

    pub async fn open(
        &self,
        context: &KeyContext,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let parsed = parse(sealed)?;
        let context_bytes = context.canonical_bytes();
        let cache_key = DataKeyCache::cache_key(&context_bytes, parsed.wrapped);
        let key = match self.cache.get(&cache_key, Instant::now()) {
            Some(key) => key,
            None => {
                let plaintext = self.keys.decrypt_data_key(parsed.wrapped, context).await?;
                let key = aead_key(&plaintext);
                self.cache.insert(cache_key, key.clone(), Instant::now());
                key
            }
        };
        let aad = associated_data(parsed.header, &context_bytes);
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
    use super::*;
    use crate::domain::{ConnectionId, Owner, Subject};
    use crate::ports::DataKey;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A key provider that "wraps" by XOR with a fixed pad and binds the context by appending
    /// it; enough to exercise the envelope without a real key service.
    #[derive(Default)]
    struct TestKeys {
        decrypts: AtomicUsize,
    }

    #[async_trait]
    impl DataKeyProvider for TestKeys {
        async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
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

    fn cipher() -> (EnvelopeCipher, Arc<TestKeys>) {
        let keys = Arc::new(TestKeys::default());
        (
            EnvelopeCipher::new(keys.clone(), KeyCacheLimits::default()),
            keys,
        )
    }

    fn token_key() -> TokenKey {
        TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        }
    }

    #[tokio::test]
    async fn sealed_values_open_with_their_context() {
        let (cipher, _) = cipher();
        let context = KeyContext::token(&token_key());
        let sealed = cipher.seal(&context, b"hello").await.unwrap();
        assert_eq!(sealed[0], FORMAT_VERSION);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(&cipher.open(&context, &sealed).await.unwrap()[..], b"hello");
    }

    #[tokio::test]
    async fn another_context_fails_the_integrity_check_even_with_a_cached_key() {
        let (cipher, _) = cipher();
        let sealed = cipher
            .seal(&KeyContext::token(&token_key()), b"hello")
            .await
            .unwrap();
        let err = cipher
            .open(&KeyContext::token(&token_key()), &sealed)
            .await
            .unwrap_err();
        assert!(matches!(err, CryptoError::Integrity), "{err:?}");
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
        assert!(matches!(
            cipher.open(&context, &[]).await,
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            cipher.open(&context, &[1, 0]).await,
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            cipher.open(&context, &[9, 0, 0]).await,
            Err(CryptoError::UnsupportedVersion(9))
        ));
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
        assert_eq!(keys.decrypts.load(Ordering::SeqCst), 1);
    }
}
