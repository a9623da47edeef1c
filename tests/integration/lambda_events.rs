//! The sample events in `events/`, parsed by the real `lambda_http` and `aws_lambda_events`
//! types and fed to each function's handler exactly as the Lambda runtime would.

use std::sync::Arc;

use axum::body::to_bytes;
use keyport_shared::http::{self, ApiGatewayAuthorizer, Function};
use keyport_shared::ports::Expect;
use keyport_shared::service::{Keyport, OwnerRequest};
use keyport_tests::backends;
use keyport_tests::keyport::{admin, bot, keyport};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::workspace_root;
use serde_json::{Value, json};
use tower::ServiceExt;

const PLACEHOLDER_ID: &str = "con_0123456789abcdef0123456789abcdef";

/// The event file as text, with the placeholder connection id replaced.
fn event_text(file: &str, id: Option<&str>) -> String {
    let text = std::fs::read_to_string(workspace_root().join("events").join(file))
        .expect("the event file");
    match id {
        Some(id) => text.replace(PLACEHOLDER_ID, id),
        None => text,
    }
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }
}

/// Runs one API Gateway event through `function`'s router.
async fn invoke(keyport: &Arc<Keyport>, function: Function, event: &str) -> Reply {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let authenticator = Arc::new(ApiGatewayAuthorizer {
        roles_claim: "cognito:groups".into(),
    });
    let response = http::router(keyport.clone(), authenticator, &[function])
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn peer_connection(keyport: &Keyport, peer: &OidcPeer, grant: &str) -> String {
    let input = serde_json::from_value(json!({
        "name": format!("peer-{grant}"), "provider": "custom", "issuer": peer.issuer,
        "client_id": "keyport-basic", "client_secret": CLIENT_SECRET, "grant_type": grant,
        "scopes": "api:read", "invited_roles": ["bots"]
    }))
    .unwrap();
    keyport
        .create_connection(&admin(), input)
        .await
        .unwrap()
        .id
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_event_reaches_its_handler() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let peer = OidcPeer::start(PeerOptions::default());
    let machine = peer_connection(&keyport, &peer, "client_credentials").await;
    let interactive = peer_connection(&keyport, &peer, "authorization_code").await;

    let providers = invoke(
        &keyport,
        Function::Connections,
        &event_text("providers-list.json", None),
    )
    .await;
    assert_eq!(providers.status, 200, "{}", providers.body);
    assert!(providers.json()["providers"].as_array().unwrap().len() >= 10);

    let created = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-create.json", None),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["client_secret_set"], true);
    assert!(
        !created.body.contains("example-secret"),
        "the client secret is write-only"
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let listed = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-list.json", None),
    )
    .await;
    assert_eq!(listed.status, 200);
    assert!(
        listed.json()["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str())
    );
    let got = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-get.json", Some(&id)),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["name"], "Acme CRM");
    let updated = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-update.json", Some(&id)),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["description"], "The CRM");
    assert_eq!(updated.json()["version"], 2);
    let tested = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-test.json", Some(&machine)),
    )
    .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.json()["ok"], true, "{}", tested.body);

    let started = invoke(
        &keyport,
        Function::Authorize,
        &event_text("authorize-start.json", Some(&interactive)),
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(
        started.json()["authorization_url"]
            .as_str()
            .unwrap()
            .starts_with(&peer.issuer)
    );

    let callback = invoke(
        &keyport,
        Function::Callback,
        &event_text("callback.json", None),
    )
    .await;
    assert_eq!(callback.status, 400, "an unknown state: {}", callback.body);
    assert!(callback.content_type.starts_with("text/html"));

    let token = invoke(
        &keyport,
        Function::Token,
        &event_text("token-get.json", Some(&machine)),
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    assert!(!token.json()["access_token"].as_str().unwrap().is_empty());
    let refreshed = invoke(
        &keyport,
        Function::Token,
        &event_text("token-refresh.json", Some(&machine)),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let mine = invoke(
        &keyport,
        Function::Token,
        &event_text("me-connections.json", None),
    )
    .await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.json()["connections"].as_array().unwrap().len(), 3);
    let disconnected = invoke(
        &keyport,
        Function::Token,
        &event_text("token-delete.json", Some(&machine)),
    )
    .await;
    assert_eq!(disconnected.status, 200, "{}", disconnected.body);
    assert_eq!(disconnected.json()["disconnected"], true);

    let deleted = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-delete.json", Some(&id)),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-get.json", Some(&id)),
    )
    .await;
    assert_eq!(gone.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_claims_or_without_the_role_are_refused() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let mut unauthenticated: Value =
        serde_json::from_str(&event_text("connections-list.json", None)).unwrap();
    unauthenticated["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let reply = invoke(
        &keyport,
        Function::Connections,
        &unauthenticated.to_string(),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.json()["error"], "unauthenticated");

    let mut bot_only: Value =
        serde_json::from_str(&event_text("connections-list.json", None)).unwrap();
    bot_only["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = json!("[bots]");
    let reply = invoke(&keyport, Function::Connections, &bot_only.to_string()).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.json()["error"], "forbidden");

    // A route of another function answers 404 in this function's router.
    let reply = invoke(
        &keyport,
        Function::Token,
        &event_text("connections-list.json", None),
    )
    .await;
    assert_eq!(reply.status, 404);
}

fn runtime_context(deadline_ms: u64) -> lambda_runtime::Context {
    let mut headers = lambda_http::http::HeaderMap::new();
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline_ms.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:refresher"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-aws-request-id",
        "8476a536-e9f4-11e8-9739-2dfe598c3fcd".parse().unwrap(),
    );
    lambda_runtime::Context::new(
        "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
        Arc::new(lambda_runtime::Config::default()),
        &headers,
    )
    .expect("a runtime context")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_event_refreshes_due_tokens_before_its_deadline() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let peer = OidcPeer::start(PeerOptions {
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let id = peer_connection(&keyport, &peer, "client_credentials").await;
    let id = keyport_shared::domain::ConnectionId::parse(&id).unwrap();
    keyport
        .access_token(&bot(), &id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let key = keyport_shared::ports::TokenKey {
        connection_id: id.clone(),
        owner: keyport_shared::domain::Owner::Shared,
    };
    let mut due = keyport.store.get_token(&key).await.unwrap().unwrap();
    let before_version = due.version;
    let now = chrono::Utc::now();
    due.refresh_due_at = Some(now - chrono::Duration::seconds(1));
    due.expires_at = Some(now + chrono::Duration::seconds(10));
    let due = keyport
        .store
        .put_token(&due, Expect::Version(before_version))
        .await
        .unwrap();

    let payload: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_str(&event_text("refresher-scheduled.json", None))
            .expect("an EventBridge event");
    let in_a_minute = (now.timestamp_millis() + 60_000) as u64;
    let event = lambda_runtime::LambdaEvent::new(payload, runtime_context(in_a_minute));
    let report = keyport_shared::lambda::handle_scheduled_event(&keyport, event, 4)
        .await
        .unwrap();
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(report.failed, 0);
    let after = keyport.store.get_token(&key).await.unwrap().unwrap();
    assert!(after.version > due.version);
    assert!(
        after.expires_at > due.expires_at,
        "a new token with a later expiry"
    );

    // With the deadline already at hand, a run stops at once and leaves the work.
    let mut due_again = after.clone();
    due_again.refresh_due_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    keyport
        .store
        .put_token(&due_again, Expect::Version(after.version))
        .await
        .unwrap();
    let payload = serde_json::from_str(&event_text("refresher-scheduled.json", None)).unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let report = keyport_shared::lambda::handle_scheduled_event(
        &keyport,
        lambda_runtime::LambdaEvent::new(payload, runtime_context(now_ms)),
        4,
    )
    .await
    .unwrap();
    assert!(report.stopped_early, "{report:?}");
    assert_eq!(report.refreshed, 0);
}
