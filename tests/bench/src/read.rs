//! Item 1: a warm token read through the token function's handler, in process, on the embedded
//! back-end, against the floor of the same work done directly: one point read of the token row
//! from the same SQLite file and one AES-256-GCM decryption of its envelope through the same
//! cipher (warm key cache).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyport_shared::crypto::EnvelopeCipher;
use keyport_shared::domain::{ConnectionId, Owner};
use keyport_shared::http::{self, ApiGatewayAuthorizer, Function};
use keyport_shared::ports::{KeyContext, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

use crate::authserver::AuthServer;
use crate::common::{self, median};

/// The sample API Gateway (payload 2.0) event of `GET /connections/{id}/token`: the
/// authorizer's claims name an administrator who also holds `bots`.
const TOKEN_GET_EVENT: &str = include_str!("../../../events/token-get.json");
const PLACEHOLDER_ID: &str = "con_0123456789abcdef0123456789abcdef";

pub const BATCHES: usize = 20;
pub const READS_PER_BATCH: usize = 1_000;
const WARM_UP_READS: usize = 2_000;
pub const TARGET_RATIO: f64 = 1.5;

type TokenAdapter = Adapter<'static, axum::response::Response, axum::Router>;

/// The token function's handler, invoked as `lambda_http::run` invokes it: the event's JSON
/// is parsed into the runtime's request type, passed through `lambda_http`'s adapter into the
/// router `run_http_function(&[Function::Token])` builds, and the response serialized back to
/// the JSON the runtime posts.
pub struct TokenHandler {
    adapter: TokenAdapter,
    event: String,
}

impl TokenHandler {
    pub fn new(keyport: Arc<Keyport>, connection_id: &str) -> TokenHandler {
        let authenticator = Arc::new(ApiGatewayAuthorizer {
            roles_claim: common::common_settings().roles_claim,
        });
        let router = http::router(keyport, authenticator, &[Function::Token]);
        TokenHandler {
            adapter: Adapter::from(router),
            event: TOKEN_GET_EVENT.replace(PLACEHOLDER_ID, connection_id),
        }
    }

    /// One invocation; returns the serialized Lambda response.
    pub async fn invoke(&mut self) -> Vec<u8> {
        let request: LambdaRequest =
            serde_json::from_str(&self.event).expect("a valid API Gateway event");
        let event = LambdaEvent::new(request, Context::default());
        let response = match self.adapter.ready().await {
            Ok(service) => match service.call(event).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Err(never) => match never {},
        };
        serde_json::to_vec(&response).expect("a serializable response")
    }

    /// One invocation, checked: status 200 and an access token in the body.
    pub async fn invoke_checked(&mut self) -> Value {
        let response: Value =
            serde_json::from_slice(&self.invoke().await).expect("a JSON Lambda response");
        assert_eq!(
            response["statusCode"], 200,
            "the token read failed: {response}"
        );
        let body: Value = serde_json::from_str(response["body"].as_str().expect("a text body"))
            .expect("a JSON body");
        assert!(body["access_token"].is_string(), "no access token: {body}");
        body
    }
}

/// A client-credentials connection whose token endpoint is `server`, and its shared token
/// obtained and stored by the service's own write path (sealed as in production).
pub async fn seed_shared_token(keyport: &Keyport, server: &AuthServer, name: &str) -> String {
    let id = common::create_connection(
        keyport,
        json!({
            "name": name, "provider": "custom", "grant_type": "client_credentials",
            "client_id": "keyport-bench", "client_secret": "bench-client-secret",
            "token_url": server.token_url(), "scopes": "api:read", "invited_roles": ["bots"],
        }),
    )
    .await;
    keyport
        .access_token(&common::admin(), &id, OwnerRequest::Shared, None)
        .await
        .expect("the first read obtains and stores the token");
    id.to_string()
}

/// The floor: the token row read with a prepared statement from the same database file, and
/// its envelope opened by the same cipher.
struct Floor {
    db: rusqlite::Connection,
    key: TokenKey,
    context: KeyContext,
    cipher: Arc<EnvelopeCipher>,
}

impl Floor {
    const SQL: &str = "SELECT doc, sealed FROM tokens WHERE connection_id = ?1 AND owner = ?2";

    fn row(&self) -> (String, Vec<u8>) {
        let mut statement = self
            .db
            .prepare_cached(Self::SQL)
            .expect("the statement prepares");
        statement
            .query_row(
                [
                    self.key.connection_id.as_str(),
                    &self.key.owner.storage_key(),
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("the token row")
    }

    async fn read(&self) -> usize {
        let (doc, sealed) = self.row();
        let plaintext = self
            .cipher
            .open(&self.context, &sealed)
            .await
            .expect("the envelope opens");
        black_box(doc.len() + plaintext.len())
    }
}

fn per_read_ns(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / READS_PER_BATCH as f64
}

/// Times `BATCHES` batches of `READS_PER_BATCH` calls of `f`; ns per call in each batch.
macro_rules! batch {
    ($body:expr) => {{
        let start = Instant::now();
        for _ in 0..READS_PER_BATCH {
            black_box($body);
        }
        per_read_ns(start.elapsed())
    }};
}

pub async fn measure() -> Value {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let server = AuthServer::start().await;
    let keyport = common::embedded_keyport(dir.path());
    let id = seed_shared_token(&keyport, &server, "bench-read").await;
    let mut handler = TokenHandler::new(keyport.clone(), &id);
    let body = handler.invoke_checked().await;
    let key = TokenKey {
        connection_id: ConnectionId::parse(&id).expect("a connection id"),
        owner: Owner::Shared,
    };
    let floor = floor(dir.path(), &key, keyport.cipher.clone());
    // Warm up both sides: caches, the blocking pool, the page cache, branch predictors.
    for _ in 0..WARM_UP_READS {
        black_box(handler.invoke().await);
        black_box(floor.read().await);
    }
    let requests_before = server.answered.load(std::sync::atomic::Ordering::SeqCst);

    // Interleaved batches, so drift on a shared machine hits both sides alike.
    let mut handler_ns = Vec::new();
    let mut floor_ns = Vec::new();
    for _ in 0..BATCHES {
        handler_ns.push(batch!(handler.invoke().await));
        floor_ns.push(batch!(floor.read().await));
    }
    let refreshes_during =
        server.answered.load(std::sync::atomic::Ordering::SeqCst) - requests_before;
    assert_eq!(refreshes_during, 0, "a warm read never calls the provider");
    // The last response must still be a valid token read.
    handler.invoke_checked().await;

    // Where the time goes: parts of each side on their own.
    let admin = common::admin();
    let connection_id = key.connection_id.clone();
    let mut splits: Vec<(&str, &str, Vec<f64>)> = vec![
        (
            "event_parse",
            "parse the API Gateway event JSON into lambda_http's request type",
            Vec::new(),
        ),
        (
            "service_access_token",
            "Keyport::access_token alone (no event, router, authorizer or JSON response)",
            Vec::new(),
        ),
        (
            "floor_sqlite_row",
            "the floor's prepared point read alone",
            Vec::new(),
        ),
        (
            "floor_open",
            "the floor's EnvelopeCipher::open alone (warm cache)",
            Vec::new(),
        ),
        (
            "store_get_connection_and_token",
            "the store's combined read alone (SQLite join, the token's document parsed, the connection's reused while its version is unchanged)",
            Vec::new(),
        ),
        (
            "event_to_request",
            "the event JSON parsed and converted by lambda_http into the http::Request the router gets",
            Vec::new(),
        ),
        (
            "open_token",
            "EnvelopeCipher::open_token (open plus parsing the sealed JSON)",
            Vec::new(),
        ),
    ];
    let (_, sealed) = floor.row();
    for _ in 0..BATCHES / 2 {
        splits[0].2.push(batch!(
            serde_json::from_str::<LambdaRequest>(&handler.event).expect("an event")
        ));
        splits[1].2.push(batch!(
            keyport
                .access_token(&admin, &connection_id, OwnerRequest::Shared, None)
                .await
                .expect("a token")
        ));
        splits[2].2.push(batch!(floor.row()));
        splits[3].2.push(batch!(
            floor
                .cipher
                .open(&floor.context, &sealed)
                .await
                .expect("opens")
        ));
        splits[4].2.push(batch!(
            keyport
                .store
                .get_connection_and_token(&key)
                .await
                .expect("a read")
        ));
        splits[5].2.push(batch!(lambda_http::Request::from(
            serde_json::from_str::<LambdaRequest>(&handler.event).expect("an event")
        )));
        splits[6].2.push(batch!(
            floor.cipher.open_token(&key, &sealed).await.expect("opens")
        ));
    }

    let handler_median = median(&handler_ns);
    let floor_median = median(&floor_ns);
    let ratio = handler_median / floor_median;
    json!({
        "what": "warm token read through the token function's handler, in process, embedded back-end",
        "runs": BATCHES,
        "reads_per_run": READS_PER_BATCH,
        "warm_up_reads": WARM_UP_READS,
        "statistic": "median over runs of the mean time per read within a run",
        "handler_ns_per_read": handler_median.round(),
        "floor_ns_per_read": floor_median.round(),
        "ratio": round2(ratio),
        "target_ratio_max": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
        "handler_runs_ns": handler_ns.iter().map(|v| v.round()).collect::<Vec<_>>(),
        "floor_runs_ns": floor_ns.iter().map(|v| v.round()).collect::<Vec<_>>(),
        "token_body_bytes": serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0),
        "floor": "prepared SELECT doc, sealed FROM tokens WHERE connection_id=? AND owner=? on the same file, plus EnvelopeCipher::open of the sealed envelope (AES-256-GCM, the Keyport's own cipher, warm key cache)",
        "splits_ns_per_call": splits
            .iter()
            .map(|(name, what, runs)| (name.to_string(), json!({"what": what, "median_ns": median(runs).round()})))
            .collect::<serde_json::Map<_, _>>(),
    })
}

fn floor(data_dir: &Path, key: &TokenKey, cipher: Arc<EnvelopeCipher>) -> Floor {
    let db = rusqlite::Connection::open(data_dir.join("keyport.db")).expect("open the database");
    Floor {
        db,
        key: key.clone(),
        context: KeyContext::token(key),
        cipher,
    }
}

pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
