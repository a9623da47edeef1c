//! Start-up of the Lambda functions (issue 7, item 5): each release `bootstrap`'s size against
//! 8 MB, and the time from process start until the process is ready for its first event, against
//! a minimal `lambda_http` hello-world (`tests/bench/hello`) built with the same profile and
//! target.
//!
//! "Ready for its first event" is the moment the process first calls
//! `GET /2018-06-01/runtime/invocation/next` on the Lambda Runtime API. The Runtime API here is
//! a stub served by this module (axum on 127.0.0.1), not `cargo lambda watch`: the stub records
//! when that request arrives, never answers it, and the process is killed. Each bootstrap gets
//! the environment Lambda and `infra/template.yaml` give it, with fake credentials, the instance
//! metadata service disabled and every AWS endpoint pointed at a closed loopback port, so nothing
//! leaves the machine (nothing is sent before the first event anyway).
//!
//! Nothing is built here: `scripts/bench` runs `cargo lambda build --release` first. Runs go
//! round-robin over the bootstraps (one warm-up start each, untimed, then [`RUNS`] timed starts
//! each), so load from elsewhere on the machine falls on all of them alike; figures are medians.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Each bootstrap's size limit (decimal megabytes, as `scripts/bootstrap-sizes` prints them).
pub const SIZE_LIMIT_BYTES: u64 = 8_000_000;
/// A function's start-up may take at most this many times the hello-world's.
pub const STARTUP_RATIO_LIMIT: f64 = 1.5;
/// Timed starts of each bootstrap.
pub const RUNS: usize = 30;
/// The functions, by binary name (`target/lambda/<name>/bootstrap`).
pub const FUNCTIONS: [&str; 6] = [
    "connections",
    "authorize",
    "callback",
    "token",
    "refresher",
    "console",
];
/// The baseline's binary name.
pub const HELLO: &str = "keyport-bench-hello";

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// What the Runtime API stub saw.
enum Signal {
    /// The first `next` request arrived at this moment.
    Ready(Instant),
    /// The process reported that its initialisation failed.
    InitError(String),
}

/// Where `cargo lambda build` left the bootstraps: `KEYPORT_BENCH_LAMBDA_DIR`, else
/// `$CARGO_TARGET_DIR/lambda`, else the workspace's `target/lambda`.
pub fn lambda_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEYPORT_BENCH_LAMBDA_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("lambda");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lambda")
}

/// Measures sizes and start-up of every bootstrap; see the module documentation.
pub async fn measure() -> Value {
    let dir = lambda_dir();
    let mut names: Vec<&str> = vec![HELLO];
    names.extend(FUNCTIONS);
    let bootstraps: Vec<(&str, PathBuf)> = names
        .iter()
        .map(|name| (*name, dir.join(name).join("bootstrap")))
        .collect();

    let stub = match RuntimeApiStub::start().await {
        Ok(stub) => stub,
        Err(e) => return json!({ "error": format!("cannot start the Runtime API stub: {e}") }),
    };
    let closed_port = closed_loopback_port();
    let mut stub = stub;

    // Per bootstrap: its size, then the timings of its starts (or why it could not be timed).
    let mut samples: Vec<Result<Vec<f64>, String>> = bootstraps
        .iter()
        .map(|(_, path)| {
            if path.is_file() {
                Ok(Vec::new())
            } else {
                Err(format!(
                    "{} is missing: build it first (scripts/bench)",
                    path.display()
                ))
            }
        })
        .collect();
    for round in 0..=RUNS {
        for ((name, path), sample) in bootstraps.iter().zip(samples.iter_mut()) {
            let Ok(times) = sample else { continue };
            match stub.time_start(name, path, closed_port).await {
                // Round 0 warms the page cache and is not counted.
                Ok(elapsed) if round > 0 => times.push(elapsed.as_secs_f64() * 1e3),
                Ok(_) => {}
                Err(e) => *sample = Err(e),
            }
        }
    }

    let entries: Vec<Value> = bootstraps
        .iter()
        .zip(samples)
        .map(|((name, path), sample)| {
            let bytes = std::fs::metadata(path).map(|m| m.len()).ok();
            let mut entry = json!({
                "name": name,
                "bootstrap": path.display().to_string(),
                "bytes": bytes,
                "mb": bytes.map(|b| round3(b as f64 / 1e6)),
            });
            match sample {
                Ok(times) => entry["startup_ms"] = summary(&times),
                Err(e) => entry["error"] = json!(e),
            }
            entry
        })
        .collect();
    let hello = entries[0].clone();
    let hello_ms = hello["startup_ms"]["median"].as_f64();
    let functions: Vec<Value> = entries[1..]
        .iter()
        .cloned()
        .map(|mut entry| {
            let bytes = entry["bytes"].as_u64();
            entry["size_ok"] = json!(bytes.map(|b| b <= SIZE_LIMIT_BYTES));
            let ratio = match (entry["startup_ms"]["median"].as_f64(), hello_ms) {
                (Some(ms), Some(base)) if base > 0.0 => Some(round3(ms / base)),
                _ => None,
            };
            entry["startup_ratio"] = json!(ratio);
            entry["startup_ok"] = json!(ratio.map(|r| r <= STARTUP_RATIO_LIMIT));
            entry
        })
        .collect();
    json!({
        "what": "each release bootstrap's size, and the time from spawning it until its first \
                 GET /2018-06-01/runtime/invocation/next, against a minimal lambda_http \
                 hello-world built with the same profile and target",
        "emulator": "the Runtime API stub in keyport-bench (axum on 127.0.0.1), not cargo lambda watch",
        "lambda_dir": dir.display().to_string(),
        "runs": RUNS,
        "size_limit_bytes": SIZE_LIMIT_BYTES,
        "startup_ratio_limit": STARTUP_RATIO_LIMIT,
        "hello": hello,
        "functions": functions,
    })
}

