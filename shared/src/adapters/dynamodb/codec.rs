//! How Keyport's domain values are laid out as items of the single DynamoDB table: keys,
//! attributes, the JSON documents inside them, and the opaque page cursors.
//!
//! Decoding never echoes stored values in its errors: a message names the attribute and what
//! was wrong with it, so no token, verifier or other stored value can leak through an error.

use crate::adapters::records::{audit_sort_key, pending_from_doc, pending_to_doc};
use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::domain::{
    AuditEvent, Connection, ConnectionId, Invitee, Owner, PendingAuthorization, StateToken,
    StoredToken, TokenFetch,
};
use crate::ports::{Retired, StoreError, TokenKey};

/// One item as the SDK hands it over.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Attribute names. The SAM template and the tests rely on them: change them nowhere else.
pub(crate) mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const DOC: &str = "doc";
    pub const VERSION: &str = "version";
    pub const NAME_KEY: &str = "name_key";
    pub const GSI1PK: &str = "gsi1pk";
    pub const GSI1SK: &str = "gsi1sk";
    pub const DUE_SHARD: &str = "due_shard";
    pub const DUE_AT: &str = "due_at";
    pub const SEALED: &str = "sealed";
    pub const CONNECTION_ID: &str = "connection_id";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const TTL: &str = "ttl";
    pub const LAST_AT_MS: &str = "last_at_ms";
}

/// The two key attributes of a secondary index, and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Index {
    pub name: &'static str,
    pub hash: &'static str,
    pub range: &'static str,
}

/// Connections by name, retired connections and held grants by time. It projects `doc` and
/// `version`, so every write of an item in it writes the index too: token items, written on
/// every lease and refresh, are kept out of it.
pub(crate) const GSI1: Index = Index {
    name: "gsi1",
    hash: attr::GSI1PK,
    range: attr::GSI1SK,
};
/// Tokens by refresh time, spread over shards so no one index partition takes every refresh's
/// writes. KEYS_ONLY: DynamoDB writes it only when `due_shard` or `due_at` change, that is when
/// the due time does, never for a lease or a document update.
pub(crate) const DUE: Index = Index {
    name: "due",
    hash: attr::DUE_SHARD,
    range: attr::DUE_AT,
};
/// How many due shards a store writes when not told otherwise: see the README's Configuration.
pub const DEFAULT_DUE_SHARDS: u32 = 16;
pub(crate) const CONNECTIONS_PARTITION: &str = "CONNECTIONS";
/// The `gsi1` partition tokens were due in before the due index: items written then are still
/// there until their next write, which moves them to the due index.
pub(crate) const LEGACY_DUE_PARTITION: &str = "DUE";
/// The index partition of connections taken out of service whose tokens are still being
/// revoked, by the time they were retired: out of the connection listing, found by the sweep.
pub(crate) const RETIRED_PARTITION: &str = "RETIRED";
/// The index partition of pending records that hold a grant, by expiry: the refresher finds
/// the unconfirmed ones there to revoke their grants.
pub(crate) const AWAITING_PARTITION: &str = "AWAITING";
/// How long after its expiry a record holding a grant is kept before TTL removes it: far
/// longer than the refresher takes to find it (TTL deletion is eventual anyway).
const AWAITING_GRACE_SECONDS: i64 = 24 * 60 * 60;
pub(crate) const TOKEN_SK_PREFIX: &str = "TOKEN#";

const CONNECTION_PK_PREFIX: &str = "CONN#";
const INVITED_PK_PREFIX: &str = "INVITED#";
const INVITED_APP_PK_PREFIX: &str = "INVITED_APP#";
const META_PK: &str = "META";
const INVITATIONS_SK: &str = "INVITATIONS";
const INVITATION: &str = "invitation";
const CONNECTION_SK: &str = "CONN";
const NAME_PK_PREFIX: &str = "NAME#";
const NAME_SK: &str = "NAME";
const STATE_PK_PREFIX: &str = "STATE#";
/// Audit events sit in a partition of their own per connection, so they outlive it.
const AUDIT_PK_PREFIX: &str = "AUDIT#";
/// Fetch records sit in a partition of their own per connection, one item per caller, kept
/// as long as audit events.
const FETCHES_PK_PREFIX: &str = "FETCHES#";
const FETCH: &str = "fetch record";
const WEBHOOK_PK_PREFIX: &str = "WEBHOOK#";
const WEBHOOK_SK: &str = "WEBHOOK";
pub(crate) const WEBHOOKS_PARTITION: &str = "WEBHOOKS";
pub(crate) const WEBHOOK: &str = "webhook";
/// Outbox entries spread over this many partitions (by a hash of their id), so that a burst of
/// events (a provider outage failing many refreshes) writes no single partition hot.
pub(crate) const OUTBOX_SHARDS: u32 = 16;
const OUTBOX_PK_PREFIX: &str = "OUTBOX#";
const OUTBOX: &str = "outbox entry";
/// How long DynamoDB keeps an audit event before its TTL removes it.
pub(crate) const AUDIT_RETENTION_DAYS: i64 = 400;
const STATE_SK: &str = "STATE";

