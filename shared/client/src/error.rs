//! What can go wrong talking to Keyport, in words a person can act on. No variant ever holds a
//! bearer token or an access token.

use reqwest::StatusCode;

use crate::wire::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Keyport refused, in its error shape.
    #[error("{message}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("cannot reach Keyport at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("Keyport answered something unexpected: {0}")]
    BadAnswer(String),
    #[error(
        "no connection named {0:?} is visible to you (an administrator sees every connection; anyone else those their roles are invited to)"
    )]
    UnknownConnection(String),
    #[error("{0}")]
    InvalidServer(String),
}

impl ClientError {
    /// Keyport's error code (`not_authorized`, `forbidden`, …) when Keyport refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status when Keyport refused.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An error answer: Keyport's `{"error", "message", "field"?}`, or whatever stood in front of
/// it (an API gateway's own refusal), by its status.
pub(crate) fn from_answer(status: StatusCode, text: &str) -> ClientError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error,
            message: body.message,
            field: body.field,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: format!("http_{}", status.as_u16()),
            message: format!(
                "the server answered {status} without Keyport's error body (is this Keyport's address?)"
            ),
            field: None,
        },
    }
}

/// Why a request did not get an answer, without the URL reqwest would add (it is the one the
/// caller gave, and said once).
pub(crate) fn transport_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer in time".to_owned();
    }
    if error.is_connect() {
        return "nothing answers there (is the server running?)".to_owned();
    }
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}
