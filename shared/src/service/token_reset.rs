//! Resetting a client-credentials token as one action: under the same refresh lease every
//! refresh of the token takes, the current token is revoked at the provider (where it offers
//! revocation), a new one is requested and stored. An administrator's action on the shared
//! token only: a client-credentials grant has no person behind it to ask again.

use chrono::Utc;

use super::tokens::{LEASE_POLL, chrono_duration};
use super::{Keyport, OwnerRequest, ServiceError, TokenView, require_enabled};
use crate::domain::{
    AuditAction, Connection, ConnectionId, GrantType, Lease, Owner, Principal, StoredToken,
    TokenSecrets,
};
use crate::ports::{Expect, StoreError, TokenKey};

/// What became of the token a reset replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousToken {
    /// The provider confirmed its revocation.
    Revoked,
    /// The provider was asked and did not confirm it (the reset went on regardless).
    RevocationFailed,
    /// The connection names no revocation endpoint: it stays valid until it expires.
    NoRevocationEndpoint,
    /// There was no token to replace.
    None,
}

impl PreviousToken {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviousToken::Revoked => "revoked",
            PreviousToken::RevocationFailed => "revocation_failed",
            PreviousToken::NoRevocationEndpoint => "no_revocation_endpoint",
            PreviousToken::None => "none",
        }
    }

    /// The audit event's detail.
    fn detail(self) -> &'static str {
        match self {
            PreviousToken::Revoked => "the previous token was revoked at the provider",
            PreviousToken::RevocationFailed => {
                "the provider did not confirm the revocation of the previous token"
            }
            PreviousToken::NoRevocationEndpoint => {
                "the provider offers no revocation: the previous token stays valid until it expires"
            }
            PreviousToken::None => "there was no previous token",
        }
    }
}

/// A reset's answer: the new token, and what became of the one it replaced.
#[derive(Debug)]
pub struct TokenReset {
    pub token: TokenView,
    pub previous: PreviousToken,
}

impl Keyport {
    /// Revokes the connection's shared client-credentials token at the provider (where it
    /// can), requests a new one and stores it (administrators).
    pub async fn reset_token(
        &self,
        principal: &Principal,
        id: &ConnectionId,
    ) -> Result<TokenReset, ServiceError> {
        let connection = self.load_connection(id).await?;
        // It hands the new token out too: an administrator who may also read tokens.
        let allowed = self.access.require_admin(principal).and_then(|()| {
            self.access
                .token_owner(principal, &connection, OwnerRequest::Shared)
        });
        let access = self.audit_denial(principal, id, allowed).await?;
        require_enabled(&connection)?;
        if connection.grant_type != GrantType::ClientCredentials {
            return Err(ServiceError::NotClientCredentials {
                grant_type: connection.grant_type.as_str(),
            });
        }
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: Owner::Shared,
        };
        let actor = principal.subject.as_str();
        let (record, secrets, previous) = match self.lease_for_reset(&connection, &key).await? {
            Some(leased) => {
                self.reset_under_lease(&connection, &key, leased, actor)
                    .await?
            }
            None => {
                // The same path a first read takes; the reset records its own event.
                let (record, secrets) = self.obtain_unattended_grant(&connection, &key).await?;
                (record, secrets, PreviousToken::None)
            }
        };
        self.audit(
            &key.connection_id,
            AuditAction::TokenReset,
            actor,
            Some(&key.owner),
            Some(previous.detail()),
        )
        .await;
        let min_valid = self.settings.default_min_valid;
        let token = TokenView::new(
            &record,
            secrets,
            min_valid,
            &self.declared_extras(&connection),
        );
        self.record_handout(principal, &connection, &access, &token)
            .await;
        Ok(TokenReset { token, previous })
    }

    /// The stored token under this process's lease, taken as a refresh takes it (waiting,
    /// bounded, for another instance's refresh to finish); `None` when there is no token.
    async fn lease_for_reset(
        &self,
        connection: &Connection,
        key: &TokenKey,
    ) -> Result<Option<StoredToken>, ServiceError> {
        let give_up_at = Utc::now()
            + chrono_duration(self.settings.lease_duration)
            + chrono::Duration::seconds(5);
        // This process's turn first, so its own readers queue behind the reset.
        let (_turn, _) = self.refresh_turns.take(key).await;
        loop {
            let now = Utc::now();
            let Some(current) = self.store.get_token(key).await? else {
                return Ok(None);
            };
            if !current.was_issued_for(connection) {
                self.discard_stale_token(key, &current).await?;
                continue;
            }
            if current.lease.as_ref().is_some_and(|l| l.is_live_at(now)) {
                if now > give_up_at {
                    return Err(ServiceError::RefreshInProgress);
                }
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            }
            let mut leased = current.clone();
            leased.provider_asked_at = Some(now);
            leased.lease = Some(Lease {
                holder: self.instance_id.clone(),
                expires_at: now + chrono_duration(self.settings.lease_duration),
            });
            match self
                .store
                .put_token(&leased, Expect::Version(current.version))
                .await
            {
                Ok(leased) => return Ok(Some(leased)),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Revokes the leased token (a failure is reported, not raised), requests a new one and
    /// writes it over the leased one. When no new token comes, a revoked token is deleted (the
    /// next read requests a new one) and one still valid is left as it was.
    async fn reset_under_lease(
        &self,
        connection: &Connection,
        key: &TokenKey,
        leased: StoredToken,
        actor: &str,
    ) -> Result<(StoredToken, TokenSecrets, PreviousToken), ServiceError> {
        let credentials = match self.credentials(connection).await {
            Ok(credentials) => credentials,
            Err(error) => {
                self.release_lease(key, &leased).await;
                return Err(error);
            }
        };
        let previous = if connection.revocation_url.is_none() {
            PreviousToken::NoRevocationEndpoint
        } else if self.revoke_with(connection, &credentials, &leased).await {
            PreviousToken::Revoked
        } else {
            PreviousToken::RevocationFailed
        };
        let lease_ends = leased
            .lease
            .as_ref()
            .map_or_else(Utc::now, |lease| lease.expires_at);
        // A new grant, never a refresh: a refresh token issued with the old one is revoked too.
        let outcome = self
            .refresh_with_retries(connection, &credentials, None, None, lease_ends)
            .await;
        match outcome {
            Ok(grant) => {
                let (record, secrets) = self
                    .write_refreshed_grant(connection, &credentials, key, grant, &leased)
                    .await?;
                Ok((record, secrets, previous))
            }
            Err(error) => {
                if previous == PreviousToken::Revoked {
                    if let Err(failed) = self.store.delete_token(key, leased.version).await {
                        tracing::warn!(connection_id = %key.connection_id, error = %failed, "could not delete a revoked token after a failed reset");
                    }
                } else {
                    self.release_lease(key, &leased).await;
                }
                self.audit(
                    &key.connection_id,
                    AuditAction::TokenFailed,
                    actor,
                    Some(&key.owner),
                    Some(error.code()),
                )
                .await;
                Err(error.into())
            }
        }
    }
}
