//! The use cases' one error type. The HTTP layer maps it to a status and a JSON body in one
//! place; messages here are safe to show (they never carry a secret or a token).

use crate::crypto::CryptoError;
use crate::domain::{ConnectionId, ValidationError};
use crate::oauth::OAuthError;
use crate::ports::{QueueError, SecretError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("this connection has no {owner} token yet; authorize it first")]
    NotAuthorized { owner: String },
    #[error("the {owner} token must be authorized again ({reason}); start a new authorization")]
    NeedsReauthorization { owner: String, reason: String },
    #[error("the state is unknown, already used or expired; start the authorization again")]
    InvalidState,
    #[error(
        "the authorization response came from issuer {received:?}, not the connection's issuer"
    )]
    IssuerMismatch { received: String },
    #[error(
        "the authorization response carries no iss, which this connection's authorization server always sends (RFC 9207)"
    )]
    IssuerMissing,
    #[error(
        "the ID token beside the code was refused ({0}); nothing was exchanged: start the authorization again"
    )]
    IdTokenRejected(&'static str),
    #[error("this connection's answers come by {expected} to the callback, not by {received}")]
    WrongResponseMode {
        expected: &'static str,
        received: &'static str,
    },
    #[error("the provider refused the authorization: {error}{}", .description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationDenied {
        error: String,
        description: Option<String>,
        connection_id: ConnectionId,
        /// The allowed page the authorization was started from: the browser goes back there to
        /// say so (nothing to confirm).
        redirect_after: Option<String>,
    },
    #[error(
        "this connection is disabled: it hands out, refreshes and authorizes nothing until an administrator sets its status to active"
    )]
    ConnectionDisabled,
    #[error(
        "only a client-credentials token can be reset; this connection's grant is {grant_type}: disconnect and authorize it again instead"
    )]
    NotClientCredentials { grant_type: &'static str },
    #[error("another refresh of this token is still running; try again shortly")]
    RefreshInProgress,
    #[error(transparent)]
    Provider(#[from] OAuthError),
    #[error("storage failed: {0}")]
    Store(StoreError),
    #[error("the secret store failed: {0}")]
    Secrets(#[from] SecretError),
    #[error("decryption failed: {0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(entity) => ServiceError::NotFound(entity),
            StoreError::Conflict(_) | StoreError::NameTaken(_) | StoreError::AlreadyExists(_) => {
                ServiceError::Conflict(error.to_string())
            }
            StoreError::BadCursor => ServiceError::Invalid(ValidationError::new(
                "cursor",
                "is not a cursor this listing issued",
            )),
            other => ServiceError::Store(other),
        }
    }
}

impl ServiceError {
    /// A stable snake_case code for the `error` field of responses.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Invalid(_) => "invalid_request",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::NotAuthorized { .. } => "not_authorized",
            ServiceError::NeedsReauthorization { .. } => "needs_reauthorization",
            ServiceError::InvalidState => "invalid_state",
            ServiceError::IssuerMismatch { .. } => "issuer_mismatch",
            ServiceError::IssuerMissing => "issuer_missing",
            ServiceError::IdTokenRejected(_) => "id_token_rejected",
            ServiceError::WrongResponseMode { .. } => "wrong_response_mode",
            ServiceError::AuthorizationDenied { .. } => "authorization_denied",
            ServiceError::ConnectionDisabled => "connection_disabled",
            ServiceError::NotClientCredentials { .. } => "not_client_credentials",
            ServiceError::RefreshInProgress => "refresh_in_progress",
            ServiceError::Provider(e) => e.code(),
            ServiceError::Store(_) => "storage_unavailable",
            ServiceError::Secrets(_) => "secret_store_unavailable",
            ServiceError::Crypto(_) => "decryption_failed",
            ServiceError::Queue(_) => "work_queue_unavailable",
        }
    }
}
