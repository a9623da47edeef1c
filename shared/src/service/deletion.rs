//! Deleting a connection. The delete takes it out of service at once (absent to every caller,
//! its name free), then its tokens are ended one by one — each revoked at the endpoint it was
//! issued by, then deleted — and finally its record and secrets purged. A connection may hold
//! more tokens than one request, or one invocation, can revoke. With a work queue (AWS) the
//! delete ends none itself: it queues the connection for the refresh workers, each of which
//! ends what its deadline allows and queues the rest again. Without one (one machine) the
//! delete ends what one request allows and the refresher's sweep the rest.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::{Keyport, RefreshWork, ServiceError, deadline};
use crate::domain::{
    AuditAction, Connection, ConnectionId, Principal, REFRESHER_ACTOR, StoredToken,
};
use crate::oauth::ClientCredentials;
use crate::ports::{Retired, StoreError, TokenKey, WorkQueue};

/// What a delete did before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The connection and every token it had are gone (its tokens revoked first).
    Complete,
    /// The connection is gone for every caller; this many of its tokens were ended, and the
    /// refresher ends the rest.
    Continuing { tokens_revoked: u64 },
    /// The connection is gone for every caller; the refresh workers end its tokens.
    Queued,
}

/// What a refresh worker did with one deleted connection's message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeletionWork {
    /// Its tokens this worker revoked and deleted.
    pub tokens_revoked: u64,
    /// Its record and secrets removed: nothing is left of it.
    pub purged: bool,
    /// Stopped at the deadline with tokens left; the connection was queued again for them.
    pub continued: bool,
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
    /// What stopped it short of its limit and deadline.
    failure: Option<ServiceError>,
}

/// Deleted connections one scheduled run sweeps, or queues for the workers.
const RETIRED_PER_RUN: u32 = 100;
/// Tokens listed per round while ending a connection's tokens.
const SHARE: u32 = 25;
/// Kept in hand beyond a revocation's own timeout: the reads and the delete around it.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);
/// How often a token's delete is tried again when a refresh keeps writing it meanwhile.
const DELETE_ATTEMPTS: usize = 5;

