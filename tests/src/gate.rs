//! A gate in front of a real token endpoint: it forwards every request as it is, except that
//! the test can have it hold the next refresh request and never pass it on, to freeze a
//! Keyport instance in the middle of a refresh (and then kill it there).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::mpsc;

struct Shared {
    upstream: String,
    client: reqwest::Client,
    hold_next_refresh: AtomicBool,
    held: mpsc::UnboundedSender<()>,
}

pub struct TokenGate {
    /// The gate's token endpoint: `http://127.0.0.1:<port>/token`.
    pub url: String,
    shared: Arc<Shared>,
    held: mpsc::UnboundedReceiver<()>,
}

impl TokenGate {
    /// A gate forwarding to `upstream` (a token endpoint URL on loopback).
    pub async fn start(upstream: &str) -> TokenGate {
        let (held_tx, held) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
            hold_next_refresh: AtomicBool::new(false),
            held: held_tx,
        });
        let app = axum::Router::new()
            .route("/token", post(pass))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gate");
        let url = format!("http://{}/token", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the gate serves");
        });
        TokenGate { url, shared, held }
    }

    /// The next `refresh_token` grant request is held forever instead of forwarded.
    pub fn hold_next_refresh(&self) {
        self.shared.hold_next_refresh.store(true, Ordering::SeqCst);
    }

    /// Returns once a refresh request is being held.
    pub async fn wait_until_held(&mut self) {
        self.held.recv().await.expect("the gate is running");
    }
}

async fn pass(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_refresh = url::form_urlencoded::parse(&body)
        .any(|(name, value)| name == "grant_type" && value == "refresh_token");
    if is_refresh && shared.hold_next_refresh.swap(false, Ordering::SeqCst) {
        let _ = shared.held.send(());
        // Never answered: the caller waits until it gives up or is killed.
        std::future::pending::<()>().await;
    }
    let mut request = shared.client.post(&shared.upstream).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).expect("a status");
            let content_type = answer
                .headers()
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(header::HeaderValue::from_static("application/json"));
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}
