//! A local OAuth authorization server's token endpoint that answers as fast as it can: every
//! request gets a fresh access token, a rotated refresh token and `expires_in` 3600. Plain http
//! on 127.0.0.1 (Keyport reaches it in local development mode).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

pub struct AuthServer {
    pub addr: SocketAddr,
    /// Token requests answered so far.
    pub answered: Arc<AtomicU64>,
}

impl AuthServer {
    pub async fn start() -> AuthServer {
        let answered = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/token", post(token))
            .with_state(answered.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the authorization server runs");
        });
        AuthServer { addr, answered }
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

/// Answers `refresh_token` and `client_credentials` grants alike, without looking further at
/// the request than its grant type.
async fn token(State(answered): State<Arc<AtomicU64>>, body: Bytes) -> impl IntoResponse {
    let n = answered.fetch_add(1, Ordering::Relaxed);
    let grant_ok = body.split(|b| *b == b'&').any(|pair| {
        pair == b"grant_type=refresh_token" || pair == b"grant_type=client_credentials"
    });
    if !grant_ok {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"unsupported_grant_type"}"#.to_owned(),
        );
    }
    (
        axum::http::StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            concat!(
                r#"{{"access_token":"bench-access-{n:016x}-0123456789abcdef0123456789abcdef","#,
                r#""token_type":"Bearer","expires_in":3600,"#,
                r#""refresh_token":"bench-refresh-{n:016x}-fedcba9876543210fedcba9876543210","#,
                r#""scope":"api:read"}}"#
            ),
            n = n
        ),
    )
}
