//! What a caller can use: the connections one of its roles is invited to (every one, for an
//! administrator, who holds the shared tokens), and the state of the tokens it could read
//! there. No secrets, no endpoints.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Keyport, ServiceError};
use crate::domain::{ApiScope, Connection, ConnectionId, GrantType, Owner, Principal, TokenStatus};
use crate::ports::{PageRequest, TokenKey};

/// A connection the caller's roles are invited to, with its tokens' status.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsableConnection {
    pub id: ConnectionId,
    pub name: String,
    pub description: String,
    pub provider: String,
    pub grant_type: GrantType,
    /// The shared token's status; null when there is none.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub shared_token: Option<TokenStatus>,
    /// The caller's own token's status; null when there is none.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub user_token: Option<TokenStatus>,
    /// When the shared token's grant dies however it is used (the provider's documented
    /// absolute lifetime); null when none is documented or there is no token.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub shared_grant_ends_at: Option<DateTime<Utc>>,
    /// The same for the caller's own token: authorize again before then.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub user_grant_ends_at: Option<DateTime<Utc>>,
}

impl Keyport {
    pub async fn my_connections(
        &self,
        principal: &Principal,
    ) -> Result<Vec<UsableConnection>, ServiceError> {
        let mut usable = Vec::new();
        for connection in self.connections_usable_by(principal).await? {
            // Two point reads, whatever the number of other owners' tokens.
            let token_of = |owner: Owner| {
                let key = TokenKey {
                    connection_id: connection.id.clone(),
                    owner,
                };
                async move { Ok::<_, ServiceError>(self.store.get_token(&key).await?) }
            };
            let shared = token_of(Owner::Shared).await?;
            let user = token_of(Owner::User(principal.subject.clone())).await?;
            usable.push(UsableConnection {
                shared_token: shared.as_ref().map(|t| t.status),
                user_token: user.as_ref().map(|t| t.status),
                shared_grant_ends_at: shared.and_then(|t| t.grant_ends_at),
                user_grant_ends_at: user.and_then(|t| t.grant_ends_at),
                id: connection.id,
                name: connection.name.to_string(),
                description: connection.description,
                provider: connection.provider.as_str().to_owned(),
                grant_type: connection.grant_type,
            });
        }
        Ok(usable)
    }

    /// The connections `principal` may use, by name: every one for an administrator (who holds
    /// every shared token); otherwise those its roles are invited to, found through the
    /// invitation index rather than a listing of every connection.
    async fn connections_usable_by(
        &self,
        principal: &Principal,
    ) -> Result<Vec<Connection>, ServiceError> {
        if !principal.allows(ApiScope::TokensRead) {
            // A token that may read no token can use no connection.
            return Ok(Vec::new());
        }
        let admin = self.access.holds_shared_tokens(principal);
        if admin || !self.store.invitations_indexed().await? {
            // Until a table's older connections are indexed (the refresher does it once), the
            // listing is the only complete answer.
            let mut found = Vec::new();
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            loop {
                let listed = self.store.list_connections(page.clone()).await?;
                found.extend(
                    listed
                        .items
                        .into_iter()
                        .filter(|c| admin || c.is_invited(principal)),
                );
                match listed.next {
                    Some(cursor) => page.cursor = Some(cursor),
                    None => return Ok(found),
                }
            }
        }
        let mut ids = BTreeSet::new();
        for invitee in principal.invitees() {
            ids.extend(self.store.invited_connections(&invitee).await?);
        }
        let mut found = Vec::new();
        for id in ids {
            // Re-checked on the connection itself: an invitation withdrawn between the two
            // reads is withdrawn.
            if let Some(connection) = self.store.get_connection(&id).await?
                && connection.is_invited(principal)
            {
                found.push(connection);
            }
        }
        found.sort_by_key(|c| c.name.uniqueness_key());
        Ok(found)
    }
}
