//! Encodings both store back-ends share, so an item means the same thing in either: the due
//! index key, page cursors and the pending-authorization document.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    AuditEvent, AwaitedGrant, ConnectionId, Owner, PendingAuthorization, PkceVerifier, Subject,
};
use crate::ports::{StoreError, TokenKey};

/// A time as fixed-width text, so that strings sort like the times they stand for. Years past
/// 9999 would grow a `+` and sort first; they are clamped to the last representable instant,
/// which keeps such a token out of every realistic due window.
pub fn sortable_time(time: DateTime<Utc>) -> String {
    // 9999-12-31T23:59:59.999999Z, the last instant with a four-digit year.
    const LATEST_MICROS: i64 = 253_402_300_799_999_999;
    let clamped = match DateTime::from_timestamp_micros(LATEST_MICROS) {
        Some(latest) if time > latest => latest,
        _ => time,
    };
    clamped.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The due-index sort key of a token: `<due time>#<connection id>#<owner>`.
pub fn due_index_key(due_at: DateTime<Utc>, key: &TokenKey) -> String {
    format!(
        "{}#{}#{}",
        sortable_time(due_at),
        key.connection_id,
        key.owner
    )
}

/// The due shard of a token among `shards`: the first eight bytes of the SHA-256 of its key,
/// modulo the count. A published hash, unlike std's, never changes with the Rust version, so an
/// entry stays in the shard its readers look in across upgrades.
pub fn due_shard_of(key: &TokenKey, shards: u32) -> u32 {
    let input = format!("{}#{}", key.connection_id, key.owner.storage_key());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let shards = u64::from(shards.max(1));
    // The remainder is below `shards`, itself a u32.
    (u64::from_be_bytes(first) % shards) as u32
}

/// The exclusive upper bound of due-index keys at or before `due_by`: `$` sorts after `#`.
pub fn due_index_bound(due_by: DateTime<Utc>) -> String {
    format!("{}$", sortable_time(due_by))
}

/// Reads the token key back out of a due-index sort key.
pub fn token_key_from_due_index(value: &str) -> Result<TokenKey, StoreError> {
    let corrupt = || StoreError::Corrupt("due index entry", "malformed sort key".into());
    let mut parts = value.splitn(3, '#');
    let (_time, connection, owner) = (parts.next(), parts.next(), parts.next());
    let connection_id =
        ConnectionId::parse(connection.ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let owner: Owner = owner.ok_or_else(corrupt)?.parse().map_err(|_| corrupt())?;
    Ok(TokenKey {
        connection_id,
        owner,
    })
}

/// An audit event's sort key within its connection: `<time>#<event id>`, so events list in
/// time order and two in the same microsecond keep distinct keys.
pub fn audit_sort_key(event: &AuditEvent) -> String {
    format!("{}#{}", sortable_time(event.at), event.id)
}

/// The prefix of every user token's owner key (`user:<subject>`); `USER_OWNERS_END` sorts
/// after all of them (`;` follows `:`), and the shared token's `shared` before.
pub const USER_OWNER_PREFIX: &str = "user:";
pub const USER_OWNERS_END: &str = "user;";

/// A page of user tokens resumes after the last owner it returned.
pub fn user_token_cursor(last: &Owner) -> String {
    encode_cursor(&last.storage_key())
}

/// The owner a user-token cursor resumes after; anything but a user's owner is refused, so a
/// made-up cursor cannot reach the shared token.
pub fn user_token_after(cursor: &str) -> Result<Owner, StoreError> {
    let owner: String = decode_cursor(cursor)?;
    match owner.parse::<Owner>() {
        Ok(owner @ Owner::User(_)) => Ok(owner),
        _ => Err(StoreError::BadCursor),
    }
}

/// Opaque page cursors: base64url of a JSON value only the store that made it reads.
pub fn encode_cursor<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

pub fn decode_cursor<T: for<'de> Deserialize<'de>>(cursor: &str) -> Result<T, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)
}

/// The stored form of a pending authorization. The PKCE verifier is kept as it is: it is
/// useless without the single-use code, which only the provider hands to the callback.
#[derive(Serialize, Deserialize)]
struct PendingDoc {
    connection_id: ConnectionId,
    owner: Owner,
    requested_by: Subject,
    pkce_verifier: Option<String>,
    nonce: Option<String>,
    redirect_after: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    awaiting_confirmation: Option<AwaitedGrantDoc>,
}

/// The grant a callback obtained: metadata as it is, the secrets as their envelope (base64).
#[derive(Serialize, Deserialize)]
struct AwaitedGrantDoc {
    token_type: String,
    scope: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    sealed: String,
    issued_for: String,
}

