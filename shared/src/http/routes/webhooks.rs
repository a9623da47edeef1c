//! Webhook subscriptions (the connections function, administrators): where Keyport sends which
//! notifications, signed per the Standard Webhooks specification.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::{AppState, Routes, table};
use crate::domain::{WebhookInput, WebhookSubscription};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Caller};
#[cfg(feature = "openapi")]
use crate::http::openapi::refusals::*;

pub(super) fn routes() -> Routes {
    table![
        post "/webhooks" => create_webhook,
        get "/webhooks" => list_webhooks,
        get "/webhooks/{id}" => get_webhook,
        patch "/webhooks/{id}" => update_webhook,
        delete "/webhooks/{id}" => delete_webhook,
        post "/webhooks/{id}/rotate-secret" => rotate_secret,
    ]
}

/// The `{id}` of `/webhooks/{id}…`: `whk_` and 32 hex digits (anything else is a 400).
pub struct WebhookPath(String);

impl<S: Send + Sync> FromRequestParts<S> for WebhookPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("invalid_request", "the path has no webhook id"))?;
        let well_formed = id
            .strip_prefix("whk_")
            .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if well_formed {
            Ok(WebhookPath(id))
        } else {
            Err(ApiError::bad_request(
                "invalid_request",
                "a webhook id is whk_ and 32 hex digits",
            ))
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::IntoParams for WebhookPath {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![
            utoipa::openapi::path::ParameterBuilder::new()
                .name("id")
                .parameter_in(utoipa::openapi::path::ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some("A webhook subscription id: whk_ and 32 hex digits."))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::String)
                        .pattern(Some("^whk_[0-9a-f]{32}$")),
                ))
                .build(),
        ]
    }
}

/// A subscription and its signing secret, which is shown only here (on create and rotation).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct WithSecret {
    webhook: WebhookSubscription,
    /// `whsec_` and base64: verify each delivery's `webhook-signature` with it (any Standard
    /// Webhooks library does). Keyport never shows it again.
    #[serde(serialize_with = "expose")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    secret: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct WebhookList {
    webhooks: Vec<WebhookSubscription>,
}

/// Subscribe a URL to notifications (administrators). The answer carries the signing secret,
/// once.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/webhooks", operation_id = "createWebhook",
    security(("bearer" = ["keyport/connections.manage"])),
    request_body = WebhookInput,
    responses(
        (status = 201, description = "Subscribed, at version 1.", body = WithSecret),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
))]
async fn create_webhook(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<(StatusCode, Json<WithSecret>), ApiError> {
    let (webhook, secret) = keyport.create_webhook(&principal, input).await?;
    Ok((StatusCode::CREATED, Json(WithSecret { webhook, secret })))
}

/// Every subscription, with its last delivery (administrators).
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/webhooks", operation_id = "listWebhooks",
    security(("bearer" = ["keyport/connections.manage"])),
    responses(
        (status = 200, description = "Every subscription.", body = WebhookList),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
))]
async fn list_webhooks(
    State(keyport): AppState,
    Caller(principal): Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = keyport.list_webhooks(&principal).await?;
    Ok(Json(WebhookList { webhooks }))
}

/// One subscription (administrators).
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/webhooks/{id}", operation_id = "getWebhook",
    security(("bearer" = ["keyport/connections.manage"])),
    params(WebhookPath),
    responses(
        (status = 200, description = "The subscription.", body = WebhookSubscription),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
))]
async fn get_webhook(
    State(keyport): AppState,
    Caller(principal): Caller,
    WebhookPath(id): WebhookPath,
) -> Result<Json<WebhookSubscription>, ApiError> {
    Ok(Json(keyport.get_webhook(&principal, &id).await?))
}

/// Change a subscription's URL, event types, description or whether it is enabled
/// (administrators); send the `version` you read.
#[cfg_attr(feature = "openapi", utoipa::path(
    patch, path = "/webhooks/{id}", operation_id = "updateWebhook",
    security(("bearer" = ["keyport/connections.manage"])),
    params(WebhookPath),
    request_body = WebhookInput,
    responses(
        (status = 200, description = "Changed.", body = WebhookSubscription),
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
async fn update_webhook(
    State(keyport): AppState,
    Caller(principal): Caller,
    WebhookPath(id): WebhookPath,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<Json<WebhookSubscription>, ApiError> {
    Ok(Json(keyport.update_webhook(&principal, &id, input).await?))
}

/// Unsubscribe (administrators): nothing more is sent to it, queued events included.
#[cfg_attr(feature = "openapi", utoipa::path(
    delete, path = "/webhooks/{id}", operation_id = "deleteWebhook",
    security(("bearer" = ["keyport/connections.manage"])),
    params(WebhookPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
))]
async fn delete_webhook(
    State(keyport): AppState,
    Caller(principal): Caller,
    WebhookPath(id): WebhookPath,
) -> Result<StatusCode, ApiError> {
    keyport.delete_webhook(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown once (administrators); the old one keeps signing beside it for
/// 24 hours, so the receiver can switch without missing an event.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/webhooks/{id}/rotate-secret", operation_id = "rotateWebhookSecret",
    security(("bearer" = ["keyport/connections.manage"])),
    params(WebhookPath),
    responses(
        (status = 200, description = "The new secret.", body = WithSecret),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
))]
async fn rotate_secret(
    State(keyport): AppState,
    Caller(principal): Caller,
    WebhookPath(id): WebhookPath,
) -> Result<Json<WithSecret>, ApiError> {
    let (webhook, secret) = keyport.rotate_webhook_secret(&principal, &id).await?;
    Ok(Json(WithSecret { webhook, secret }))
}