/// Separates the name from the id in a connection's index sort key. It must sort below every
/// character a name may hold (names refuse control characters), so that "Alpha" lists before
/// "Alpha Two": with `#` the space (0x20) would sort first.
const NAME_ID_SEPARATOR: char = '\u{1f}';

/// Entity names used in errors.
pub(crate) const CONNECTION: &str = "connection";
pub(crate) const TOKEN: &str = "token";
pub(crate) const PENDING: &str = "pending authorization";
pub(crate) const AUDIT: &str = "audit event";
pub(crate) const CURSOR: &str = "cursor";

pub(crate) fn string(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The version after `version`; a stored version at the very top of the range is corrupt.
pub(crate) fn next_version(version: u64, entity: &'static str) -> Result<u64, StoreError> {
    version
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt(entity, "the version cannot be incremented".into()))
}

// ---- keys -------------------------------------------------------------------------------

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([
        (attr::PK.to_owned(), string(pk)),
        (attr::SK.to_owned(), string(sk)),
    ])
}

/// The partition holding a connection and all of its tokens.
pub(crate) fn connection_partition(id: &ConnectionId) -> String {
    format!("{CONNECTION_PK_PREFIX}{id}")
}

pub(crate) fn connection_key(id: &ConnectionId) -> Item {
    key(connection_partition(id), CONNECTION_SK)
}

pub(crate) fn name_reservation_key(name_key: &str) -> Item {
    key(format!("{NAME_PK_PREFIX}{name_key}"), NAME_SK)
}

pub(crate) fn token_key(token: &TokenKey) -> Item {
    key(
        connection_partition(&token.connection_id),
        format!("{TOKEN_SK_PREFIX}{}", token.owner.storage_key()),
    )
}

pub(crate) fn audit_partition(id: &ConnectionId) -> String {
    format!("{AUDIT_PK_PREFIX}{id}")
}

pub(crate) fn pending_key(state: &StateToken) -> Item {
    key(format!("{STATE_PK_PREFIX}{}", state.lookup_key()), STATE_SK)
}

// ---- reading attributes -----------------------------------------------------------------

fn missing(entity: &'static str, name: &str, kind: &str) -> StoreError {
    StoreError::Corrupt(
        entity,
        format!("attribute `{name}` is missing or not {kind}"),
    )
}

fn string_attr<'a>(
    item: &'a Item,
    name: &str,
    entity: &'static str,
) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(missing(entity, name, "a string")),
    }
}

fn number_attr(item: &Item, name: &str, entity: &'static str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().map_err(|_| {
            StoreError::Corrupt(entity, format!("attribute `{name}` is not a version"))
        }),
        _ => Err(missing(entity, name, "a number")),
    }
}

fn binary_attr<'a>(
    item: &'a Item,
    name: &str,
    entity: &'static str,
) -> Result<&'a [u8], StoreError> {
    match item.get(name) {
        Some(AttributeValue::B(value)) => Ok(value.as_ref()),
        _ => Err(missing(entity, name, "binary")),
    }
}

fn json_error(entity: &'static str, _what: &str, err: &serde_json::Error) -> StoreError {
    crate::adapters::records::json_error(entity, err)
}

fn parse_doc<T: for<'de> Deserialize<'de>>(
    item: &Item,
    entity: &'static str,
) -> Result<T, StoreError> {
    let doc = string_attr(item, attr::DOC, entity)?;
    serde_json::from_str(doc).map_err(|e| json_error(entity, "document", &e))
}

fn to_doc<T: Serialize>(value: &T, entity: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| json_error(entity, "document to write", &e))
}

pub(crate) fn version_of(item: &Item, entity: &'static str) -> Result<u64, StoreError> {
    number_attr(item, attr::VERSION, entity)
}

// ---- connections ------------------------------------------------------------------------

/// The connection item at `version`; the document carries the same version for readability,
/// but only the `version` attribute counts.
pub(crate) fn connection_item(connection: &Connection, version: u64) -> Result<Item, StoreError> {
    let mut stored = connection.clone();
    stored.version = version;
    let name_key = connection.name.uniqueness_key();
    let mut item = connection_key(&connection.id);
    item.extend([
        (attr::DOC.to_owned(), string(to_doc(&stored, CONNECTION)?)),
        (attr::VERSION.to_owned(), number(version)),
        (attr::GSI1PK.to_owned(), string(CONNECTIONS_PARTITION)),
        (
            attr::GSI1SK.to_owned(),
            string(format!("{name_key}{NAME_ID_SEPARATOR}{}", connection.id)),
        ),
        (attr::NAME_KEY.to_owned(), string(name_key)),
    ]);
    Ok(item)
}

