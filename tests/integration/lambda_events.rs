//! The sample events in `events/`, parsed by the real `lambda_http` and `aws_lambda_events`
//! types and fed to each function's handler exactly as the Lambda runtime would.

use std::sync::Arc;

use axum::body::to_bytes;
use axum::http::HeaderMap;
use keyport_shared::domain::{ConnectionId, Owner};
use keyport_shared::http::{self, ApiGatewayAuthorizer, Function};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_shared::service::{Backoff, Keyport, OwnerRequest};
use keyport_tests::backends;
use keyport_tests::keyport::{admin, bot, keyport};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::workspace_root;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The connection id the sample events carry in their paths.
const PLACEHOLDER_ID: &str = "con_0123456789abcdef0123456789abcdef";

/// The event file as text, with the placeholder connection id (in `rawPath`,
/// `requestContext.http.path` and `pathParameters`) replaced by `id`.
pub(crate) fn event_text(file: &str, id: Option<&str>) -> String {
    let text = std::fs::read_to_string(workspace_root().join("events").join(file))
        .expect("the event file");
    match id {
        Some(id) => text.replace(PLACEHOLDER_ID, id),
        None => text,
    }
}

pub(crate) fn event_json(file: &str, id: Option<&str>) -> Value {
    serde_json::from_str(&event_text(file, id)).expect("the event file is JSON")
}

/// The sample `POST /oauth/complete` event carrying `completion`.
pub(crate) fn confirmation_event(completion: &str) -> String {
    let mut event = event_json("oauth-complete.json", None);
    event["body"] = json!(json!({ "completion": completion }).to_string());
    event.to_string()
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header"))
            .unwrap_or_default()
    }

    /// An error in Keyport's shape: `{"error": "<code>", "message": "<sentence>"}`.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.header("content-type").starts_with("application/json"));
        let body = self.json();
        assert_eq!(body["error"], code, "{}", self.body);
        assert!(
            !body["message"].as_str().unwrap_or_default().is_empty(),
            "an error has a message: {}",
            self.body
        );
    }
}

/// Runs one API Gateway event through `function`'s router, as `lambda_http::run` would.
pub(crate) async fn invoke(keyport: &Arc<Keyport>, function: Function, event: &str) -> Reply {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let authenticator = Arc::new(ApiGatewayAuthorizer {
        roles_claim: "cognito:groups".into(),
    });
    let response = http::router(keyport.clone(), authenticator, &[function])
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Whether `value` has an object key `name` at any depth.
fn has_key(value: &Value, name: &str) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(key, inner)| key == name || has_key(inner, name)),
        Value::Array(items) => items.iter().any(|inner| has_key(inner, name)),
        _ => false,
    }
}

