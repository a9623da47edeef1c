//! The installation's settings, served by the connections function (administrators): the
//! forward proxy every request to a provider goes through.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{AppState, Routes, table};
use crate::domain::{OutboundProxy, OutboundProxyInput};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Caller};
#[cfg(feature = "openapi")]
use crate::http::openapi::refusals::*;

pub(super) fn routes() -> Routes {
    table![
        get "/settings/outbound-proxy" => get_outbound_proxy,
        put "/settings/outbound-proxy" => put_outbound_proxy,
        delete "/settings/outbound-proxy" => delete_outbound_proxy,
    ]
}

/// The forward proxy for requests to providers (administrators); never its password.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/settings/outbound-proxy", operation_id = "getOutboundProxy",
    security(("bearer" = ["keyport/connections.manage"])),
    responses(
        (status = 200, description = "The setting (`password_set` says whether a password is stored).", body = OutboundProxy),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
))]
async fn get_outbound_proxy(
    State(keyport): AppState,
    Caller(principal): Caller,
) -> Result<Json<OutboundProxy>, ApiError> {
    Ok(Json(keyport.outbound_proxy(&principal).await?))
}

/// Set the forward proxy for requests to providers (administrators).
///
/// Replaces the whole setting: a password left out is removed. The password is write-only
/// (kept in the secret store). It wins over the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
/// variables; each process applies it within a minute (the one that served this request at
/// once). In production the target's address is still checked before anything is sent. A
/// proxy that refuses the credentials (407) fails requests with `proxy_authentication_failed`,
/// naming this setting.
#[cfg_attr(feature = "openapi", utoipa::path(
    put, path = "/settings/outbound-proxy", operation_id = "putOutboundProxy",
    security(("bearer" = ["keyport/connections.manage"])),
    request_body = OutboundProxyInput,
    responses(
        (status = 200, description = "The setting as stored.", body = OutboundProxy),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
))]
async fn put_outbound_proxy(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<OutboundProxyInput>,
) -> Result<Json<OutboundProxy>, ApiError> {
    Ok(Json(keyport.set_outbound_proxy(&principal, input).await?))
}

/// Remove the forward proxy setting (administrators): requests go direct again, or through
/// the environment's proxy. Removing a missing setting succeeds.
#[cfg_attr(feature = "openapi", utoipa::path(
    delete, path = "/settings/outbound-proxy", operation_id = "deleteOutboundProxy",
    security(("bearer" = ["keyport/connections.manage"])),
    responses(
        (status = 204, description = "Removed (or there was none)."),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
))]
async fn delete_outbound_proxy(
    State(keyport): AppState,
    Caller(principal): Caller,
) -> Result<StatusCode, ApiError> {
    keyport.delete_outbound_proxy(&principal).await?;
    Ok(StatusCode::NO_CONTENT)
}
