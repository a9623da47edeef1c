//! Item 4: the refresher over N due tokens on the embedded back-end, against a local
//! authorization server that answers refreshes as fast as it can. The floor is N divided by
//! that server's own refresh throughput at the refresher's concurrency, measured with the same
//! HTTP client stack (Keyport's outbound client: reqwest with rustls) and keep-alive
//! connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use keyport_shared::adapters::outbound::{OutboundHttp, OutboundSettings};
use keyport_shared::domain::{ConnectionId, Owner, Subject, TokenSecrets, UrlPolicy};
use keyport_shared::ports::TokenKey;
use keyport_shared::service::Keyport;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::authserver::AuthServer;
use crate::common::{self, median};
use crate::read::round2;

/// The refresher's concurrency: the default of `KEYPORT_REFRESH_CONCURRENCY`.
pub const CONCURRENCY: usize = 16;
/// The due tokens are spread over this many connections (one user token per owner).
pub const CONNECTIONS: usize = 10;
pub const SIZES: [(usize, usize); 2] = [(1_000, 5), (10_000, 3)];
pub const TARGET_RATIO: f64 = 1.3;
const CLIENT_ID: &str = "keyport-bench";
const CLIENT_SECRET: &str = "bench-client-secret";

/// Connections whose token endpoint is `server`, created through the service.
async fn connections(keyport: &Keyport, server: &AuthServer) -> Vec<ConnectionId> {
    let mut ids = Vec::new();
    for i in 0..CONNECTIONS {
        let id = common::create_connection(
            keyport,
            json!({
                "name": format!("bench-refresh-{i}"), "provider": "custom",
                "grant_type": "authorization_code",
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "authorization_url": format!("http://{}/authorize", server.addr),
                "token_url": server.token_url(), "scopes": "api:read",
                "invited_roles": ["bots"],
            }),
        )
        .await;
        ids.push(id);
    }
    ids
}

/// `n` user tokens due now, sealed with the Keyport's own cipher and written through the store
/// port directly.
async fn seed(keyport: &Keyport, ids: &[ConnectionId], n: usize) {
    let now = Utc::now();
    for i in 0..n {
        let key = TokenKey {
            connection_id: ids[i % ids.len()].clone(),
            owner: Owner::User(Subject::parse(&format!("user-{i:06}")).expect("a subject")),
        };
        let secrets = TokenSecrets {
            access_token: SecretString::from(format!(
                "bench-access-seed-{i:08}-0123456789abcdef0123456789abcdef"
            )),
            refresh_token: Some(SecretString::from(format!(
                "bench-refresh-seed-{i:08}-fedcba9876543210fedcba9876543210"
            ))),
            id_token: None,
            extra: serde_json::Map::new(),
        };
        common::store_due_token(
            keyport,
            &key,
            &secrets,
            now - chrono::Duration::minutes(3),
            now + chrono::Duration::minutes(2),
        )
        .await;
    }
}

/// `CONCURRENCY` keep-alive clients post `count` refresh requests, shaped as Keyport sends
/// them (form body, Basic client authentication), through the same outbound client; returns
/// the elapsed time.
async fn floor(server: &AuthServer, count: usize) -> Duration {
    let http = OutboundHttp::new(OutboundSettings::new(UrlPolicy::LocalDevelopment))
        .expect("the outbound client");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let url = server.token_url();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (http, basic, url, next) = (http.clone(), basic.clone(), url.clone(), next.clone());
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let request = http::Request::post(&url)
                    .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(http::header::ACCEPT, "application/json")
                    .header(http::header::AUTHORIZATION, &basic)
                    .body(
                        format!(
                            "grant_type=refresh_token&refresh_token=bench-refresh-seed-{i:08}-fedcba9876543210fedcba9876543210"
                        )
                        .into_bytes(),
                    )
                    .expect("a request");
                let response = http.execute(request).await.expect("the server answers");
                assert_eq!(response.status(), 200);
                std::hint::black_box(response.body().len());
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("a client finishes");
    }
    start.elapsed()
}

struct Run {
    seed_seconds: f64,
    floor_seconds: f64,
    refresher_seconds: f64,
    provider_requests: u64,
    report: Value,
}

async fn run_once(server: &AuthServer, n: usize) -> Run {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let keyport = common::embedded_keyport(dir.path());
    let ids = connections(&keyport, server).await;
    let start = Instant::now();
    seed(&keyport, &ids, n).await;
    let seed_seconds = start.elapsed().as_secs_f64();

    let floor_seconds = floor(server, n).await.as_secs_f64();

    let before = server.answered.load(Ordering::SeqCst);
    let start = Instant::now();
    let report = keyport
        .refresh_due(
            tokio::time::Instant::now() + Duration::from_secs(3600),
            CONCURRENCY,
        )
        .await
        .expect("the refresher runs");
    let refresher_seconds = start.elapsed().as_secs_f64();
    let provider_requests = server.answered.load(Ordering::SeqCst) - before;
    assert_eq!(
        report.refreshed, n as u64,
        "the refresher refreshed {} of {n}: {report:?}",
        report.refreshed
    );
    Run {
        seed_seconds,
        floor_seconds,
        refresher_seconds,
        provider_requests,
        report: serde_json::to_value(report).expect("a report"),
    }
}

pub async fn measure() -> Value {
    let server = AuthServer::start().await;
    let mut sizes = Vec::new();
    for (n, runs) in SIZES {
        let mut all = Vec::new();
        for _ in 0..runs {
            all.push(run_once(&server, n).await);
        }
        let pick = |f: fn(&Run) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        let refresher = pick(|r| r.refresher_seconds);
        let floor = pick(|r| r.floor_seconds);
        let ratio = refresher / floor;
        sizes.push(json!({
            "n": n,
            "runs": runs,
            "refresher_seconds": round3(refresher),
            "floor_seconds": round3(floor),
            "server_refreshes_per_second": (n as f64 / floor).round(),
            "refresher_tokens_per_second": (n as f64 / refresher).round(),
            "ratio": round2(ratio),
            "target_ratio_max": TARGET_RATIO,
            "met": ratio <= TARGET_RATIO,
            "seed_seconds": round3(pick(|r| r.seed_seconds)),
            "provider_requests_per_run": all.iter().map(|r| r.provider_requests).collect::<Vec<_>>(),
            "refresher_reports": all.iter().map(|r| r.report.clone()).collect::<Vec<_>>(),
            "runs_refresher_seconds": all.iter().map(|r| round3(r.refresher_seconds)).collect::<Vec<_>>(),
            "runs_floor_seconds": all.iter().map(|r| round3(r.floor_seconds)).collect::<Vec<_>>(),
        }));
    }
    json!({
        "what": "Keyport::refresh_due over N due tokens (embedded back-end), against N / the authorization server's own refresh throughput at the same concurrency",
        "concurrency": CONCURRENCY,
        "connections": CONNECTIONS,
        "statistic": "median over runs; each run seeds N due tokens in a fresh database, measures the floor (N refresh requests by CONCURRENCY keep-alive clients through Keyport's outbound client), then times one refresher run",
        "sizes": sizes,
    })
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
