//! Who used which token: per connection and caller, when it last fetched a token, through
//! which rule, and a fingerprint of what it got (never the token).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ConnectionId, Owner, Subject};

/// A person (or a bot signed in as one), or an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    Person,
    Application,
}

impl CallerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Person => "person",
            CallerKind::Application => "application",
        }
    }
}

/// The last time one caller fetched one of a connection's tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenFetch {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub connection_id: ConnectionId,
    /// The caller's subject (an application's is its client id).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub caller: Subject,
    pub caller_kind: CallerKind,
    /// The rule that let it: `invited_role:<role>`, `invited_application`,
    /// `admin_role:<role>` or `admin_application`.
    pub via: String,
    /// The Keyport scope its token carried for it, when the token carries Keyport scopes.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub scope: Option<String>,
    /// Whose token: `shared` or `user:<subject>`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub owner: Owner,
    /// `sha256:` and the first 16 hex digits of the SHA-256 of the access token handed out:
    /// enough to match it with a provider's or a bot's logs, never enough to use it.
    pub token_fingerprint: String,
    pub last_at: DateTime<Utc>,
}

/// The fingerprint of an access token as audit lines and fetch records show it.
pub fn token_fingerprint(access_token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_the_start_of_the_tokens_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(token_fingerprint("abc"), "sha256:ba7816bf8f01cfea");
        assert_ne!(token_fingerprint("abd"), token_fingerprint("abc"));
    }
}
