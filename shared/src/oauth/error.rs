//! What can go wrong talking OAuth to a provider, sorted by what the caller should do:
//! authorize again, fix the configuration, or try later.

use std::time::Duration;

use oauth2::RequestTokenError;
use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType};

use crate::adapters::outbound::OutboundError;

const MAX_DESCRIPTION: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The grant (code or refresh token) is invalid, expired or revoked: a person must
    /// authorize again.
    #[error("the provider rejected the grant (invalid_grant){}", describe(.description))]
    InvalidGrant { description: Option<String> },
    #[error("the provider rejected the client credentials (invalid_client){}", describe(.description))]
    InvalidClient { description: Option<String> },
    #[error("the provider rejected the requested scope (invalid_scope){}", describe(.description))]
    InvalidScope { description: Option<String> },
    #[error("the provider refused the request ({code}){}", describe(.description))]
    Rejected {
        code: String,
        description: Option<String>,
    },
    #[error("the provider is rate limiting Keyport{}", retry_hint(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider failed with HTTP {status}")]
    ProviderUnavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the provider did not answer in time")]
    Timeout,
    /// Not sent: too little time was left (in the refresh lease or the Lambda invocation) for
    /// the provider's answer and the write of its result.
    #[error(
        "the provider was not called: too little time is left to wait for its answer and store the result"
    )]
    OutOfTime,
    #[error("could not reach the provider: {0}")]
    Network(String),
    #[error("the provider's answer could not be understood: {0}")]
    BadResponse(String),
    /// The connection cannot be used as configured (missing secret, bad private key, …).
    #[error("the connection is misconfigured: {0}")]
    Configuration(String),
    /// Outbound URL policy refused the endpoint.
    #[error("refused to contact the provider: {0}")]
    Refused(String),
    /// The forward proxy refused Keyport's credentials (HTTP 407); names the setting it came
    /// from, never its value. Not retried: it fails until someone fixes the credentials.
    #[error(
        "the forward proxy refused Keyport's credentials (HTTP 407): check the username and password of {0}"
    )]
    ProxyAuthentication(&'static str),
}

fn describe(description: &Option<String>) -> String {
    description
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!("; retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

impl OAuthError {
    /// Worth retrying with backoff; the stored token stays as it is.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OAuthError::RateLimited { .. }
                | OAuthError::ProviderUnavailable { .. }
                | OAuthError::Timeout
                | OAuthError::OutOfTime
                | OAuthError::Network(_)
        )
    }

    /// The provider's requested wait, if it named one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OAuthError::RateLimited { retry_after }
            | OAuthError::ProviderUnavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable snake_case code for error bodies and stored failures.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidGrant { .. } => "invalid_grant",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidScope { .. } => "invalid_scope",
            OAuthError::Rejected { .. } => "provider_rejected",
            OAuthError::RateLimited { .. } => "provider_rate_limited",
            OAuthError::ProviderUnavailable { .. } => "provider_unavailable",
            OAuthError::Timeout => "provider_timeout",
            OAuthError::OutOfTime => "provider_not_called",
            OAuthError::Network(_) => "provider_unreachable",
            OAuthError::BadResponse(_) => "provider_bad_response",
            OAuthError::Configuration(_) => "connection_misconfigured",
            OAuthError::Refused(_) => "endpoint_refused",
            OAuthError::ProxyAuthentication(_) => "proxy_authentication_failed",
        }
    }
}

/// Provider descriptions are shown to people: keep them short and printable.
fn sanitize(description: Option<&str>) -> Option<String> {
    description.map(|d| {
        d.chars()
            .filter(|c| !c.is_control())
            .take(MAX_DESCRIPTION)
            .collect()
    })
}

impl From<OutboundError> for OAuthError {
    fn from(error: OutboundError) -> Self {
        match error {
            OutboundError::Status {
                status: 429,
                retry_after,
            } => OAuthError::RateLimited { retry_after },
            OutboundError::Status {
                status,
                retry_after,
            } if status >= 500 => OAuthError::ProviderUnavailable {
                status,
                retry_after,
            },
            OutboundError::Status { status, .. } => {
                OAuthError::BadResponse(format!("unexpected HTTP {status}"))
            }
            OutboundError::Timeout => OAuthError::Timeout,
            OutboundError::Connect(reason) => OAuthError::Network(reason),
            OutboundError::Refused(reason) => OAuthError::Refused(reason),
            OutboundError::ProxyAuthentication(name) => OAuthError::ProxyAuthentication(name),
            OutboundError::TooLarge(limit) => {
                OAuthError::BadResponse(format!("larger than {limit} bytes"))
            }
            OutboundError::Other(reason) => OAuthError::Network(reason),
        }
    }
}

impl From<RequestTokenError<OutboundError, BasicErrorResponse>> for OAuthError {
    fn from(error: RequestTokenError<OutboundError, BasicErrorResponse>) -> Self {
        match error {
            RequestTokenError::ServerResponse(response) => {
                let description = sanitize(response.error_description().map(String::as_str));
                match response.error() {
                    BasicErrorResponseType::InvalidGrant => {
                        OAuthError::InvalidGrant { description }
                    }
                    BasicErrorResponseType::InvalidClient => {
                        OAuthError::InvalidClient { description }
                    }
                    BasicErrorResponseType::InvalidScope => {
                        OAuthError::InvalidScope { description }
                    }
                    other => OAuthError::Rejected {
                        code: sanitize(Some(other.as_ref())).unwrap_or_default(),
                        description,
                    },
                }
            }
            RequestTokenError::Request(outbound) => outbound.into(),
            // Only the path: a parse error's message can quote the offending value.
            RequestTokenError::Parse(error, _body) => {
                OAuthError::BadResponse(format!("unexpected content at {}", error.path()))
            }
            RequestTokenError::Other(reason) => {
                OAuthError::BadResponse(sanitize(Some(&reason)).unwrap_or_default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_retryable_and_provider_refusals_are_not() {
        assert!(
            OAuthError::from(OutboundError::Status {
                status: 429,
                retry_after: Some(Duration::from_secs(3))
            })
            .is_transient()
        );
        assert_eq!(
            OAuthError::from(OutboundError::Status {
                status: 429,
                retry_after: Some(Duration::from_secs(3))
            })
            .retry_after(),
            Some(Duration::from_secs(3))
        );
        assert!(
            OAuthError::from(OutboundError::Status {
                status: 502,
                retry_after: None
            })
            .is_transient()
        );
        assert!(OAuthError::from(OutboundError::Timeout).is_transient());
        assert!(!OAuthError::InvalidGrant { description: None }.is_transient());
        assert!(!OAuthError::Configuration("x".into()).is_transient());
    }

    #[test]
    fn descriptions_are_bounded_and_printable() {
        let long = format!("bad\n{}", "x".repeat(1000));
        let cleaned = sanitize(Some(&long)).unwrap();
        assert_eq!(cleaned.chars().count(), MAX_DESCRIPTION);
        assert!(!cleaned.contains('\n'));
    }
}
