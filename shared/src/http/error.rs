//! The one mapping from errors to HTTP: `{"error": "<code>", "message": "<sentence>"}` with a
//! fitting status. Internals are logged; what is returned is safe to show.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::ValidationError;
use crate::oauth::OAuthError;
use crate::ports::StoreError;
use crate::service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    /// No credentials, or credentials that do not verify.
    Unauthenticated(String),
    /// The request itself is malformed (body, query, path), before any use case runs.
    BadRequest {
        status: StatusCode,
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    Service(ServiceError),
}

/// Every error's body.
#[derive(Serialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        as = Error,
        example = json!({"error": "invalid_request", "message": "token_url must use https", "field": "token_url"})
    )
)]
pub(crate) struct ErrorBody<'a> {
    /// A stable snake_case code.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]*$"))]
    error: &'a str,
    /// A sentence safe to show; never a secret or a token.
    message: &'a str,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    field: Option<&'a str>,
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        ApiError::Service(error)
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::Service(ServiceError::Invalid(error))
    }
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest { status, .. } => *status,
            ApiError::Service(error) => service_status(error),
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(reason) => reason.clone(),
            ApiError::BadRequest { message, .. } => message.clone(),
            ApiError::Service(
                ServiceError::Store(StoreError::Corrupt(..)) | ServiceError::Crypto(_),
            ) => "stored data could not be read; an operator has been told".into(),
            ApiError::Service(
                ServiceError::Store(_) | ServiceError::Secrets(_) | ServiceError::Queue(_),
            ) => "storage is unavailable; try again shortly".into(),
            ApiError::Service(error) => error.to_string(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Service(error) => error.code(),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            ApiError::Service(ServiceError::Invalid(e)) => Some(&e.field),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Service(ServiceError::RefreshInProgress) => Some(1),
            ApiError::Service(ServiceError::Provider(e)) if e.is_transient() => {
                Some(e.retry_after().map(|d| d.as_secs().max(1)).unwrap_or(5))
            }
            ApiError::Service(
                ServiceError::Store(StoreError::Unavailable(_))
                | ServiceError::Secrets(_)
                | ServiceError::Queue(_),
            ) => Some(2),
            _ => None,
        }
    }
}

fn service_status(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Invalid(_)
        | ServiceError::InvalidState
        | ServiceError::IssuerMismatch { .. }
        | ServiceError::IssuerMissing
        | ServiceError::IdTokenRejected(_)
        | ServiceError::WrongResponseMode { .. }
        | ServiceError::AuthorizationDenied { .. } => StatusCode::BAD_REQUEST,
        ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_)
        | ServiceError::ConnectionDisabled
        | ServiceError::NotClientCredentials { .. }
        | ServiceError::NotAuthorized { .. }
        | ServiceError::NeedsReauthorization { .. } => StatusCode::CONFLICT,
        ServiceError::RefreshInProgress => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Provider(provider) => match provider {
            OAuthError::InvalidGrant { .. } => StatusCode::CONFLICT,
            e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
        ServiceError::Store(StoreError::Unavailable(_))
        | ServiceError::Secrets(_)
        | ServiceError::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Store(_) | ServiceError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code = self.code(), error = ?self, "request failed");
        } else {
            tracing::info!(
                status = status.as_u16(),
                code = self.code(),
                "request refused"
            );
        }
        let message = self.message();
        let body = ErrorBody {
            error: self.code(),
            message: &message,
            field: self.field(),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
