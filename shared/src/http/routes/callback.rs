//! The callback function: where the provider sends the browser back, and the confirmation by
//! whoever started the authorization.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, Routes, table};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Caller};
#[cfg(feature = "openapi")]
use crate::http::openapi::refusals::*;
use crate::http::page;
use crate::service::{AuthorizationCompleted, ServiceError};

pub(super) fn routes() -> Routes {
    table![
        get "/oauth/callback" => complete_authorization,
        post "/oauth/callback" => complete_form_post_authorization,
        post "/oauth/complete" => confirm_authorization,
    ]
}

/// The completion alone: the console confirms an authorization as the signed-in person.
pub(super) fn console_routes() -> Routes {
    table![
        post "/oauth/complete" => confirm_authorization,
    ]
}

/// Where the provider sends the browser back, with a code and state or an error.
///
/// Exchanges the code, then holds the grant until the principal who started the authorization
/// confirms it (POST /oauth/complete): answers a person with a short HTML page showing the
/// completion value, or redirects to the redirect_after URL the authorization was started
/// with. When the provider refused (the person declined), that URL hears so too. Needs no
/// bearer token: the single-use state is the credential.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/oauth/callback", operation_id = "completeAuthorization",
    params(
        ("code" = Option<String>, Query, description = "The authorization code (RFC 6749 §4.1.2)."),
        ("state" = Option<String>, Query, description = "The state Keyport issued when the authorization started."),
        ("error" = Option<String>, Query, description = "The provider's error code, instead of a code."),
        ("error_description" = Option<String>, Query),
        ("iss" = Option<String>, Query, description = "The issuer (RFC 9207)."),
    ),
    responses(pages::CallbackPages)
))]
async fn complete_authorization(State(keyport): AppState, RawQuery(query): RawQuery) -> Response {
    match keyport
        .complete_authorization(query.as_deref().unwrap_or_default())
        .await
    {
        Ok(done) => page::awaiting_confirmation(&done),
        Err(error) => {
            if let ServiceError::AuthorizationDenied {
                error: code,
                description,
                connection_id,
                redirect_after: Some(target),
            } = &error
                && let Some(back) =
                    page::declined(target, connection_id, code, description.as_deref())
            {
                return back;
            }
            page::failed(&ApiError::from(error))
        }
    }
}

/// Where the provider has the browser post its answer (OpenID Connect's form post response
/// mode): the hybrid flow's code with its ID token, or an error.
///
/// Before the code is exchanged the ID token is verified: its signature against the issuer's
/// published keys, the issuer, the audience (the connection's client; `azp` too when there are
/// several), its times, the nonce of this authorization, and its `c_hash`, which must be this
/// code's. Then as GET /oauth/callback: the grant is held until the principal who started the
/// authorization confirms it (POST /oauth/complete). A browser is answered with pages; a client
/// that accepts JSON and not HTML gets refusals as JSON errors. Needs no bearer token: the
/// single-use state is the credential.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/oauth/callback", operation_id = "completeFormPostAuthorization",
    request_body(content = CallbackForm, content_type = "application/x-www-form-urlencoded"),
    responses(pages::FormPostPages)
))]
async fn complete_form_post_authorization(
    State(keyport): AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let json = prefers_json(&headers);
    let refuse = |error: ApiError| {
        if json {
            error.into_response()
        } else {
            page::failed(&error)
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
            return refuse(ApiError::BadRequest {
                status: rejection.status(),
                code: if too_large {
                    "payload_too_large"
                } else {
                    "invalid_request"
                },
                message: rejection.body_text(),
                field: None,
            });
        }
    };
    if !is_form(&headers) {
        return refuse(ApiError::BadRequest {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "the answer must be posted as application/x-www-form-urlencoded".into(),
            field: None,
        });
    }
    let Ok(form) = std::str::from_utf8(&body) else {
        return refuse(ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: "the posted form is not UTF-8".into(),
            field: None,
        });
    };
    match keyport.complete_form_post_authorization(form).await {
        Ok(done) => page::awaiting_confirmation(&done),
        Err(error) => {
            if let ServiceError::AuthorizationDenied {
                error: code,
                description,
                connection_id,
                redirect_after: Some(target),
            } = &error
                && let Some(back) =
                    page::declined(target, connection_id, code, description.as_deref())
            {
                return back;
            }
            refuse(ApiError::from(error))
        }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A program (a test, a command-line client) that asks for JSON and not for pages.
fn prefers_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// The form a provider posts to the callback (OpenID Connect Form Post Response Mode).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct CallbackForm {
    /// The authorization code.
    code: Option<String>,
    /// The ID token issued beside the code (OpenID Connect Core §3.3.2.11); its `c_hash` binds it to the code.
    id_token: Option<String>,
    /// The state Keyport issued when the authorization started.
    state: String,
    /// The provider's error code, instead of a code.
    error: Option<String>,
    error_description: Option<String>,
    /// The issuer (RFC 9207).
    iss: Option<String>,
}

