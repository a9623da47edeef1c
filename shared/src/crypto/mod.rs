//! Envelope encryption: every sealed value has its own data key, wrapped by the master key
//! (KMS or the local key file) and bound to what it protects.

mod envelope;
mod key_cache;

pub use envelope::{CryptoError, EnvelopeCipher, FORMAT_VERSION};
pub use key_cache::KeyCacheLimits;

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