async fn peer_connection(keyport: &Keyport, peer: &OidcPeer, grant: &str, scopes: &str) -> String {
    let input = serde_json::from_value(json!({
        "name": format!("peer-{grant}"), "provider": "custom", "issuer": peer.issuer,
        "client_id": "keyport-basic", "client_secret": CLIENT_SECRET, "grant_type": grant,
        "scopes": scopes, "invited_roles": ["bots"]
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
    let machine = peer_connection(&keyport, &peer, "client_credentials", "api:read").await;
    let interactive = peer_connection(
        &keyport,
        &peer,
        "authorization_code",
        "openid,offline_access,api:read",
    )
    .await;

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
        !has_key(&created.json(), "client_secret"),
        "the client secret is write-only: {}",
        created.body
    );
    assert!(!created.body.contains("example-secret"));
    assert_eq!(
        created.json()["token_url"],
        "https://login.example.com/oauth2/token"
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_ne!(id, PLACEHOLDER_ID);

    let listed = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-list.json", None),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let connections = listed.json()["connections"].as_array().unwrap().clone();
    assert_eq!(connections.len(), 3, "{}", listed.body);
    assert!(connections.iter().any(|c| c["id"] == id.as_str()));
    assert!(!has_key(&listed.json(), "client_secret"));

    let got = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-get.json", Some(&id)),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["id"], id.as_str());
    assert_eq!(got.json()["name"], "Acme CRM");
    assert_eq!(got.json()["version"], 1);

    let updated = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-update.json", Some(&id)),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["description"], "The CRM");
    assert_eq!(updated.json()["version"], 2);
    let reread = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-get.json", Some(&id)),
    )
    .await;
    assert_eq!(reread.status, 200, "{}", reread.body);
    assert_eq!(
        reread.json()["description"],
        "The CRM",
        "the change is stored"
    );
    assert_eq!(reread.json()["invited_roles"], json!(["bots", "reporting"]));
    assert_eq!(reread.json()["client_secret_set"], true);

    let tested = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-test.json", Some(&machine)),
    )
    .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.json()["ok"], true, "{}", tested.body);

    // The outbound-proxy setting: set (the password never answered), read, removed. Removed
    // at once: the proxy it names does not exist.
    let set = invoke(
        &keyport,
        Function::Connections,
        &event_text("settings-outbound-proxy-put.json", None),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["password_set"], true);
    assert!(!set.body.contains("example-proxy-password"));
    let read = invoke(
        &keyport,
        Function::Connections,
        &event_text("settings-outbound-proxy-get.json", None),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), set.json());
    let removed = invoke(
        &keyport,
        Function::Connections,
        &event_text("settings-outbound-proxy-delete.json", None),
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    invoke(
        &keyport,
        Function::Connections,
        &event_text("settings-outbound-proxy-get.json", None),
    )
    .await
    .assert_error(404, "not_found");

    // The public callback route, with a state nobody issued: an HTML page, not JSON.
    let callback = invoke(
        &keyport,
        Function::Callback,
        &event_text("callback.json", None),
    )
    .await;
    assert_eq!(callback.status, 400, "an unknown state: {}", callback.body);
    assert!(callback.header("content-type").starts_with("text/html"));
    // The same route by form post (the hybrid flow's answer), with a state nobody issued.
    let posted = invoke(
        &keyport,
        Function::Callback,
        &event_text("callback-form-post.json", None),
    )
    .await;
    assert_eq!(posted.status, 400, "an unknown state: {}", posted.body);
    assert!(posted.header("content-type").starts_with("text/html"));
    assert!(
        posted.body.contains("start the authorization again"),
        "{}",
        posted.body
    );

    // Start an authorization, consent at the peer, and hand its answer to the callback event.
    let started = invoke(
        &keyport,
        Function::Authorize,
        &event_text("authorize-start.json", Some(&interactive)),
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let authorization_url = started.json()["authorization_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(authorization_url.starts_with(&peer.issuer));
    assert!(!started.json()["state"].as_str().unwrap().is_empty());
    let query = peer.authorize_headlessly(&authorization_url).await;
    let mut live_callback = event_json("callback.json", None);
    live_callback["rawQueryString"] = json!(query);
    live_callback["queryStringParameters"] = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let connected = invoke(&keyport, Function::Callback, &live_callback.to_string()).await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    assert!(connected.header("content-type").starts_with("text/html"));
    let replayed = invoke(&keyport, Function::Callback, &live_callback.to_string()).await;
    assert_eq!(replayed.status, 400, "a state is single use");
    let unknown = invoke(
        &keyport,
        Function::Callback,
        &event_text("oauth-complete.json", None),
    )
    .await;
    unknown.assert_error(400, "invalid_state");
    let confirmed = invoke(
        &keyport,
        Function::Callback,
        &confirmation_event(&keyport_tests::keyport::completion_on_page(&connected.body)),
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.json()["connection_id"], interactive.as_str());

    let token = invoke(
        &keyport,
        Function::Token,
        &event_text("token-get.json", Some(&machine)),
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let view = token.json();
    assert!(!view["access_token"].as_str().unwrap().is_empty());
    assert_eq!(view["connection_id"], machine.as_str());
    assert_eq!(view["owner"], "shared");
    let refreshed = invoke(
        &keyport,
        Function::Token,
        &event_text("token-refresh.json", Some(&machine)),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_ne!(
        refreshed.json()["access_token"],
        view["access_token"],
        "a forced refresh gets a new token"
    );
    let reset = invoke(
        &keyport,
        Function::Token,
        &event_text("token-reset.json", Some(&machine)),
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_ne!(
        reset.json()["access_token"],
        refreshed.json()["access_token"],
        "a reset gets a new token"
    );
    assert_eq!(reset.header("keyport-previous-token"), "revoked");
    invoke(
        &keyport,
        Function::Token,
        &event_text("token-reset.json", Some(&interactive)),
    )
    .await
    .assert_error(409, "not_client_credentials");

    let mine = invoke(
        &keyport,
        Function::Token,
        &event_text("me-connections.json", None),
    )
    .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let usable = mine.json()["connections"].as_array().unwrap().clone();
    assert_eq!(usable.len(), 3, "{}", mine.body);
    for connected_id in [&machine, &interactive] {
        let entry = usable
            .iter()
            .find(|c| c["id"] == connected_id.as_str())
            .unwrap_or_else(|| panic!("{connected_id} in {}", mine.body));
        assert_eq!(entry["shared_token"], "valid", "{}", mine.body);
    }

    let disconnected = invoke(
        &keyport,
        Function::Token,
        &event_text("token-delete.json", Some(&machine)),
    )
    .await;
    assert_eq!(disconnected.status, 200, "{}", disconnected.body);
    assert_eq!(disconnected.json()["disconnected"], true);
    let key = TokenKey {
        connection_id: ConnectionId::parse(&machine).unwrap(),
        owner: Owner::Shared,
    };
    assert!(keyport.store.get_token(&key).await.unwrap().is_none());

    // A person's own token, listed for the administrator (status, never the token), then ended.
    let own = keyport
        .access_token(
            &bot(),
            &ConnectionId::parse(&machine).unwrap(),
            OwnerRequest::User,
            None,
        )
        .await
        .unwrap();
    let people = invoke(
        &keyport,
        Function::Token,
        &event_text("token-list-users.json", Some(&machine)),
    )
    .await;
    assert_eq!(people.status, 200, "{}", people.body);
    assert_eq!(
        people.json()["tokens"][0]["subject"],
        "bot-1",
        "{}",
        people.body
    );
    assert!(!people.body.contains(own.access_token.expose_secret()));
    let ended = invoke(
        &keyport,
        Function::Token,
        &event_text("token-delete-user.json", Some(&machine)),
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.json()["disconnected"], true);
    let key = TokenKey {
        connection_id: ConnectionId::parse(&machine).unwrap(),
        owner: Owner::User(bot().subject),
    };
    assert!(keyport.store.get_token(&key).await.unwrap().is_none());

    let deleted = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-delete.json", Some(&id)),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(deleted.body.is_empty());
    let gone = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-get.json", Some(&id)),
    )
    .await;
    gone.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_and_import_events_reach_their_handlers() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let planned = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-import.json", None),
    )
    .await;
    assert_eq!(planned.status, 200, "{}", planned.body);
    assert_eq!(planned.json()["dry_run"], true);
    assert_eq!(planned.json()["applied"], false);
    assert_eq!(
        planned.json()["connections"],
        json!([{"name": "Acme CRM", "action": "create"}])
    );
    assert!(!planned.body.contains("example-secret"));

    // The dry run wrote nothing: the export is empty; the same event applied, it is not.
    let empty = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-export.json", None),
    )
    .await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(
        empty.json(),
        json!({"keyport_export": 1, "connections": []})
    );
    let mut apply = event_json("connections-import.json", None);
    apply["rawQueryString"] = json!("dry_run=false");
    apply["queryStringParameters"] = json!({"dry_run": "false"});
    let applied = invoke(&keyport, Function::Connections, &apply.to_string()).await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(applied.json()["applied"], true);
    let exported = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-export.json", None),
    )
    .await;
    assert_eq!(exported.status, 200, "{}", exported.body);
    let connections = exported.json()["connections"].clone();
    assert_eq!(connections[0]["name"], "Acme CRM");
    assert_eq!(connections[0]["client_id"], "acme-client");
    assert!(!has_key(&exported.json(), "client_secret"));
    assert!(!has_key(&exported.json(), "id") && !has_key(&exported.json(), "version"));
    assert!(!exported.body.contains("example-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_nobody_answers_is_a_json_error() {
    let backend = backends::embedded().await;
    // One attempt: the error comes back at once instead of after the backoff.
    let keyport = Arc::new(keyport(&backend, |settings| {
        settings.backoff = Backoff {
            attempts: 1,
            ..Backoff::default()
        }
    }));
    let nowhere = format!(
        "http://127.0.0.1:{}/oauth2/token",
        keyport_tests::free_port()
    );
    let input = serde_json::from_value(json!({
        "name": "Nowhere", "grant_type": "client_credentials", "client_id": "nowhere",
        "client_secret": "nowhere-secret", "token_url": nowhere, "scopes": "api:read",
        "invited_roles": ["bots"]
    }))
    .unwrap();
    let id = keyport
        .create_connection(&admin(), input)
        .await
        .unwrap()
        .id
        .to_string();

    let reply = invoke(
        &keyport,
        Function::Token,
        &event_text("token-get.json", Some(&id)),
    )
    .await;
    assert!(
        (400..600).contains(&reply.status),
        "{} {}",
        reply.status,
        reply.body
    );
    assert!(reply.header("content-type").starts_with("application/json"));
    let body = reply.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        reply.body
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("nowhere-secret"));

    // An unknown connection id (the placeholder itself) is a 404 in the same shape.
    let unknown = invoke(
        &keyport,
        Function::Token,
        &event_text("token-get.json", None),
    )
    .await;
    unknown.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_claims_or_without_the_role_are_refused() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));

    let mut unauthenticated = event_json("connections-list.json", None);
    unauthenticated["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer")
        .expect("the sample event has an authorizer block");
    let reply = invoke(
        &keyport,
        Function::Connections,
        &unauthenticated.to_string(),
    )
    .await;
    reply.assert_error(401, "unauthenticated");
    assert_eq!(reply.header("www-authenticate"), "Bearer");

    // The same on another function's route: nothing is served without claims.
    let mut unauthenticated = event_json("me-connections.json", None);
    unauthenticated["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let reply = invoke(&keyport, Function::Token, &unauthenticated.to_string()).await;
    reply.assert_error(401, "unauthenticated");
    assert_eq!(reply.header("www-authenticate"), "Bearer");

    // Claims without the administrators' role, on an administrators' route.
    for file in ["connections-list.json", "connections-create.json"] {
        let mut bot_only = event_json(file, None);
        bot_only["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] =
            json!("[bots]");
        let reply = invoke(&keyport, Function::Connections, &bot_only.to_string()).await;
        reply.assert_error(403, "forbidden");
    }
    assert!(
        keyport
            .list_connections(&admin(), keyport_shared::ports::PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty(),
        "the refused create wrote nothing"
    );
    // …while the same claims may list the providers.
    let mut bot_only = event_json("providers-list.json", None);
    bot_only["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = json!("[bots]");
    let reply = invoke(&keyport, Function::Connections, &bot_only.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A route of another function answers 404 in this function's router.
    let reply = invoke(
        &keyport,
        Function::Token,
        &event_text("connections-list.json", None),
    )
    .await;
    reply.assert_error(404, "not_found");
}

/// An application's token as API Gateway hands its claims over (Cognito's client-credentials
/// access token: no groups, a `scope` string): refused until the connection invites its client
/// id, then served the shared token; and never more than its scope allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_event_reads_only_what_it_is_invited_to_and_scoped_for() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let peer = OidcPeer::start(PeerOptions::default());
    let machine = peer_connection(&keyport, &peer, "client_credentials", "api:read").await;
    let event = event_json("token-get-application.json", Some(&machine));
    let app = event["requestContext"]["authorizer"]["jwt"]["claims"]["client_id"]
        .as_str()
        .expect("the sample's client id")
        .to_owned();

    let refused = invoke(&keyport, Function::Token, &event.to_string()).await;
    refused.assert_error(403, "forbidden");

    let id = keyport_shared::domain::ConnectionId::parse(&machine).unwrap();
    let current = keyport.store.get_connection(&id).await.unwrap().unwrap();
    let invite =
        serde_json::from_value(json!({"invited_applications": [app], "version": current.version}))
            .unwrap();
    keyport
        .update_connection(&admin(), &id, invite)
        .await
        .unwrap();
    let served = invoke(&keyport, Function::Token, &event.to_string()).await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.json()["owner"], "shared");

    // The same application with a scope for something else reads nothing.
    let mut auditing = event.clone();
    auditing["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] =
        json!("keyport/audit.read");
    let refused = invoke(&keyport, Function::Token, &auditing.to_string()).await;
    refused.assert_error(403, "forbidden");
    assert!(
        refused.body.contains("keyport/tokens.read"),
        "the refusal names the missing scope: {}",
        refused.body
    );
}

/// A Lambda runtime context for an invocation that must end at `deadline_ms` (epoch ms).
fn runtime_context(deadline_ms: u64) -> lambda_runtime::Context {
    let mut context = lambda_runtime::Context::default();
    context.request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into();
    context.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:keyport-refresher".into();
    context.deadline = deadline_ms;
    context
}

pub(crate) fn scheduled_event(
    deadline_ms: u64,
) -> lambda_runtime::LambdaEvent<aws_lambda_events::eventbridge::EventBridgeEvent> {
    let payload: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_str(&event_text("refresher-scheduled.json", None))
            .expect("an EventBridge event");
    assert_eq!(payload.detail_type, "Scheduled Event");
    assert_eq!(payload.source, "aws.events");
    lambda_runtime::LambdaEvent::new(payload, runtime_context(deadline_ms))
}

pub(crate) fn in_ms(from_now: chrono::Duration) -> u64 {
    (chrono::Utc::now() + from_now).timestamp_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_event_refreshes_due_tokens_before_its_deadline() {
    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let peer = OidcPeer::start(PeerOptions {
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let id = peer_connection(&keyport, &peer, "client_credentials", "api:read").await;
    let id = ConnectionId::parse(&id).unwrap();
    keyport
        .access_token(&bot(), &id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let key = TokenKey {
        connection_id: id.clone(),
        owner: Owner::Shared,
    };
    let stored = keyport.store.get_token(&key).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    assert!(
        stored.refresh_due_at.is_some_and(|due| due > now),
        "a fresh 60 s token is due later: {:?}",
        stored.refresh_due_at
    );

    // Nothing is due yet: a run refreshes nothing and leaves the token alone.
    let report = keyport_shared::lambda::handle_scheduled_event(
        &keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(60))),
        4,
    )
    .await
    .unwrap();
    assert_eq!(report.refreshed, 0, "{report:?}");
    assert!(!report.stopped_early);
    let untouched = keyport.store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(untouched.version, stored.version);

    // Make it due.
    let mut due = untouched;
    let now = chrono::Utc::now();
    due.refresh_due_at = Some(now - chrono::Duration::seconds(1));
    due.expires_at = Some(now + chrono::Duration::seconds(10));
    let due = keyport
        .store
        .put_token(&due, Expect::Version(stored.version))
        .await
        .unwrap();

    let report = keyport_shared::lambda::handle_scheduled_event(
        &keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(60))),
        4,
    )
    .await
    .unwrap();
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(!report.stopped_early);
    let after = keyport.store.get_token(&key).await.unwrap().unwrap();
    assert!(after.version > due.version);
    assert!(
        after.expires_at > due.expires_at,
        "a new token with a later expiry"
    );
    assert!(after.refresh_due_at.is_some_and(|d| d > chrono::Utc::now()));
    // A routine refresh is a log line, not a stored audit event.
    let trail = keyport
        .store
        .list_audit(
            &key.connection_id,
            keyport_shared::ports::PageRequest::first(100),
        )
        .await
        .unwrap();
    assert!(
        !trail
            .items
            .iter()
            .any(|event| event.action == keyport_shared::domain::AuditAction::TokenRefreshed),
        "{:?}",
        trail.items
    );

    // With the deadline already passed, a run stops at once and leaves the work.
    let mut due_again = after.clone();
    due_again.refresh_due_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    let due_again = keyport
        .store
        .put_token(&due_again, Expect::Version(after.version))
        .await
        .unwrap();
    let report = keyport_shared::lambda::handle_scheduled_event(
        &keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(-1))),
        4,
    )
    .await
    .unwrap();
    assert!(report.stopped_early, "{report:?}");
    assert_eq!(report.refreshed, 0, "{report:?}");
    let left = keyport.store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(left.version, due_again.version, "the token was left alone");
}

/// Runs one API Gateway event through `router` (the console's), as `lambda_http::run` would.
pub(crate) async fn invoke_router(router: axum::Router, event: &str) -> Reply {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Where the sample events say the API is.
pub(crate) const API_ORIGIN: &str = "https://abc123.execute-api.us-east-1.amazonaws.com";

/// The console's event `file` carrying `cookies` (as API Gateway's payload 2.0 does: a list
/// beside the headers) and `query`.
pub(crate) fn console_event(file: &str, cookies: &[String], query: Option<&str>) -> String {
    let mut event = event_json(file, None);
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if let Some(query) = query {
        event["rawQueryString"] = json!(query);
        event["queryStringParameters"] = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    event.to_string()
}

/// The `name=value` of each cookie a reply sets.
pub(crate) fn cookies_set(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_event_reaches_the_console_function() {
    use keyport_shared::http::console::{self, CONTENT_SECURITY_POLICY};
    use keyport_tests::console::{ClientSecretFrom, console_function};

    let backend = backends::embedded().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let callback = format!("{API_ORIGIN}/console/signin/callback");
    let peer = OidcPeer::start(PeerOptions {
        console_redirect_uri: Some(callback.clone()),
        ..PeerOptions::default()
    });
    let router = console::router(console_function(
        keyport,
        &format!("{API_ORIGIN}/oauth/callback"),
        &peer.issuer,
        &ClientSecretFrom::Setting,
        None,
    ));

    let page = invoke_router(router.clone(), &event_text("console-page.json", None)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.header("content-type").starts_with("text/html"));
    assert_eq!(
        page.header("content-security-policy"),
        CONTENT_SECURITY_POLICY
    );
    assert!(page.body.contains("/console/assets/console.js"));

    let asset = invoke_router(router.clone(), &event_text("console-asset.json", None)).await;
    assert_eq!(asset.status, 200, "{}", asset.body);
    assert!(asset.header("content-type").starts_with("text/javascript"));
    assert_eq!(
        asset.header("content-security-policy"),
        CONTENT_SECURITY_POLICY
    );

    let anonymous = invoke_router(router.clone(), &event_text("console-session.json", None)).await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.body);
    assert_eq!(anonymous.json()["signed_in"], false);
    assert_eq!(
        anonymous.json()["sign_in"],
        json!({"oidc": true, "links": false}),
        "on AWS people sign in through the identity provider only"
    );

    let signin = invoke_router(router.clone(), &event_text("console-signin.json", None)).await;
    assert_eq!(signin.status, 303, "{}", signin.body);
    let location = signin.header("location").to_owned();
    assert!(
        location.starts_with(&format!("{}/auth?", peer.issuer)),
        "{location}"
    );
    let params: std::collections::BTreeMap<String, String> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["redirect_uri"], callback);
    // Over https the binding cookie is Secure.
    let binding = signin.header("set-cookie").to_owned();
    assert!(
        binding.contains("Secure") && binding.contains("HttpOnly"),
        "{binding}"
    );

    // The provider's answer, as the browser brings it back with its cookie: a session.
    let query = peer.authorize_headlessly_to(&location, &callback).await;
    let back = invoke_router(
        router.clone(),
        &console_event("console-signin.json", &cookies_set(&signin), Some(&query))
            .replace("\"/console/signin\"", "\"/console/signin/callback\""),
    )
    .await;
    assert_eq!(back.status, 303, "{}", back.body);
    let session_cookie = cookies_set(&back)
        .into_iter()
        .find(|c| c.starts_with("__Secure-keyport_console="))
        .expect("a __Secure- session cookie over https");
    let session = invoke_router(
        router,
        &console_event("console-session.json", &[session_cookie], None),
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.body);
    assert_eq!(session.json()["signed_in"], true, "{}", session.body);
    assert_eq!(session.json()["subject"], "test-user");
    assert_eq!(session.json()["administrator"], true);
}

#[test]
fn the_events_readme_lists_every_sample_event() {
    let dir = workspace_root().join("events");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("events/README.md");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("events/") {
        let name = entry.expect("an entry").file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "events/README.md does not list {name}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 23, "{seen} sample events");
}
