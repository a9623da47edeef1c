//! Keyport's HTTP API, shared by every Lambda function and the local server: each function's
//! routes, the error shape, extractors, and who the caller is.

pub mod console;
mod error;
// `pub(crate)` for the fuzzing wrappers in lib.rs.
pub(crate) mod extract;
pub mod identity;
#[cfg(feature = "openapi")]
pub mod openapi;
pub(crate) mod page;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use error::ApiError;
pub use identity::{ApiGatewayAuthorizer, Authenticator, DevSigningKey, LocalJwtVerifier};
pub use page::notice;

use crate::service::Keyport;

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
    /// Every function, in the order the description lists them.
    pub const ALL: [Function; 4] = [
        Function::Connections,
        Function::Authorize,
        Function::Callback,
        Function::Token,
    ];

    /// Its name: its Lambda function's, and its operations' tag in the description.
    pub fn name(self) -> &'static str {
        match self {
            Function::Connections => "connections",
            Function::Authorize => "authorize",
            Function::Callback => "callback",
            Function::Token => "token",
        }
    }
}

/// The router for `functions`, authenticating every request with `authenticator`.
pub fn router(
    keyport: Arc<Keyport>,
    authenticator: Arc<dyn Authenticator>,
    functions: &[Function],
) -> Router {
    let routes = functions
        .iter()
        .fold(routes::Routes::new(), |routes, function| {
            routes.merge(function.routes())
        });
    router_of(routes, keyport, authenticator)
}

/// The router of `routes`, authenticating every request with `authenticator`: Keyport's error
/// shape for unknown routes and methods, and its body limit.
fn router_of(
    routes: routes::Routes,
    keyport: Arc<Keyport>,
    authenticator: Arc<dyn Authenticator>,
) -> Router {
    routes::into_router(routes)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            identity::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(keyport)
}