/// What a person's browser is answered with; every page is `no-store`.
#[cfg(feature = "openapi")]
mod pages {
    use crate::http::openapi::pages::{page, redirect};

    pub struct CallbackPages;

    impl utoipa::IntoResponses for CallbackPages {
        fn responses() -> std::collections::BTreeMap<
            String,
            utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
        > {
            [
                (200, page("Almost connected: the page shows the completion value to confirm with.")),
                (303, redirect("Almost connected; on to redirect_after, with keyport_status=awaiting_confirmation, connection_id and keyport_completion added to its query. Or the provider refused (the person declined): on to redirect_after with keyport_status=denied, connection_id, error and error_description (the provider's) added; nothing to confirm.")),
                (400, page("The state is missing, unknown, used or expired, the issuer does not match, or the provider refused (an authorization started without redirect_after).")),
                (404, page("The connection was deleted meanwhile.")),
                (409, page("The provider refused the code (invalid_grant), or the connection is disabled.")),
                (502, page("The provider refused the code exchange or answered nonsense.")),
                (503, page("The provider or storage is unavailable.")),
            ]
            .into_iter()
            .map(|(status, response)| (status.to_string(), response.into()))
            .collect()
        }
    }

    /// A page for a browser, or Keyport's JSON error for a client that accepts JSON and not
    /// HTML.
    fn page_or_error(description: &str) -> utoipa::openapi::response::Response {
        use utoipa::ToSchema;
        use utoipa::openapi::{Content, Ref};
        let mut response = page(description);
        response.content.insert(
            "application/json".into(),
            Content::new(Some(Ref::from_schema_name(
                crate::http::error::ErrorBody::name(),
            )))
            .into(),
        );
        response
    }

    pub struct FormPostPages;

    impl utoipa::IntoResponses for FormPostPages {
        fn responses() -> std::collections::BTreeMap<
            String,
            utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
        > {
            [
                (200, page("Almost connected: the page shows the completion value to confirm with.")),
                (303, redirect("Almost connected, or the provider refused: on to redirect_after, as GET /oauth/callback does.")),
                (400, page_or_error("The state is missing, unknown, used or expired; the ID token is missing or refused (signature, issuer, audience, expiry, nonce, or a c_hash that is not the code's: id_token_rejected); the connection's answers do not come by form post (wrong_response_mode); or the provider refused.")),
                (404, page_or_error("The connection was deleted meanwhile.")),
                (409, page_or_error("The provider refused the code (invalid_grant), or the connection is disabled.")),
                (413, page_or_error("The body is too large.")),
                (415, page_or_error("The body is not application/x-www-form-urlencoded.")),
                (502, page_or_error("The provider refused the code exchange, its token endpoint's ID token names someone else, or it answered nonsense.")),
                (503, page_or_error("The provider (or its keys) or storage is unavailable.")),
            ]
            .into_iter()
            .map(|(status, response)| (status.to_string(), response.into()))
            .collect()
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
struct CompletionBody {
    /// The value the callback handed back (its page, or `keyport_completion` on the redirect).
    completion: String,
}

/// Confirm an authorization as the principal who started it: the grant the callback obtained is
/// placed in its owner's slot.
///
/// Anyone else's confirmation (a forwarded link, a phished consent) discards the grant and
/// revokes it at the provider, and answers 403. The completion value is single use and
/// expires with the held grant.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/oauth/complete", operation_id = "confirmAuthorization",
    security(("bearer" = ["keyport/connections.manage"]), ("bearer" = ["keyport/tokens.read"])),
    request_body = CompletionBody,
    responses(
        (status = 200, description = "Connected.", body = AuthorizationCompleted),
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
async fn confirm_authorization(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiJson(body): ApiJson<CompletionBody>,
) -> Result<Json<AuthorizationCompleted>, ApiError> {
    Ok(Json(
        keyport
            .confirm_authorization(&principal, &body.completion)
            .await?,
    ))
}
