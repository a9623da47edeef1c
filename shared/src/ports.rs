//! The small traits the use cases ask for. Each back-end (DynamoDB/KMS/Secrets Manager on AWS,
//! the embedded database and master key file locally) implements them; handlers never know
//! which one they run on.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::domain::{
    AuditEvent, ClientSecret, Connection, ConnectionId, Invitee, Notification, Owner,
    PendingAuthorization, StateToken, StoredToken, TokenFetch, WebhookSubscription,
};
use serde::{Deserialize, Serialize};

/// What went wrong in a store. `Conflict` and `NameTaken` are the caller's to resolve (re-read
/// and retry, or pick another name); `Unavailable` is worth retrying; `Corrupt` is not.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("a connection named {0:?} already exists")]
    NameTaken(String),
    #[error("the {0} was changed by someone else; read it again and retry")]
    Conflict(&'static str),
    #[error("a stored {0} could not be read: {1}")]
    Corrupt(&'static str, String),
    /// A page cursor this store did not issue: the caller's mistake, not the data's.
    #[error("the cursor is not one this listing issued")]
    BadCursor,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// One page of a listing and the opaque cursor of the next, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A page request: at most `limit` items, after `cursor` (from a previous [`Page::next`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 1000;

    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }

    /// The limit actually applied: at least 1, at most [`Self::MAX_LIMIT`].
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// How a token write is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The item must not exist yet.
    Absent,
    /// The item must be at exactly this version.
    Version(u64),
}

/// Which token: a connection and an owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub connection_id: ConnectionId,
    pub owner: Owner,
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection at version 1. Fails with `NameTaken` if another connection has
    /// the same name in any letter case, `AlreadyExists` if the id is taken.
    async fn create_connection(&self, connection: &Connection) -> Result<Connection, StoreError>;

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;

    /// Connections ordered by name.
    async fn list_connections(&self, page: PageRequest) -> Result<Page<Connection>, StoreError>;

    /// Replaces the connection if it is still at `connection.version`; returns it at the next
    /// version. A rename moves the name reservation in the same atomic write.
    async fn update_connection(&self, connection: &Connection) -> Result<Connection, StoreError>;

    /// Takes the connection out of service if it is still at `expected_version`: from then on
    /// it is absent to every read and listing, and its name is free. Its record and its tokens
    /// stay, out of sight, until [`Self::purge_connection`]: each token must first be revoked
    /// with the endpoints and credentials it was issued under, which may take longer than one
    /// request has.
    async fn retire_connection(
        &self,
        id: &ConnectionId,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Connections taken out of service and not purged yet, longest retired first, at most
    /// `limit`.
    async fn retired_connections(&self, limit: u32) -> Result<Vec<Retired>, StoreError>;

    /// The connection `id` if it is out of service and not purged yet; `None` for one in
    /// service or gone, so work queued for a deleted connection can never touch a live one.
    async fn retired_connection(&self, id: &ConnectionId) -> Result<Option<Retired>, StoreError>;

    /// Removes a retired connection's record (never a connection in service). Its tokens must
    /// be gone already. Removing one that is not there is not an error.
    async fn purge_connection(&self, id: &ConnectionId) -> Result<(), StoreError>;

    /// The ids of the connections in service that invite `invitee` (a role or an application),
    /// in id order. On DynamoDB from invitation items written in the same transaction as the
    /// connection, never a listing of every connection; the embedded store (one machine's
    /// connections) reads its own table.
    async fn invited_connections(&self, invitee: &Invitee)
    -> Result<Vec<ConnectionId>, StoreError>;

    /// Whether [`Self::invited_connections`] covers every connection in service: false on a
    /// table whose connections predate that index, until [`Self::index_invitations`] has run.
    async fn invitations_indexed(&self) -> Result<bool, StoreError>;

    /// Indexes the invitations of every connection in service, then records that it did.
    /// Idempotent, and safe beside concurrent changes. Returns how many it indexed.
    async fn index_invitations(&self) -> Result<u64, StoreError>;
}

