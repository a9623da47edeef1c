//! `/console/api`: the API routes the pages call, as the signed-in person, and the console's
//! own: the session, signing out, and a refresh that answers with the token's status only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Console, SessionAuthenticator, cleared_cookie};
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, Caller, ConnectionPath};
use crate::http::identity::authenticate;
use crate::http::{Authenticator, router_of, routes};
use crate::service::OwnerRequest;

pub(super) fn router(console: Arc<Console>) -> Router {
    let authenticator: Arc<dyn Authenticator> = Arc::new(SessionAuthenticator {
        sessions: console.sessions.clone(),
        origin: console.origin.clone(),
    });
    let own = Router::new()
        .route("/session", get(session))
        .route("/signout", post(sign_out))
        .route("/connections/{id}/token/refresh", post(refresh))
        .layer(axum::middleware::from_fn_with_state(
            authenticator.clone(),
            authenticate,
        ))
        .with_state(console.clone());
    let api = router_of(
        routes::console_routes(),
        console.keyport.clone(),
        authenticator,
    );
    Router::new().nest("/console/api", own.merge(api))
}

/// Who is signed in, what they may do, and the CSRF token their page sends with every change;
/// or how to sign in.
async fn session(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let how = json!({
        "oidc": console.sign_in.oidc.is_some(),
        "links": console.sign_in.tickets.is_some(),
    });
    let callback_url = console.keyport.oauth.callback_url().as_str();
    match console.sessions.find(&headers).await {
        Ok(Some(record)) => {
            let administrator = record
                .principal()
                .map(|p| console.keyport.access.is_admin(&p))
                .unwrap_or(false);
            Json(json!({
                "signed_in": true,
                "subject": record.subject,
                "roles": record.roles,
                "administrator": administrator,
                "csrf_token": record.csrf_token,
                "via": record.via,
                "expires_at": record.expires_at,
                "callback_url": callback_url,
                "sign_in": how,
            }))
            .into_response()
        }
        Ok(None) => Json(json!({"signed_in": false, "sign_in": how})).into_response(),
        Err(error) => ApiError::from(crate::service::ServiceError::from(error)).into_response(),
    }
}

/// Ends the session (a change like any other: it needs the CSRF token).
async fn sign_out(
    State(console): State<Arc<Console>>,
    Caller(_): Caller,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = console.sessions.end(&headers).await {
        return ApiError::from(crate::service::ServiceError::from(error)).into_response();
    }
    let mut response = (StatusCode::OK, Json(json!({"signed_out": true}))).into_response();
    cleared_cookie(&console, response.headers_mut());
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerQuery {
    owner: Option<String>,
}

/// Refresh now: the token's new expiry and scope, not the token.
async fn refresh(
    State(console): State<Arc<Console>>,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<OwnerQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = query
        .owner
        .as_deref()
        .unwrap_or("shared")
        .parse::<OwnerRequest>()?;
    let view = console
        .keyport
        .force_refresh(&principal, &id, owner)
        .await?;
    Ok(Json(json!({
        "refreshed": true,
        "connection_id": view.connection_id,
        "owner": view.owner,
        "expires_at": view.expires_at,
        "scope": view.scope,
    })))
}
