//! The scheduled refresher: finds tokens due through the due index, refreshes them with
//! bounded concurrency under the same lease as readers (so it never refreshes a token a reader
//! is refreshing), stops taking work before its deadline, and reports what it did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::due_listing::{DueListing, Step};
use super::tokens::Freshness;
use super::{Keyport, RefreshWork, ServiceError, deadline};
use crate::domain::{AuditAction, Connection, ConnectionId, REFRESHER_ACTOR, StoredToken};
use crate::ports::{DueWindow, Expect, TokenKey};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    pub refreshed: u64,
    pub failed: u64,
    pub needs_reauthorization: u64,
    /// Due but left alone: another instance holds the lease, the token went away, or its
    /// connection did.
    pub skipped: u64,
    /// Whether the run stopped at its deadline with work left for the next run.
    pub stopped_early: bool,
    /// Grants held for a confirmation that never came, revoked at their provider.
    pub unconfirmed_revoked: u64,
    /// Tokens of deleted connections revoked at their provider and deleted.
    pub deleted_connection_tokens_revoked: u64,
    /// Deleted connections handed to the refresh workers to end (a run with a work queue
    /// ends none itself).
    pub deletions_queued: u64,
    /// Deleted connections whose last trace (record and secrets) was removed.
    pub deleted_connections_purged: u64,
    /// Connections written before the invitation index, indexed by this run (once per table).
    pub connections_indexed: u64,
    /// Spans of due times handed to the refresh workers (a fanned-out run refreshes nothing
    /// itself).
    pub work_queued: u64,
    /// Notifications delivered by this run (to webhooks and the event bus).
    pub notifications_delivered: u64,
}

enum Outcome {
    Refreshed,
    Failed,
    NeedsReauthorization,
    Skipped,
}

/// Kept in hand beyond a refresh's own needs (the provider's timeout and the grant write):
/// the reads and writes around it.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);
const PAGE_SIZE: u32 = 100;
/// Due keys listed per query: the most a page holds (keys-only entries, some 150 bytes each),
/// so a worker's span costs one query a shard in the common case.
const DUE_PAGE_SIZE: u32 = 1000;

impl Keyport {
    /// One run on one machine (the local server's loop, or a refresher without workers): the
    /// upkeep, then everything due in every shard, until none is left or `deadline` (minus a
    /// margin) nears.
    pub async fn refresh_due(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
        concurrency: usize,
    ) -> Result<RefreshReport, ServiceError> {
        let report = self.refresh_upkeep(deadline).await?;
        let listing = DueListing::new(0..self.store.due_shards(), DUE_PAGE_SIZE);
        let window = DueWindow::until(Utc::now());
        self.refresh_listed(listing, window, deadline, concurrency, report)
            .await
    }

    /// A worker's share of a fanned-out run: what came due in `window`, in every due shard,
    /// the shards taken in turn.
    pub async fn refresh_span(
        self: &Arc<Self>,
        window: DueWindow,
        deadline: tokio::time::Instant,
        concurrency: usize,
    ) -> Result<RefreshReport, ServiceError> {
        let listing = DueListing::new(0..self.store.due_shards(), DUE_PAGE_SIZE);
        let report = RefreshReport::default();
        self.refresh_listed(listing, window, deadline, concurrency, report)
            .await
    }

    /// The due tokens of one shard, in `window` (or up to now without one): the work messages
    /// earlier scheduled runs queued.
    pub async fn refresh_shard(
        self: &Arc<Self>,
        shard: u32,
        window: Option<DueWindow>,
        deadline: tokio::time::Instant,
        concurrency: usize,
    ) -> Result<RefreshReport, ServiceError> {
        let window = window.unwrap_or_else(|| DueWindow::until(Utc::now()));
        let listing = DueListing::new([shard], DUE_PAGE_SIZE);
        let report = RefreshReport::default();
        self.refresh_listed(listing, window, deadline, concurrency, report)
            .await
    }

    /// The work a fanned-out run at `now` hands to workers: the backlog and the spans of the
    /// last minute. Each item says only where to look; the due index says what
    /// is due when the worker looks, so an item delivered twice or late costs a query, never a
    /// second refresh (the lease sees to that).
    pub fn refresh_work(&self, now: chrono::DateTime<Utc>) -> Vec<RefreshWork> {
        super::work::scheduled_work(self.settings.refresh_windows, now)
    }

