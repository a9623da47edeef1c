//! The description the local server serves and `keyport openapi` writes: the one generated from
//! the routes and wire types (its own tests are keyport-shared's `http::openapi`).

use clap::Parser;
use keyport_local::Cli;
use keyport_shared::http::openapi;
use keyport_tests::backends;
use keyport_tests::server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_serves_the_generated_description() {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let response = reqwest::get(format!("{}/openapi.json", server.base))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the description's media type"
    );
    assert_eq!(response.text().await.unwrap(), openapi::json());
    server.server.stop().await;
}

#[tokio::test]
async fn keyport_openapi_writes_the_same_description() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    let cli = Cli::try_parse_from(["keyport", "openapi", "--output", file.to_str().unwrap()])
        .expect("valid arguments");
    keyport_local::run(cli).await.expect("keyport openapi");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, format!("{}\n", openapi::json()));
    let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(parsed["openapi"], "3.1.0");
    assert!(
        keyport_local::run(
            Cli::try_parse_from(["keyport", "openapi", "--output", "/nonexistent/dir/x.json"])
                .unwrap()
        )
        .await
        .is_err()
    );
}