/// The table's rows for a section `measure` returned: what, measured, baseline, ratio.
pub fn table_rows(section: &Value) -> Vec<[String; 4]> {
    if section.is_null() {
        return vec![[
            "5. start-up and bootstrap sizes".into(),
            "not measured".into(),
            String::new(),
            String::new(),
        ]];
    }
    if let Some(error) = section["error"].as_str() {
        return vec![[
            "5. start-up and bootstrap sizes".into(),
            format!("error: {error}"),
            String::new(),
            String::new(),
        ]];
    }
    let limit = section["size_limit_bytes"]
        .as_u64()
        .unwrap_or(SIZE_LIMIT_BYTES);
    let ratio_limit = section["startup_ratio_limit"]
        .as_f64()
        .unwrap_or(STARTUP_RATIO_LIMIT);
    let hello = &section["hello"];
    let functions = section["functions"].as_array().cloned().unwrap_or_default();
    let mut rows = Vec::new();
    for entry in &functions {
        rows.push([
            format!(
                "5. bootstrap size, {}",
                entry["name"].as_str().unwrap_or("?")
            ),
            megabytes(&entry["bytes"]),
            format!("{:.1} MB (limit)", limit as f64 / 1e6),
            match entry["bytes"].as_u64() {
                Some(bytes) => format!(
                    "{:.2} (target ≤ 1: {})",
                    bytes as f64 / limit as f64,
                    verdict(&entry["size_ok"])
                ),
                None => String::new(),
            },
        ]);
    }
    rows.push([
        "5. bootstrap size, lambda_http hello-world".into(),
        megabytes(&hello["bytes"]),
        String::new(),
        String::new(),
    ]);
    let baseline = match hello["startup_ms"]["median"].as_f64() {
        Some(ms) => format!("{ms:.2} ms (lambda_http hello-world)"),
        None => millis(hello),
    };
    for entry in &functions {
        rows.push([
            format!(
                "5. start-up until the first event is asked for, {}",
                entry["name"].as_str().unwrap_or("?")
            ),
            millis(entry),
            baseline.clone(),
            match entry["startup_ratio"].as_f64() {
                Some(ratio) => format!(
                    "{ratio:.2} (target ≤ {ratio_limit}: {})",
                    verdict(&entry["startup_ok"])
                ),
                None => String::new(),
            },
        ]);
    }
    rows
}

fn verdict(met: &Value) -> &'static str {
    if met.as_bool().unwrap_or(false) {
        "met"
    } else {
        "missed"
    }
}

fn megabytes(bytes: &Value) -> String {
    bytes
        .as_u64()
        .map(|b| format!("{:.2} MB", b as f64 / 1e6))
        .unwrap_or_else(|| "missing".into())
}

