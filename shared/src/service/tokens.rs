//! Tokens for callers: read with in-line refresh, forced refresh, disconnect. One refresh of a
//! token runs at a time across every instance, under a lease taken with a conditional write;
//! other readers wait for its result or, while the current token is still valid, use it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::ser::SerializeStruct;

use super::access::{OwnerRequest, TokenAccess};
use super::{Keyport, ServiceError, deadline, require_enabled};
use crate::domain::{
    AuditAction, Connection, ConnectionId, EventData, EventType, GrantFacts, GrantLifetime, Lease,
    Owner, Principal, REFRESHER_ACTOR, StoredToken, TokenFailure, TokenSecrets, TokenStatus,
};
use crate::oauth::{ClientCredentials, OAuthError, TokenGrant};
use crate::ports::{Expect, StoreError, TokenKey};

/// How often a reader looks again while another instance holds the refresh lease.
pub(super) const LEASE_POLL: Duration = Duration::from_millis(50);
/// How many times a write that must not be lost is attempted.
const WRITE_ATTEMPTS: u32 = 5;

/// A token as handed to its caller: the one place an access token leaves Keyport.
// The schema is derived from these fields and the wire shape is the `Serialize` below: the
// description's tests serialize real views against the schema, so the two cannot part.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(as = Token, example = json!({
        "access_token": "<access token>",
        "token_type": "Bearer",
        "expires_at": "2026-01-05T10:30:00Z",
        "scope": "openid api",
        "connection_id": "con_3f2c8e4a9b1d4c7e8f0a1b2c3d4e5f60",
        "owner": "shared",
        "extra": {"instance_url": "https://acme.my.example.com"},
        "min_valid_met": true
    }))
)]
pub struct TokenView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub access_token: SecretString,
    pub token_type: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub expires_at: Option<DateTime<Utc>>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub scope: Option<String>,
    pub connection_id: ConnectionId,
    pub owner: Owner,
    /// Provider extras kept with the token, e.g. Salesforce's `instance_url`.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Whether the token stays valid for the `min_valid_seconds` asked (or the default
    /// margin): false when the provider's lifetime cannot meet it, or when Keyport declined to
    /// ask the provider again within 30 s of its last request for this token.
    pub min_valid_met: bool,
}

impl fmt::Debug for TokenView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenView")
            .field("access_token", &"[REDACTED]")
            .field("connection_id", &self.connection_id)
            .field("owner", &self.owner)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The wire shape of `GET /connections/{id}/token`.
impl Serialize for TokenView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("TokenView", 8)?;
        out.serialize_field("access_token", self.access_token.expose_secret())?;
        out.serialize_field("token_type", &self.token_type)?;
        out.serialize_field("expires_at", &self.expires_at)?;
        out.serialize_field("scope", &self.scope)?;
        out.serialize_field("connection_id", &self.connection_id)?;
        out.serialize_field("owner", &self.owner)?;
        out.serialize_field("extra", &self.extra)?;
        out.serialize_field("min_valid_met", &self.min_valid_met)?;
        out.end()
    }
}

impl TokenView {
    pub(super) fn new(
        record: &StoredToken,
        secrets: TokenSecrets,
        min_valid: Duration,
        declared_extras: &[String],
    ) -> Self {
        Self {
            extra: secrets.declared_extras(declared_extras),
            min_valid_met: record.is_usable_for(Utc::now(), chrono_duration(min_valid)),
            access_token: secrets.access_token,
            token_type: record.token_type.clone(),
            expires_at: record.expires_at,
            scope: record.scope.clone(),
            connection_id: record.connection_id.clone(),
            owner: record.owner.clone(),
        }
    }
}

/// What a token must be fresh for, and who is asking.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Freshness {
    /// A caller: a read (`force: false`) or a forced refresh. Limited to one provider call per
    /// token per on-demand interval while the token is still valid.
    OnDemand { min_valid: Duration, force: bool },
    /// The scheduled refresher, ahead of expiry.
    Scheduled { min_valid: Duration },
}

/// Whether the refresher should refresh `token` at `now`.
fn is_due(token: &StoredToken, now: DateTime<Utc>) -> bool {
    token.refresh_due_at.is_some_and(|due| due <= now)
}

