//! Deleting a connection. The delete takes it out of service at once (absent to every caller,
//! its name free), then ends its tokens one by one — each revoked at the endpoint it was issued
//! by, then deleted — for as long as one request allows; the refresher's sweep ends the rest
//! and finally purges the record and its secrets. A connection may hold more tokens than one
//! request can revoke, so the delete answers only what it did.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::{Keyport, ServiceError, deadline};
use crate::domain::{
    AuditAction, Connection, ConnectionId, Principal, REFRESHER_ACTOR, StoredToken,
};
use crate::oauth::ClientCredentials;
use crate::ports::{StoreError, TokenKey};

/// What a delete did before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The connection and every token it had are gone (its tokens revoked first).
    Complete,
    /// The connection is gone for every caller; this many of its tokens were ended, and the
    /// refresher ends the rest.
    Continuing { tokens_revoked: u64 },
}

/// What the refresher's sweep of deleted connections did in one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeletionSweep {
    /// Tokens of deleted connections revoked and deleted.
    pub tokens_revoked: u64,
    /// Deleted connections whose last trace (record and secrets) was removed.
    pub purged: u64,
    /// Whether tokens of deleted connections are left for the next run.
    pub unfinished: bool,
}

/// How far ending a retired connection's tokens got.
struct Progress {
    ended: u64,
    done: bool,
}

/// Tokens listed per round while ending a connection's tokens.
const SHARE: u32 = 25;
/// Kept in hand beyond a revocation's own timeout: the reads and the delete around it.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);
/// How often a token's delete is tried again when a refresh keeps writing it meanwhile.
const DELETE_ATTEMPTS: usize = 5;

impl Keyport {
    /// Deletes the connection: out of service at once, its tokens revoked and deleted in this
    /// request as far as time and `delete_in_line_tokens` allow, the rest by the refresher.
    pub async fn delete_connection(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        expected_version: Option<u64>,
    ) -> Result<Deletion, ServiceError> {
        let allowed = self.access.require_admin(principal);
        self.audit_denial(principal, id, allowed).await?;
        let connection = self.load_connection(id).await?;
        let version = expected_version.unwrap_or(connection.version);
        if version != connection.version {
            return Err(ServiceError::Conflict(
                "the connection was changed by someone else; read it again and retry".into(),
            ));
        }
        self.store.retire_connection(id, version).await?;
        self.audit(
            id,
            AuditAction::ConnectionDeleted,
            principal.subject.as_str(),
            None,
            None,
        )
        .await;
        let progress = self
            .end_retired_tokens(
                &connection,
                principal.subject.as_str(),
                u64::from(self.settings.delete_in_line_tokens),
            )
            .await;
        Ok(if progress.done {
            Deletion::Complete
        } else {
            Deletion::Continuing {
                tokens_revoked: progress.ended,
            }
        })
    }

    /// Ends the tokens of deleted connections while time allows, and purges each one whose
    /// tokens are all gone once `retired_grace` has passed (a request that loaded the
    /// connection before its delete may still write a token until then; the sweep ends it).
    pub(super) async fn sweep_deleted_connections(&self) -> Result<DeletionSweep, ServiceError> {
        let mut sweep = DeletionSweep::default();
        let now = Utc::now();
        for retired in self.store.retired_connections(100).await? {
            let progress = self
                .end_retired_tokens(&retired.connection, REFRESHER_ACTOR, u64::MAX)
                .await;
            sweep.tokens_revoked += progress.ended;
            if !progress.done {
                sweep.unfinished = true;
                if !self.room_for_a_revocation() {
                    break;
                }
                continue;
            }
            let grace = chrono::Duration::from_std(self.settings.retired_grace)
                .unwrap_or(chrono::Duration::MAX);
            if retired.retired_at + grace <= now {
                self.store.purge_connection(&retired.connection.id).await?;
                self.delete_secrets(&retired.connection.id).await;
                sweep.purged += 1;
            }
        }
        Ok(sweep)
    }

    /// Ends up to `limit` tokens of a retired connection while the deadline leaves room for a
    /// provider call. Done when none is left. A failure (the secret store, the table) leaves
    /// the rest for the sweep.
    async fn end_retired_tokens(
        &self,
        connection: &Connection,
        actor: &str,
        limit: u64,
    ) -> Progress {
        let mut progress = Progress {
            ended: 0,
            done: false,
        };
        let outcome: Result<(), ServiceError> = async {
            // Read from the secret store only when there is a token to revoke: a connection
            // without tokens, swept every run until its grace ends, costs no secret read.
            let mut credentials = None;
            loop {
                let tokens = self.store.first_tokens(&connection.id, SHARE).await?;
                if tokens.is_empty() {
                    progress.done = true;
                    return Ok(());
                }
                let credentials = match &credentials {
                    Some(credentials) => credentials,
                    None => credentials.insert(self.credentials(connection).await?),
                };
                for token in tokens {
                    if progress.ended >= limit || !self.room_for_a_revocation() {
                        return Ok(());
                    }
                    self.end_token(
                        connection,
                        credentials,
                        token,
                        actor,
                        "the connection was deleted",
                    )
                    .await?;
                    progress.ended += 1;
                }
            }
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(connection_id = %connection.id, code = error.code(), %error, "ending the tokens of a deleted connection stopped; the refresher goes on");
        }
        progress
    }

    /// Revokes a token at the endpoint it was issued by (best effort: a provider that is down
    /// must not keep a token stored) and deletes it. A refresh that wrote a newer grant
    /// meanwhile has that one revoked and deleted too.
    pub(super) async fn end_token(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        token: StoredToken,
        actor: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: token.owner.clone(),
        };
        let mut current = token;
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.revoke_with(connection, credentials, &current).await;
            match self.store.delete_token(&key, current.version).await {
                Ok(()) | Err(StoreError::NotFound(_)) => break,
                Err(StoreError::Conflict(what)) if attempts >= DELETE_ATTEMPTS => {
                    return Err(StoreError::Conflict(what).into());
                }
                Err(StoreError::Conflict(_)) => match self.store.get_token(&key).await? {
                    Some(newer) => current = newer,
                    None => break,
                },
                Err(error) => return Err(error.into()),
            }
        }
        self.audit(
            &connection.id,
            AuditAction::TokenRevoked,
            actor,
            Some(&key.owner),
            Some(reason),
        )
        .await;
        Ok(())
    }

    /// Whether a revocation could be waited for (the provider's whole timeout) before the
    /// invocation's deadline.
    fn room_for_a_revocation(&self) -> bool {
        deadline::remaining().is_none_or(|left| self.oauth.http().timeout() + SAFETY_MARGIN < left)
    }
}
