//! The token function: token reads with in-line refresh, forced refresh, disconnect, the
//! caller's usable connections, and administrators' view of people's own tokens (their status,
//! never the token) with a disconnect for each.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::{AppState, ListQuery, Routes, owner, table};
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, Caller, ConnectionPath, UserTokenPath};
#[cfg(feature = "openapi")]
use crate::http::openapi::refusals::*;
#[cfg(feature = "openapi")]
use crate::service::OwnerRequest;
use crate::service::{TokenView, UsableConnection, UserTokenSummary};

/// The most a caller may ask a token to stay valid for.
pub(crate) const MAX_MIN_VALID_SECONDS: u64 = 24 * 60 * 60;

pub(super) fn routes() -> Routes {
    table![
        get "/connections/{id}/token" => read_token,
        delete "/connections/{id}/token" => disconnect,
        post "/connections/{id}/token/refresh" => refresh_token,
        post "/connections/{id}/token/reset" => reset_token,
        get "/me/connections" => my_connections,
        get "/connections/{id}/tokens" => list_user_tokens,
        delete "/connections/{id}/tokens/{subject}" => disconnect_user_token,
    ]
}

/// The token routes that answer without a token, for the console.
pub(super) fn console_routes() -> Routes {
    table![
        delete "/connections/{id}/token" => disconnect,
        get "/me/connections" => my_connections,
        get "/connections/{id}/tokens" => list_user_tokens,
        delete "/connections/{id}/tokens/{subject}" => disconnect_user_token,
    ]
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    /// Which token: the connection's shared one (default) or the caller's own.
    #[cfg_attr(feature = "openapi", param(value_type = Option<OwnerRequest>))]
    owner: Option<String>,
    /// How long the token must stay valid; at most a day.
    // The maximum is MAX_MIN_VALID_SECONDS (a test holds them together).
    #[cfg_attr(feature = "openapi", param(maximum = 86400))]
    min_valid_seconds: Option<u64>,
}

/// A token valid for at least min_valid_seconds, refreshed in line if needed (an invited role).
///
/// Unknown query parameters are refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/connections/{id}/token", operation_id = "getToken",
    security(("bearer" = ["keyport/tokens.read"])),
    params(ConnectionPath, TokenQuery),
    responses(
        (status = 200, description = "The token.", body = TokenView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 502, response = BadGateway),
        (status = 503, response = Unavailable),
    )
))]
async fn read_token(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<TokenView>, ApiError> {
    let owner = owner(query.owner.as_deref())?;
    let min_valid = match query.min_valid_seconds {
        Some(seconds) if seconds > MAX_MIN_VALID_SECONDS => {
            return Err(crate::domain::ValidationError::new(
                "min_valid_seconds",
                format!("must be at most {MAX_MIN_VALID_SECONDS}"),
            )
            .into());
        }
        other => other.map(Duration::from_secs),
    };
    Ok(Json(
        keyport
            .access_token(&principal, &id, owner, min_valid)
            .await?,
    ))
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
struct OwnerQuery {
    /// Which token: the connection's shared one (default) or the caller's own.
    #[cfg_attr(feature = "openapi", param(value_type = Option<OwnerRequest>))]
    owner: Option<String>,
}

/// Refresh the token now, whatever its expiry.
///
/// Unknown query parameters are refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/connections/{id}/token/refresh", operation_id = "refreshToken",
    security(("bearer" = ["keyport/tokens.read"])),
    params(ConnectionPath, OwnerQuery),
    responses(
        (status = 200, description = "The new token.", body = TokenView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 502, response = BadGateway),
        (status = 503, response = Unavailable),
    )
))]
async fn refresh_token(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<OwnerQuery>,
) -> Result<Json<TokenView>, ApiError> {
    let owner = owner(query.owner.as_deref())?;
    Ok(Json(keyport.force_refresh(&principal, &id, owner).await?))
}

/// A route that takes no query parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// The response header that says what became of the token a reset replaced.
pub(crate) const PREVIOUS_TOKEN_HEADER: &str = "keyport-previous-token";