/// A connection taken out of service, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Retired {
    pub connection: Connection,
    pub retired_at: DateTime<Utc>,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<StoredToken>, StoreError>;

    /// A token read's hot path: the connection and one of its tokens in one round trip. The
    /// token is `None` when the connection is.
    async fn get_connection_and_token(
        &self,
        key: &TokenKey,
    ) -> Result<(Option<Arc<Connection>>, Option<StoredToken>), StoreError>;

    /// Writes the token if `expect` holds; returns it at its new version (1 for a new item).
    async fn put_token(
        &self,
        token: &StoredToken,
        expect: Expect,
    ) -> Result<StoredToken, StoreError>;

    /// Deletes the token if it is at `expected_version`. A missing token is `NotFound`.
    async fn delete_token(&self, key: &TokenKey, expected_version: u64) -> Result<(), StoreError>;

    /// Every token of one connection (shared and per-user), ordered by owner.
    async fn list_tokens(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Vec<StoredToken>, StoreError>;

    /// The first `limit` tokens of one connection, ordered by owner: a bounded share of work.
    async fn first_tokens(
        &self,
        connection_id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<StoredToken>, StoreError>;

    /// One page of a connection's user tokens (never the shared one), ordered by owner, for an
    /// administrator's listing. The cursor names the last owner of the previous page.
    async fn user_tokens(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<StoredToken>, StoreError>;

    /// How many shards the due index is split into, so a scheduler can list each on its own:
    /// shards `0..due_shards()`, every one of which must be visited to see every due token. A
    /// back-end may count shards that only drain (DynamoDB's legacy partition, the last one).
    fn due_shards(&self) -> u32;

    /// Tokens of one due shard whose `refresh_due_at` falls in `window`, soonest first,
    /// through an index (never a scan of the table). A shard past [`Self::due_shards`] holds
    /// nothing, so a caller with a stale count sees an empty page rather than an error.
    async fn due_tokens_in_shard(
        &self,
        shard: u32,
        window: DueWindow,
        page: PageRequest,
    ) -> Result<Page<TokenKey>, StoreError>;

    /// Every shard's due tokens (see [`Self::due_tokens_in_shard`]), shard after shard, soonest
    /// first within each; a page may span shards. The walk starts at a shard picked from
    /// `due_by`, so a run cut short by its deadline does not always leave the same shards last.
    async fn due_tokens(
        &self,
        due_by: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<Page<TokenKey>, StoreError> {
        walk_due_shards(self, due_by, page).await
    }
}

/// The due times a listing of the due index covers: after `after` (when given), at or before
/// `by`. Disjoint windows of one shard let several workers share its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueWindow {
    pub after: Option<DateTime<Utc>>,
    pub by: DateTime<Utc>,
}

impl DueWindow {
    /// Everything due at or before `by`.
    pub fn until(by: DateTime<Utc>) -> Self {
        Self { after: None, by }
    }
}

/// Where a walk over the due shards stands: the shard it started at, how many shards it has
/// finished, and the cursor within the current one.
#[derive(serde::Serialize, serde::Deserialize)]
struct DueWalk {
    start: u32,
    done: u32,
    within: Option<String>,
}

async fn walk_due_shards<S: TokenStore + ?Sized>(
    store: &S,
    due_by: DateTime<Utc>,
    page: PageRequest,
) -> Result<Page<TokenKey>, StoreError> {
    use crate::adapters::records::{decode_cursor, encode_cursor};
    let shards = store.due_shards().max(1);
    let mut walk = match &page.cursor {
        Some(cursor) => {
            let walk: DueWalk = decode_cursor(cursor)?;
            if walk.start >= shards || walk.done >= shards {
                return Err(StoreError::BadCursor);
            }
            walk
        }
        None => DueWalk {
            // The microseconds of a run's `now` are as good as random, and unlike a counter
            // they need no state; a fixed `due_by` always starts at the same shard.
            start: u32::try_from(due_by.timestamp_micros().rem_euclid(i64::from(shards)))
                .unwrap_or(0),
            done: 0,
            within: None,
        },
    };
    let limit = page.effective_limit();
    let mut items = Vec::new();
    while walk.done < shards {
        let shard = (walk.start + walk.done) % shards;
        let request = PageRequest {
            limit: limit.saturating_sub(items.len() as u32),
            cursor: walk.within.take(),
        };
        let found = store
            .due_tokens_in_shard(shard, DueWindow::until(due_by), request)
            .await?;
        items.extend(found.items);
        match found.next {
            Some(next) => {
                walk.within = Some(next);
                return Ok(Page {
                    items,
                    next: Some(encode_cursor(&walk)),
                });
            }
            None => walk.done += 1,
        }
        if items.len() as u32 >= limit {
            break;
        }
    }
    let next = (walk.done < shards).then(|| encode_cursor(&walk));
    Ok(Page { items, next })
}

#[async_trait]
pub trait PendingAuthorizationStore: Send + Sync {
    /// Stores the record behind a new `state`. Fails with `AlreadyExists` on a collision.
    async fn put_pending(
        &self,
        state: &StateToken,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError>;

    /// Removes and returns the record in one atomic step, so a `state` works once. An expired
    /// record counts as absent (TTL deletion is eventual), and is removed all the same.
    async fn take_pending(
        &self,
        state: &StateToken,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError>;

    /// Removes and returns up to `limit` records holding a grant whose confirmation never
    /// came (expired at `now`), so their grants can be revoked. Such records outlive their
    /// expiry in storage until this takes them (each exactly once).
    async fn take_expired_unconfirmed(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PendingAuthorization>, StoreError>;
}

/// What the console keeps for a short while, each kind under keys of its own: signed-in
/// sessions, sign-ins waiting for the identity provider, and sign-in tickets already used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRecordKind {
    Session,
    SignIn,
    UsedTicket,
}

impl ConsoleRecordKind {
    /// Its name in storage keys.
    pub fn storage_name(self) -> &'static str {
        match self {
            ConsoleRecordKind::Session => "SESSION",
            ConsoleRecordKind::SignIn => "SIGNIN",
            ConsoleRecordKind::UsedTicket => "TICKET",
        }
    }
}

/// The console's short-lived records. Keys are digests the caller computed (never a session
/// cookie's value itself), documents are the caller's JSON; a record past `expires_at` counts
/// as absent whether or not storage has removed it yet.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores a new record; `Ok(false)` when the key is already taken (so a ticket's use
    /// recorded this way succeeds once).
    async fn put_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        doc: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The live record under `key`.
    async fn get_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError>;

    /// Removes the record and returns it if it was live, in one atomic step: single use.
    async fn take_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError>;
}

/// The audit trail, kept per connection. Events outlive their connection: a deletion is
/// itself an event someone will want to read later.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// One connection's events, newest first.
    async fn list_audit(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError>;

    /// Records that a caller fetched one of a connection's tokens, unless that caller's record
    /// there was written at or after `unless_since` (so each caller costs at most one write per
    /// interval, whatever races it). Returns whether it wrote. Kept as long as audit events.
    async fn record_fetch(
        &self,
        fetch: &TokenFetch,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// A connection's fetch records, one per caller, most recent first, at most `limit`.
    async fn list_fetches(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<TokenFetch>, StoreError>;
}

/// Where a notification waiting in the outbox goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// Not split yet: the deliverer turns it into one entry per destination that wants it.
    /// What emitters write (one small put, whatever the subscriptions).
    Fanout,
    /// The installation's EventBridge bus.
    EventBus,
    /// One webhook subscription, by id.
    Webhook(String),
}

impl Destination {
    fn key(&self) -> String {
        match self {
            Destination::Fanout => "fanout".to_owned(),
            Destination::EventBus => "event_bus".to_owned(),
            Destination::Webhook(id) => format!("webhook:{id}"),
        }
    }
}

/// A notification on its way to one destination, due for its next attempt at `due_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub notification: Notification,
    pub destination: Destination,
    pub due_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
}

impl OutboxEntry {
    pub fn new(
        notification: Notification,
        destination: Destination,
        due_at: DateTime<Utc>,
    ) -> Self {
        Self {
            notification,
            destination,
            due_at,
            attempts: 0,
        }
    }

    /// Unique per notification and destination, stable across attempts.
    pub fn id(&self) -> String {
        format!("{}/{}", self.notification.id, self.destination.key())
    }
}

/// A subscription with its signing secrets, sealed (and, while a rotation's overlap lasts, the
/// previous one, which still signs until `previous_until`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    pub subscription: WebhookSubscription,
    pub sealed_secret: Vec<u8>,
    pub previous: Option<(Vec<u8>, DateTime<Utc>)>,
}

/// Webhook subscriptions and the durable outbox notifications leave from.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Writes a subscription; the store sets its version (1 on create).
    async fn put_webhook(
        &self,
        webhook: &StoredWebhook,
        expect: Expect,
    ) -> Result<StoredWebhook, StoreError>;

    async fn get_webhook(&self, id: &str) -> Result<Option<StoredWebhook>, StoreError>;

    /// Every subscription, by id (an installation has a handful).
    async fn list_webhooks(&self) -> Result<Vec<WebhookSubscription>, StoreError>;

    /// Deletes a subscription at `version`.
    async fn delete_webhook(&self, id: &str, version: u64) -> Result<(), StoreError>;

    /// Adds entries to the outbox (an entry already there is replaced).
    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<(), StoreError>;

    /// Entries due at `now`, soonest first, at most `limit`.
    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Removes one entry as it was listed (a rescheduled copy is a new entry).
    async fn remove_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
}

