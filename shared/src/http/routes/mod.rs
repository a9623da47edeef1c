//! The routes of each function: one module per function, each with its route table and thin
//! handlers that parse, call one use case, and shape the answer. Routes and wire shapes are
//! DESIGN.md's.
//!
//! Each handler's `#[utoipa::path]` (with the `openapi` feature) is its part of the OpenAPI
//! description: parameters, body, security and every status it answers.

mod authorize;
mod callback;
mod connections;
mod settings;
// Its validity limit is checked against the description by `http::openapi`'s tests.
pub(super) mod token;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::Function;
use super::error::ApiError;
use crate::service::{Keyport, OwnerRequest};

type AppState = State<Arc<Keyport>>;

/// A function's routes. With the `openapi` feature each route carries its operation, which the
/// description is assembled from; without it (the Lambda functions) they are plain axum routes.
#[cfg(feature = "openapi")]
pub type Routes = utoipa_axum::router::OpenApiRouter<Arc<Keyport>>;
#[cfg(not(feature = "openapi"))]
pub type Routes = Router<Arc<Keyport>>;

/// `table![get "/path" => handler, …]`: a function's routes.
///
/// Each entry names its method and path once for the router, so the Lambda functions route
/// without utoipa. With the `openapi` feature the handler's `#[utoipa::path]` supplies its
/// operation (and the router, through `utoipa_axum::routes!`); it names the method and path
/// again, and building the table checks the two agree, so any drift fails every test that
/// builds a router.
macro_rules! table {
    ($($method:ident $path:literal => $handler:ident),* $(,)?) => {{
        #[cfg(feature = "openapi")]
        let routes = $crate::http::routes::Routes::new()$(
            .routes($crate::http::routes::checked(
                stringify!($method),
                $path,
                utoipa_axum::routes!($handler),
            ))
        )*;
        #[cfg(not(feature = "openapi"))]
        let routes = $crate::http::routes::Routes::new()$(
            .route($path, axum::routing::$method($handler))
        )*;
        routes
    }};
}
use table;

impl Function {
    /// This function's routes.
    pub fn routes(self) -> Routes {
        match self {
            Function::Connections => connections::routes().merge(settings::routes()),
            Function::Authorize => authorize::routes(),
            Function::Callback => callback::routes(),
            Function::Token => token::routes(),
        }
    }
}

/// The API routes the console's pages call (under `/console/api`, as the signed-in person):
/// all of the connections and authorize functions', the completion of an authorization, and
/// the token routes that answer without a token. The console shows a token's status, never
/// the token: reading one, or a refresh (which answers with it), is not among them.
pub fn console_routes() -> Routes {
    connections::routes()
        .merge(authorize::routes())
        .merge(callback::console_routes())
        .merge(token::console_routes())
}

/// The axum router of `routes`.
pub fn into_router(routes: Routes) -> Router<Arc<Keyport>> {
    #[cfg(feature = "openapi")]
    let routes = routes.split_for_parts().0;
    routes
}

/// One table entry's routes from its handler's `#[utoipa::path]`, after checking that it names
/// the table's method and path (see [`table!`]).
#[cfg(feature = "openapi")]
pub(crate) fn checked<S>(
    method: &str,
    path: &str,
    routes: utoipa_axum::router::UtoipaMethodRouter<S>,
) -> utoipa_axum::router::UtoipaMethodRouter<S> {
    let described: Vec<(String, String)> = routes
        .1
        .paths
        .iter()
        .flat_map(|(described_path, item)| {
            super::openapi::methods(item)
                .into_iter()
                .map(move |described_method| (described_method.to_owned(), described_path.clone()))
        })
        .collect();
    assert_eq!(
        described,
        [(method.to_uppercase(), path.to_owned())],
        "the route table says {method} {path}, the handler's #[utoipa::path] says otherwise"
    );
    routes
}

/// `owner` of the token routes and of an authorization: `shared` unless the caller says `user`.
fn owner(value: Option<&str>) -> Result<OwnerRequest, ApiError> {
    Ok(value.unwrap_or("shared").parse::<OwnerRequest>()?)
}

/// A page of a listing (connections, audit events, a connection's user tokens).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Page size; clamped to 1..1000 (default 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListQuery {
    /// The page it asks for (100 items unless it says).
    fn page(self) -> crate::ports::PageRequest {
        crate::ports::PageRequest {
            limit: self.limit.unwrap_or(100),
            cursor: self.cursor,
        }
    }
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