impl Keyport {
    /// Deletes the connection: out of service at once; its tokens revoked and deleted by the
    /// refresh workers when there is a work queue, or else in this request as far as time and
    /// `delete_in_line_tokens` allow, the rest by the refresher.
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
        self.notify(
            crate::domain::EventType::ConnectionDeleted,
            crate::domain::EventData::about(id, connection.name.as_str()),
        )
        .await;
        if let Some(queue) = &self.work_queue {
            // Not a failure of the delete, which is done: the next scheduled run queues every
            // deleted connection not yet purged.
            if let Err(error) = queue_deletions(queue.as_ref(), std::slice::from_ref(id)).await {
                tracing::warn!(connection_id = %id, %error, "queueing a deleted connection for the workers failed; the next scheduled run queues it");
            }
            return Ok(Deletion::Queued);
        }
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
        for retired in self.store.retired_connections(RETIRED_PER_RUN).await? {
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
            if self.purge_after_grace(&retired, now).await? {
                sweep.purged += 1;
            }
        }
        Ok(sweep)
    }

    /// Hands each deleted connection (up to a run's share) to the refresh workers: the
    /// scheduled run's part in deleting, with a work queue. Returns how many it queued.
    pub(super) async fn queue_retired_connections(
        &self,
        queue: &dyn WorkQueue,
    ) -> Result<u64, ServiceError> {
        let ids: Vec<ConnectionId> = self
            .store
            .retired_connections(RETIRED_PER_RUN)
            .await?
            .into_iter()
            .map(|retired| retired.connection.id)
            .collect();
        queue_deletions(queue, &ids).await?;
        Ok(ids.len() as u64)
    }

    /// A refresh worker's part in deleting: ends the deleted connection's tokens while the
    /// deadline allows, queues it again if tokens are left, and purges it once none is and
    /// `retired_grace` has passed (until then the scheduled runs queue it again). A connection
    /// in service or already purged is left alone, so a message delivered twice, late, or to
    /// two workers at once is harmless: every token delete is conditional on the version read.
    pub async fn end_deleted_connection(
        &self,
        id: &ConnectionId,
    ) -> Result<DeletionWork, ServiceError> {
        let mut work = DeletionWork::default();
        let Some(retired) = self.store.retired_connection(id).await? else {
            return Ok(work);
        };
        let progress = self
            .end_retired_tokens(&retired.connection, REFRESHER_ACTOR, u64::MAX)
            .await;
        work.tokens_revoked = progress.ended;
        if let Some(failure) = progress.failure {
            return Err(failure);
        }
        if !progress.done {
            if let Some(queue) = &self.work_queue {
                queue_deletions(queue.as_ref(), std::slice::from_ref(id)).await?;
                work.continued = true;
            }
            return Ok(work);
        }
        work.purged = self.purge_after_grace(&retired, Utc::now()).await?;
        Ok(work)
    }

    /// Removes the last trace of a deleted connection whose tokens are all gone, once
    /// `retired_grace` has passed: a request that loaded the connection before its delete
    /// may still write a token until then.
    async fn purge_after_grace(
        &self,
        retired: &Retired,
        now: chrono::DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let grace = chrono::Duration::from_std(self.settings.retired_grace)
            .unwrap_or(chrono::Duration::MAX);
        if retired.retired_at + grace > now {
            return Ok(false);
        }
        self.store.purge_connection(&retired.connection.id).await?;
        self.delete_secrets(&retired.connection.id).await;
        Ok(true)
    }

    /// Ends up to `limit` tokens of a retired connection while the deadline leaves room for a
    /// provider call. Done when none is left. A failure (the secret store, the table) stops it
    /// and is kept in the progress: the sweep or a worker's next message ends the rest.
    async fn end_retired_tokens(
        &self,
        connection: &Connection,
        actor: &str,
        limit: u64,
    ) -> Progress {
        let mut progress = Progress {
            ended: 0,
            done: false,
            failure: None,
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
                    if self
                        .end_token(
                            connection,
                            credentials,
                            token,
                            actor,
                            "the connection was deleted",
                        )
                        .await?
                    {
                        progress.ended += 1;
                    }
                }
            }
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(connection_id = %connection.id, code = error.code(), %error, "ending the tokens of a deleted connection stopped; the refresher goes on");
            progress.failure = Some(error);
        }
        progress
    }

    /// Revokes a token at the endpoint it was issued by (best effort: a provider that is down
    /// must not keep a token stored) and deletes it. A refresh that wrote a newer grant
    /// meanwhile has that one revoked and deleted too. Whether this call deleted it: one that
    /// found it gone was beaten by another ender (a second worker on the same connection),
    /// which audits it.
    pub(super) async fn end_token(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        token: StoredToken,
        actor: &str,
        reason: &str,
    ) -> Result<bool, ServiceError> {
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
                Ok(()) => break,
                Err(StoreError::NotFound(_)) => return Ok(false),
                Err(StoreError::Conflict(what)) if attempts >= DELETE_ATTEMPTS => {
                    return Err(StoreError::Conflict(what).into());
                }
                Err(StoreError::Conflict(_)) => match self.store.get_token(&key).await? {
                    Some(newer) => current = newer,
                    None => return Ok(false),
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
        Ok(true)
    }

    /// Whether a revocation could be waited for (the provider's whole timeout) before the
    /// invocation's deadline.
    fn room_for_a_revocation(&self) -> bool {
        deadline::remaining().is_none_or(|left| self.oauth.http().timeout() + SAFETY_MARGIN < left)
    }
}

/// Queues one deletion message for each of `ids`.
async fn queue_deletions(queue: &dyn WorkQueue, ids: &[ConnectionId]) -> Result<(), ServiceError> {
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| RefreshWork::DeletedConnection(id.clone()).body())
        .collect();
    Ok(queue.send(&bodies).await?)
}
