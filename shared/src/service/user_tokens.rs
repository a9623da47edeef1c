//! A connection's user tokens as administrators see them: each person's token status, read
//! from token metadata only (no token is opened for it), and disconnecting one person's token.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Keyport, ServiceError};
use crate::domain::{
    ConnectionId, Owner, Principal, StoredToken, Subject, TokenFailure, TokenHealthStatus,
};
use crate::ports::{Page, PageRequest, TokenKey};

/// One person's token on a connection: who holds it and its health, never the token.
#[derive(Debug, Serialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({
        "subject": "bea",
        "status": "valid",
        "expires_at": "2026-01-05T10:30:00Z",
        "last_refresh_at": "2026-01-05T09:30:00Z",
        "last_error": null,
        "grant_ends_at": null
    }))
)]
pub struct UserTokenSummary {
    /// The person the token belongs to: their subject (`sub`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subject: Subject,
    pub status: TokenHealthStatus,
    /// When the access token expires; null when the provider gave no lifetime.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub expires_at: Option<DateTime<Utc>>,
    /// When Keyport last asked the provider for this token (a refresh, or the grant); null when
    /// unknown.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// Why the last refresh failed; null when it did not.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_error: Option<TokenFailure>,
    /// When the grant dies however it is used (the provider's documented absolute lifetime
    /// from the authorization); null when none is documented.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub grant_ends_at: Option<DateTime<Utc>>,
}

impl UserTokenSummary {
    /// Of a user's token; `None` for the shared one, which is not a person's.
    fn of(token: &StoredToken, now: DateTime<Utc>) -> Option<Self> {
        let Owner::User(subject) = &token.owner else {
            return None;
        };
        Some(Self {
            subject: subject.clone(),
            status: TokenHealthStatus::of(Some(token), now),
            expires_at: token.expires_at,
            last_refresh_at: token.provider_asked_at,
            last_error: token.last_error.clone(),
            grant_ends_at: token.grant_ends_at,
        })
    }
}

impl Keyport {
    /// One page of a connection's user tokens, by subject (administrators).
    pub async fn user_tokens(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<UserTokenSummary>, ServiceError> {
        let allowed = self.access.require_admin(principal);
        self.audit_denial(principal, id, allowed).await?;
        self.load_connection(id).await?;
        let listed = self.store.user_tokens(id, page).await?;
        let now = Utc::now();
        Ok(Page {
            items: listed
                .items
                .iter()
                .filter_map(|token| UserTokenSummary::of(token, now))
                .collect(),
            next: listed.next,
        })
    }

    /// Ends one person's token on a connection (administrators): revoked at the provider where
    /// it can be, deleted, and recorded as the administrator's doing. Returns whether the
    /// provider confirmed the revocation.
    pub async fn disconnect_user_token(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        subject: Subject,
    ) -> Result<bool, ServiceError> {
        let allowed = self.access.require_admin(principal);
        self.audit_denial(principal, id, allowed).await?;
        let connection = self.load_connection(id).await?;
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: Owner::User(subject),
        };
        self.disconnect_token(principal, &connection, &key).await
    }
}
