//! The connections function: the provider catalog and the administration of connections.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{AppState, ListQuery, Routes, table};
#[cfg(feature = "openapi")]
use crate::domain::ImportOutcome;
use crate::domain::{AuditEvent, ConnectionInput, ConnectionsDocument, Provider, TokenFetch};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery, Caller, ConnectionPath};
#[cfg(feature = "openapi")]
use crate::http::openapi::{refusals::*, wire::ConnectionCreate};
use crate::service::{AdministeredConnection, ConnectionCheck, Deletion};

pub(super) fn routes() -> Routes {
    table![
        get "/providers" => list_providers,
        post "/connections" => create_connection,
        get "/connections" => list_connections,
        get "/connections/export" => export_connections,
        post "/connections/import" => import_connections,
        get "/connections/{id}" => get_connection,
        patch "/connections/{id}" => update_connection,
        delete "/connections/{id}" => delete_connection,
        post "/connections/{id}/test" => test_connection,
        get "/connections/{id}/audit" => audit_trail,
    ]
    .merge(super::webhooks::routes())
}

/// The provider catalog.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct Providers<'a> {
    providers: &'a [Provider],
}

/// The provider catalog.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/providers", operation_id = "listProviders",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The catalog.", body = Providers),
        (status = 401, response = Unauthenticated),
    )
))]
async fn list_providers(State(keyport): AppState, Caller(_): Caller) -> Json<Providers<'static>> {
    Json(Providers {
        providers: keyport.catalog.providers(),
    })
}

/// Create a connection (administrators).
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/connections", operation_id = "createConnection",
    security(("bearer" = ["keyport/connections.manage"])),
    request_body = ConnectionCreate,
    responses(
        (status = 201, description = "Created, at version 1 (its token health: not authorized, no user tokens).", body = AdministeredConnection),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
))]
async fn create_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<(StatusCode, Json<AdministeredConnection>), ApiError> {
    let created = keyport.create_connection(&principal, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(AdministeredConnection::created(created)),
    ))
}

/// One page of connections, each with its token health.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct ConnectionList {
    connections: Vec<AdministeredConnection>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", schema(required))]
    next_cursor: Option<String>,
}

/// List connections by name, a page at a time, each with its token health (administrators).
///
/// Unknown query parameters are refused with 400. Each connection's `token_health` counts at
/// most 1,000 user tokens (`complete` says whether that was all of them).
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/connections", operation_id = "listConnections",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page.", body = ConnectionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
))]
async fn list_connections(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ConnectionList>, ApiError> {
    let page = query.page();
    let listed = keyport.list_connections(&principal, page).await?;
    let listed = keyport.page_with_token_health(&principal, listed).await?;
    Ok(Json(ConnectionList {
        connections: listed.items,
        next_cursor: listed.next,
    }))
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// Add `sealed`: every connection's secrets and tokens, encrypted to `recipient`.
    with_secrets: Option<bool>,
    /// The age recipient (`age1...`) to encrypt the secrets to; required with
    /// `with_secrets=true` and refused without it.
    recipient: Option<String>,
}

/// Every connection's definition, by name, for another installation or version control
/// (administrators).
///
/// No ids, versions or timestamps; no secret unless `with_secrets=true`, and then only in
/// `sealed`, an age file (ASCII armor) for `recipient`: Keyport never holds the identity that
/// opens it. An export with secrets is in each connection's audit trail (`secrets_exported`).
/// Unknown query parameters are refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/connections/export", operation_id = "exportConnections",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The connections (format 1).", body = ConnectionsDocument),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
))]
async fn export_connections(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Json<ConnectionsDocument>, ApiError> {
    let recipient = match (query.with_secrets.unwrap_or(false), query.recipient) {
        (true, Some(recipient)) => Some(recipient),
        (false, None) => None,
        (true, None) => {
            return Err(crate::domain::ValidationError::new(
                "recipient",
                "is required with with_secrets=true: secrets leave only encrypted to an age recipient (age1...)",
            )
            .into());
        }
        (false, Some(_)) => {
            return Err(crate::domain::ValidationError::new(
                "recipient",
                "is only for with_secrets=true",
            )
            .into());
        }
    };
    Ok(Json(
        keyport
            .export_connections(&principal, recipient.as_deref())
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
struct ImportQuery {
    /// `false` applies the import; by default (`true`) it only says what it would do.
    dry_run: Option<bool>,
}

/// Create and change connections from a document, by name (administrators).
///
/// The answer is the plan: per connection `create`, `change` (with the fields),
/// `unchanged` or `conflict` (with the reason). A dry run (the default) changes nothing. With
/// `dry_run=false` nothing is applied if anything conflicts (409, with the plan); otherwise
/// every create and change is applied, each as `POST /connections` and `PATCH
/// /connections/{id}` would (a change of destination needs its secret in the document and ends
/// the connection's tokens), and a failure part-way undoes what was applied. Connections the
/// document does not name are left alone. A document with `sealed` is refused: decrypt it
/// where the age identity is (`keyport import --identity`). Unknown fields are refused.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/connections/import", operation_id = "importConnections",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ImportQuery),
    request_body = ConnectionsDocument,
    responses(
        (status = 200, description = "The plan; `applied` says whether it was applied.", body = ImportOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 409, description = "Something conflicts: the plan, with `error` `import_conflict`; nothing was applied.", body = ImportOutcome),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
))]
async fn import_connections(
    State(keyport): AppState,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ImportQuery>,
    ApiJson(document): ApiJson<ConnectionsDocument>,
) -> Result<Response, ApiError> {
    let dry_run = query.dry_run.unwrap_or(true);
    let outcome = keyport
        .import_connections(&principal, document, dry_run)
        .await?;
    if !dry_run && outcome.has_conflicts() {
        return Ok((StatusCode::CONFLICT, Json(outcome.refused())).into_response());
    }
    Ok(Json(outcome).into_response())
}

/// One page of a connection's audit trail.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct AuditList {
    events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", schema(required))]
    next_cursor: Option<String>,
    /// Who used the connection's tokens: each caller's last fetch, most recent first (up to
    /// 1,000 callers), with the rule and scope that let it and the token's fingerprint.
    last_fetches: Vec<TokenFetch>,
}

/// A connection's audit trail, newest first, a page at a time (administrators).
///
/// Connection created/changed/deleted, token authorized/refreshed/revoked/failed and access
/// denied events: who, what, when, never a secret. With them, `last_fetches`: when each caller
/// last fetched one of the connection's tokens (recorded at most once per caller every
/// `KEYPORT_FETCH_RECORD_SECONDS`). Events stay readable after the connection
/// is deleted, so an unknown id answers an empty list. Unknown query parameters are refused
/// with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/connections/{id}/audit", operation_id = "listAuditEvents",
    security(("bearer" = ["keyport/audit.read"])),
    params(ConnectionPath, ListQuery),
    responses(
        (status = 200, description = "One page.", body = AuditList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
))]
async fn audit_trail(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let page = query.page();
    let listed = keyport.audit_trail(&principal, &id, page).await?;
    let last_fetches = keyport.token_fetches(&principal, &id).await?;
    Ok(Json(AuditList {
        events: listed.items,
        next_cursor: listed.next,
        last_fetches,
    }))
}

