//! Keyport's common crate: everything the Lambda functions and the local server share.
//!
//! - [`domain`]: plain types and the rules that make them valid; no I/O.
//! - [`ports`]: the small traits the use cases ask for (storage, data keys, client secrets).
//! - [`crypto`]: envelope encryption of token material and local secrets.
//! - [`adapters`]: the back-ends behind the ports (DynamoDB/KMS/Secrets Manager, embedded SQLite).

pub mod adapters;
pub mod catalog;
pub mod catalog_doc;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod lambda;
pub mod oauth;
pub mod ports;
pub mod service;

/// Entry points for the fuzz targets in `shared/fuzz`: thin wrappers over internal code that
/// reads outside data, so a target runs exactly what Keyport runs. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use axum::extract::FromRequest;

    use crate::domain::ConnectionInput;
    use crate::http::ApiError;
    use crate::http::extract::ApiJson;
    use crate::oauth::CallbackParams;
    use crate::service::ServiceError;

    /// Polls a future that never waits (every one here works on bytes already in memory).
    fn ready<T>(future: impl Future<Output = T>) -> T {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("an in-memory future was not ready"),
        }
    }

    /// A `POST /connections` or `PATCH /connections/{id}` body (sent as `application/json`)
    /// through the HTTP layer's JSON extractor, as the routes read it.
    pub fn connection_body(body: &[u8]) -> Result<ConnectionInput, ApiError> {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/connections")
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_vec()))
            .expect("a request");
        ready(ApiJson::<ConnectionInput>::from_request(request, &())).map(|ApiJson(input)| input)
    }

    /// What `GET /oauth/callback?{query}` answers when the query itself is refused, before any
    /// storage is read: the status and the HTML page. `None` when the query parses.
    pub fn callback_refusal(query: &str) -> Option<(u16, String)> {
        let error = ServiceError::from(CallbackParams::parse(query).err()?);
        let response = crate::http::page::failed(&ApiError::from(error));
        let status = response.status().as_u16();
        let body = ready(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("an in-memory body");
        Some((
            status,
            String::from_utf8(body.to_vec()).expect("a UTF-8 page"),
        ))
    }
}