/// Where notifications go for operators' rules to route (EventBridge on AWS).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Puts every event, or says why not (a sentence without secrets).
    async fn put(&self, events: &[Notification]) -> Result<(), String>;
}

/// An installation setting as stored: its document (JSON, never a secret: a setting's secret
/// lives in the [`SecretStore`]) and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSetting {
    pub doc: String,
    pub updated_at: DateTime<Utc>,
}

/// The installation's settings, one record each by name (`outbound-proxy`).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn get_setting(&self, name: &str) -> Result<Option<StoredSetting>, StoreError>;

    /// Creates or replaces the setting.
    async fn put_setting(&self, name: &str, setting: &StoredSetting) -> Result<(), StoreError>;

    /// Deletes the setting; deleting a missing one succeeds.
    async fn delete_setting(&self, name: &str) -> Result<(), StoreError>;
}

/// Everything a Keyport instance stores.
pub trait Store:
    ConnectionStore
    + TokenStore
    + PendingAuthorizationStore
    + AuditLog
    + ConsoleStore
    + NotificationStore
    + SettingsStore
{
}
impl<
    T: ConnectionStore
        + TokenStore
        + PendingAuthorizationStore
        + AuditLog
        + ConsoleStore
        + NotificationStore
        + SettingsStore,
> Store for T
{
}