/// Reads a connection item (from the table or the index, which projects `doc` and `version`).
pub(crate) fn connection_from_item(item: &Item) -> Result<Connection, StoreError> {
    let mut connection: Connection = parse_doc(item, CONNECTION)?;
    if string_attr(item, attr::PK, CONNECTION)? != connection_partition(&connection.id) {
        return Err(StoreError::Corrupt(
            CONNECTION,
            "the document's id does not match the item's key".into(),
        ));
    }
    connection.version = version_of(item, CONNECTION)?;
    Ok(connection)
}

/// A connection item taken out of service: the same document under the next `version`, moved
/// from the connection listing to the retired partition (sorted by when), holding no name.
pub(crate) fn retired_connection_item(
    current: &Item,
    version: u64,
    retired_at: chrono::DateTime<chrono::Utc>,
) -> Result<Item, StoreError> {
    let connection = connection_from_item(current)?;
    let mut stored = connection.clone();
    stored.version = version;
    let mut item = connection_key(&connection.id);
    item.extend([
        (attr::DOC.to_owned(), string(to_doc(&stored, CONNECTION)?)),
        (attr::VERSION.to_owned(), number(version)),
        (attr::GSI1PK.to_owned(), string(RETIRED_PARTITION)),
        (
            attr::GSI1SK.to_owned(),
            string(format!(
                "{}{NAME_ID_SEPARATOR}{}",
                retired_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                connection.id
            )),
        ),
    ]);
    Ok(item)
}

/// Whether a connection item is out of service (see [`retired_connection_item`]).
pub(crate) fn is_retired(item: &Item) -> bool {
    matches!(item.get(attr::GSI1PK), Some(AttributeValue::S(partition)) if partition == RETIRED_PARTITION)
}

/// A retired connection item (from the table or the index), and since when it is retired.
pub(crate) fn retired_from_item(item: &Item) -> Result<Retired, StoreError> {
    let connection = connection_from_item(item)?;
    let sort_key = string_attr(item, attr::GSI1SK, CONNECTION)?;
    let retired_at = sort_key
        .split(NAME_ID_SEPARATOR)
        .next()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(
                CONNECTION,
                "a retired connection's time is unreadable".into(),
            )
        })?
        .with_timezone(&chrono::Utc);
    Ok(Retired {
        connection,
        retired_at,
    })
}

/// The name reservation a stored connection holds. Older items without `name_key` fall back to
/// the name in the document.
pub(crate) fn stored_name_key(item: &Item) -> Result<String, StoreError> {
    match item.get(attr::NAME_KEY) {
        Some(AttributeValue::S(name_key)) => Ok(name_key.clone()),
        _ => Ok(connection_from_item(item)?.name.uniqueness_key()),
    }
}

pub(crate) fn name_reservation_item(name_key: &str, id: &ConnectionId) -> Item {
    let mut item = name_reservation_key(name_key);
    item.insert(attr::CONNECTION_ID.to_owned(), string(id.as_str()));
    item
}

// ---- invitations ------------------------------------------------------------------------

/// The partition listing the connections that invite one role or application: one small item
/// per (invitee, connection), written in the connection's own transactions. Roles keep the
/// partition they had before applications could be invited; applications have their own
/// prefix, so a role can never be taken for an application of the same name.
pub(crate) fn invited_partition(invitee: &Invitee) -> String {
    match invitee {
        Invitee::Role(role) => format!("{INVITED_PK_PREFIX}{}", role.as_str()),
        Invitee::Application(app) => format!("{INVITED_APP_PK_PREFIX}{}", app.as_str()),
    }
}

pub(crate) fn invitation_key(invitee: &Invitee, id: &ConnectionId) -> Item {
    key(invited_partition(invitee), connection_partition(id))
}

pub(crate) fn invitation_item(invitee: &Invitee, id: &ConnectionId) -> Item {
    let mut item = invitation_key(invitee, id);
    item.insert(attr::CONNECTION_ID.to_owned(), string(id.as_str()));
    item
}

/// The item saying every connection in service has its invitation items (tables whose
/// connections predate them get it once the refresher has indexed them).
pub(crate) fn invitations_marker_key() -> Item {
    key(META_PK.to_owned(), INVITATIONS_SK)
}

/// The connection an invitation item points at.
pub(crate) fn invited_connection(item: &Item) -> Result<ConnectionId, StoreError> {
    ConnectionId::parse(string_attr(item, attr::CONNECTION_ID, INVITATION)?)
        .map_err(|_| StoreError::Corrupt(INVITATION, "a malformed connection id".into()))
}

