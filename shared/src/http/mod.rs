//! Keyport's HTTP API, shared by every Lambda function and the local server: each function's
//! routes, the error shape, extractors, and who the caller is.

mod error;
// `pub(crate)` for the fuzzing wrappers in lib.rs.
pub(crate) mod extract;
pub mod identity;
#[cfg(test)]
mod openapi_check;
pub(crate) mod page;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use error::ApiError;
pub use identity::{ApiGatewayAuthorizer, Authenticator, DevSigningKey, LocalJwtVerifier};

use crate::service::Keyport;

/// The OpenAPI 3.1 description of every route, served by the local server.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Request bodies are small JSON documents; anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Which function's routes a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Connections,
    Authorize,
    Callback,
    Token,
}

impl Function {
    pub const ALL: [Function; 4] = [
        Function::Connections,
        Function::Authorize,
        Function::Callback,
        Function::Token,
    ];
}

/// The router for `functions`, authenticating every request with `authenticator`.
pub fn router(
    keyport: Arc<Keyport>,
    authenticator: Arc<dyn Authenticator>,
    functions: &[Function],
) -> Router {
    let mut routes = Router::new();
    for function in functions {
        routes = routes.merge(match function {
            Function::Connections => routes::connections(),
            Function::Authorize => routes::authorize(),
            Function::Callback => routes::callback(),
            Function::Token => routes::token(),
        });
    }
    routes
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            identity::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(keyport)
}