/// Reset the shared client-credentials token (administrators): revoke it at the provider,
/// request a new one.
///
/// Under the same lease a refresh takes: the current token is revoked at the connection's
/// revocation endpoint when it has one (a failed revocation does not stop the reset; the
/// `Keyport-Previous-Token` header and the `token_reset` audit event say so), then a new token
/// is requested and stored, and answered as `GET /connections/{id}/token` answers. Only for
/// `client_credentials` connections (409 `not_client_credentials` otherwise, changing nothing).
/// It takes no query parameters: any is refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/connections/{id}/token/reset", operation_id = "resetToken",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ConnectionPath),
    responses(
        (status = 200, description = "The new token.", body = TokenView, headers(
            ("keyport-previous-token" = String, description = "What became of the replaced token: `revoked`, `revocation_failed`, `no_revocation_endpoint` or `none` (there was none).")
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 502, response = BadGateway),
        (status = 503, response = Unavailable),
    )
))]
async fn reset_token(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let reset = keyport.reset_token(&principal, &id).await?;
    Ok((
        [(PREVIOUS_TOKEN_HEADER, reset.previous.as_str())],
        Json(reset.token),
    ))
}

/// A token disconnected.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct Disconnected {
    /// Always true.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::http::openapi::wire::always_true))]
    disconnected: bool,
    /// Whether the provider confirmed the revocation.
    revoked_at_provider: bool,
}

/// Revoke the token at the provider (where it can) and delete it.
///
/// owner=shared needs an administrator (it ends the token for every invited caller);
/// owner=user disconnects the caller's own token (an invited role). Unknown query parameters
/// are refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    delete, path = "/connections/{id}/token", operation_id = "disconnect",
    security(("bearer" = ["keyport/tokens.read"])),
    params(ConnectionPath, OwnerQuery),
    responses(
        (status = 200, description = "Disconnected.", body = Disconnected),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
))]
async fn disconnect(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<OwnerQuery>,
) -> Result<Json<Disconnected>, ApiError> {
    let owner = owner(query.owner.as_deref())?;
    let revoked = keyport.disconnect(&principal, &id, owner).await?;
    Ok(Json(Disconnected {
        disconnected: true,
        revoked_at_provider: revoked,
    }))
}

/// The connections the caller's roles are invited to.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct MyConnections {
    connections: Vec<UsableConnection>,
}

/// The connections the caller's roles are invited to, with their tokens' status.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/me/connections", operation_id = "myConnections",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The connections.", body = MyConnections),
        (status = 401, response = Unauthenticated),
        (status = 503, response = Unavailable),
    )
))]
async fn my_connections(
    State(keyport): AppState,
    Caller(principal): Caller,
) -> Result<Json<MyConnections>, ApiError> {
    Ok(Json(MyConnections {
        connections: keyport.my_connections(&principal).await?,
    }))
}

/// One page of a connection's user tokens.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct UserTokenList {
    tokens: Vec<UserTokenSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", schema(required))]
    next_cursor: Option<String>,
}

/// A connection's user tokens by subject, a page at a time, with each one's status
/// (administrators).
///
/// Read from the metadata Keyport keeps beside each sealed token: never a token. The shared
/// token is the connection's own (see `GET /connections/{id}`). Unknown query parameters are
/// refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/connections/{id}/tokens", operation_id = "listUserTokens",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ConnectionPath, ListQuery),
    responses(
        (status = 200, description = "One page.", body = UserTokenList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
))]
async fn list_user_tokens(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<UserTokenList>, ApiError> {
    let page = query.page();
    let listed = keyport.user_tokens(&principal, &id, page).await?;
    Ok(Json(UserTokenList {
        tokens: listed.items,
        next_cursor: listed.next,
    }))
}

/// Disconnect one person's token (administrators): revoke it at the provider (where it can)
/// and delete it.
///
/// The audit trail records the administrator as the one who revoked it. The person can
/// connect again from their own authorization. A person with no token there is a 409
/// (`not_authorized`), as for `DELETE /connections/{id}/token`.
#[cfg_attr(feature = "openapi", utoipa::path(
    delete, path = "/connections/{id}/tokens/{subject}", operation_id = "disconnectUserToken",
    security(("bearer" = ["keyport/connections.manage"])),
    params(UserTokenPath),
    responses(
        (status = 200, description = "Disconnected.", body = Disconnected),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
))]
async fn disconnect_user_token(
    State(keyport): AppState,
    Caller(principal): Caller,
    path: UserTokenPath,
) -> Result<Json<Disconnected>, ApiError> {
    let revoked = keyport
        .disconnect_user_token(&principal, &path.id, path.subject)
        .await?;
    Ok(Json(Disconnected {
        disconnected: true,
        revoked_at_provider: revoked,
    }))
}
