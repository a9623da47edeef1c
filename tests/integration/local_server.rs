//! The local server's own limits: a client that never finishes its request headers is cut off
//! after the header deadline, and past the connection cap a new connection waits until one
//! is freed (here: until the idle one is cut off), instead of either holding the server.

use keyport_tests::backends;
use keyport_tests::server::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 response (headers, then a Content-Length body), not waiting for the
/// connection to close.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .expect("a Content-Length");
            if seen.len() >= head_end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.expect("the answer");
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
}

/// A bound on a wait that must end by itself, so a regression fails instead of hanging.
async fn bounded<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{what} never happened"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_connections_beyond_the_cap_wait() {
    let backend = backends::embedded().await;
    let server = TestServer::start(
        &backend,
        &[
            "--header-read-timeout-seconds",
            "1",
            "--max-connections",
            "1",
        ],
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // A trickling client: headers started, never finished.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
        .await
        .unwrap();
    // A complete request on a second connection, beyond the cap of one: it is answered only
    // once the slow connection has been cut off and its slot freed.
    let mut fast = TcpStream::connect(&addr).await.unwrap();
    fast.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = bounded("the second request's answer", read_response(&mut fast)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // By then the slow connection is already closed by the server: a non-blocking read says
    // so at once (end of stream or reset), where an open one would have nothing to read.
    let slow = slow.into_std().unwrap();
    slow.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 64];
    match std::io::Read::read(&mut &slow, &mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => {
            panic!("the slow connection was still open when the next one was served: {other:?}")
        }
    }
    server.server.stop().await;
}

/// `keyport dev-token` pointed at a folder without the server's key says where it looked and
/// how to point it at the server, and makes no key there (a new key would sign tokens the
/// server refuses); pointed at the server's data directory it mints one the server accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_token_never_makes_a_key_of_its_own() {
    use clap::Parser;
    let elsewhere = tempfile::tempdir().unwrap();
    let data_dir = elsewhere.path().join("data");
    let cli = keyport_local::Cli::try_parse_from([
        "keyport",
        "dev-token",
        "--sub",
        "admin",
        "--roles",
        "keyport-admins",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .expect("valid arguments");
    let refused = keyport_local::run(cli).await.expect_err("no key there");
    assert!(
        refused.contains(&data_dir.display().to_string()),
        "{refused}"
    );
    assert!(refused.contains("--data-dir"), "{refused}");
    assert!(!data_dir.exists(), "dev-token made {}", data_dir.display());

    // The server makes its key at start; dev-token then reads it.
    let backend = keyport_tests::backends::embedded().await;
    let server = keyport_tests::server::TestServer::start(&backend, &[]).await;
    let cli = keyport_local::Cli::try_parse_from([
        "keyport",
        "dev-token",
        "--sub",
        "admin",
        "--roles",
        "keyport-admins",
        "--data-dir",
        server.data_dir().to_str().unwrap(),
    ])
    .expect("valid arguments");
    keyport_local::run(cli)
        .await
        .expect("a token from the server's own key");
    server.server.stop().await;
}

/// `GET path` on the local server with no bearer token: the status and the JSON body.
async fn get_without_a_token(
    server: &keyport_tests::server::TestServer,
    path: &str,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `GET /health` answers without a token, and says nothing but that the server is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_without_a_token_and_tells_nothing_else() {
    let backend = keyport_tests::backends::embedded().await;
    let server = keyport_tests::server::TestServer::start(&backend, &[]).await;
    let (status, body) = get_without_a_token(&server, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    server.server.stop().await;
}

/// `GET /ready` answers without a token once the store answers a read and the key service a
/// data key (on moto: DynamoDB and KMS), and says which, nothing more.
async fn ready_checks_the_store_and_the_keys(backend: keyport_tests::backends::Backend) {
    let server = keyport_tests::server::TestServer::start(&backend, &[]).await;
    let (status, body) = get_without_a_token(&server, "/ready").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "checks": {"store": "ok", "keys": "ok"}})
    );
    if let Some(kms) = &backend.kms_requests {
        assert!(kms.count() >= 1, "the keys check reached KMS");
    }
    server.server.stop().await;
}

crate::on_both_backends!(ready_checks_the_store_and_the_keys);
