//! What every benchmark shares: medians, the machine, Keyport assembled over the embedded
//! back-end, and the principals the benchmarks act as.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use keyport_shared::config::{self, Backends, CommonSettings};
use keyport_shared::domain::{ConnectionId, Principal, Role, Subject};
use keyport_shared::service::Keyport;
use serde_json::{Value, json};

/// The workspace root (`tests/bench/../..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "a median of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// nproc, the CPU model, the kernel, the git commit (and whether the tree had changes), the date.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|status| !status.is_empty())
        .unwrap_or(false);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({
        "nproc": nproc,
        "cpu_model": cpu_model,
        "kernel": kernel,
        "load_average_at_start": load_average(),
        "git_commit": commit,
        "git_tree_modified": dirty,
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures: other work on the machine during a run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Parser)]
struct Settings {
    #[command(flatten)]
    common: CommonSettings,
}

/// Keyport's settings as the local server reads them, in local development mode (the
/// benchmarks' authorization server is plain http on loopback).
pub fn common_settings() -> CommonSettings {
    Settings::parse_from(["keyport", "--local-development"]).common
}

/// Keyport assembled as the local server and the Lambda functions assemble it.
pub fn keyport_over(backends: Backends) -> Keyport {
    let callback: url::Url = "http://127.0.0.1:8080/oauth/callback"
        .parse()
        .expect("a URL");
    config::keyport(backends, &common_settings(), callback).expect("Keyport assembles")
}

/// Keyport over the embedded back-end in `data_dir` (database file and master key), as
/// `keyport serve` builds it.
pub fn embedded_keyport(data_dir: &Path) -> Arc<Keyport> {
    let backends = config::embedded_backends(data_dir).expect("the embedded back-end opens");
    Arc::new(keyport_over(backends))
}

pub fn principal(subject: &str, roles: &[&str]) -> Principal {
    Principal::new(
        Subject::parse(subject).expect("a subject"),
        roles.iter().map(|r| Role::parse(r).expect("a role")),
    )
}

/// The administrator the sample events name (`events/token-get.json`).
pub fn admin() -> Principal {
    principal("admin@example.com", &["keyport-admins", "bots"])
}

/// Creates a connection through the service (as `POST /connections` does) and returns its id.
pub async fn create_connection(keyport: &Keyport, body: Value) -> ConnectionId {
    let input = serde_json::from_value(body).expect("a valid connection request");
    keyport
        .create_connection(&admin(), input)
        .await
        .expect("the connection is created")
        .id
}

/// `n` formatted with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Stores a valid user token holding `secrets`, due at `due_at` and expiring at `expires_at`,
/// sealed with the Keyport's own cipher and written through the store port directly (as a
/// benchmark's starting data, not through a flow).
pub async fn store_due_token(
    keyport: &Keyport,
    key: &keyport_shared::ports::TokenKey,
    secrets: &keyport_shared::domain::TokenSecrets,
    due_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
) {
    let sealed = keyport
        .cipher
        .seal_token(key, secrets)
        .await
        .expect("the token seals");
    let now = chrono::Utc::now();
    let record = keyport_shared::domain::StoredToken {
        connection_id: key.connection_id.clone(),
        owner: key.owner.clone(),
        status: keyport_shared::domain::TokenStatus::Valid,
        token_type: "Bearer".into(),
        scope: Some("api:read".into()),
        expires_at: Some(expires_at),
        refresh_due_at: Some(due_at),
        has_refresh_token: secrets.refresh_token.is_some(),
        last_error: None,
        lease: None,
        issued_for: None,
        provider_asked_at: None,
        grant_ends_at: None,
        grant_end_reported: false,
        filed_due_at: None,
        created_at: now,
        updated_at: now,
        sealed,
        version: 0,
    };
    keyport
        .store
        .put_token(&record, keyport_shared::ports::Expect::Absent)
        .await
        .expect("the token is stored");
}