pub fn pending_to_doc(pending: &PendingAuthorization) -> String {
    let doc = PendingDoc {
        connection_id: pending.connection_id.clone(),
        owner: pending.owner.clone(),
        requested_by: pending.requested_by.clone(),
        pkce_verifier: pending
            .pkce_verifier
            .as_ref()
            .map(|v| v.expose_secret().to_owned()),
        nonce: pending.nonce.clone(),
        redirect_after: pending.redirect_after.clone(),
        created_at: pending.created_at,
        expires_at: pending.expires_at,
        awaiting_confirmation: pending.awaiting_confirmation.as_ref().map(|grant| {
            AwaitedGrantDoc {
                token_type: grant.token_type.clone(),
                scope: grant.scope.clone(),
                expires_at: grant.expires_at,
                sealed: STANDARD.encode(&grant.sealed),
                issued_for: grant.issued_for.clone(),
            }
        }),
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

pub fn pending_from_doc(doc: &str) -> Result<PendingAuthorization, StoreError> {
    let doc: PendingDoc = serde_json::from_str(doc).map_err(corrupt("pending authorization"))?;
    Ok(PendingAuthorization {
        connection_id: doc.connection_id,
        owner: doc.owner,
        requested_by: doc.requested_by,
        pkce_verifier: doc.pkce_verifier.map(PkceVerifier::new),
        nonce: doc.nonce,
        redirect_after: doc.redirect_after,
        created_at: doc.created_at,
        expires_at: doc.expires_at,
        awaiting_confirmation: doc
            .awaiting_confirmation
            .map(|grant| {
                Ok::<_, StoreError>(AwaitedGrant {
                    token_type: grant.token_type,
                    scope: grant.scope,
                    expires_at: grant.expires_at,
                    sealed: STANDARD.decode(grant.sealed).map_err(|_| {
                        StoreError::Corrupt("pending authorization", "sealed grant".into())
                    })?,
                    issued_for: grant.issued_for,
                })
            })
            .transpose()?,
    })
}

/// Describes a JSON failure by its kind and position only: serde's messages can quote values,
/// and a stored document may hold what must not reach a log line.
pub fn json_error(entity: &'static str, error: &serde_json::Error) -> StoreError {
    StoreError::Corrupt(
        entity,
        format!(
            "{:?} error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        ),
    )
}

/// [`json_error`] for `map_err`.
pub fn corrupt(entity: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| json_error(entity, &e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn due_keys_sort_like_times_and_stay_under_their_bound() {
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::Shared,
        };
        let t = Utc::now();
        let earlier = due_index_key(t, &key);
        let later = due_index_key(t + Duration::microseconds(1), &key);
        assert!(earlier < later);
        assert!(earlier < due_index_bound(t));
        assert!(later > due_index_bound(t));
        let far = due_index_key(t + Duration::days(400), &key);
        assert!(later < far);
    }

    #[test]
    fn token_keys_come_back_out_of_due_keys() {
        let key = TokenKey {
            connection_id: ConnectionId::generate(),
            owner: Owner::User(Subject::parse("a#b@example.com").unwrap()),
        };
        assert_eq!(
            token_key_from_due_index(&due_index_key(Utc::now(), &key)).unwrap(),
            key
        );
        assert!(token_key_from_due_index("garbage").is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_cursor(&("a", 1));
        assert_eq!(
            decode_cursor::<(String, u32)>(&cursor).unwrap(),
            ("a".to_owned(), 1)
        );
        assert!(decode_cursor::<(String, u32)>("!!").is_err());
    }
}

/// A stored webhook subscription as one document: its sealed secrets as base64.
#[derive(Serialize, Deserialize)]
struct WebhookDoc {
    subscription: crate::domain::WebhookSubscription,
    sealed_secret: String,
    #[serde(default)]
    previous_secret: Option<String>,
    #[serde(default)]
    previous_until: Option<DateTime<Utc>>,
}

pub fn webhook_to_doc(webhook: &crate::ports::StoredWebhook) -> Result<String, StoreError> {
    let (previous_secret, previous_until) = match &webhook.previous {
        Some((sealed, until)) => (Some(STANDARD.encode(sealed)), Some(*until)),
        None => (None, None),
    };
    serde_json::to_string(&WebhookDoc {
        subscription: webhook.subscription.clone(),
        sealed_secret: STANDARD.encode(&webhook.sealed_secret),
        previous_secret,
        previous_until,
    })
    .map_err(corrupt("webhook"))
}

pub fn webhook_from_doc(doc: &str) -> Result<crate::ports::StoredWebhook, StoreError> {
    let doc: WebhookDoc = serde_json::from_str(doc).map_err(corrupt("webhook"))?;
    let decode = |text: &str| {
        STANDARD
            .decode(text)
            .map_err(|_| StoreError::Corrupt("webhook", "a malformed sealed secret".into()))
    };
    let previous = match (doc.previous_secret, doc.previous_until) {
        (Some(sealed), Some(until)) => Some((decode(&sealed)?, until)),
        _ => None,
    };
    Ok(crate::ports::StoredWebhook {
        subscription: doc.subscription,
        sealed_secret: decode(&doc.sealed_secret)?,
        previous,
    })
}

/// An outbox entry's sort key: when it is due, then its id (unique).
pub fn outbox_sort_key(entry: &crate::ports::OutboxEntry) -> String {
    format!("{}#{}", sortable_time(entry.due_at), entry.id())
}

/// The first sort key past everything due at `now`.
pub fn outbox_bound(now: DateTime<Utc>) -> String {
    format!("{}#~", sortable_time(now))
}