// ---- tokens -----------------------------------------------------------------------------

pub(crate) use crate::adapters::records::{
    due_index_bound as due_bound, due_index_key as due_sort_key, due_shard_of,
};

/// The due index partition of shard `shard`.
pub(crate) fn due_shard_partition(shard: u32) -> String {
    format!("{LEGACY_DUE_PARTITION}#{shard:02}")
}

/// The token's item, its due-index keys in the shard its key hashes to among `due_shards`. Both
/// keys derive from the token's key and due time alone, so a write that keeps the due time
/// keeps them byte for byte, and DynamoDB leaves the index alone.
pub(crate) fn token_item(
    token: &StoredToken,
    version: u64,
    due_shards: u32,
) -> Result<Item, StoreError> {
    let key = TokenKey {
        connection_id: token.connection_id.clone(),
        owner: token.owner.clone(),
    };
    let mut item = token_key(&key);
    item.extend([
        (attr::DOC.to_owned(), string(to_doc(token, TOKEN)?)),
        (
            attr::SEALED.to_owned(),
            AttributeValue::B(Blob::new(token.sealed.clone())),
        ),
        (attr::VERSION.to_owned(), number(version)),
    ]);
    // Without a due time the item carries no index keys and so drops out of the due index. It
    // never carries gsi1's keys: the whole item is put, so one written before the due index
    // leaves the legacy partition at its next write.
    if let Some(due_at) = token.due_filing() {
        let shard = due_shard_of(&key, due_shards);
        item.insert(
            attr::DUE_SHARD.to_owned(),
            string(due_shard_partition(shard)),
        );
        item.insert(attr::DUE_AT.to_owned(), string(due_sort_key(due_at, &key)));
    }
    Ok(item)
}

/// Which token an item is, from its key alone (the due index projects the table keys).
pub(crate) fn token_key_from_item(item: &Item) -> Result<TokenKey, StoreError> {
    let corrupt =
        |what: &str| StoreError::Corrupt(TOKEN, format!("the item's {what} is malformed"));
    let connection_id = string_attr(item, attr::PK, TOKEN)?
        .strip_prefix(CONNECTION_PK_PREFIX)
        .and_then(|id| ConnectionId::parse(id).ok())
        .ok_or_else(|| corrupt("partition key"))?;
    let owner = string_attr(item, attr::SK, TOKEN)?
        .strip_prefix(TOKEN_SK_PREFIX)
        .and_then(|owner| owner.parse::<Owner>().ok())
        .ok_or_else(|| corrupt("sort key"))?;
    Ok(TokenKey {
        connection_id,
        owner,
    })
}

pub(crate) fn token_from_item(item: &Item) -> Result<StoredToken, StoreError> {
    let mut token: StoredToken = parse_doc(item, TOKEN)?;
    // The envelope is decrypted under the document's connection and owner; a document copied to
    // another item must not pass for that item's token.
    let key = token_key_from_item(item)?;
    if key.connection_id != token.connection_id || key.owner != token.owner {
        return Err(StoreError::Corrupt(
            TOKEN,
            "the document's connection or owner does not match the item's key".into(),
        ));
    }
    token.sealed = binary_attr(item, attr::SEALED, TOKEN)?.to_vec();
    token.version = version_of(item, TOKEN)?;
    Ok(token)
}

// ---- audit events -----------------------------------------------------------------------

pub(crate) fn audit_item(event: &AuditEvent) -> Result<Item, StoreError> {
    let mut item = key(audit_partition(&event.connection_id), audit_sort_key(event));
    let expires = event.at + chrono::Duration::days(AUDIT_RETENTION_DAYS);
    item.extend([
        (attr::DOC.to_owned(), string(to_doc(event, AUDIT)?)),
        (attr::TTL.to_owned(), number(expires.timestamp())),
    ]);
    Ok(item)
}

// ---- webhooks and the outbox -------------------------------------------------------------

pub(crate) fn webhook_key(id: &str) -> Item {
    key(format!("{WEBHOOK_PK_PREFIX}{id}"), WEBHOOK_SK)
}

pub(crate) fn webhook_item(webhook: &crate::ports::StoredWebhook) -> Result<Item, StoreError> {
    let mut item = webhook_key(&webhook.subscription.id);
    item.extend([
        (
            attr::DOC.to_owned(),
            string(crate::adapters::records::webhook_to_doc(webhook)?),
        ),
        (
            attr::VERSION.to_owned(),
            number(webhook.subscription.version),
        ),
        (attr::GSI1PK.to_owned(), string(WEBHOOKS_PARTITION)),
        (
            attr::GSI1SK.to_owned(),
            string(webhook.subscription.id.clone()),
        ),
    ]);
    Ok(item)
}

