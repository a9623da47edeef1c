//! The audit trail: who did what to a connection and its tokens, and when. An event never
//! carries a secret: actors are subjects, details are error codes and field names.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ConnectionId, Owner};
use crate::crypto::random_bytes;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    ConnectionCreated,
    ConnectionChanged,
    ConnectionDeleted,
    TokenAuthorized,
    TokenRefreshed,
    TokenRevoked,
    TokenFailed,
    /// An administrator reset a client-credentials token: the old one revoked (where the
    /// provider can), a new one requested.
    TokenReset,
    /// A grant entered the warning window before its provider's documented absolute end: a
    /// person must authorize again before it dies. Once per grant.
    GrantEnding,
    AccessDenied,
    /// The connection's secrets and tokens left in an export, encrypted to the recipient the
    /// detail names.
    SecretsExported,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::ConnectionCreated => "connection_created",
            AuditAction::ConnectionChanged => "connection_changed",
            AuditAction::ConnectionDeleted => "connection_deleted",
            AuditAction::TokenAuthorized => "token_authorized",
            AuditAction::TokenRefreshed => "token_refreshed",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::TokenFailed => "token_failed",
            AuditAction::TokenReset => "token_reset",
            AuditAction::GrantEnding => "grant_ending",
            AuditAction::AccessDenied => "access_denied",
            AuditAction::SecretsExported => "secrets_exported",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted when no caller did: the scheduled refresher, or Keyport itself.
pub const REFRESHER_ACTOR: &str = "keyport:refresher";

impl AuditEvent {
    /// Routine upkeep: the refresher's own successful refreshes, one per token per token
    /// lifetime. Stored, they would be nearly all of the audit table (at ten million hourly
    /// tokens, some 36 TB over the 400 days events are kept) and would heat each busy
    /// connection's audit partition; they are logged instead, and a connection's token health
    /// (`last_refresh_at`) says when each token was last refreshed. Everything a person or a
    /// failure did stays stored.
    pub fn is_routine(&self) -> bool {
        self.action == AuditAction::TokenRefreshed && self.actor == REFRESHER_ACTOR
    }
}

/// One event of a connection's audit trail: who, what, when, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// `evt_` and 16 random hex digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^evt_[0-9a-f]{16}$"))]
    pub id: String,
    pub connection_id: ConnectionId,
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    /// The subject who acted, or `keyport:refresher` (REFRESHER_ACTOR).
    pub actor: String,
    /// The token's owner, for events about a token; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub owner: Option<Owner>,
    /// A safe detail: an error code, the fields a change touched; never a secret. Absent when
    /// there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(
        connection_id: ConnectionId,
        action: AuditAction,
        actor: impl Into<String>,
        owner: Option<Owner>,
        detail: Option<String>,
        at: DateTime<Utc>,
    ) -> Self {
        let id = format!(
            "evt_{}",
            random_bytes::<8>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Self {
            id,
            connection_id,
            at,
            action,
            actor: actor.into(),
            owner,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_random() {
        let id = ConnectionId::generate();
        let make = || {
            AuditEvent::new(
                id.clone(),
                AuditAction::TokenRefreshed,
                "x",
                None,
                None,
                Utc::now(),
            )
        };
        assert_ne!(make().id, make().id);
        assert_eq!(make().id.len(), 20);
    }

    #[test]
    fn only_the_refreshers_own_refreshes_are_routine() {
        let event = |action, actor: &str| {
            AuditEvent::new(
                ConnectionId::generate(),
                action,
                actor,
                Some(Owner::Shared),
                None,
                Utc::now(),
            )
        };
        assert!(event(AuditAction::TokenRefreshed, REFRESHER_ACTOR).is_routine());
        // A person forcing a refresh, or reading a token that needed one, is on the record.
        assert!(!event(AuditAction::TokenRefreshed, "admin-1").is_routine());
        for action in [
            AuditAction::TokenFailed,
            AuditAction::TokenRevoked,
            AuditAction::TokenAuthorized,
            AuditAction::GrantEnding,
            AuditAction::AccessDenied,
        ] {
            assert!(!event(action, REFRESHER_ACTOR).is_routine(), "{action}");
        }
    }

    #[test]
    fn actions_serialise_as_their_codes() {
        for action in [
            AuditAction::ConnectionCreated,
            AuditAction::AccessDenied,
            AuditAction::TokenFailed,
            AuditAction::GrantEnding,
        ] {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::json!(action.as_str())
            );
        }
    }
}
