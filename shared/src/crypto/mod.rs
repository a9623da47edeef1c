//! Envelope encryption: values are sealed under data keys wrapped by the master key (KMS or
//! the local key file). A process reuses one data key per purpose for a bounded time and count;
//! each value is bound to what it protects by the AEAD's associated data.

mod envelope;
mod format;
mod key_cache;
mod sealing_key;

pub use envelope::{CryptoError, EnvelopeCipher};
pub use format::FORMAT_VERSION;
pub use key_cache::KeyCacheLimits;
pub use sealing_key::SealingLimits;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random number generator is unavailable");
    buf
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