/// Read a connection, with its token health (administrators).
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/connections/{id}", operation_id = "getConnection",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ConnectionPath),
    responses(
        (status = 200, description = "The connection.", body = AdministeredConnection),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
))]
async fn get_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
) -> Result<Json<AdministeredConnection>, ApiError> {
    let connection = keyport.get_connection(&principal, &id).await?;
    Ok(Json(
        keyport.with_token_health(&principal, connection).await?,
    ))
}

/// Change a connection (administrators).
#[cfg_attr(feature = "openapi", utoipa::path(
    patch, path = "/connections/{id}", operation_id = "updateConnection",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ConnectionPath),
    request_body = ConnectionInput,
    responses(
        (status = 200, description = "Changed, at the next version, with its token health after the change.", body = AdministeredConnection),
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
async fn update_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<Json<AdministeredConnection>, ApiError> {
    let updated = keyport.update_connection(&principal, &id, input).await?;
    Ok(Json(keyport.with_token_health(&principal, updated).await?))
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    /// The version last read; a stale one is a 409.
    version: Option<u64>,
}

/// Delete a connection and its tokens, revoking them at the provider first (administrators).
///
/// Unknown query parameters are refused with 400.
#[cfg_attr(feature = "openapi", utoipa::path(
    delete, path = "/connections/{id}", operation_id = "deleteConnection",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ConnectionPath, DeleteQuery),
    responses(
        (status = 202, description = "Deleted: the connection is gone for every caller, and its tokens are revoked and deleted in the background. On AWS (with refresh workers) every delete answers this at once, status `queued`, without `tokens_revoked`: the workers revoke and delete every token. On one machine a connection with more tokens than one request revokes answers status `deleting` with the `tokens_revoked` it did; the refresher revokes and deletes the rest.", body = DeletionInProgress),
        (status = 204, description = "Deleted, with every token it had revoked at the provider and deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
))]
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
                status: DeletionStatus::Deleting,
                tokens_revoked: Some(tokens_revoked),
                message: "The connection is deleted. Its remaining tokens are being revoked at the provider and deleted in the background.",
            }),
        )
            .into_response(),
        Deletion::Queued => (
            StatusCode::ACCEPTED,
            Json(DeletionInProgress {
                id: id.to_string(),
                status: DeletionStatus::Queued,
                tokens_revoked: None,
                message: "The connection is deleted. Its tokens are queued to be revoked at the provider and deleted in the background.",
            }),
        )
            .into_response(),
    })
}

/// The answer to a delete whose tokens are ended in the background: all of them (queued), or
/// those one request could not (deleting).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "con_0f3c2a9d8b7e4f6a9c1d2e3f4a5b6c7d",
    "status": "deleting",
    "tokens_revoked": 20,
    "message": "The connection is deleted. Its remaining tokens are being revoked at the provider and deleted in the background."
})))]
struct DeletionInProgress {
    /// The deleted connection.
    id: String,
    status: DeletionStatus,
    /// Tokens this request revoked at the provider and deleted; absent when the deletion was
    /// queued, which revokes none in the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_revoked: Option<u64>,
    message: &'static str,
}

/// A deleted connection whose tokens are still being ended: by this request and then the
/// refresher (`deleting`), or all of them by the refresh workers (`queued`).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
enum DeletionStatus {
    Deleting,
    Queued,
}

/// Check the client's credentials at the provider without storing anything (administrators).
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/connections/{id}/test", operation_id = "testConnection",
    security(("bearer" = ["keyport/connections.manage"])),
    params(ConnectionPath),
    responses(
        (status = 200, description = "The outcome; a provider refusal is ok=false, not an error status.", body = ConnectionCheck),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
))]
async fn test_connection(
    State(keyport): AppState,
    Caller(principal): Caller,
    ConnectionPath(id): ConnectionPath,
) -> Result<Json<ConnectionCheck>, ApiError> {
    Ok(Json(keyport.test_connection(&principal, &id).await?))
}