pub(crate) fn webhook_from_item(item: &Item) -> Result<crate::ports::StoredWebhook, StoreError> {
    let mut webhook =
        crate::adapters::records::webhook_from_doc(string_attr(item, attr::DOC, WEBHOOK)?)?;
    webhook.subscription.version = version_of(item, WEBHOOK)?;
    Ok(webhook)
}

pub(crate) fn outbox_partition(shard: u32) -> String {
    format!("{OUTBOX_PK_PREFIX}{shard:02}")
}

pub(crate) fn outbox_key(entry: &crate::ports::OutboxEntry) -> Item {
    let id = entry.id();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let shard = u32::from(digest.as_ref()[0]) % OUTBOX_SHARDS;
    key(
        outbox_partition(shard),
        crate::adapters::records::outbox_sort_key(entry),
    )
}

pub(crate) fn outbox_item(entry: &crate::ports::OutboxEntry) -> Result<Item, StoreError> {
    let mut item = outbox_key(entry);
    item.insert(attr::DOC.to_owned(), string(to_doc(entry, OUTBOX)?));
    Ok(item)
}

pub(crate) fn outbox_from_item(item: &Item) -> Result<crate::ports::OutboxEntry, StoreError> {
    parse_doc(item, OUTBOX)
}

// ---- fetch records ----------------------------------------------------------------------

pub(crate) fn fetches_partition(id: &ConnectionId) -> String {
    format!("{FETCHES_PK_PREFIX}{id}")
}

pub(crate) fn fetch_item(fetch: &TokenFetch) -> Result<Item, StoreError> {
    let mut item = key(
        fetches_partition(&fetch.connection_id),
        format!("{}#{}", fetch.caller_kind.as_str(), fetch.caller),
    );
    let expires = fetch.last_at + chrono::Duration::days(AUDIT_RETENTION_DAYS);
    item.extend([
        (attr::DOC.to_owned(), string(to_doc(fetch, FETCH)?)),
        (
            attr::LAST_AT_MS.to_owned(),
            number(fetch.last_at.timestamp_millis()),
        ),
        (attr::TTL.to_owned(), number(expires.timestamp())),
    ]);
    Ok(item)
}

pub(crate) fn fetch_from_item(item: &Item) -> Result<TokenFetch, StoreError> {
    parse_doc(item, FETCH)
}

pub(crate) fn audit_from_item(item: &Item) -> Result<AuditEvent, StoreError> {
    parse_doc(item, AUDIT)
}

pub(crate) fn audit_sort_key_of(item: &Item) -> Result<String, StoreError> {
    string_attr(item, attr::SK, AUDIT).map(str::to_owned)
}

// ---- pending authorizations -------------------------------------------------------------

pub(crate) fn pending_item(
    state: &StateToken,
    pending: &PendingAuthorization,
) -> Result<Item, StoreError> {
    let mut item = pending_key(state);
    item.extend([
        (attr::DOC.to_owned(), string(pending_to_doc(pending))),
        (
            attr::EXPIRES_AT.to_owned(),
            string(
                pending
                    .expires_at
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
        ),
        (attr::TTL.to_owned(), number(pending.expires_at.timestamp())),
    ]);
    if pending.awaiting_confirmation.is_some() {
        item.extend([
            (attr::GSI1PK.to_owned(), string(AWAITING_PARTITION)),
            (
                attr::GSI1SK.to_owned(),
                string(format!(
                    "{}#{}",
                    crate::adapters::records::sortable_time(pending.expires_at),
                    state.lookup_key()
                )),
            ),
            (
                attr::TTL.to_owned(),
                number(pending.expires_at.timestamp() + AWAITING_GRACE_SECONDS),
            ),
        ]);
    }
    Ok(item)
}

/// The exclusive upper bound of awaiting-index keys expired at `now` (the same shape as the
/// due index's keys: a sortable time, `#`, the rest).
pub(crate) fn awaiting_bound(now: chrono::DateTime<chrono::Utc>) -> String {
    due_bound(now)
}

pub(crate) fn pending_from_item(item: &Item) -> Result<PendingAuthorization, StoreError> {
    pending_from_doc(string_attr(item, attr::DOC, PENDING)?)
}

// ---- page cursors -----------------------------------------------------------------------

/// Every key attribute of an item in `index`: what a page of an index query resumes after.
fn index_page_attributes(index: Index) -> [&'static str; 4] {
    [attr::PK, attr::SK, index.hash, index.range]
}

/// The key to resume a query of `index` after `item`.
pub(crate) fn index_page_key(item: &Item, index: Index) -> Item {
    index_page_attributes(index)
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), item.get(*name)?.clone())))
        .collect()
}