/// What a sealed value is bound to: its purpose and the item it belongs to (connection and
/// owner, or secret name). The envelope binds all of it as AEAD associated data. The data key
/// under it is bound, as its KMS encryption context (or the local wrap's associated data), to
/// [`KeyContext::data_key`]: the purpose and the key's epoch, since one data key seals many
/// items. (Values sealed in format version 1 have their data key bound to this whole context.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyContext(BTreeMap<String, String>);

const PURPOSE: &str = "keyport:purpose";
const EPOCH: &str = "keyport:epoch";

impl KeyContext {
    pub fn token(key: &TokenKey) -> Self {
        Self::from_pairs([
            ("keyport:purpose", "token"),
            ("keyport:connection", key.connection_id.as_str()),
            ("keyport:owner", &key.owner.storage_key()),
        ])
    }

    pub fn secret(name: &str) -> Self {
        Self::from_pairs([
            ("keyport:purpose", "client_secret"),
            ("keyport:secret", name),
        ])
    }

    /// A webhook subscription's signing secret, bound to the subscription.
    pub fn webhook_secret(id: &str) -> Self {
        Self::from_pairs([
            ("keyport:purpose", "webhook_secret"),
            ("keyport:webhook", id),
        ])
    }

    /// What a readiness check seals to see the key service answer; the result is discarded.
    pub fn readiness_probe() -> Self {
        Self::from_pairs([("keyport:purpose", "readiness_probe")])
    }

    /// What the value is for (`token`, `client_secret`, `readiness_probe`): what the IAM
    /// policies condition KMS use on.
    pub fn purpose(&self) -> &str {
        self.0.get(PURPOSE).map_or("", String::as_str)
    }

    /// The context of a data key that seals many values of this one's purpose: the purpose
    /// and the opaque `epoch` naming the key, and nothing of the item.
    pub fn data_key(&self, epoch: &str) -> Self {
        Self::from_pairs([(PURPOSE, self.purpose()), (EPOCH, epoch)])
    }

    fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// An unambiguous byte encoding (length-prefixed, sorted), for use as associated data.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in &self.0 {
            for part in [key, value] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }
}

/// A fresh 256-bit data key: the plaintext to encrypt with (zeroed on drop) and the same key
/// wrapped by the master key, to store beside the ciphertext.
pub struct DataKey {
    pub plaintext: Zeroizing<[u8; 32]>,
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"[REDACTED]")
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The wrapped key does not belong to this context or master key, or was altered.
    #[error("the data key does not match its context (moved or tampered ciphertext)")]
    Integrity,
    #[error("the key service is unavailable: {0}")]
    Unavailable(String),
    #[error("the master key is unusable: {0}")]
    MasterKey(String),
}

#[async_trait]
pub trait DataKeyProvider: Send + Sync {
    async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KeyError>;

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &KeyContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError>;
}