    /// What every run does before refreshing: indexing a table's older invitations (once),
    /// revoking grants whose confirmation never came, ending deleted connections' tokens (or,
    /// with a work queue, handing each deleted connection to the workers).
    pub async fn refresh_upkeep(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<RefreshReport, ServiceError> {
        let mut report = RefreshReport::default();
        if !self.store.invitations_indexed().await? {
            report.connections_indexed = self.store.index_invitations().await?;
        }
        report.unconfirmed_revoked = self.revoke_unconfirmed(Utc::now()).await?;
        // A store or receiver in trouble must not hold up the refreshes: the outbox keeps
        // what was not delivered for the next run.
        match self.deliver_notifications(deadline).await {
            Ok(delivery) => report.notifications_delivered = u64::from(delivery.delivered),
            Err(error) => tracing::warn!(%error, "notifications were not delivered this run"),
        }
        if let Some(queue) = &self.work_queue {
            report.deletions_queued = self.queue_retired_connections(queue.as_ref()).await?;
            return Ok(report);
        }
        let sweep = deadline::within(deadline, self.sweep_deleted_connections()).await?;
        report.deleted_connection_tokens_revoked = sweep.tokens_revoked;
        report.deleted_connections_purged = sweep.purged;
        report.stopped_early |= sweep.unfinished;
        Ok(report)
    }

    /// Refreshes the tokens `listing` finds due in `window`, adding to `report`, and logs the
    /// run's line.
    async fn refresh_listed(
        self: &Arc<Self>,
        mut listing: DueListing,
        window: DueWindow,
        deadline: tokio::time::Instant,
        concurrency: usize,
        mut report: RefreshReport,
    ) -> Result<RefreshReport, ServiceError> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let mut connections: HashMap<ConnectionId, Option<Arc<Connection>>> = HashMap::new();
        // No refresh is dispatched that could not finish before the deadline: a provider that
        // takes its whole timeout, then the write of its answer.
        let margin = self.oauth.http().timeout() + self.settings.grant_write_budget + SAFETY_MARGIN;
        loop {
            let key = match listing.step() {
                Step::Key(key) => key,
                Step::Read { shard, page } => {
                    let page = self.store.due_tokens_in_shard(shard, window, page).await?;
                    listing.listed(shard, page);
                    continue;
                }
                Step::Done => break,
            };
            let connection = match connections.get(&key.connection_id) {
                Some(known) => known.clone(),
                None => {
                    let loaded = self
                        .store
                        .get_connection(&key.connection_id)
                        .await?
                        .map(Arc::new);
                    connections.insert(key.connection_id.clone(), loaded.clone());
                    loaded
                }
            };
            // A deleted connection's leftovers, or a disabled one's: the provider is not
            // called.
            let Some(connection) = connection.filter(|c| c.is_enabled()) else {
                report.skipped += 1;
                continue;
            };
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            // Checked after waiting for a worker: the wait itself can eat the margin.
            if tokio::time::Instant::now() + margin >= deadline {
                report.stopped_early = true;
                break;
            }
            let keyport = self.clone();
            running.spawn(async move {
                let outcome =
                    deadline::within(deadline, keyport.refresh_one(&connection, &key)).await;
                drop(permit);
                outcome
            });
            while let Some(done) = running.try_join_next() {
                tally(&mut report, done);
            }
        }
        while let Some(done) = running.join_next().await {
            tally(&mut report, done);
        }
        report.log();
        Ok(report)
    }

    /// Revokes every grant a callback obtained whose confirmation never came: the grant was
    /// never placed, and must not stay alive at the provider either.
    async fn revoke_unconfirmed(&self, now: chrono::DateTime<Utc>) -> Result<u64, ServiceError> {
        let mut revoked = 0;
        loop {
            let expired = self.store.take_expired_unconfirmed(now, PAGE_SIZE).await?;
            if expired.is_empty() {
                return Ok(revoked);
            }
            for pending in expired {
                if self.revoke_held_grant(pending).await {
                    revoked += 1;
                }
            }
        }
    }