/// An opaque cursor for a page key: base64url (no padding) of a JSON object of its strings.
pub(crate) fn encode_cursor(page_key: &Item) -> Result<String, StoreError> {
    let mut strings = BTreeMap::new();
    for (name, value) in page_key {
        match value {
            AttributeValue::S(text) => strings.insert(name.as_str(), text.as_str()),
            _ => return Err(missing(CURSOR, name, "a string")),
        };
    }
    let json = to_doc(&strings, CURSOR)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Reads back a cursor issued for the partition `partition` of `index`. Anything else is
/// refused here, so a forged or foreign cursor is the caller's error rather than a failed query.
pub(crate) fn decode_cursor(
    cursor: &str,
    index: Index,
    partition: &str,
) -> Result<Item, StoreError> {
    let refuse = || StoreError::BadCursor;
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refuse())?;
    let strings: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| refuse())?;
    let expected = index_page_attributes(index);
    let complete =
        strings.len() == expected.len() && expected.iter().all(|name| strings.contains_key(*name));
    if !complete || strings.get(index.hash).map(String::as_str) != Some(partition) {
        return Err(refuse());
    }
    Ok(strings
        .into_iter()
        .map(|(name, value)| (name, string(value)))
        .collect())
}

/// The index sort key a decoded cursor resumes after.
pub(crate) fn cursor_sort_key(page_key: &Item, index: Index) -> Option<&str> {
    match page_key.get(index.range) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};

    use super::*;
    use crate::domain::{PkceVerifier, Subject, TokenStatus, UrlPolicy};

    fn connection(name: &str) -> Connection {
        let input = serde_json::from_value(serde_json::json!({
            "name": name,
            "grant_type": "authorization_code_pkce",
            "client_id": "abc",
            "client_secret": "s3cret",
            "authorization_url": "https://login.acme.example/authorize",
            "token_url": "https://login.acme.example/token",
        }))
        .unwrap();
        Connection::create(input, Utc::now(), UrlPolicy::Production)
            .unwrap()
            .0
    }

    fn token(owner: Owner, due: Option<DateTime<Utc>>) -> StoredToken {
        let now = Utc::now();
        StoredToken {
            connection_id: ConnectionId::generate(),
            owner,
            status: TokenStatus::Valid,
            token_type: "Bearer".into(),
            scope: Some("read".into()),
            expires_at: Some(now + Duration::hours(1)),
            refresh_due_at: due,
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
            sealed: vec![9, 8, 7],
            version: 0,
        }
    }

    fn key_of(token: &StoredToken) -> TokenKey {
        TokenKey {
            connection_id: token.connection_id.clone(),
            owner: token.owner.clone(),
        }
    }

    fn user(subject: &str) -> Owner {
        Owner::User(Subject::parse(subject).unwrap())
    }

    #[test]
    fn due_sort_keys_sort_like_their_times() {
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        };
        let base = Utc.with_ymd_and_hms(2024, 9, 30, 23, 59, 59).unwrap();
        let times = [
            Utc.with_ymd_and_hms(999, 1, 1, 0, 0, 0).unwrap(),
            base,
            base + Duration::microseconds(1),
            base + Duration::milliseconds(10),
            base + Duration::seconds(1),
            base + Duration::days(400),
            Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap(),
        ];
        let keys: Vec<String> = times.iter().map(|t| due_sort_key(*t, &key)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.len() == keys[0].len()));
        assert!(keys[1].starts_with("2024-09-30T23:59:59.000000Z#con_"));
    }

    #[test]
    fn the_due_bound_includes_exactly_the_tokens_due_by_then() {
        let due_by = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: user("zz~last"),
        };
        let bound = due_bound(due_by);
        assert!(due_sort_key(due_by, &key) < bound);
        assert!(due_sort_key(due_by - Duration::seconds(1), &key) < bound);
        assert!(due_sort_key(due_by + Duration::microseconds(1), &key) > bound);
    }

    #[test]
    fn far_future_due_times_do_not_sort_first() {
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        };
        let far = Utc.with_ymd_and_hms(20000, 1, 1, 0, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert!(due_sort_key(far, &key) > due_bound(now));
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let stored = token(Owner::Shared, Some(Utc::now()));
        let mut item = token_item(&stored, 1, 16).unwrap();
        let shard = due_shard_partition(due_shard_of(&key_of(&stored), 16));
        let page_key = index_page_key(&item, DUE);
        assert_eq!(page_key.len(), 4);
        let cursor = encode_cursor(&page_key).unwrap();
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor(&cursor, DUE, &shard).unwrap(), page_key);
        assert_eq!(
            cursor_sort_key(&page_key, DUE),
            item.get(attr::DUE_AT)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
        );

        // Another shard's cursor, or another index's, resumes nothing here.
        let other_shard = due_shard_partition((due_shard_of(&key_of(&stored), 16) + 1) % 16);
        for (index, partition) in [
            (DUE, other_shard.as_str()),
            (GSI1, LEGACY_DUE_PARTITION),
            (GSI1, shard.as_str()),
        ] {
            let foreign = decode_cursor(&cursor, index, partition).unwrap_err();
            assert!(matches!(foreign, StoreError::BadCursor));
        }
        for bad in ["", "!!!", "e30", &URL_SAFE_NO_PAD.encode(r#"{"pk":"x"}"#)] {
            assert!(matches!(
                decode_cursor(bad, DUE, &shard),
                Err(StoreError::BadCursor)
            ));
        }

        item.insert(attr::DUE_AT.to_owned(), number(1));
        assert!(encode_cursor(&index_page_key(&item, DUE)).is_err());
    }

    #[test]
    fn token_keys_parse_from_the_item_key_even_with_separators_in_the_subject() {
        let stored = token(user("alice#1@example.com"), Some(Utc::now()));
        let item = token_item(&stored, 1, 16).unwrap();
        assert_eq!(token_key_from_item(&item).unwrap(), key_of(&stored));
    }

    #[test]
    fn tokens_round_trip_and_enter_the_due_index_only_when_due() {
        let due = token(Owner::Shared, Some(Utc::now()));
        let item = token_item(&due, 7, 16).unwrap();
        let shard = due_shard_of(&key_of(&due), 16);
        assert_eq!(item[attr::DUE_SHARD], string(format!("DUE#{shard:02}")));
        assert_eq!(
            item[attr::DUE_AT],
            string(due_sort_key(due.refresh_due_at.unwrap(), &key_of(&due)))
        );
        assert!(!item.contains_key(attr::GSI1PK) && !item.contains_key(attr::GSI1SK));
        assert!(!item[attr::DOC].as_s().unwrap().contains("sealed"));
        let back = token_from_item(&item).unwrap();
        assert_eq!(back, StoredToken { version: 7, ..due });

        let idle = token(user("bob"), None);
        let item = token_item(&idle, 1, 16).unwrap();
        for name in [attr::DUE_SHARD, attr::DUE_AT, attr::GSI1PK, attr::GSI1SK] {
            assert!(!item.contains_key(name), "{name}");
        }
        assert_eq!(token_from_item(&item).unwrap().sealed, vec![9, 8, 7]);
    }

    #[test]
    fn a_lease_or_a_document_update_leaves_the_due_keys_as_they_were() {
        let due_keys =
            |item: &Item| [attr::DUE_SHARD, attr::DUE_AT].map(|name| item.get(name).cloned());
        let before = token(user("carol"), Some(Utc::now() + Duration::minutes(10)));
        let first = token_item(&before, 1, 16).unwrap();
        let mut leased = before.clone();
        leased.lease = Some(crate::domain::Lease {
            holder: "refresher-1".into(),
            expires_at: Utc::now() + Duration::seconds(30),
        });
        leased.last_error = Some(crate::domain::TokenFailure {
            code: "temporarily_unavailable".into(),
            message: "the provider was slow".into(),
            at: Utc::now(),
        });
        leased.scope = Some("read write".into());
        leased.updated_at = Utc::now() + Duration::seconds(1);
        leased.sealed = vec![1, 2, 3, 4];
        let second = token_item(&leased, 2, 16).unwrap();
        assert_ne!(first[attr::DOC], second[attr::DOC]);
        assert_eq!(due_keys(&first), due_keys(&second));
        assert!(due_keys(&first).iter().all(Option::is_some));

        // A grant written while its due shard is hot keeps its entry where it was.
        let mut kept_in_place = leased.clone();
        kept_in_place.refresh_due_at = Some(Utc::now() + Duration::minutes(50));
        kept_in_place.filed_due_at = before.refresh_due_at;
        let throttled = token_item(&kept_in_place, 3, 16).unwrap();
        assert_eq!(due_keys(&first), due_keys(&throttled));
        assert_eq!(
            token_from_item(&throttled).unwrap().filed_due_at,
            before.refresh_due_at
        );

        let mut moved = leased;
        moved.refresh_due_at = Some(Utc::now() + Duration::minutes(50));
        let third = token_item(&moved, 3, 16).unwrap();
        assert_eq!(first[attr::DUE_SHARD], third[attr::DUE_SHARD]);
        assert_ne!(first[attr::DUE_AT], third[attr::DUE_AT]);
    }

    #[test]
    fn a_token_keys_shard_is_pinned() {
        // Entries already stored sit in the shard this computes: it must never change.
        let key = TokenKey {
            connection_id: ConnectionId::parse("con_0123456789abcdef0123456789abcdef").unwrap(),
            owner: user("alice@example.com"),
        };
        assert_eq!(
            [1, 2, 7, 16, 32, 256].map(|shards| due_shard_of(&key, shards)),
            PINNED_SHARDS
        );
        let shared = TokenKey {
            owner: Owner::Shared,
            ..key
        };
        assert_eq!(due_shard_of(&shared, 16), PINNED_SHARED_SHARD);
        assert_eq!(due_shard_partition(7), "DUE#07");
        assert_eq!(due_shard_partition(123), "DUE#123");
    }

    /// SHA-256 of `con_0123456789abcdef0123456789abcdef#user:alice@example.com`, first eight
    /// bytes big-endian, modulo each count (checked with Python's hashlib).
    const PINNED_SHARDS: [u32; 6] = [0, 0, 2, 4, 20, 52];
    const PINNED_SHARED_SHARD: u32 = 7;

    #[test]
    fn token_keys_spread_evenly_over_the_shards() {
        const SHARDS: u32 = 16;
        const KEYS: usize = 100_000;
        let mut counts = [0usize; SHARDS as usize];
        for n in 0..KEYS {
            let owner = if n % 10 == 0 {
                Owner::Shared
            } else {
                user(&format!("user-{n}@example.com"))
            };
            let key = TokenKey {
                connection_id: ConnectionId::generate(),
                owner,
            };
            counts[due_shard_of(&key, SHARDS) as usize] += 1;
        }
        let mean = KEYS as f64 / f64::from(SHARDS);
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*max as f64 <= 1.1 * mean, "{counts:?}");
        assert!(*min as f64 >= 0.9 * mean, "{counts:?}");
    }

    #[test]
    fn a_token_document_moved_to_another_key_is_refused() {
        let alice = token(user("alice"), None);
        let mut item = token_item(&alice, 1, 16).unwrap();
        let bob = TokenKey {
            connection_id: alice.connection_id.clone(),
            owner: user("bob"),
        };
        item.extend(token_key(&bob));
        assert!(matches!(
            token_from_item(&item),
            Err(StoreError::Corrupt(TOKEN, _))
        ));
    }

    #[test]
    fn connections_take_their_version_from_the_attribute() {
        let conn = connection("Acme CRM");
        let mut item = connection_item(&conn, 3).unwrap();
        assert_eq!(item[attr::NAME_KEY], string("acme crm"));
        item.insert(attr::VERSION.to_owned(), number(5));
        let back = connection_from_item(&item).unwrap();
        assert_eq!(back, Connection { version: 5, ..conn });
        assert_eq!(stored_name_key(&item).unwrap(), "acme crm");
    }

    #[test]
    fn connections_list_in_name_order_even_when_one_name_extends_another() {
        let names = ["Alpha", "alpha two", "Alpha-3", "Beta"];
        let keys: Vec<String> = names
            .iter()
            .map(|name| {
                let item = connection_item(&connection(name), 1).unwrap();
                item[attr::GSI1SK].as_s().unwrap().clone()
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn corrupt_documents_do_not_echo_their_contents() {
        let conn = connection("Acme");
        let mut item = connection_item(&conn, 1).unwrap();
        item.insert(
            attr::DOC.to_owned(),
            string(r#"{"version": "SECRET-LOOKING-VALUE"}"#),
        );
        let err = connection_from_item(&item).unwrap_err().to_string();
        assert!(!err.contains("SECRET-LOOKING-VALUE"), "{err}");
        item.remove(attr::VERSION);
        item.insert(
            attr::DOC.to_owned(),
            string(to_doc(&conn, CONNECTION).unwrap()),
        );
        assert!(matches!(
            connection_from_item(&item),
            Err(StoreError::Corrupt(CONNECTION, _))
        ));
    }

    #[test]
    fn pending_authorizations_round_trip_with_their_verifier() {
        let state = StateToken::generate();
        let expires_at = Utc.with_ymd_and_hms(2024, 5, 1, 10, 5, 0).unwrap();
        let pending = PendingAuthorization {
            connection_id: ConnectionId::generate(),
            owner: user("alice"),
            requested_by: Subject::parse("alice").unwrap(),
            pkce_verifier: Some(PkceVerifier::new("verifier-value")),
            nonce: Some("n-1".into()),
            redirect_after: None,
            created_at: expires_at - Duration::minutes(5),
            expires_at,
            awaiting_confirmation: None,
        };
        let item = pending_item(&state, &pending).unwrap();
        assert_eq!(
            item[attr::PK],
            string(format!("STATE#{}", state.lookup_key()))
        );
        assert_eq!(item[attr::TTL], number(expires_at.timestamp()));
        assert_eq!(item[attr::EXPIRES_AT], string("2024-05-01T10:05:00Z"));
        let back = pending_from_item(&item).unwrap();
        assert_eq!(
            back.pkce_verifier.unwrap().expose_secret(),
            "verifier-value"
        );
        assert_eq!(back.owner, pending.owner);
        assert_eq!(back.nonce, pending.nonce);
        assert_eq!(back.expires_at, expires_at);
    }
}
