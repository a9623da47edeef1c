//! The simulation's provider: a loopback token endpoint that answers a refresh after a set
//! latency, rotates the refresh token on every use and treats a presented old one as reuse
//! (as Atlassian, Zoom, Xero and Box do): it answers `invalid_grant` and counts it. It keeps,
//! per grant, the refresh token it last issued and when it first refreshed it, so the report
//! can say whether any token expired before it was refreshed, any grant was lost (Keyport
//! holds an older refresh token than the provider's) and any refresh token came twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;

/// One grant at the provider.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The generation of the refresh token it last issued (`rt-<grant>-<generation>`).
    pub generation: u32,
    pub first_refreshed_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Grants {
    by_id: HashMap<u32, Grant>,
    presented: HashMap<(u32, u32), u32>,
}

pub struct Provider {
    pub addr: SocketAddr,
    /// Refreshes answered with a new token.
    pub refreshes: Arc<AtomicU64>,
    /// Refresh tokens presented after they had been used.
    pub reuses: AtomicU64,
    /// Refresh requests of any outcome.
    pub requests: AtomicU64,
    latency: Duration,
    grants: Mutex<Grants>,
}

/// The refresh token of `grant` at `generation`.
pub fn refresh_token(grant: u32, generation: u32) -> String {
    format!("rt-{grant:07}-{generation:04}-0123456789abcdef0123456789abcdef")
}

fn parse(token: &str) -> Option<(u32, u32)> {
    let mut parts = token.strip_prefix("rt-")?.split('-');
    let grant = parts.next()?.parse().ok()?;
    let generation = parts.next()?.parse().ok()?;
    Some((grant, generation))
}

impl Provider {
    /// Serves on a free loopback port; grants `0..grants` start at generation 0.
    pub async fn start(latency: Duration, grants: u32) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the provider");
        let provider = Arc::new(Self {
            addr: listener.local_addr().expect("its address"),
            refreshes: Arc::new(AtomicU64::new(0)),
            reuses: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            latency,
            grants: Mutex::new(Grants {
                by_id: (0..grants)
                    .map(|id| {
                        (
                            id,
                            Grant {
                                generation: 0,
                                first_refreshed_at: None,
                            },
                        )
                    })
                    .collect(),
                presented: HashMap::new(),
            }),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(provider.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the provider serves")
        });
        provider
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn grants(&self) -> HashMap<u32, Grant> {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .clone()
    }

    /// Refresh tokens presented more than once, counted once per extra presentation.
    pub fn presented_twice(&self) -> u64 {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .presented
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum()
    }
}

fn invalid_grant() -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_grant"})),
    )
        .into_response()
}

async fn token(State(provider): State<Arc<Provider>>, body: String) -> Response {
    provider.requests.fetch_add(1, Ordering::Relaxed);
    // The provider's own time to answer: what the simulation is about, not synchronisation.
    tokio::time::sleep(provider.latency).await;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let Some((grant, generation)) = form.get("refresh_token").and_then(|t| parse(t)) else {
        return invalid_grant();
    };
    let issued = {
        let mut grants = provider.grants.lock().unwrap_or_else(|p| p.into_inner());
        *grants.presented.entry((grant, generation)).or_default() += 1;
        let Some(current) = grants.by_id.get_mut(&grant) else {
            return invalid_grant();
        };
        if current.generation != generation {
            provider.reuses.fetch_add(1, Ordering::Relaxed);
            return invalid_grant();
        }
        current.generation += 1;
        current.first_refreshed_at.get_or_insert_with(Utc::now);
        current.generation
    };
    provider.refreshes.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "access_token": format!("at-{grant:07}-{issued:04}-fedcba9876543210fedcba9876543210"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": refresh_token(grant, issued),
        "scope": "api:read",
    }))
    .into_response()
}
