//! What a caller can use: the connections one of its roles is invited to (every one, for an
//! administrator, who holds the shared tokens), and the state of the tokens it could read
//! there. No secrets, no endpoints.

use serde::Serialize;

use super::{Keyport, ServiceError};
use crate::domain::{ConnectionId, GrantType, Owner, Principal, TokenStatus};
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
}

impl Keyport {
    pub async fn my_connections(
        &self,
        principal: &Principal,
    ) -> Result<Vec<UsableConnection>, ServiceError> {
        let mut usable = Vec::new();
        // Administrators hold every connection's shared token, invited or not.
        let admin = self.access.is_admin(principal);
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let listed = self.store.list_connections(page.clone()).await?;
            for connection in listed
                .items
                .into_iter()
                .filter(|c| admin || c.is_invited(&principal.roles))
            {
                // Two point reads, whatever the number of other owners' tokens.
                let status_of = |owner: Owner| {
                    let key = TokenKey {
                        connection_id: connection.id.clone(),
                        owner,
                    };
                    async move {
                        Ok::<_, ServiceError>(self.store.get_token(&key).await?.map(|t| t.status))
                    }
                };
                let shared_token = status_of(Owner::Shared).await?;
                let user_token = status_of(Owner::User(principal.subject.clone())).await?;
                usable.push(UsableConnection {
                    shared_token,
                    user_token,
                    id: connection.id,
                    name: connection.name.to_string(),
                    description: connection.description,
                    provider: connection.provider.as_str().to_owned(),
                    grant_type: connection.grant_type,
                });
            }
            match listed.next {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(usable),
            }
        }
    }
}
