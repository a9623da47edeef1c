//! Extractors whose rejections are Keyport's JSON errors: the body, the query, the connection
//! id in the path, and the authenticated caller.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::identity::Authenticated;
use crate::domain::{ConnectionId, Principal};

/// A JSON body: malformed JSON, unknown fields, a wrong content type or an oversized body are
/// 4xx errors in Keyport's shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let (status, code) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        }
        _ => (StatusCode::BAD_REQUEST, "invalid_json"),
    };
    // serde's message names the field and position; for a secret field it could quote a value,
    // so only the part before any quoted value is kept.
    let text = rejection.body_text();
    let message = match text.find(": invalid type") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    };
    ApiError::BadRequest {
        status,
        code,
        message,
        field: None,
    }
}

/// A query string that must match `T` exactly (unknown parameters are refused).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request("invalid_query", rejection.body_text())
            })
    }
}

/// The `{id}` of `/connections/{id}…`, parsed.
pub struct ConnectionPath(pub ConnectionId);

impl<S: Send + Sync> FromRequestParts<S> for ConnectionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("invalid_request", "the path has no connection id")
            })?;
        Ok(ConnectionPath(ConnectionId::parse(&id)?))
    }
}

// The `{id}` parameter of every route that takes one.
#[cfg(feature = "openapi")]
impl utoipa::IntoParams for ConnectionPath {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::ToSchema;
        vec![
            utoipa::openapi::path::ParameterBuilder::new()
                .name("id")
                .parameter_in(utoipa::openapi::path::ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some("A connection id: con_ and 32 hex digits."))
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    ConnectionId::name(),
                )))
                .build(),
        ]
    }
}

/// The authenticated caller. A request without one is answered 401 before its handler runs.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(Ok(principal))) => Ok(Caller(principal.clone())),
            Some(Authenticated(Err(reason))) => Err(ApiError::Unauthenticated(reason.clone())),
            None => Err(ApiError::Unauthenticated(
                "a bearer token is required".into(),
            )),
        }
    }
}
