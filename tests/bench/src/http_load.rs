//! Item 2: the token read over loopback HTTP on the local server's stack under concurrent load
//! (wrk), against a trivial endpoint on the same server (same axum, same runtime, same
//! listener) that returns a body of the same size with the same headers and no middleware.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::http::{HeaderMap, Request, header};
use axum::routing::get;
use keyport_shared::http::{self, DevSigningKey, Function, LocalJwtVerifier};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::authserver::AuthServer;
use crate::common::{self, median};
use crate::read::{round2, seed_shared_token};

pub const ROUNDS: usize = 5;
pub const SECONDS_PER_ROUND: u64 = 4;
pub const CONNECTIONS: usize = 16;
pub const WRK_THREADS: usize = 1;
pub const TARGET_RATIO: f64 = 0.7;
const TRIVIAL_PATH: &str = "/bench/trivial";

/// wrk's summary as one JSON line (latencies in microseconds).
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"errors_status":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"#;

struct Run {
    requests_per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

/// One wrk run against `url` with the bearer token; panics on any error or non-2xx answer.
async fn wrk(url: &str, bearer: &str, seconds: u64, script: &Path) -> Run {
    let output = tokio::process::Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "5s", "-H"])
        .arg(format!("Authorization: Bearer {bearer}"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .await
        .expect("wrk runs (scripts/bench installs it: apt-get install -y wrk)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {stdout}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("{\"requests\""))
        .unwrap_or_else(|| panic!("no summary from wrk: {stdout}"));
    let summary: Value = serde_json::from_str(line).expect("wrk's summary is JSON");
    assert_eq!(summary["errors"], 0, "socket errors under load: {stdout}");
    assert_eq!(
        summary["errors_status"], 0,
        "non-2xx answers under load: {stdout}"
    );
    let requests = summary["requests"].as_f64().expect("a count");
    let seconds = summary["duration_us"].as_f64().expect("a duration") / 1e6;
    Run {
        requests_per_second: requests / seconds,
        p50_us: summary["p50_us"].as_f64().expect("p50"),
        p99_us: summary["p99_us"].as_f64().expect("p99"),
    }
}

fn summary(runs: &[Run]) -> Value {
    let rps: Vec<f64> = runs.iter().map(|r| r.requests_per_second).collect();
    json!({
        "requests_per_second": median(&rps).round(),
        "p50_us": median(&runs.iter().map(|r| r.p50_us).collect::<Vec<_>>()),
        "p99_us": median(&runs.iter().map(|r| r.p99_us).collect::<Vec<_>>()),
        "runs_requests_per_second": rps.iter().map(|v| v.round()).collect::<Vec<_>>(),
    })
}

pub async fn measure() -> Value {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let auth = AuthServer::start().await;
    let keyport = common::embedded_keyport(dir.path());
    let id = seed_shared_token(&keyport, &auth, "bench-http").await;

    // The local server's authenticator: bearer JWTs verified with the development key.
    let settings = common::common_settings();
    let dev_key = DevSigningKey::load_or_create(&dir.path().join("dev-signing.key"))
        .expect("the development key");
    let (issuer, audience) = ("keyport-local", "keyport");
    let bearer = dev_key
        .mint(
            "bot-1",
            &["bots".to_owned()],
            Duration::from_secs(3600),
            issuer,
            audience,
            &settings.roles_claim,
        )
        .expect("a bearer token");
    let authenticator = Arc::new(LocalJwtVerifier::development(
        &dev_key,
        issuer,
        audience,
        &settings.roles_claim,
    ));
    let keyport_routes = http::router(keyport.clone(), authenticator, &Function::ALL);
    let token_path = format!("/connections/{id}/token?owner=shared&min_valid_seconds=60");

    // The trivial endpoint answers with a body of the token response's size and its headers.
    let probe = keyport_routes
        .clone()
        .oneshot(
            Request::get(&token_path)
                .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("infallible");
    assert_eq!(probe.status(), 200, "the token read over the router failed");
    let mut headers: HeaderMap = probe.headers().clone();
    headers.remove(header::CONTENT_LENGTH);
    let token_body = to_bytes(probe.into_body(), 1 << 20).await.expect("a body");
    let padding = token_body.len().saturating_sub(r#"{"pad":""}"#.len());
    let trivial_body = Bytes::from(format!(r#"{{"pad":"{}"}}"#, "x".repeat(padding)));
    assert_eq!(trivial_body.len(), token_body.len());
    let trivial = {
        let body = trivial_body.clone();
        let headers = headers.clone();
        get(move || {
            let (body, headers) = (body.clone(), headers.clone());
            async move { (headers, body) }
        })
    };

    // The same assembly as `keyport_local::start_with_backends` (its OpenAPI route and every
    // function's routes), with the trivial route merged in here only.
    let app = http::openapi::routes(keyport.clone())
        .route(TRIVIAL_PATH, trivial)
        .merge(keyport_routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the server runs");
    });

    let script_file = tempfile::Builder::new()
        .suffix(".lua")
        .tempfile()
        .expect("a script file");
    std::fs::write(script_file.path(), WRK_SCRIPT).expect("write the wrk script");
    let script = script_file.path();
    let token_url = format!("http://{addr}{token_path}");
    let trivial_url = format!("http://{addr}{TRIVIAL_PATH}");

    // Warm up, then alternate, so drift on a shared machine hits both sides alike.
    wrk(&trivial_url, &bearer, 1, script).await;
    wrk(&token_url, &bearer, 1, script).await;
    let mut token_runs = Vec::new();
    let mut trivial_runs = Vec::new();
    for _ in 0..ROUNDS {
        trivial_runs.push(wrk(&trivial_url, &bearer, SECONDS_PER_ROUND, script).await);
        token_runs.push(wrk(&token_url, &bearer, SECONDS_PER_ROUND, script).await);
    }
    let token = summary(&token_runs);
    let trivial = summary(&trivial_runs);
    let ratio = token["requests_per_second"].as_f64().unwrap_or(0.0)
        / trivial["requests_per_second"].as_f64().unwrap_or(1.0);
    json!({
        "what": "GET /connections/{id}/token over loopback HTTP under load, against a trivial endpoint on the same server",
        "load_generator": format!("wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{SECONDS_PER_ROUND}s (keep-alive), same Authorization header on both"),
        "runs": ROUNDS,
        "statistic": "median over runs",
        "body_bytes": token_body.len(),
        "token": token,
        "trivial": trivial,
        "ratio": round2(ratio),
        "target_ratio_min": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
    })
}
