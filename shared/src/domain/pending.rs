//! The server-side record behind one `state` value of an authorization in progress.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::ids::{ConnectionId, Owner, Subject};
use super::secret::PkceVerifier;
use super::validation::ValidationError;

const STATE_BYTES: usize = 32;

/// The `state` parameter: 256 random bits from the OS, base64url. Only its SHA-256 is used as a
/// storage key, so a copy of the database does not hold live state values.
pub struct StateToken(SecretString);

impl StateToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; STATE_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts a `state` from a callback: only the shape Keyport issues.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let decoded = URL_SAFE_NO_PAD.decode(value).ok();
        match decoded {
            Some(bytes) if bytes.len() == STATE_BYTES => {
                Ok(Self(SecretString::from(value.to_owned())))
            }
            _ => Err(ValidationError::new(
                "state",
                "is not a state value Keyport issued",
            )),
        }
    }

    /// The value to put in the authorization URL.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The key a completion value's record is stored under: derived from it, in a space of
    /// its own, so that a completion value is never found as a state, nor a state as one
    /// (either lookup fails without taking the other's record).
    pub fn as_completion(&self) -> StateToken {
        let mut input = b"keyport completion\0".to_vec();
        input.extend_from_slice(self.0.expose_secret().as_bytes());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(digest.as_ref())))
    }

    /// The storage key: hex SHA-256 of the state.
    pub fn lookup_key(&self) -> String {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.0.expose_secret().as_bytes(),
        );
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for StateToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateToken([REDACTED])")
    }
}

/// What the callback needs to finish an authorization: single use, expires in minutes.
#[derive(Debug)]
pub struct PendingAuthorization {
    pub connection_id: ConnectionId,
    pub owner: Owner,
    pub requested_by: Subject,
    pub pkce_verifier: Option<PkceVerifier>,
    pub nonce: Option<String>,
    pub redirect_after: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Set once the callback exchanged the code: the grant, which waits here until the
    /// principal who started the authorization confirms it (never placed before).
    pub awaiting_confirmation: Option<AwaitedGrant>,
}

/// A grant the callback obtained, sealed for its owner's slot, waiting to be confirmed.
#[derive(Debug, Clone)]
pub struct AwaitedGrant {
    pub token_type: String,
    pub scope: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The grant's secrets, sealed as a token of the owner's slot.
    pub sealed: Vec<u8>,
    /// The destination fingerprint of the connection the code was exchanged through.
    pub issued_for: String,
}

impl PendingAuthorization {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_random_and_parse_back() {
        let a = StateToken::generate();
        let b = StateToken::generate();
        assert_ne!(a.expose_secret(), b.expose_secret());
        let parsed = StateToken::parse(a.expose_secret()).unwrap();
        assert_eq!(parsed.lookup_key(), a.lookup_key());
        assert_eq!(a.lookup_key().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }

    #[test]
    fn foreign_states_are_refused() {
        for bad in ["", "abc", "not base64!!", &"A".repeat(100)] {
            assert_eq!(StateToken::parse(bad).unwrap_err().field, "state");
        }
    }
}
