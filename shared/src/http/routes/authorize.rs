//! The authorize function: the URL to send a person to, to authorize a connection.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::{AppState, Routes, owner, table};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Caller, ConnectionPath};
#[cfg(feature = "openapi")]
use crate::http::openapi::refusals::*;
#[cfg(feature = "openapi")]
use crate::service::OwnerRequest;

pub(super) fn routes() -> Routes {
    table![
        post "/connections/{id}/authorize" => start_authorization,
    ]
}

/// Which token to authorize, and where the browser goes afterwards. Unknown fields are
/// refused; null is the same as absent.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({"owner": "shared", "redirect_after": "https://app.example.com/connected"}))
)]
#[serde(deny_unknown_fields)]
struct AuthorizeRequest {
    /// `shared` (administrators) or the caller's own `user` token (an invited role).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<OwnerRequest>))]
    owner: Option<String>,
    /// Where the callback sends the browser afterwards; its host must be on the installation's
    /// allow-list.
    redirect_after: Option<String>,
}

/// An authorization started: where to send the person, and until when it can complete.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct AuthorizeResponse {
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    authorization_url: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    state: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// Start an authorization: the URL to send a person to.
///
/// owner=shared needs an administrator; owner=user an invited role.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/connections/{id}/authorize", operation_id = "startAuthorization",
    security(("bearer" = ["keyport/connections.manage"]), ("bearer" = ["keyport/tokens.read"])),
    params(ConnectionPath),
    request_body = AuthorizeRequest,
    responses(
        (status = 200, description = "Started.", body = AuthorizeResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
))]
async fn start_authorization(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiJson(request): ApiJson<AuthorizeRequest>,
) -> Result<Json<AuthorizeResponse>, ApiError> {
    let owner = owner(request.owner.as_deref())?;
    let started = keyport
        .start_authorization(&principal, &id, owner, request.redirect_after.as_deref())
        .await?;
    Ok(Json(AuthorizeResponse {
        authorization_url: started.authorization_url.into(),
        state: started.state,
        expires_at: started.expires_at,
    }))
}
