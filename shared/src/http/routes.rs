//! The routes of each function: thin handlers that parse, call one use case, and shape the
//! answer. Routes and wire shapes are DESIGN.md's.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Caller, ConnectionPath};
use super::page;
use crate::domain::{AuditEvent, Connection, ConnectionInput, Provider};
use crate::ports::PageRequest;
use crate::service::{
    AuthorizationCompleted, ConnectionCheck, Deletion, Keyport, OwnerRequest, TokenView,
    UsableConnection,
};

type AppState = State<Arc<Keyport>>;

/// The most a caller may ask a token to stay valid for.
const MAX_MIN_VALID_SECONDS: u64 = 24 * 60 * 60;

pub fn connections() -> Router<Arc<Keyport>> {
    Router::new()
        .route("/providers", get(list_providers))
        .route(
            "/connections",
            post(create_connection).get(list_connections),
        )
        .route(
            "/connections/{id}",
            get(get_connection)
                .patch(update_connection)
                .delete(delete_connection),
        )
        .route("/connections/{id}/test", post(test_connection))
        .route("/connections/{id}/audit", get(audit_trail))
}

pub fn authorize() -> Router<Arc<Keyport>> {
    Router::new().route("/connections/{id}/authorize", post(start_authorization))
}

pub fn callback() -> Router<Arc<Keyport>> {
    Router::new()
        .route("/oauth/callback", get(complete_authorization))
        .route("/oauth/complete", post(confirm_authorization))
}

pub fn token() -> Router<Arc<Keyport>> {
    Router::new()
        .route(
            "/connections/{id}/token",
            get(read_token).delete(disconnect),
        )
        .route("/connections/{id}/token/refresh", post(refresh_token))
        .route("/me/connections", get(my_connections))
}

#[derive(serde::Serialize)]
struct Providers<'a> {
    providers: &'a [Provider],
}

async fn list_providers(State(keyport): AppState, Caller(_): Caller) -> Json<Providers<'static>> {
    Json(Providers {
        providers: keyport.catalog.providers(),
    })
}

async fn create_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<(StatusCode, Json<Connection>), ApiError> {
    let created = keyport.create_connection(&principal, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(serde::Serialize)]
struct ConnectionList {
    connections: Vec<Connection>,
    next_cursor: Option<String>,
}

async fn list_connections(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ConnectionList>, ApiError> {
    let page = PageRequest {
        limit: query.limit.unwrap_or(100),
        cursor: query.cursor,
    };
    let listed = keyport.list_connections(&principal, page).await?;
    Ok(Json(ConnectionList {
        connections: listed.items,
        next_cursor: listed.next,
    }))
}

#[derive(serde::Serialize)]
struct AuditList {
    events: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

async fn audit_trail(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let page = PageRequest {
        limit: query.limit.unwrap_or(100),
        cursor: query.cursor,
    };
    let listed = keyport.audit_trail(&principal, &id, page).await?;
    Ok(Json(AuditList {
        events: listed.items,
        next_cursor: listed.next,
    }))
}

async fn get_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
) -> Result<Json<Connection>, ApiError> {
    Ok(Json(keyport.get_connection(&principal, &id).await?))
}

async fn update_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<Json<Connection>, ApiError> {
    Ok(Json(
        keyport.update_connection(&principal, &id, input).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    version: Option<u64>,
}

async fn delete_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Response, ApiError> {
    let deletion = keyport
        .delete_connection(&principal, &id, query.version)
        .await?;
    Ok(match deletion {
        Deletion::Complete => StatusCode::NO_CONTENT.into_response(),
        Deletion::Continuing { tokens_revoked } => (
            StatusCode::ACCEPTED,
            Json(DeletionInProgress {
                id: id.to_string(),
                status: "deleting",
                tokens_revoked,
                message: "The connection is deleted. Its remaining tokens are being revoked at the provider and deleted in the background.",
            }),
        )
            .into_response(),
    })
}

/// The answer to a delete of a connection with more tokens than one request revokes.
#[derive(serde::Serialize)]
struct DeletionInProgress {
    id: String,
    status: &'static str,
    tokens_revoked: u64,
    message: &'static str,
}

async fn test_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
) -> Result<Json<ConnectionCheck>, ApiError> {
    Ok(Json(keyport.test_connection(&principal, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeRequest {
    owner: Option<String>,
    redirect_after: Option<String>,
}

#[derive(serde::Serialize)]
struct AuthorizeResponse {
    authorization_url: String,
    state: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

fn owner(value: Option<&str>) -> Result<OwnerRequest, ApiError> {
    Ok(value.unwrap_or("shared").parse::<OwnerRequest>()?)
}

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

async fn complete_authorization(State(keyport): AppState, RawQuery(query): RawQuery) -> Response {
    match keyport
        .complete_authorization(query.as_deref().unwrap_or_default())
        .await
    {
        Ok(done) => page::awaiting_confirmation(&done),
        Err(error) => page::failed(&ApiError::from(error)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletionBody {
    completion: String,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    owner: Option<String>,
    min_valid_seconds: Option<u64>,
}

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
#[serde(deny_unknown_fields)]
struct OwnerQuery {
    owner: Option<String>,
}

async fn refresh_token(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<OwnerQuery>,
) -> Result<Json<TokenView>, ApiError> {
    let owner = owner(query.owner.as_deref())?;
    Ok(Json(keyport.force_refresh(&principal, &id, owner).await?))
}

#[derive(serde::Serialize)]
struct Disconnected {
    disconnected: bool,
    revoked_at_provider: bool,
}

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

#[derive(serde::Serialize)]
struct MyConnections {
    connections: Vec<UsableConnection>,
}

async fn my_connections(
    State(keyport): AppState,
    Caller(principal): Caller,
) -> Result<Json<MyConnections>, ApiError> {
    Ok(Json(MyConnections {
        connections: keyport.my_connections(&principal).await?,
    }))
}

/// Unknown routes answer in Keyport's error shape too.
pub async fn not_found() -> impl IntoResponse {
    ApiError::BadRequest {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route".into(),
        field: None,
    }
}

pub async fn method_not_allowed() -> impl IntoResponse {
    ApiError::BadRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this route does not serve that method".into(),
        field: None,
    }
}