fn millis(entry: &Value) -> String {
    match (
        entry["startup_ms"]["median"].as_f64(),
        entry["error"].as_str(),
    ) {
        (Some(ms), _) => format!("{ms:.2} ms"),
        (None, Some(error)) => format!("error: {error}"),
        (None, None) => "n/a".into(),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn summary(times: &[f64]) -> Value {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let position = q * (sorted.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
    };
    if sorted.is_empty() {
        return Value::Null;
    }
    json!({
        "median": round3(quantile(0.5)),
        "min": round3(sorted[0]),
        "p90": round3(quantile(0.9)),
        "max": round3(sorted[sorted.len() - 1]),
        "runs": sorted.len(),
    })
}

/// A loopback port nothing listens on (bound, then released), for the AWS endpoints.
fn closed_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(9)
}

/// The Lambda Runtime API, as far as a process needs it until its first event.
struct RuntimeApiStub {
    addr: SocketAddr,
    signals: mpsc::UnboundedReceiver<Signal>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApiStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApiStub {
    async fn start() -> std::io::Result<Self> {
        let (sender, signals) = mpsc::unbounded_channel();
        let app = Router::new()
            .route(NEXT, get(next))
            .route(INIT_ERROR, post(init_error))
            .with_state(sender);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            signals,
            server,
        })
    }

    /// Spawns `bootstrap` and times it until its first `next` request; kills it afterwards.
    async fn time_start(
        &mut self,
        name: &str,
        bootstrap: &Path,
        closed_port: u16,
    ) -> Result<Duration, String> {
        while self.signals.try_recv().is_ok() {}
        let started = Instant::now();
        let mut child = tokio::process::Command::new(bootstrap)
            .env_clear()
            .envs(lambda_environment(name, self.addr, closed_port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bootstrap.display()))?;
        let outcome = tokio::select! {
            signal = self.signals.recv() => match signal {
                Some(Signal::Ready(at)) => Ok(at.saturating_duration_since(started)),
                Some(Signal::InitError(body)) => Err(format!("reported an init error: {body}")),
                None => Err("the Runtime API stub stopped".to_string()),
            },
            status = child.wait() => Err(format!(
                "exited ({}) before asking for an event",
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
            )),
            _ = tokio::time::sleep(READY_TIMEOUT) => {
                Err(format!("did not ask for an event within {READY_TIMEOUT:?}"))
            }
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        let Err(e) = outcome else { return outcome };
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            // The process is gone, so this reads what it wrote and reaches the end.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), pipe.read_to_end(&mut stderr)).await;
        }
        Err(format!(
            "{name}: {e}; stderr: {}",
            String::from_utf8_lossy(&stderr).trim()
        ))
    }
}

async fn next(State(signals): State<mpsc::UnboundedSender<Signal>>) -> StatusCode {
    let _ = signals.send(Signal::Ready(Instant::now()));
    // Never answered: the process is killed once it has asked.
    std::future::pending::<StatusCode>().await
}

async fn init_error(
    State(signals): State<mpsc::UnboundedSender<Signal>>,
    body: Bytes,
) -> StatusCode {
    let _ = signals.send(Signal::InitError(
        String::from_utf8_lossy(&body).into_owned(),
    ));
    StatusCode::ACCEPTED
}

/// What Lambda (and `infra/template.yaml`) put in a function's environment, with fake
/// credentials and every endpoint on loopback.
fn lambda_environment(name: &str, api: SocketAddr, closed_port: u16) -> Vec<(String, String)> {
    let function = format!("keyport-bench-{name}");
    let endpoint = format!("http://127.0.0.1:{closed_port}");
    let mut pairs: Vec<(&str, String)> = vec![
        // The Lambda runtime's own variables.
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef".into(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "Text".into()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
        // Fake credentials, no instance metadata, every AWS endpoint on a closed loopback port.
        ("AWS_ACCESS_KEY_ID", "AKIAKEYPORTBENCH0000".into()),
        ("AWS_SECRET_ACCESS_KEY", "keyport-bench-not-a-secret".into()),
        ("AWS_SESSION_TOKEN", "keyport-bench-session".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL", endpoint),
        // infra/template.yaml's Globals.
        ("RUST_LOG", "info".into()),
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
        ("KEYPORT_TABLE", "keyport-bench".into()),
        (
            "KEYPORT_KMS_KEY_ID",
            "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000".into(),
        ),
        ("KEYPORT_SECRET_PREFIX", "keyport/".into()),
        ("KEYPORT_ROLES_CLAIM", "cognito:groups".into()),
        ("KEYPORT_ADMIN_ROLES", "keyport-admins".into()),
        ("KEYPORT_REDIRECT_ALLOW_LIST", String::new()),
        (
            "KEYPORT_CALLBACK_URL",
            "https://bench.execute-api.us-east-1.amazonaws.com/oauth/callback".into(),
        ),
    ];
    if name == "console" {
        // The console function's own: its identity provider, and the secret's ARN (read on the
        // first sign-in, not at start-up).
        pairs.extend([
            (
                "KEYPORT_CONSOLE_OIDC_ISSUER",
                "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_BENCH".into(),
            ),
            ("KEYPORT_CONSOLE_OIDC_CLIENT_ID", "keyport-console".into()),
            (
                "KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:ConsoleSignInSecret-bench"
                    .into(),
            ),
        ]);
    }
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