/// Which secret of a connection, or of the installation's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    ClientSecret,
    PrivateKey,
    /// The resource owner's password of a legacy password-grant connection.
    Password,
    /// The forward proxy's password (the outbound-proxy setting); no connection's.
    OutboundProxyPassword,
}

/// Names one stored secret: a connection's, or (without a connection) the installation's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    pub connection_id: Option<ConnectionId>,
    pub kind: SecretKind,
    /// An installation secret's generation: each value gets a name of its own, so one set
    /// again never meets its predecessor's deletion (Secrets Manager keeps a deleted name
    /// through a recovery window, refusing writes to it).
    pub generation: Option<String>,
}

impl SecretRef {
    pub fn client_secret(connection_id: &ConnectionId) -> Self {
        Self {
            connection_id: Some(connection_id.clone()),
            kind: SecretKind::ClientSecret,
            generation: None,
        }
    }

    pub fn private_key(connection_id: &ConnectionId) -> Self {
        Self {
            connection_id: Some(connection_id.clone()),
            kind: SecretKind::PrivateKey,
            generation: None,
        }
    }

    pub fn password(connection_id: &ConnectionId) -> Self {
        Self {
            connection_id: Some(connection_id.clone()),
            kind: SecretKind::Password,
            generation: None,
        }
    }

    /// The outbound-proxy setting's password of `generation` (random, named in the setting).
    pub fn outbound_proxy_password(generation: &str) -> Self {
        Self {
            connection_id: None,
            kind: SecretKind::OutboundProxyPassword,
            generation: Some(generation.to_owned()),
        }
    }

    /// The name under a store's prefix: `<connection id>/client-secret`, `/private-key` or
    /// `/password`; `settings/outbound-proxy/<generation>` for the installation's (no
    /// connection id starts with `settings`).
    pub fn name(&self) -> String {
        let kind = match self.kind {
            SecretKind::ClientSecret => "client-secret",
            SecretKind::PrivateKey => "private-key",
            SecretKind::Password => "password",
            SecretKind::OutboundProxyPassword => "outbound-proxy",
        };
        match (&self.connection_id, &self.generation) {
            (Some(id), _) => format!("{id}/{kind}"),
            (None, Some(generation)) => format!("settings/{kind}/{generation}"),
            (None, None) => format!("settings/{kind}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored secret could not be decrypted: {0}")]
    Crypto(String),
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces the secret.
    async fn put_secret(&self, secret: &SecretRef, value: &ClientSecret)
    -> Result<(), SecretError>;

    async fn get_secret(&self, secret: &SecretRef) -> Result<Option<ClientSecret>, SecretError>;

    /// Deletes the secret; deleting a missing secret succeeds.
    async fn delete_secret(&self, secret: &SecretRef) -> Result<(), SecretError>;
}

/// A secret of the installation's own rather than a connection's (the console's client secret
/// at the identity provider): given as a setting, or kept in a secret store and read there.
#[async_trait]
pub trait InstallationSecret: Send + Sync {
    async fn read(&self) -> Result<secrecy::SecretString, SecretError>;
}

/// A secret given as a setting is its own value.
#[async_trait]
impl InstallationSecret for secrecy::SecretString {
    async fn read(&self) -> Result<secrecy::SecretString, SecretError> {
        Ok(self.clone())
    }
}

/// Why work could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the work queue is unavailable: {0}")]
    Unavailable(String),
}

