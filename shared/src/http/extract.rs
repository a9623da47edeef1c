//! Extractors whose rejections are Keyport's JSON errors: the body, the query, the connection
//! id in the path, and the authenticated caller.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::identity::Authenticated;
use crate::domain::{ConnectionId, Principal, Subject, ValidationError};

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
    let (message, field) = match &rejection {
        JsonRejection::JsonDataError(_) => describe_data_error(&rejection.body_text()),
        _ => (rejection.body_text(), None),
    };
    ApiError::BadRequest {
        status,
        code,
        message,
        field,
    }
}

/// A readable message and the field at fault, from a body that is JSON but not the request's
/// shape. serde (through axum) words it "Failed to deserialize …: <path>: <error> at line L
/// column C", an unknown field as "x: unknown field `x`, expected one of `a`, `b`". A value is
/// never quoted back (for a secret field serde could quote it): only the path and the names.
fn describe_data_error(text: &str) -> (String, Option<String>) {
    let detail = text
        .split_once("target type: ")
        .map_or(text, |(_, detail)| detail);
    let detail = detail
        .rsplit_once(" at line ")
        .map_or(detail, |(detail, _)| detail);
    if let Some(rest) = detail
        .split_once("unknown field `")
        .map(|(path, rest)| (path.trim_end_matches(": "), rest))
    {
        let (parent, rest) = rest;
        let Some((unknown, expected)) = rest.split_once('`') else {
            return ("the body has an unknown field".to_owned(), None);
        };
        // The path (serde_path_to_error's) already ends at the unknown field.
        let field = match parent {
            "" | "." => unknown.to_owned(),
            path => path.to_owned(),
        };
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let closest = known
            .iter()
            .map(|name| (strsim::jaro_winkler(unknown, name), *name))
            .filter(|(likeness, _)| *likeness >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name);
        let message = match closest {
            Some(name) => format!("unknown field `{field}`: did you mean `{name}`?"),
            None if known.is_empty() => format!("unknown field `{field}`"),
            None => format!(
                "unknown field `{field}`; the known ones are {}",
                known
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return (message, Some(field));
    }
    match detail.split_once(": ") {
        // "<path>: invalid type: string \"…\", expected …": the path, not the value.
        Some((path, error)) if !path.contains(' ') => {
            let kind = error.split(':').next().unwrap_or(error);
            (format!("`{path}`: {kind}"), Some(path.to_owned()))
        }
        _ => (
            detail
                .split(": invalid type")
                .next()
                .unwrap_or(detail)
                .to_owned(),
            None,
        ),
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

/// The `{id}` and `{subject}` of `/connections/{id}/tokens/{subject}`: one person's token.
pub struct UserTokenPath {
    pub id: ConnectionId,
    pub subject: Subject,
}

impl<S: Send + Sync> FromRequestParts<S> for UserTokenPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((id, subject)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_request",
                    "the path needs a connection id and a subject",
                )
            })?;
        let id = ConnectionId::parse(&id)?;
        // Named after the path's parameter, not the claim it comes from.
        let subject =
            Subject::parse(&subject).map_err(|e| ValidationError::new("subject", e.message))?;
        Ok(UserTokenPath { id, subject })
    }
}

#[cfg(feature = "openapi")]
impl utoipa::IntoParams for UserTokenPath {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut params = ConnectionPath::into_params(parameter_in);
        params.push(
            ParameterBuilder::new()
                .name("subject")
                .parameter_in(ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some(
                    "The person whose token it is: their subject (`sub`), percent-encoded.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255)),
                ))
                .build(),
        );
        params
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

#[cfg(test)]
mod tests {
    use super::describe_data_error;

    const PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";

    #[test]
    fn a_mistyped_field_is_named_with_the_closest_known_one() {
        let (message, field) = describe_data_error(&format!(
            "{PREFIX}nmae: unknown field `nmae`, expected one of `name`, `description`, `provider` at line 1 column 7"
        ));
        assert_eq!(field.as_deref(), Some("nmae"));
        assert_eq!(message, "unknown field `nmae`: did you mean `name`?");
    }

    #[test]
    fn an_unknown_field_far_from_any_lists_the_known_ones() {
        let (message, field) = describe_data_error(&format!(
            "{PREFIX}unknown field `zzz`, expected `owner` or `redirect_after` at line 1 column 6"
        ));
        assert_eq!(field.as_deref(), Some("zzz"));
        assert_eq!(
            message,
            "unknown field `zzz`; the known ones are `owner`, `redirect_after`"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_path_and_never_the_value() {
        let (message, field) = describe_data_error(&format!(
            "{PREFIX}client_secret: invalid type: integer `12345678`, expected a string at line 1 column 30"
        ));
        assert_eq!(field.as_deref(), Some("client_secret"));
        assert_eq!(message, "`client_secret`: invalid type");
        assert!(!message.contains("12345678"));
    }
}
