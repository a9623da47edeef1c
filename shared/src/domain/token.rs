//! A stored token: what Keyport knows about one connection's token for one owner.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::connection::Connection;
use super::ids::{ConnectionId, Owner};

/// A token's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Valid,
    Expired,
    RefreshFailed,
    NeedsReauthorization,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Valid => "valid",
            TokenStatus::Expired => "expired",
            TokenStatus::RefreshFailed => "refresh_failed",
            TokenStatus::NeedsReauthorization => "needs_reauthorization",
        }
    }
}

/// Why the last refresh failed, in words safe to show (never a provider response body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenFailure {
    /// A snake_case code: `invalid_grant` when the provider refused the grant.
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A refresh in progress: who holds it and until when. Taken and released with conditional
/// writes on the token's version, so only one refresh runs at a time across all instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }
}

/// One token item. The secrets (access, refresh and id tokens, provider extras) are only ever
/// present as `sealed`, an envelope bound to this connection and owner; everything else is
/// metadata the refresher and the access rules need without decrypting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub connection_id: ConnectionId,
    pub owner: Owner,
    pub status: TokenStatus,
    pub token_type: String,
    /// The scope the provider granted, as it sent it.
    pub scope: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the refresher should pick this token up; `None` keeps it out of the due index
    /// (nothing to refresh with, or it needs a person to authorize again).
    pub refresh_due_at: Option<DateTime<Utc>>,
    pub has_refresh_token: bool,
    pub last_error: Option<TokenFailure>,
    pub lease: Option<Lease>,
    /// Where the grant came from: the destination fingerprint of the connection it was
    /// obtained through ([`Connection::destination_fingerprint`]). `None` on tokens written
    /// before Keyport kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_for: Option<String>,
    /// When Keyport last asked the provider for this token (a refresh started, or the grant
    /// was obtained): callers cannot make it ask more often than once per interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_asked_at: Option<DateTime<Utc>>,
    /// When the grant dies however it is used: its authorization (`created_at`) plus the
    /// provider's documented absolute lifetime. `None` when none is documented, and on tokens
    /// written before Keyport kept it (their next refresh sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_ends_at: Option<DateTime<Utc>>,
    /// Whether the grant's approaching end was reported (its status says `grant_ending`, and
    /// the audit trail has said so once); a new authorization starts unreported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grant_end_reported: bool,
    /// The due time the due index still files this token under, when it is not
    /// `refresh_due_at`: a refreshed grant whose write was throttled is written without moving
    /// its index entry (a write that touches no index partition), so the grant is not lost to
    /// a hot index partition; the refresher files it under `refresh_due_at` when it next lists
    /// it. `None` almost always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filed_due_at: Option<DateTime<Utc>>,
    /// When the person authorized this grant (or Keyport first obtained it, unattended): a
    /// refresh keeps it, a new authorization replaces it. It names the grant's lineage, and
    /// the provider's absolute lifetime counts from it.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The envelope; kept out of the metadata document and stored as binary.
    #[serde(skip)]
    pub sealed: Vec<u8>,
    /// The optimistic-concurrency version; owned by the store.
    #[serde(skip)]
    pub version: u64,
}

impl StoredToken {
    /// The due time the due index files this token under.
    pub fn due_filing(&self) -> Option<DateTime<Utc>> {
        self.filed_due_at.or(self.refresh_due_at)
    }

    /// Whether this token came from where `connection` now sends credentials; a token that did
    /// not is never sent there, nor handed out.
    pub fn was_issued_for(&self, connection: &Connection) -> bool {
        self.issued_for
            .as_ref()
            .is_none_or(|issued| *issued == connection.destination_fingerprint())
    }

    /// Whether the access token is still good for at least `min_valid` from `now`.
    /// A token without an expiry is taken at its word until the provider rejects it.
    pub fn is_usable_for(&self, now: DateTime<Utc>, min_valid: Duration) -> bool {
        self.status == TokenStatus::Valid
            && self
                .expires_at
                .is_none_or(|expiry| expiry - now >= min_valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: Option<DateTime<Utc>>, status: TokenStatus) -> StoredToken {
        let now = Utc::now();
        StoredToken {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
            status,
            token_type: "Bearer".into(),
            scope: None,
            expires_at,
            refresh_due_at: None,
            has_refresh_token: true,
            last_error: None,
            lease: None,
            issued_for: None,
            provider_asked_at: None,
            grant_ends_at: None,
            grant_end_reported: false,
            filed_due_at: None,
            created_at: now,
            updated_at: now,
            sealed: vec![],
            version: 1,
        }
    }

    #[test]
    fn usability_honours_the_minimum_validity() {
        let now = Utc::now();
        let t = token(Some(now + Duration::seconds(100)), TokenStatus::Valid);
        assert!(t.is_usable_for(now, Duration::seconds(60)));
        assert!(!t.is_usable_for(now, Duration::seconds(120)));
        assert!(token(None, TokenStatus::Valid).is_usable_for(now, Duration::seconds(60)));
        let failed = token(
            Some(now + Duration::hours(1)),
            TokenStatus::NeedsReauthorization,
        );
        assert!(!failed.is_usable_for(now, Duration::zero()));
    }

    #[test]
    fn metadata_document_carries_no_envelope() {
        let mut t = token(None, TokenStatus::Valid);
        t.sealed = vec![1, 2, 3];
        let doc = serde_json::to_string(&t).unwrap();
        assert!(!doc.contains("sealed"));
        assert!(!doc.contains("version"));
    }

    #[test]
    fn a_token_written_before_grant_lifetimes_reads_without_them() {
        let mut t = token(None, TokenStatus::Valid);
        let doc = serde_json::to_string(&t).unwrap();
        assert!(!doc.contains("grant_end"), "{doc}");
        let read: StoredToken = serde_json::from_str(&doc).unwrap();
        assert_eq!((read.grant_ends_at, read.grant_end_reported), (None, false));
        t.grant_ends_at = Some(t.created_at + Duration::days(365));
        t.grant_end_reported = true;
        let read: StoredToken = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(read.grant_ends_at, t.grant_ends_at);
        assert!(read.grant_end_reported);
    }
}