    async fn revoke_held_grant(&self, pending: crate::domain::PendingAuthorization) -> bool {
        let Some(awaited) = pending.awaiting_confirmation else {
            return false;
        };
        let Ok(Some(connection)) = self.store.get_connection(&pending.connection_id).await else {
            return false;
        };
        // Issued under another destination: nothing stored goes to the new one.
        if awaited.issued_for != connection.destination_fingerprint() {
            return false;
        }
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: pending.owner.clone(),
        };
        let outcome = async {
            let secrets = self.cipher.open_token(&key, &awaited.sealed).await?;
            let credentials = self.credentials(&connection).await?;
            Ok::<bool, ServiceError>(
                self.oauth
                    .revoke(&connection, &credentials, &secrets)
                    .await?,
            )
        }
        .await;
        let revoked = outcome.unwrap_or(false);
        self.audit(
            &connection.id,
            AuditAction::TokenRevoked,
            REFRESHER_ACTOR,
            Some(&key.owner),
            Some(if revoked {
                "an authorization was never confirmed: its grant was revoked at the provider"
            } else {
                "an authorization was never confirmed: its grant was discarded; the provider did not confirm a revocation"
            }),
        )
        .await;
        revoked
    }

    /// A token the due index still files under an earlier due time (its grant's write was
    /// throttled, see `put_until`), filed under its own. Best effort: one that stays filed
    /// early is listed again by a later run.
    async fn refile(&self, token: &StoredToken) {
        let mut filed = token.clone();
        filed.filed_due_at = None;
        if let Err(error) = self
            .store
            .put_token(&filed, Expect::Version(token.version))
            .await
        {
            tracing::debug!(connection_id = %token.connection_id, owner = %token.owner, %error, "the due index entry stays early for now");
        }
    }

    async fn refresh_one(&self, connection: &Connection, key: &TokenKey) -> Outcome {
        let before = match self.store.get_token(key).await {
            Ok(Some(token)) => token,
            Ok(None) => return Outcome::Skipped,
            Err(_) => return Outcome::Failed,
        };
        if before
            .lease
            .as_ref()
            .is_some_and(|lease| lease.is_live_at(Utc::now()))
        {
            return Outcome::Skipped;
        }
        match self
            .fresh_token(
                connection,
                key,
                Freshness::Scheduled {
                    min_valid: self.settings.refresh_lead,
                },
                REFRESHER_ACTOR,
                Some(Some(before.clone())),
            )
            .await
        {
            // A new grant written: a new expiry, or (a token without one, refreshed to keep its
            // grant alive) a new due time.
            Ok((after, _))
                if after.version != before.version
                    && (after.expires_at != before.expires_at
                        || after.refresh_due_at != before.refresh_due_at) =>
            {
                Outcome::Refreshed
            }
            Ok((after, _)) => {
                if after.filed_due_at.is_some() {
                    self.refile(&after).await;
                }
                Outcome::Skipped
            }
            Err(ServiceError::NeedsReauthorization { .. }) => Outcome::NeedsReauthorization,
            Err(ServiceError::RefreshInProgress | ServiceError::ConnectionDisabled) => {
                Outcome::Skipped
            }
            Err(error) => {
                tracing::warn!(connection_id = %key.connection_id, owner = %key.owner, code = error.code(), "scheduled refresh failed");
                Outcome::Failed
            }
        }
    }
}

impl RefreshReport {
    /// The run's one line (target `refresher`), whichever way the run went.
    pub fn log(&self) {
        tracing::info!(
            target: "refresher",
            event = "refresher_run",
            refreshed = self.refreshed,
            failed = self.failed,
            needs_reauthorization = self.needs_reauthorization,
            skipped = self.skipped,
            stopped_early = self.stopped_early,
            unconfirmed_revoked = self.unconfirmed_revoked,
            deleted_connection_tokens_revoked = self.deleted_connection_tokens_revoked,
            deletions_queued = self.deletions_queued,
            deleted_connections_purged = self.deleted_connections_purged,
            connections_indexed = self.connections_indexed,
            work_queued = self.work_queued,
            notifications_delivered = self.notifications_delivered,
            "refresher run finished"
        );
    }
}

fn tally(report: &mut RefreshReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Refreshed) => report.refreshed += 1,
        Ok(Outcome::NeedsReauthorization) => report.needs_reauthorization += 1,
        Ok(Outcome::Skipped) => report.skipped += 1,
        Ok(Outcome::Failed) | Err(_) => report.failed += 1,
    }
}
