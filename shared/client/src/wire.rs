//! The parts of Keyport's answers a client reads, as the API describes them
//! (`GET /openapi.json`). Connections themselves are kept as JSON: an administrator's tools
//! show and pass on whatever fields the server has, and need not be rebuilt when it gains one.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;

/// Whose token: the connection's shared one (bots), or the caller's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Shared,
    User,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Shared => "shared",
            Owner::User => "user",
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection the caller can use (`GET /me/connections`), with its tokens' status.
#[derive(Clone, Debug, Deserialize)]
pub struct UsableConnection {
    pub id: String,
    pub name: String,
    pub description: String,
    pub provider: String,
    pub grant_type: String,
    /// The shared token's status; `None` when there is none.
    pub shared_token: Option<String>,
    /// The caller's own token's status; `None` when there is none.
    pub user_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct MyConnections {
    pub connections: Vec<UsableConnection>,
}

#[derive(Deserialize)]
pub(crate) struct ConnectionPage {
    pub connections: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}

/// An access token valid now (`GET /connections/{id}/token`). Its `Debug` never shows the
/// token.
#[derive(Clone, Debug, Deserialize)]
pub struct AccessToken {
    pub access_token: SecretString,
    pub token_type: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub scope: Option<String>,
    pub connection_id: String,
    pub owner: String,
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// False when the token will not stay valid as long as asked.
    pub min_valid_met: bool,
}

/// An authorization started: where to send the person, and until when it can complete.
#[derive(Clone, Debug, Deserialize)]
pub struct Authorization {
    pub authorization_url: String,
    pub expires_at: DateTime<Utc>,
}

/// A grant confirmed and placed (`POST /oauth/complete`).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Completed {
    pub connection_id: String,
    pub owner: String,
}

/// A token disconnected (`DELETE /connections/{id}/token`).
#[derive(Clone, Debug, Deserialize)]
pub struct Disconnected {
    /// Whether the provider confirmed the revocation.
    pub revoked_at_provider: bool,
}

/// What `DELETE /connections/{id}` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Gone, its tokens revoked (204).
    Complete,
    /// Out of service; the refresher revokes the tokens still left (202).
    Continuing {
        tokens_revoked: u64,
        message: String,
    },
    /// Out of service, revoking none itself: the refresh workers revoke every token (202,
    /// on AWS).
    Queued { message: String },
}

#[derive(Deserialize)]
pub(crate) struct DeletionContinuing {
    pub status: String,
    /// Absent when the deletion was queued.
    pub tokens_revoked: Option<u64>,
    pub message: String,
}

/// Keyport's error body.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
    pub message: String,
    pub field: Option<String>,
}
