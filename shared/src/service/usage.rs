//! Who used which token. Every token handed out is one audit log line (who, through which
//! rule and scope, which connection and owner, the token's fingerprint); and each connection
//! keeps, per caller, when it last fetched, written at most once per caller per connection per
//! interval so that the read path stays one database round trip in the common case.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::ExposeSecret;

use super::access::TokenAccess;
use super::tokens::TokenView;
use super::{Keyport, ServiceError};
use crate::domain::{
    ApiScope, CallerKind, Connection, ConnectionId, Principal, Subject, TokenFetch,
    token_fingerprint,
};

/// The most callers a process remembers writing for; past it, the oldest memories go first
/// (a forgotten caller costs one conditional write, which the store still refuses when the
/// record is recent).
const REMEMBERED_CALLERS: usize = 10_000;

type CallerKey = (ConnectionId, CallerKind, Subject);

/// When this process last wrote each caller's fetch record.
#[derive(Default)]
pub(crate) struct FetchThrottle {
    written: Mutex<HashMap<CallerKey, Instant>>,
}

impl FetchThrottle {
    /// Whether a fetch by `key` at `now` is due a write: none written by this process within
    /// `interval`. Remembers the write it allows.
    fn allows(&self, key: CallerKey, now: Instant, interval: Duration) -> bool {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if written
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < interval)
        {
            return false;
        }
        if written.len() >= REMEMBERED_CALLERS {
            written.retain(|_, at| now.saturating_duration_since(*at) < interval);
            if written.len() >= REMEMBERED_CALLERS {
                written.clear();
            }
        }
        written.insert(key, now);
        true
    }
}

impl Keyport {
    /// Records a token handed to `principal`: the audit line always, the fetch record when it
    /// is due. Never fails the read: a store that is down costs the record, not the token.
    pub(super) async fn record_handout(
        &self,
        principal: &Principal,
        connection: &Connection,
        access: &TokenAccess,
        view: &TokenView,
    ) {
        let caller_kind = if principal.is_application() {
            CallerKind::Application
        } else {
            CallerKind::Person
        };
        // The scope that allowed it, when the token is limited by Keyport's scopes at all.
        let scope = principal
            .scopes
            .as_ref()
            .map(|_| ApiScope::TokensRead.as_str().to_owned());
        let fetch = TokenFetch {
            connection_id: connection.id.clone(),
            caller: principal.subject.clone(),
            caller_kind,
            via: access.via.to_string(),
            scope,
            owner: access.owner.clone(),
            token_fingerprint: token_fingerprint(view.access_token.expose_secret()),
            last_at: Utc::now(),
        };
        tracing::info!(
            target: "audit",
            event = "token_issued",
            stored = false,
            connection_id = %connection.id,
            connection_name = %connection.name,
            caller = %fetch.caller,
            caller_kind = caller_kind.as_str(),
            client_id = principal.application.as_ref().map(tracing::field::display),
            via = %fetch.via,
            scope = fetch.scope.as_deref(),
            owner = %fetch.owner,
            token_fingerprint = %fetch.token_fingerprint,
            expires_at = view.expires_at.map(|at| tracing::field::display(at.to_rfc3339())),
            "audit"
        );
        let interval = self.settings.fetch_record_interval;
        let key = (
            connection.id.clone(),
            caller_kind,
            principal.subject.clone(),
        );
        if !self.fetch_throttle.allows(key, Instant::now(), interval) {
            return;
        }
        let since = fetch.last_at - chrono::Duration::from_std(interval).unwrap_or_default();
        if let Err(error) = self.store.record_fetch(&fetch, since).await {
            tracing::warn!(connection_id = %connection.id, %error, "the fetch record could not be written");
        }
    }

    /// Each caller's last fetch of a connection's tokens, most recent first (administrators
    /// who may read the audit trail).
    pub async fn token_fetches(
        &self,
        principal: &Principal,
        id: &ConnectionId,
    ) -> Result<Vec<TokenFetch>, ServiceError> {
        let allowed = self.access.require_audit_reader(principal);
        self.audit_denial(principal, id, allowed).await?;
        Ok(self.store.list_fetches(id, MAX_LISTED_FETCHES).await?)
    }
}

/// How many callers' records the audit route lists.
pub const MAX_LISTED_FETCHES: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(caller: &str) -> CallerKey {
        (
            ConnectionId::parse("con_0123456789abcdef0123456789abcdef").unwrap(),
            CallerKind::Person,
            Subject::parse(caller).unwrap(),
        )
    }

    #[test]
    fn a_caller_is_written_once_per_interval() {
        let throttle = FetchThrottle::default();
        let start = Instant::now();
        let interval = Duration::from_secs(300);
        assert!(throttle.allows(key("bot-1"), start, interval));
        assert!(!throttle.allows(key("bot-1"), start + Duration::from_secs(299), interval));
        assert!(
            throttle.allows(key("bot-2"), start, interval),
            "its own record"
        );
        assert!(throttle.allows(key("bot-1"), start + interval, interval));
        assert!(!throttle.allows(key("bot-1"), start + interval, interval));
    }

    #[test]
    fn a_full_memory_forgets_the_old_before_the_recent() {
        let throttle = FetchThrottle::default();
        let start = Instant::now();
        let interval = Duration::from_secs(300);
        for n in 0..REMEMBERED_CALLERS - 1 {
            assert!(throttle.allows(key(&format!("old-{n}")), start, interval));
        }
        let later = start + Duration::from_secs(200);
        assert!(throttle.allows(key("recent"), later, interval));
        // Full: the old ones (past the interval by now) go, the recent one stays.
        let now = start + Duration::from_secs(400);
        assert!(throttle.allows(key("new"), now, interval));
        assert!(!throttle.allows(key("recent"), now, interval));
        assert!(throttle.allows(key("old-0"), now, interval));
    }
}