pub(super) fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl Keyport {
    /// A token valid for at least `min_valid` (or the installation's default margin),
    /// refreshed in line when it is not.
    pub async fn access_token(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        owner: OwnerRequest,
        min_valid: Option<Duration>,
    ) -> Result<TokenView, ServiceError> {
        // One round trip for the connection (for the access rules) and the token together.
        let key = TokenKey {
            connection_id: id.clone(),
            owner: self.access.requested_owner(principal, owner),
        };
        let (connection, token) = self.store.get_connection_and_token(&key).await?;
        let connection = connection.ok_or(ServiceError::NotFound("connection"))?;
        let allowed = self.access.token_owner(principal, &connection, owner);
        let access = self.audit_denial(principal, id, allowed).await?;
        let min_valid = min_valid.unwrap_or(self.settings.default_min_valid);
        let (record, secrets) = self
            .fresh_token(
                &connection,
                &key,
                Freshness::OnDemand {
                    min_valid,
                    force: false,
                },
                principal.subject.as_str(),
                Some(token),
            )
            .await?;
        let view = TokenView::new(
            &record,
            secrets,
            min_valid,
            &self.declared_extras(&connection),
        );
        self.record_handout(principal, &connection, &access, &view)
            .await;
        Ok(view)
    }

    /// Refreshes now, whatever the token's expiry.
    pub async fn force_refresh(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        owner: OwnerRequest,
    ) -> Result<TokenView, ServiceError> {
        let (connection, access) = self.token_target(principal, id, owner).await?;
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: access.owner.clone(),
        };
        let min_valid = self.settings.default_min_valid;
        let (record, secrets) = self
            .fresh_token(
                &connection,
                &key,
                Freshness::OnDemand {
                    min_valid,
                    force: true,
                },
                principal.subject.as_str(),
                None,
            )
            .await?;
        let view = TokenView::new(
            &record,
            secrets,
            min_valid,
            &self.declared_extras(&connection),
        );
        self.record_handout(principal, &connection, &access, &view)
            .await;
        Ok(view)
    }

    /// Revokes the grant at the provider (where it offers revocation) and deletes the token.
    /// Returns whether the provider confirmed the revocation.
    pub async fn disconnect(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        owner: OwnerRequest,
    ) -> Result<bool, ServiceError> {
        let (connection, access) = self.token_target(principal, id, owner).await?;
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: access.owner,
        };
        let allowed = self.access.may_disconnect(principal, &key.owner);
        self.audit_denial(principal, id, allowed).await?;
        self.disconnect_token(principal, &connection, &key).await
    }

    /// Revokes the token at `key` at the provider (where it offers revocation), deletes it and
    /// records who did, once the caller is known to be allowed to. Returns whether the provider
    /// confirmed the revocation.
    pub(super) async fn disconnect_token(
        &self,
        principal: &Principal,
        connection: &Connection,
        key: &TokenKey,
    ) -> Result<bool, ServiceError> {
        let token = self
            .store
            .get_token(key)
            .await?
            // The same answer a read or a refresh of a missing token gets.
            .ok_or_else(|| ServiceError::NotAuthorized {
                owner: key.owner.to_string(),
            })?;
        let revoked = self.revoke_at_provider(connection, &token).await;
        self.store.delete_token(key, token.version).await?;
        let detail = if revoked {
            "revoked at the provider"
        } else {
            "deleted; the provider did not confirm a revocation"
        };
        self.audit(
            &key.connection_id,
            AuditAction::TokenRevoked,
            principal.subject.as_str(),
            Some(&key.owner),
            Some(detail),
        )
        .await;
        Ok(revoked)
    }

    /// The connection and token a caller asks for, after the access rules.
    async fn token_target(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        owner: OwnerRequest,
    ) -> Result<(Connection, TokenAccess), ServiceError> {
        let connection = self.load_connection(id).await?;
        let access = self.access.token_owner(principal, &connection, owner);
        let access = self.audit_denial(principal, id, access).await?;
        Ok((connection, access))
    }

    /// Revokes one token's grant at the provider; failures are logged, not raised.
    pub(super) async fn revoke_at_provider(
        &self,
        connection: &Connection,
        token: &StoredToken,
    ) -> bool {
        match self.credentials(connection).await {
            Ok(credentials) => self.revoke_with(connection, &credentials, token).await,
            Err(error) => {
                tracing::warn!(connection_id = %token.connection_id, owner = %token.owner, error = %error, "revocation at the provider failed");
                false
            }
        }
    }

    /// Revokes one token's grant with the given client credentials, only where the token was
    /// issued: a token from another destination is not sent to this connection's endpoint.
    pub(super) async fn revoke_with(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        token: &StoredToken,
    ) -> bool {
        let key = TokenKey {
            connection_id: token.connection_id.clone(),
            owner: token.owner.clone(),
        };
        if !token.was_issued_for(connection) {
            tracing::warn!(connection_id = %key.connection_id, owner = %key.owner, "a token issued elsewhere is not revoked at this connection's endpoint");
            return false;
        }
        let outcome = async {
            let secrets = self.cipher.open_token(&key, &token.sealed).await?;
            let revoked = self.oauth.revoke(connection, credentials, &secrets).await;
            Ok::<bool, ServiceError>(self.check_client(connection, revoked)?)
        }
        .await;
        match outcome {
            Ok(revoked) => revoked,
            Err(error) => {
                tracing::warn!(connection_id = %key.connection_id, owner = %key.owner, error = %error, "revocation at the provider failed");
                false
            }
        }
    }

    /// The core of every read: returns a token usable for `min_valid`, refreshing under the
    /// lease if needed, waiting (bounded) for another instance's refresh.
    pub(crate) async fn fresh_token(
        &self,
        connection: &Connection,
        key: &TokenKey,
        freshness: Freshness,
        actor: &str,
        mut already_read: Option<Option<StoredToken>>,
    ) -> Result<(StoredToken, TokenSecrets), ServiceError> {
        require_enabled(connection)?;
        let (min_valid, force, on_demand) = match freshness {
            Freshness::OnDemand { min_valid, force } => (min_valid, force, true),
            Freshness::Scheduled { min_valid } => (min_valid, false, false),
        };
        let min_valid = chrono_duration(min_valid);
        let give_up_at = Utc::now()
            + chrono_duration(self.settings.lease_duration)
            + chrono::Duration::seconds(5);
        let mut first_look = true;
        // This process's turn at refreshing this token, taken at the first sign it needs one.
        let mut turn = None;
        loop {
            let now = Utc::now();
            let current = match already_read.take() {
                Some(token) => token,
                None => self.store.get_token(key).await?,
            };
            let Some(current) = current else {
                if connection.grant_type.is_interactive() {
                    return Err(ServiceError::NotAuthorized {
                        owner: key.owner.to_string(),
                    });
                }
                return self.obtain_unattended(connection, key, actor).await;
            };
            if !current.was_issued_for(connection) {
                // Issued where the connection no longer sends anything (its endpoints or
                // client changed while this token was being refreshed or written): never
                // sent to the new destination, never handed out.
                self.discard_stale_token(key, &current).await?;
                continue;
            }
            if current.status == TokenStatus::NeedsReauthorization {
                return Err(ServiceError::NeedsReauthorization {
                    owner: key.owner.to_string(),
                    reason: current
                        .last_error
                        .map(|e| e.message)
                        .unwrap_or_else(|| "the grant was revoked or expired".into()),
                });
            }
            // The refresher refreshes what the due index says is due, even a token still good
            // for its lead: its refresh token's inactivity window may be closing. Looked at on
            // every pass, as a refresh by someone else moves the due time on.
            let wanted_fresh = (force && first_look) || (!on_demand && is_due(&current, now));
            first_look = false;
            if !wanted_fresh && current.is_usable_for(now, min_valid) {
                let secrets = self.cipher.open_token(key, &current.sealed).await?;
                return Ok((current, secrets));
            }
            // A caller cannot make Keyport ask the provider again for a token it asked for
            // moments ago and that is still valid: the caller gets it, and is told whether it
            // meets the validity asked for.
            if on_demand && self.asked_recently(&current, now) {
                let secrets = self.cipher.open_token(key, &current.sealed).await?;
                return Ok((current, secrets));
            }
            if turn.is_none() {
                let (taken, waited) = self.refresh_turns.take(key).await;
                turn = Some(taken);
                // Another task of this process may have refreshed while this one queued.
                if waited && !wanted_fresh {
                    continue;
                }
            }
            // Any live lease is someone else's refresh, even one of this process's: a task
            // holding a lease never comes back here.
            if let Some(lease) = current.lease.as_ref().filter(|l| l.is_live_at(now)) {
                tracing::debug!(connection_id = %key.connection_id, owner = %key.owner, holder = %lease.holder, "waiting for another instance's refresh");
                if !force && current.is_usable_for(now, chrono::Duration::zero()) {
                    let secrets = self.cipher.open_token(key, &current.sealed).await?;
                    return Ok((current, secrets));
                }
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
                Ok(leased) => {
                    return self
                        .refresh_under_lease(connection, key, leased, force, actor)
                        .await;
                }
                // Someone else wrote first (took the lease, or finished a refresh): look again.
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn refresh_under_lease(
        &self,
        connection: &Connection,
        key: &TokenKey,
        leased: StoredToken,
        force: bool,
        actor: &str,
    ) -> Result<(StoredToken, TokenSecrets), ServiceError> {
        let previous = match self.cipher.open_token(key, &leased.sealed).await {
            Ok(secrets) => secrets,
            Err(error) => {
                self.release_lease(key, &leased).await;
                return Err(error.into());
            }
        };
        let lease_ends = leased
            .lease
            .as_ref()
            .map_or_else(Utc::now, |lease| lease.expires_at);
        // Loaded once: a grant that loses to a delete is revoked with the credentials it was
        // obtained with, which the delete removes from the secret store.
        let credentials = match self.credentials(connection).await {
            Ok(credentials) => credentials,
            Err(error) => {
                self.release_lease(key, &leased).await;
                return Err(error);
            }
        };
        let outcome = self
            .refresh_with_retries(
                connection,
                &credentials,
                Some(&previous),
                leased.scope.as_deref(),
                lease_ends,
            )
            .await;
        match outcome {
            Ok(grant) => {
                let saved = self
                    .write_refreshed_grant(connection, &credentials, key, grant, &leased)
                    .await?;
                self.audit(
                    &key.connection_id,
                    AuditAction::TokenRefreshed,
                    actor,
                    Some(&key.owner),
                    None,
                )
                .await;
                if leased.last_error.is_some() {
                    let mut data = EventData::about(&connection.id, connection.name.as_str())
                        .owner(&key.owner);
                    data.status = Some(TokenStatus::Valid.as_str().to_owned());
                    self.notify(EventType::Recovered, data).await;
                }
                Ok(saved)
            }
            Err(OAuthError::InvalidGrant { description }) => {
                // A refresh token that changed under us means another refresher won (one
                // whose lease ran out while it waited on the provider): use its result.
                if let Some(current) = self.store.get_token(key).await?
                    && current.version != leased.version
                    && current.status == TokenStatus::Valid
                {
                    let secrets = self.cipher.open_token(key, &current.sealed).await?;
                    if !secrets.same_refresh_token(&previous)
                        && current.is_usable_for(Utc::now(), chrono::Duration::zero())
                    {
                        return Ok((current, secrets));
                    }
                }
                let reason = description.unwrap_or_else(|| {
                    "the provider rejected the refresh token (invalid_grant)".into()
                });
                self.mark_needs_reauthorization(&leased, &reason).await?;
                self.audit(
                    &key.connection_id,
                    AuditAction::TokenFailed,
                    actor,
                    Some(&key.owner),
                    Some("invalid_grant: needs authorization again"),
                )
                .await;
                let mut data =
                    EventData::about(&connection.id, connection.name.as_str()).owner(&key.owner);
                data.status = Some(TokenStatus::NeedsReauthorization.as_str().to_owned());
                data.error = Some("invalid_grant".to_owned());
                self.notify(EventType::NeedsReauthorization, data).await;
                Err(ServiceError::NeedsReauthorization {
                    owner: key.owner.to_string(),
                    reason,
                })
            }
            Err(error) => {
                self.release_failed_lease(key, &leased, error.code()).await;
                self.audit(
                    &key.connection_id,
                    AuditAction::TokenFailed,
                    actor,
                    Some(&key.owner),
                    Some(error.code()),
                )
                .await;
                // The first failure after success, not every retry of a failing token.
                if leased.last_error.is_none() {
                    let mut data = EventData::about(&connection.id, connection.name.as_str())
                        .owner(&key.owner);
                    data.status = Some("refresh_failing".to_owned());
                    data.error = Some(error.code().to_owned());
                    self.notify(EventType::RefreshFailed, data).await;
                }
                // A token that is still valid beats an error, unless the caller insisted.
                if !force && leased.is_usable_for(Utc::now(), chrono::Duration::zero()) {
                    return Ok((leased, previous));
                }
                Err(error.into())
            }
        }
    }

    /// One refresh of `previous` (or, without a refresh token or without `previous`, a new
    /// unattended grant), retried with backoff while the provider is down or rate limiting. No
    /// attempt starts that could outlast the lease: after it, another instance may present the
    /// same refresh token.
    pub(super) async fn refresh_with_retries(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        previous: Option<&TokenSecrets>,
        scope: Option<&str>,
        lease_ends: DateTime<Utc>,
    ) -> Result<TokenGrant, OAuthError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.time_for_a_provider_call(lease_ends, Duration::ZERO) {
                return Err(OAuthError::OutOfTime);
            }
            let result = if let Some(previous) = previous.filter(|p| p.refresh_token.is_some()) {
                self.oauth
                    .refresh(connection, credentials, previous, scope)
                    .await
            } else if !connection.grant_type.is_interactive() {
                self.oauth.request_unattended(connection, credentials).await
            } else {
                Err(OAuthError::InvalidGrant {
                    description: Some("no refresh token was issued for this grant".into()),
                })
            };
            let result = self.check_client(connection, result);
            match result {
                Err(error) if error.is_transient() => {
                    match self.settings.backoff.delay(attempt, error.retry_after()) {
                        Some(wait) if self.time_for_a_provider_call(lease_ends, wait) => {
                            tokio::time::sleep(wait).await
                        }
                        _ => return Err(error),
                    }
                }
                other => return other,
            }
        }
    }

    /// The token-response fields callers of this connection see: the connection's own list,
    /// or for a catalog provider without one, the catalog's; and the values its protocol keeps
    /// from the callback.
    pub(super) fn declared_extras(&self, connection: &Connection) -> Vec<String> {
        let provider = self.catalog.get(connection.provider.as_str());
        let mut declared = if connection.token_response_extras.is_empty() {
            provider.map_or_else(Vec::new, |p| p.token_response_extras.clone())
        } else {
            connection.token_response_extras.clone()
        };
        for name in provider.map_or(&[][..], |p| &p.protocol.callback_params) {
            if !declared.contains(name) {
                declared.push(name.clone());
            }
        }
        declared
    }

    /// Whether the provider was asked for this still-valid token within the on-demand interval.
    fn asked_recently(&self, token: &StoredToken, now: DateTime<Utc>) -> bool {
        token.is_usable_for(now, chrono::Duration::zero())
            && token.provider_asked_at.is_some_and(|asked| {
                now - asked < chrono_duration(self.settings.on_demand_refresh_interval)
            })
    }

    /// Whether a provider call starting `after` from now could be waited for (its whole
    /// timeout) and its result written (the grant write budget) before the lease ends and
    /// before the invocation's deadline: after the lease another instance may present the same
    /// refresh token, and after the deadline Lambda stops the process mid-write.
    fn time_for_a_provider_call(&self, lease_ends: DateTime<Utc>, after: Duration) -> bool {
        let needed = after + self.oauth.http().timeout() + self.settings.grant_write_budget;
        Utc::now() + chrono_duration(needed) < lease_ends
            && deadline::remaining().is_none_or(|left| needed < left)
    }

    async fn obtain_unattended(
        &self,
        connection: &Connection,
        key: &TokenKey,
        actor: &str,
    ) -> Result<(StoredToken, TokenSecrets), ServiceError> {
        let saved = self.obtain_unattended_grant(connection, key).await?;
        self.audit(
            &key.connection_id,
            AuditAction::TokenAuthorized,
            actor,
            Some(&key.owner),
            Some(connection.grant_type.as_str()),
        )
        .await;
        Ok(saved)
    }

    /// A first unattended grant (client credentials, password), requested and stored.
    pub(super) async fn obtain_unattended_grant(
        &self,
        connection: &Connection,
        key: &TokenKey,
    ) -> Result<(StoredToken, TokenSecrets), ServiceError> {
        let credentials = self.credentials(connection).await?;
        let grant = self.check_client(
            connection,
            self.oauth
                .request_unattended(connection, &credentials)
                .await,
        )?;
        self.write_grant(connection, key, grant, None, Utc::now())
            .await
    }

    /// Stores a grant from a completed authorization, replacing any token the owner had. A new
    /// authorization starts a new lineage (`created_at` is now), which an older refresh still
    /// in flight recognises and gives way to.
    pub(super) async fn save_new_grant(
        &self,
        connection: &Connection,
        key: &TokenKey,
        grant: TokenGrant,
    ) -> Result<(), ServiceError> {
        let existing = self.store.get_token(key).await?;
        self.write_grant(
            connection,
            key,
            grant,
            existing.map(|t| t.version),
            Utc::now(),
        )
        .await?;
        Ok(())
    }

    /// Stores what a refresh under `leased` obtained, unless something that must win got
    /// there first: a disconnect or a connection delete (the token is gone) or a newer
    /// authorization (another lineage). Then the fresh grant is revoked at the provider and
    /// never written, and the caller gets what is there now.
    pub(super) async fn write_refreshed_grant(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        key: &TokenKey,
        grant: TokenGrant,
        leased: &StoredToken,
    ) -> Result<(StoredToken, TokenSecrets), ServiceError> {
        let mut record = self
            .grant_record(
                connection,
                key,
                &grant,
                leased.created_at,
                leased.grant_end_reported,
            )
            .await?;
        // Whether the grant's end was reported before this write: once per grant.
        let mut reported_before = leased.grant_end_reported;
        // Retried for as long as the lease holds: until then no one else refreshes this token,
        // and this grant may be the only live one.
        let retry_until = leased
            .lease
            .as_ref()
            .map_or_else(Utc::now, |lease| lease.expires_at);
        let mut expected = leased.version;
        let winner = loop {
            match self
                .put_until(
                    &record,
                    Expect::Version(expected),
                    retry_until,
                    leased.due_filing(),
                )
                .await
            {
                Ok(saved) => {
                    self.report_grant_ending(connection, &saved, reported_before)
                        .await;
                    return Ok((saved, grant.secrets));
                }
                Err(StoreError::NotFound(_)) => break None,
                Err(StoreError::Conflict(_)) => match self.store.get_token(key).await? {
                    None => break None,
                    Some(current) if current.created_at != leased.created_at => {
                        break Some(current);
                    }
                    // The same grant, written by another refresher after this lease ran out:
                    // this result is as new as that one.
                    Some(current) => {
                        expected = current.version;
                        reported_before |= current.grant_end_reported;
                        record.grant_end_reported |=
                            current.grant_end_reported && record.grant_ends_at.is_some();
                    }
                },
                Err(error) => return Err(error.into()),
            }
        };
        let why = match winner {
            None => "the token was disconnected or its connection deleted",
            Some(_) => "a newer authorization replaced the token",
        };
        self.revoke_lost_grant(connection, credentials, key, &grant, why)
            .await;
        match winner {
            None => Err(ServiceError::NotAuthorized {
                owner: key.owner.to_string(),
            }),
            Some(current) => {
                let secrets = self.cipher.open_token(key, &current.sealed).await?;
                Ok((current, secrets))
            }
        }
    }

    /// Revokes a grant that lost to a disconnect, a delete or a newer authorization.
    async fn revoke_lost_grant(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        key: &TokenKey,
        grant: &TokenGrant,
        why: &str,
    ) {
        tracing::info!(connection_id = %key.connection_id, owner = %key.owner, why, "a refreshed grant lost and is revoked, not written");
        let revoked = self
            .oauth
            .revoke(connection, credentials, &grant.secrets)
            .await
            .unwrap_or(false);
        if !revoked {
            tracing::warn!(connection_id = %key.connection_id, owner = %key.owner, "the provider did not confirm the revocation of a lost grant");
        }
    }

    /// Seals and writes a grant from an authorization (or a first unattended grant): retried
    /// while the store is unavailable, and written over whatever version is current if another
    /// writer got there first (the newest authorization wins).
    async fn write_grant(
        &self,
        connection: &Connection,
        key: &TokenKey,
        grant: TokenGrant,
        mut expected_version: Option<u64>,
        created_at: DateTime<Utc>,
    ) -> Result<(StoredToken, TokenSecrets), ServiceError> {
        // A new lineage: its end, if it has one, is not reported yet.
        let record = self
            .grant_record(connection, key, &grant, created_at, false)
            .await?;
        let retry_until = Utc::now() + chrono_duration(self.settings.grant_write_budget);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let expect = expected_version
                .map(Expect::Version)
                .unwrap_or(Expect::Absent);
            match self.put_until(&record, expect, retry_until, None).await {
                Ok(saved) => {
                    self.report_grant_ending(connection, &saved, false).await;
                    return Ok((saved, grant.secrets));
                }
                Err(
                    StoreError::Conflict(_)
                    | StoreError::AlreadyExists(_)
                    | StoreError::NotFound(_),
                ) if attempt < WRITE_ATTEMPTS => {
                    expected_version = self.store.get_token(key).await?.map(|t| t.version);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The stored form of a new grant: its secrets sealed, due for refresh ahead of its access
    /// token's expiry, before its refresh token's inactivity window closes, and when its
    /// warning window before its absolute end opens (unless `end_reported` already).
    async fn grant_record(
        &self,
        connection: &Connection,
        key: &TokenKey,
        grant: &TokenGrant,
        created_at: DateTime<Utc>,
        end_reported: bool,
    ) -> Result<StoredToken, ServiceError> {
        let now = Utc::now();
        let sealed = self.seal_with_retries(key, &grant.secrets).await?;
        let has_refresh_token = grant.secrets.refresh_token.is_some();
        let facts = GrantFacts {
            written_at: now,
            authorized_at: created_at,
            expires_at: grant.expires_at,
            has_refresh_token,
            unattended: !connection.grant_type.is_interactive(),
        };
        let schedule = self.settings.lifetime_margins().schedule(
            &facts,
            &self.grant_lifetime(connection),
            end_reported,
        );
        Ok(StoredToken {
            connection_id: key.connection_id.clone(),
            owner: key.owner.clone(),
            status: TokenStatus::Valid,
            token_type: grant.token_type.clone(),
            scope: grant.scope.clone(),
            expires_at: grant.expires_at,
            refresh_due_at: schedule.refresh_due_at,
            has_refresh_token,
            last_error: None,
            lease: None,
            issued_for: Some(connection.destination_fingerprint()),
            provider_asked_at: Some(now),
            grant_ends_at: schedule.grant_ends_at,
            // An end no longer documented is no longer reported.
            grant_end_reported: schedule.grant_ends_at.is_some()
                && (end_reported || schedule.grant_ending),
            filed_due_at: None,
            created_at,
            updated_at: now,
            sealed,
            version: 0,
        })
    }

    /// The documented lifetimes of the connection's provider's grants (none for a custom one).
    fn grant_lifetime(&self, connection: &Connection) -> GrantLifetime {
        self.catalog
            .get(connection.provider.as_str())
            .map(|provider| provider.lifetime.clone())
            .unwrap_or_default()
    }

    /// Records, once per grant, that `saved` entered the warning window before its absolute
    /// end: `reported_before` is what the grant's previous record said.
    async fn report_grant_ending(
        &self,
        connection: &Connection,
        saved: &StoredToken,
        reported_before: bool,
    ) {
        if reported_before || !saved.grant_end_reported {
            return;
        }
        let Some(ends) = saved.grant_ends_at else {
            return;
        };
        let detail = format!(
            "the grant ends at {}: authorize again before then",
            ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        self.audit(
            &saved.connection_id,
            AuditAction::GrantEnding,
            REFRESHER_ACTOR,
            Some(&saved.owner),
            Some(&detail),
        )
        .await;
        let mut data =
            EventData::about(&connection.id, connection.name.as_str()).owner(&saved.owner);
        data.status = Some("grant_ending".to_owned());
        data.grant_ends_at = Some(ends);
        self.notify(EventType::GrantEnding, data).await;
    }

    /// One conditional write of a token that must not be lost (the provider may already have
    /// rotated the refresh token): retried with backoff while the store is unavailable, until
    /// `retry_until`. Any other answer is the caller's to handle.
    ///
    /// A write refused as unavailable is often a throttled index partition (a hot due shard
    /// throttles the table's writes that move an entry in it). With `filed_before` (where the
    /// due index files the token now), the retries leave the entry where it is: the grant is
    /// written, the due index catches up when the refresher next lists the token.
    async fn put_until(
        &self,
        record: &StoredToken,
        expect: Expect,
        retry_until: DateTime<Utc>,
        filed_before: Option<DateTime<Utc>>,
    ) -> Result<StoredToken, StoreError> {
        let mut record = std::borrow::Cow::Borrowed(record);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.store.put_token(&record, expect).await {
                Err(StoreError::Unavailable(reason)) => {
                    if filed_before.is_some() && record.due_filing() != filed_before {
                        record.to_mut().filed_due_at = filed_before;
                    }
                    let wait =
                        (self.settings.backoff.base * attempt).min(self.settings.backoff.cap);
                    if Utc::now() + chrono_duration(wait) >= retry_until {
                        return Err(StoreError::Unavailable(reason));
                    }
                    tracing::warn!(connection_id = %record.connection_id, owner = %record.owner, %reason, attempt, "retrying the write of a new token");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Seals a new grant's secrets. The provider may already have rotated the refresh token, so
    /// a key service that fails for a moment is retried, like the write that follows.
    pub(super) async fn seal_with_retries(
        &self,
        key: &TokenKey,
        secrets: &TokenSecrets,
    ) -> Result<Vec<u8>, ServiceError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.cipher.seal_token(key, secrets).await {
                Err(crate::crypto::CryptoError::KeyService(reason)) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(connection_id = %key.connection_id, owner = %key.owner, %reason, "retrying the sealing of a new token");
                    tokio::time::sleep(self.settings.backoff.base * attempt).await;
                }
                sealed => return Ok(sealed?),
            }
        }
    }

    async fn mark_needs_reauthorization(
        &self,
        leased: &StoredToken,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let mut failed = leased.clone();
        failed.status = TokenStatus::NeedsReauthorization;
        failed.refresh_due_at = None;
        failed.lease = None;
        failed.updated_at = Utc::now();
        failed.last_error = Some(TokenFailure {
            code: "invalid_grant".into(),
            message: reason.to_owned(),
            at: Utc::now(),
        });
        match self
            .store
            .put_token(&failed, Expect::Version(leased.version))
            .await
        {
            Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes a token issued under another destination of its connection, unsent.
    pub(super) async fn discard_stale_token(
        &self,
        key: &TokenKey,
        stale: &StoredToken,
    ) -> Result<(), ServiceError> {
        tracing::warn!(connection_id = %key.connection_id, owner = %key.owner, "discarding a token issued before the connection's endpoints or client changed");
        match self.store.delete_token(key, stale.version).await {
            Ok(()) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Gives the lease back after a refresh failed for a reason that may pass (the provider
    /// down, rate limiting): the token stays as it was but for the failure, which its health
    /// shows (`refresh_failing`) and the next successful refresh clears.
    async fn release_failed_lease(&self, key: &TokenKey, leased: &StoredToken, code: &str) {
        let mut released = leased.clone();
        released.lease = None;
        released.last_error = Some(TokenFailure {
            code: code.to_owned(),
            message: format!("the last refresh failed ({code}); Keyport keeps retrying"),
            at: Utc::now(),
        });
        if let Err(error) = self
            .store
            .put_token(&released, Expect::Version(leased.version))
            .await
        {
            // The lease expires by itself; the failure is in the audit trail.
            tracing::debug!(connection_id = %key.connection_id, owner = %key.owner, %error, "could not release the refresh lease");
        }
    }

    /// Gives the lease back, leaving the token exactly as it was.
    pub(super) async fn release_lease(&self, key: &TokenKey, leased: &StoredToken) {
        let mut released = leased.clone();
        released.lease = None;
        if let Err(error) = self
            .store
            .put_token(&released, Expect::Version(leased.version))
            .await
        {
            // The lease expires by itself; nothing is lost.
            tracing::debug!(connection_id = %key.connection_id, owner = %key.owner, %error, "could not release the refresh lease");
        }
    }
}

/// One refresh at a time per token inside this process: its readers queue here rather than
/// poll the store while one of them refreshes.
#[derive(Default)]
pub(crate) struct RefreshTurns(
    std::sync::Mutex<std::collections::HashMap<TokenKey, std::sync::Weak<tokio::sync::Mutex<()>>>>,
);

impl RefreshTurns {
    /// This process's turn at refreshing `key`, and whether another task had it first.
    pub(super) async fn take(&self, key: &TokenKey) -> (tokio::sync::OwnedMutexGuard<()>, bool) {
        let turn = {
            let mut turns = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            turns.retain(|_, turn| turn.strong_count() > 0);
            match turns.get(key).and_then(std::sync::Weak::upgrade) {
                Some(turn) => turn,
                None => {
                    let turn = std::sync::Arc::new(tokio::sync::Mutex::new(()));
                    turns.insert(key.clone(), std::sync::Arc::downgrade(&turn));
                    turn
                }
            }
        };
        match turn.clone().try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (turn.lock_owned().await, true),
        }
    }
}