/// Where the work the refresh workers take is put (SQS on AWS): due shards from the
/// scheduled run, deleted connections from a delete, the scheduled run or a worker.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queues every message body; fails unless the queue accepted all of them.
    async fn send(&self, bodies: &[String]) -> Result<(), QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Due shards held in memory, each already in order; nothing else of the port is used.
    struct Shards(Vec<Vec<TokenKey>>);

    #[async_trait]
    impl TokenStore for Shards {
        async fn get_token(&self, _: &TokenKey) -> Result<Option<StoredToken>, StoreError> {
            unimplemented!()
        }
        async fn get_connection_and_token(
            &self,
            _: &TokenKey,
        ) -> Result<(Option<Arc<Connection>>, Option<StoredToken>), StoreError> {
            unimplemented!()
        }
        async fn put_token(&self, _: &StoredToken, _: Expect) -> Result<StoredToken, StoreError> {
            unimplemented!()
        }
        async fn delete_token(&self, _: &TokenKey, _: u64) -> Result<(), StoreError> {
            unimplemented!()
        }
        async fn list_tokens(&self, _: &ConnectionId) -> Result<Vec<StoredToken>, StoreError> {
            unimplemented!()
        }
        async fn first_tokens(
            &self,
            _: &ConnectionId,
            _: u32,
        ) -> Result<Vec<StoredToken>, StoreError> {
            unimplemented!()
        }
        async fn user_tokens(
            &self,
            _: &ConnectionId,
            _: PageRequest,
        ) -> Result<Page<StoredToken>, StoreError> {
            unimplemented!()
        }
        fn due_shards(&self) -> u32 {
            self.0.len() as u32
        }
        async fn due_tokens_in_shard(
            &self,
            shard: u32,
            _: DueWindow,
            page: PageRequest,
        ) -> Result<Page<TokenKey>, StoreError> {
            let keys = self.0.get(shard as usize).cloned().unwrap_or_default();
            let from: usize = match &page.cursor {
                Some(cursor) => cursor.parse().map_err(|_| StoreError::BadCursor)?,
                None => 0,
            };
            let to = (from + page.effective_limit() as usize).min(keys.len());
            Ok(Page {
                items: keys[from..to].to_vec(),
                next: (to < keys.len()).then(|| to.to_string()),
            })
        }
    }

    fn keys(n: usize) -> Vec<TokenKey> {
        (0..n)
            .map(|_| TokenKey {
                connection_id: ConnectionId::generate(),
                owner: Owner::Shared,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_due_walk_visits_every_shard_once_from_a_start_picked_by_the_time() {
        let shards = vec![keys(3), Vec::new(), keys(1), keys(4), Vec::new()];
        let store = Shards(shards.clone());
        let walk = |due_by: DateTime<Utc>, limit: u32| {
            let store = &store;
            async move {
                let mut seen = Vec::new();
                let mut pages = 0;
                let mut request = PageRequest::first(limit);
                loop {
                    let page = store.due_tokens(due_by, request.clone()).await.unwrap();
                    assert!(page.items.len() <= limit as usize);
                    pages += 1;
                    seen.extend(page.items);
                    match page.next {
                        Some(cursor) => request.cursor = Some(cursor),
                        None => return (seen, pages),
                    }
                }
            }
        };
        let base = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        for offset in 0..5 {
            let due_by = base + chrono::Duration::microseconds(offset);
            let start = (1_700_000_000_000_000 + offset) as usize % 5;
            let expected: Vec<TokenKey> = (0..5)
                .flat_map(|step| shards[(start + step) % 5].clone())
                .collect();
            for limit in [1, 2, 3, 8, 100] {
                let (seen, pages) = walk(due_by, limit).await;
                assert_eq!(seen, expected, "start {start}, limit {limit}");
                // Pages fill across shards: never more than one short page past the full ones.
                assert!(pages <= 8 / limit as usize + 2, "{pages} pages of {limit}");
            }
        }

        // Issued by a walk over five shards that started at shard 3: no walk over one shard.
        let first = store
            .due_tokens(
                base + chrono::Duration::microseconds(3),
                PageRequest::first(1),
            )
            .await
            .unwrap();
        let cursor = first.next.expect("more to come");
        let smaller = Shards(vec![keys(1)]);
        let err = smaller
            .due_tokens(
                base,
                PageRequest {
                    limit: 1,
                    cursor: Some(cursor),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::BadCursor), "{err:?}");
    }

    #[test]
    fn key_context_encoding_is_unambiguous() {
        let a = KeyContext::from_pairs([("ab", "c")]);
        let b = KeyContext::from_pairs([("a", "bc")]);
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn token_contexts_name_connection_and_owner() {
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        };
        let context = KeyContext::token(&key);
        assert_eq!(
            context.as_map()["keyport:connection"],
            key.connection_id.as_str()
        );
        assert_eq!(context.as_map()["keyport:owner"], "shared");
    }

    #[test]
    fn a_data_key_context_keeps_the_purpose_and_drops_the_item() {
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        };
        let data_key = KeyContext::token(&key).data_key("e1");
        assert_eq!(
            data_key.as_map(),
            &BTreeMap::from([
                ("keyport:epoch".to_owned(), "e1".to_owned()),
                ("keyport:purpose".to_owned(), "token".to_owned()),
            ])
        );
        assert_eq!(
            KeyContext::secret("n").data_key("e1").purpose(),
            "client_secret"
        );
    }
}
