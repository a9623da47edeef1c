//! IAM conformance: moto does not enforce IAM, so this test does. Each of the functions is
//! assembled as its Lambda is (the production assembly, `config::aws_backends_with`, its own
//! process-wide clients and caches) with a recorder on every AWS client; their handlers run
//! over the sample events and the flows that reach them (a connection created, authorized at a
//! loopback authorization server, read, refreshed, refreshed by the scheduler and by a worker,
//! disconnected, deleted and ended by the workers; the console signed in to through the
//! identity provider, its client secret read from its own secret, and its API used as the
//! signed-in person), all on moto. Then every recorded operation is held against that function's policy
//! in `infra/template.yaml` (actions, resources, conditions), and every action the policy allows
//! must be used by some recorded call: least privilege, both ways.

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::Parser;
use keyport_shared::adapters::aws::{AwsCall, CallRecorder};
use keyport_shared::config::{self, AwsSettings, CommonSettings};
use keyport_shared::domain::{ConnectionId, Owner, StoredToken};
use keyport_shared::http::Function;
use keyport_shared::ports::{Expect, TokenKey};
use keyport_shared::service::Keyport;
use keyport_tests::backends;
use keyport_tests::console::{ClientSecretFrom, console_function, console_secret_on_moto};
use keyport_tests::moto::Moto;
use keyport_tests::oidc::{CALLBACK_URL, CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::workspace_root;
use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::lambda_events::{
    confirmation_event, console_event, cookies_set, event_json, event_text, in_ms, invoke,
    invoke_router, scheduled_event,
};

/// A function's settings as its Lambda reads them (here from flags instead of variables).
#[derive(Parser)]
struct FunctionSettings {
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    aws: AwsSettings,
}

/// One function as its own process: its clients, its recorder, its template resource.
struct DeployedFunction {
    resource: &'static str,
    keyport: Arc<Keyport>,
    recorder: CallRecorder,
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let at = args.iter().position(|a| a == name).expect("the flag");
    &args[at + 1]
}

/// `resource` assembled as its Lambda is, with the work queue at `queue_url` when its
/// template gives it `KEYPORT_REFRESH_QUEUE_URL`.
fn deploy(
    resource: &'static str,
    aws_args: &[String],
    queue_url: Option<&str>,
) -> DeployedFunction {
    let settings = FunctionSettings::parse_from(
        [
            "keyport",
            "--local-development",
            "--callback-url",
            CALLBACK_URL,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(
            ["--table", "--kms-key-id", "--secret-prefix"]
                .into_iter()
                .flat_map(|name| [name.to_owned(), flag(aws_args, name).to_owned()]),
        ),
    );
    let recorder = CallRecorder::new();
    let backends =
        config::aws_backends_with(&settings.aws, &Moto::get().sdk_config(), Some(&recorder))
            .expect("the AWS back-ends");
    let mut keyport = config::keyport(
        backends,
        &settings.common,
        CALLBACK_URL.parse().expect("a URL"),
    )
    .expect("the use cases");
    if let Some(url) = queue_url {
        keyport = keyport.with_work_queue(config::sqs_work_queue(
            url,
            &Moto::get().sdk_config(),
            Some(&recorder),
        ));
    }
    DeployedFunction {
        resource,
        keyport: Arc::new(keyport),
        recorder,
    }
}

/// The token `key` edited as an hour would: expiring in ten seconds, due a second ago.
async fn make_due(backend: &keyport_tests::backends::Backend, key: &TokenKey) -> StoredToken {
    let mut due = backend
        .store
        .get_token(key)
        .await
        .unwrap()
        .expect("the token");
    let now = chrono::Utc::now();
    due.refresh_due_at = Some(now - chrono::Duration::seconds(1));
    due.expires_at = Some(now + chrono::Duration::seconds(10));
    let version = due.version;
    backend
        .store
        .put_token(&due, Expect::Version(version))
        .await
        .unwrap();
    due
}

/// The public half of an age key the test threw away: an export with secrets needs one.
const EXPORT_RECIPIENT: &str = "age13g74zg6yffanj2sqcfmp240ryk9nq2ct2pdygz0u8sjltlrkyv5qh0gsus";

/// `file`'s event for connection `id` (if any) with `body` as its JSON body.
fn event_with_body(file: &str, id: Option<&str>, body: Value) -> String {
    let mut event: Value = serde_json::from_str(&event_text(file, id)).expect("JSON");
    event["body"] = json!(body.to_string());
    event.to_string()
}

/// `file`'s event for connection `id` with `query` as its query string.
fn event_with_query(file: &str, id: Option<&str>, query: &str) -> String {
    let mut event: Value = serde_json::from_str(&event_text(file, id)).expect("JSON");
    event["rawQueryString"] = json!(query);
    event["queryStringParameters"] = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    event.to_string()
}

async fn expect_status(
    function: &DeployedFunction,
    kind: Function,
    event: &str,
    status: u16,
) -> Value {
    let reply = invoke(&function.keyport, kind, event).await;
    assert_eq!(
        reply.status, status,
        "{}: {}",
        function.resource, reply.body
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// `count` messages taken from the queue at `queue_url`, as records of the SQS event the
/// worker's event source would deliver.
async fn received(sqs: &aws_sdk_sqs::Client, queue_url: &str, count: usize) -> Vec<Value> {
    let mut records = Vec::new();
    while records.len() < count {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("ReceiveMessage");
        assert!(!received.messages().is_empty(), "the queued work is there");
        for message in received.messages() {
            records.push(json!({
                "messageId": message.message_id(),
                "body": message.body(),
                "eventSource": "aws:sqs",
            }));
        }
    }
    assert_eq!(records.len(), count, "{records:?}");
    records
}

/// The worker's answer to `records` with `time` before its deadline: whether all succeeded.
async fn hand_to(worker: &DeployedFunction, records: Vec<Value>, time: chrono::Duration) -> bool {
    let work: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
    let mut context = lambda_runtime::Context::default();
    context.deadline = in_ms(time);
    keyport_shared::lambda::handle_refresh_work(
        &worker.keyport,
        lambda_runtime::LambdaEvent::new(work, context),
        4,
    )
    .await
    .batch_item_failures
    .is_empty()
}

/// An authorization of `id` started through the authorize function, consented at the peer
/// and handed to the callback function: the completion value the callback answers with.
async fn held_completion(
    authorize: &DeployedFunction,
    callback: &DeployedFunction,
    peer: &OidcPeer,
    id: &str,
) -> String {
    let started = expect_status(
        authorize,
        Function::Authorize,
        &event_text("authorize-start.json", Some(id)),
        200,
    )
    .await;
    let query = peer
        .authorize_headlessly(started["authorization_url"].as_str().unwrap())
        .await;
    let reply = invoke(
        &callback.keyport,
        Function::Callback,
        &event_with_query("callback.json", None, &query),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    keyport_tests::keyport::completion_on_page(&reply.body)
}

/// The console's sign-in callback: where the peer sends the console's browser back (nothing
/// listens there; the test hands the query to the console function as an event).
fn console_callback() -> String {
    url::Url::parse(CALLBACK_URL)
        .unwrap()
        .join("/console/signin/callback")
        .unwrap()
        .to_string()
}

/// A browser signed in to the console: its session cookie and CSRF token.
struct ConsoleSession {
    cookie: String,
    csrf: String,
}

/// Signs in to `console` through the identity provider, event by event.
async fn console_sign_in(console: &axum::Router, peer: &OidcPeer) -> ConsoleSession {
    let started = invoke_router(console.clone(), &event_text("console-signin.json", None)).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let location = started
        .headers
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let query = peer
        .authorize_headlessly_to(&location, &console_callback())
        .await;
    let back = invoke_router(
        console.clone(),
        &console_event("console-signin.json", &cookies_set(&started), Some(&query))
            .replace("\"/console/signin\"", "\"/console/signin/callback\""),
    )
    .await;
    assert_eq!(back.status, 303, "{}", back.body);
    let cookie = cookies_set(&back)
        .into_iter()
        .find(|c| c.starts_with("keyport_console="))
        .expect("a session cookie");
    let session = invoke_router(
        console.clone(),
        &console_event("console-session.json", std::slice::from_ref(&cookie), None),
    )
    .await
    .json();
    assert_eq!(session["signed_in"], true, "{session}");
    ConsoleSession {
        cookie,
        csrf: session["csrf_token"].as_str().unwrap().to_owned(),
    }
}

/// `method path?query` of the console's API as `session`'s page sends it, with `body`.
fn console_api_event(
    session: &ConsoleSession,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Option<Value>,
) -> String {
    let mut event = event_json("console-session.json", None);
    let route = format!("{method} /console/{{proxy+}}");
    event["routeKey"] = json!(route);
    event["requestContext"]["routeKey"] = json!(route);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["pathParameters"] = json!({ "proxy": path.trim_start_matches("/console/") });
    event["cookies"] = json!([session.cookie]);
    event["headers"]["x-keyport-csrf"] = json!(session.csrf);
    event["headers"]["sec-fetch-site"] = json!("same-origin");
    if let Some(query) = query {
        event["rawQueryString"] = json!(query);
        event["queryStringParameters"] = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if let Some(body) = body {
        event["headers"]["content-type"] = json!("application/json");
        event["body"] = json!(body.to_string());
    }
    event.to_string()
}

/// The console's answer to `method path`: its status checked, its JSON body.
async fn console_call(
    console: &axum::Router,
    session: &ConsoleSession,
    (method, path, query): (&str, &str, Option<&str>),
    body: Option<Value>,
    status: u16,
) -> Value {
    let reply = invoke_router(
        console.clone(),
        &console_api_event(session, method, path, query, body),
    )
    .await;
    assert_eq!(
        reply.status, status,
        "ConsoleFunction {method} {path}: {}",
        reply.body
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_call_of_every_function_is_allowed_by_its_policy_and_nothing_more() {
    let backend = backends::aws().await;
    let args = backend.process_args.clone();
    let sqs = aws_sdk_sqs::Client::new(&Moto::get().sdk_config());
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("refresh-work-{}", uuid::Uuid::new_v4().simple()))
        // As the template's: a message received stays taken for the rest of the test.
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "720",
        )
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    let queue = Some(queue_url.as_str());
    let connections = deploy("ConnectionsFunction", &args, queue);
    let authorize = deploy("AuthorizeFunction", &args, None);
    let callback = deploy("CallbackFunction", &args, None);
    // Lambda may confirm on another instance than the one the browser reached: a cold one.
    let callback_elsewhere = deploy("CallbackFunction", &args, None);
    let token = deploy("TokenFunction", &args, None);
    // A refresher without workers first (it refreshes itself), then as the template deploys
    // it, the workers' scheduler.
    let refresher_alone = deploy("RefresherFunction", &args, None);
    let mut refresher = deploy("RefresherFunction", &args, queue);
    // As the template deploys it: the scheduled runs deliver notifications to the bus too.
    let bus = format!("keyport-{}", uuid::Uuid::new_v4().simple());
    aws_sdk_eventbridge::Client::new(&Moto::get().sdk_config())
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("CreateEventBus");
    Arc::get_mut(&mut refresher.keyport)
        .expect("not shared yet")
        .event_bus = Some(config::event_bridge_bus(
        &bus,
        &Moto::get().sdk_config(),
        Some(&refresher.recorder),
    ));
    let mut worker = deploy("RefreshWorkerFunction", &args, queue);
    // A deleted connection is purged as soon as its tokens are gone.
    Arc::get_mut(&mut worker.keyport)
        .expect("not shared yet")
        .settings
        .retired_grace = std::time::Duration::ZERO;
    let peer = OidcPeer::start(PeerOptions {
        console_redirect_uri: Some(console_callback()),
        ..PeerOptions::default()
    });
    // The console, its client secret in a secret of its own, as the template deploys it.
    let console_secret = console_secret_on_moto().await;
    let console = deploy("ConsoleFunction", &args, queue);
    let console_app = keyport_shared::http::console::router(console_function(
        console.keyport.clone(),
        CALLBACK_URL,
        &peer.issuer,
        &ClientSecretFrom::SecretsManager(console_secret.clone()),
        Some(&console.recorder),
    ));

    // The connections function: every route of its own.
    let c = Function::Connections;
    expect_status(
        &connections,
        c,
        &event_text("providers-list.json", None),
        200,
    )
    .await;
    let acme = expect_status(
        &connections,
        c,
        &event_text("connections-create.json", None),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A webhook subscription: its secret sealed under its own purpose. Its receiver never
    // answers; the refresher's delivery attempts open the secret all the same.
    expect_status(
        &connections,
        c,
        &event_with_body(
            "webhooks-create.json",
            None,
            json!({"url": "http://127.0.0.1:9/keyport-hooks"}),
        ),
        201,
    )
    .await;
    let create = |name: &str, grant: &str, scopes: &str| {
        event_with_body(
            "connections-create.json",
            None,
            json!({
                "name": name, "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "grant_type": grant, "scopes": scopes, "invited_roles": ["bots"]
            }),
        )
    };
    // The outbound-proxy setting (its password in Secrets Manager), set, read and removed
    // before any function calls a provider.
    // Set again after the delete: its password goes to a secret of a new name (the old one
    // is scheduled for deletion, which a write would not undo).
    for (event, status) in [
        ("settings-outbound-proxy-put.json", 200),
        ("settings-outbound-proxy-get.json", 200),
        ("settings-outbound-proxy-delete.json", 204),
        ("settings-outbound-proxy-put.json", 200),
        ("settings-outbound-proxy-delete.json", 204),
    ] {
        expect_status(&connections, c, &event_text(event, None), status).await;
    }
    // A create refused after its secret was stored takes the secret back out.
    expect_status(
        &connections,
        c,
        &event_text("connections-create.json", None),
        409,
    )
    .await;
    let machine = expect_status(
        &connections,
        c,
        &create("machine", "client_credentials", "api:read"),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let interactive = expect_status(
        &connections,
        c,
        &create(
            "interactive",
            "authorization_code",
            "openid,offline_access,api:read",
        ),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect_status(
        &connections,
        c,
        &event_text("connections-list.json", None),
        200,
    )
    .await;
    expect_status(
        &connections,
        c,
        &event_text("connections-get.json", Some(&acme)),
        200,
    )
    .await;
    expect_status(
        &connections,
        c,
        &event_text("connections-update.json", Some(&acme)),
        200,
    )
    .await;
    // Client secrets are encrypted with Keyport's own key, not the account's default.
    let described = aws_sdk_secretsmanager::Client::new(&Moto::get().sdk_config())
        .describe_secret()
        .secret_id(format!(
            "{}{acme}/client-secret",
            flag(&args, "--secret-prefix")
        ))
        .send()
        .await
        .expect("the client secret exists");
    assert_eq!(
        described.kms_key_id(),
        Some(flag(&args, "--kms-key-id")),
        "{described:?}"
    );
    let tested = expect_status(
        &connections,
        c,
        &event_text("connections-test.json", Some(&machine)),
        200,
    )
    .await;
    assert_eq!(tested["ok"], true, "{tested}");

    // The authorize and callback functions: one authorization, consented at the peer.
    let completion = held_completion(&authorize, &callback, &peer, &interactive).await;
    expect_status(
        &callback_elsewhere,
        Function::Callback,
        &confirmation_event(&completion),
        200,
    )
    .await;

    // The token function: an unattended grant obtained, an authorized token read cold and warm
    // (counted through the production key cache), refreshed, listed, disconnected.
    let t = Function::Token;
    expect_status(
        &token,
        t,
        &event_text("token-get.json", Some(&machine)),
        200,
    )
    .await;
    expect_status(
        &token,
        t,
        &event_text("token-get.json", Some(&interactive)),
        200,
    )
    .await;
    let kms_after_cold_read = token.recorder.count("KMS:Decrypt");
    assert_eq!(kms_after_cold_read, 1, "{:?}", token.recorder.calls());
    let reads_before = token.recorder.count("DynamoDB:BatchGetItem");
    let writes_before = token.recorder.count("DynamoDB:PutItem");
    for _ in 0..5 {
        expect_status(
            &token,
            t,
            &event_text("token-get.json", Some(&interactive)),
            200,
        )
        .await;
    }
    assert_eq!(
        token.recorder.count("KMS:Decrypt"),
        kms_after_cold_read,
        "a warm read opens the token with the cached data key: {:?}",
        token.recorder.calls()
    );
    assert_eq!(
        token.recorder.count("DynamoDB:BatchGetItem") - reads_before,
        5,
        "a warm read is one database round trip"
    );
    assert_eq!(
        token.recorder.count("DynamoDB:PutItem"),
        writes_before,
        "the caller's fetch record was written by its first read, not again within the interval: {:?}",
        token.recorder.calls()
    );
    expect_status(
        &token,
        t,
        &event_text("token-refresh.json", Some(&interactive)),
        200,
    )
    .await;
    expect_status(
        &token,
        t,
        &event_text("token-reset.json", Some(&machine)),
        200,
    )
    .await;
    expect_status(&token, t, &event_text("me-connections.json", None), 200).await;
    expect_status(
        &token,
        t,
        &event_text("token-delete.json", Some(&machine)),
        200,
    )
    .await;
    // A person's own token, listed for the administrator and ended by them.
    expect_status(
        &token,
        t,
        &event_with_query("token-get.json", Some(&machine), "owner=user"),
        200,
    )
    .await;
    let people = expect_status(
        &token,
        t,
        &event_text("token-list-users.json", Some(&machine)),
        200,
    )
    .await;
    assert_eq!(
        people["tokens"][0]["subject"], "admin@example.com",
        "{people}"
    );
    let ended = event_text("token-delete-user.json", Some(&machine))
        .replace("/tokens/bot-1", "/tokens/admin@example.com")
        .replace(
            "\"subject\": \"bot-1\"",
            "\"subject\": \"admin@example.com\"",
        );
    expect_status(&token, t, &ended, 200).await;
    // Moving a connection elsewhere ends its tokens in the request (the grant obtained again
    // is opened to be revoked where it was issued): the connections function's token reads.
    expect_status(
        &token,
        t,
        &event_text("token-get.json", Some(&machine)),
        200,
    )
    .await;
    expect_status(
        &connections,
        c,
        &event_with_body(
            "connections-update.json",
            Some(&machine),
            json!({ "client_id": "keyport-moved", "client_secret": CLIENT_SECRET }),
        ),
        200,
    )
    .await;
    let machine_key = TokenKey {
        connection_id: ConnectionId::parse(&machine).unwrap(),
        owner: Owner::Shared,
    };
    assert!(
        backend
            .store
            .get_token(&machine_key)
            .await
            .unwrap()
            .is_none(),
        "the move ended the token"
    );

    // An authorization whose grant the callback holds, never confirmed, past its expiry: the
    // scheduled run revokes it.
    let unconfirmed = keyport_shared::domain::StateToken::parse(
        &held_completion(&authorize, &callback, &peer, &interactive).await,
    )
    .unwrap()
    .as_completion();
    let mut held = backend
        .store
        .take_pending(&unconfirmed, chrono::Utc::now())
        .await
        .unwrap()
        .expect("the held grant");
    held.expires_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    backend
        .store
        .put_pending(&unconfirmed, &held)
        .await
        .unwrap();

    // The refresher: the authorized token made due, then one scheduled run.
    let key = TokenKey {
        connection_id: ConnectionId::parse(&interactive).unwrap(),
        owner: Owner::Shared,
    };
    make_due(&backend, &key).await;
    let report = keyport_shared::lambda::handle_scheduled_event(
        &refresher_alone.keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(120))),
        4,
    )
    .await
    .unwrap();
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(report.unconfirmed_revoked, 1, "{report:?}");
    // The run indexed the invitations (the table had no marker yet); a caller's connections
    // now come from that index.
    assert!(report.connections_indexed >= 1, "{report:?}");
    let bot = event_text("me-connections.json", None).replace(
        "\"cognito:groups\": \"[keyport-admins bots]\"",
        "\"cognito:groups\": \"[bots]\"",
    );
    assert!(bot.contains("[bots]"), "a bot's event: {bot}");
    let mine = expect_status(&token, t, &bot, 200).await;
    assert!(
        mine["connections"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{mine}"
    );

    // Fanned out: the refresher queues the due shards on SQS, the worker takes them from the
    // queue as its event source would and refreshes the token made due again.
    let due = make_due(&backend, &key).await;
    let report = keyport_shared::lambda::handle_scheduled_event(
        &refresher.keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(120))),
        4,
    )
    .await
    .unwrap();
    assert_eq!(
        report.work_queued,
        u64::from(refresher.keyport.settings.refresh_windows + 1),
        "{report:?}"
    );
    assert_eq!(report.refreshed, 0, "{report:?}");
    let work = received(&sqs, &queue_url, report.work_queued as usize).await;
    assert!(
        hand_to(&worker, work, chrono::Duration::seconds(120)).await,
        "every shard's work done"
    );
    let after = backend
        .store
        .get_token(&key)
        .await
        .unwrap()
        .expect("the token");
    assert!(
        after.expires_at > due.expires_at,
        "the worker refreshed the due token"
    );

    // Back to the connections function: the audit trail, then deletes (one with a token).
    expect_status(
        &connections,
        c,
        &event_text("connections-audit.json", Some(&interactive)),
        200,
    )
    .await;
    // An export with secrets (every secret read, every token decrypted), then an import that
    // changes one connection and creates another.
    let exported = expect_status(
        &connections,
        c,
        &event_with_query(
            "connections-export.json",
            None,
            &format!("with_secrets=true&recipient={EXPORT_RECIPIENT}"),
        ),
        200,
    )
    .await;
    assert!(exported["sealed"].is_string(), "{exported}");
    let mut document = json!({"keyport_export": 1, "connections": exported["connections"]});
    document["connections"][0]["description"] = json!("changed by an import");
    document["connections"].as_array_mut().unwrap().push(
        json!({"name": "imported", "grant_type": "client_credentials",
                     "client_id": "imported", "client_secret": "imported-secret",
                     "token_url": "https://login.example.com/oauth2/token"}),
    );
    let mut import: Value =
        serde_json::from_str(&event_with_body("connections-import.json", None, document)).unwrap();
    import["rawQueryString"] = json!("dry_run=false");
    import["queryStringParameters"] = json!({"dry_run": "false"});
    let imported = expect_status(&connections, c, &import.to_string(), 200).await;
    assert_eq!(imported["applied"], true, "{imported}");
    // A second token beside the shared one: the workers end both.
    let mut second = backend
        .store
        .get_token(&key)
        .await
        .unwrap()
        .expect("the token");
    second.owner = Owner::User(keyport_shared::domain::Subject::parse("iam-user").unwrap());
    let second_key = TokenKey {
        connection_id: key.connection_id.clone(),
        owner: second.owner.clone(),
    };
    let secrets = backend
        .cipher()
        .open_token(&key, &second.sealed)
        .await
        .expect("opened");
    second.sealed = backend
        .cipher()
        .seal_token(&second_key, &secrets)
        .await
        .expect("sealed");
    backend
        .store
        .put_token(&second, Expect::Absent)
        .await
        .unwrap();
    // Each delete queues its connection for the workers and answers at once.
    for id in [&interactive, &acme] {
        let deleting = expect_status(
            &connections,
            c,
            &event_text("connections-delete.json", Some(id)),
            202,
        )
        .await;
        assert_eq!(deleting["status"], "queued", "{deleting}");
    }
    // The scheduler queues them again (and the due shards); it ends none itself.
    let report = keyport_shared::lambda::handle_scheduled_event(
        &refresher.keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(120))),
        4,
    )
    .await
    .unwrap();
    assert_eq!(report.deletions_queued, 2, "{report:?}");
    assert_eq!(report.deleted_connection_tokens_revoked, 0, "{report:?}");
    // Every message to a worker left no time for a revocation: the token-less connection is
    // purged, the other queued again once per message naming it (two: the delete's and the
    // scheduler's).
    let work = received(&sqs, &queue_url, report.work_queued as usize + 4).await;
    assert!(hand_to(&worker, work, chrono::Duration::seconds(1)).await);
    assert!(
        backend.store.get_token(&key).await.unwrap().is_some(),
        "no time to end a token"
    );
    // The continuations, with time: the first ends both tokens and purges, the second finds
    // nothing left.
    let continued = received(&sqs, &queue_url, 2).await;
    assert!(hand_to(&worker, continued, chrono::Duration::seconds(120)).await);
    for gone in [&key, &second_key] {
        assert!(backend.store.get_token(gone).await.unwrap().is_none());
    }
    assert!(
        backend
            .store
            .retired_connections(10)
            .await
            .unwrap()
            .is_empty(),
        "both deleted connections purged"
    );

    // The console: signed in through the identity provider (its client secret read from its
    // own secret), then every route of its API as the signed-in administrator.
    let session = console_sign_in(&console_app, &peer).await;
    let ui = &console_app;
    console_call(
        ui,
        &session,
        ("GET", "/console/api/connections", None),
        None,
        200,
    )
    .await;
    // Its Notifications page: a webhook subscription, its secret sealed under its purpose.
    console_call(
        ui,
        &session,
        ("POST", "/console/api/webhooks", None),
        Some(json!({"url": "http://127.0.0.1:9/console-hooks"})),
        201,
    )
    .await;
    let made = |name: &str, grant: &str, scopes: &str| {
        json!({
            "name": name, "provider": "custom", "issuer": peer.issuer,
            "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
            "grant_type": grant, "scopes": scopes, "invited_roles": ["bots"]
        })
    };
    let console_machine = console_call(
        ui,
        &session,
        ("POST", "/console/api/connections", None),
        Some(made("console machine", "client_credentials", "api:read")),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let console_interactive = console_call(
        ui,
        &session,
        ("POST", "/console/api/connections", None),
        Some(made(
            "console interactive",
            "authorization_code",
            "openid,offline_access,api:read",
        )),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The outbound-proxy setting (its password in Secrets Manager), set, read and removed
    // before any function calls a provider.
    // Set again after the delete: its password goes to a secret of a new name (the old one
    // is scheduled for deletion, which a write would not undo).
    for (event, status) in [
        ("settings-outbound-proxy-put.json", 200),
        ("settings-outbound-proxy-get.json", 200),
        ("settings-outbound-proxy-delete.json", 204),
        ("settings-outbound-proxy-put.json", 200),
        ("settings-outbound-proxy-delete.json", 204),
    ] {
        expect_status(&connections, c, &event_text(event, None), status).await;
    }
    // A create refused after its secret was stored takes the secret back out.
    console_call(
        ui,
        &session,
        ("POST", "/console/api/connections", None),
        Some(made("console machine", "client_credentials", "api:read")),
        409,
    )
    .await;
    let machine_path = format!("/console/api/connections/{console_machine}");
    let interactive_path = format!("/console/api/connections/{console_interactive}");
    console_call(ui, &session, ("GET", &machine_path, None), None, 200).await;
    console_call(
        ui,
        &session,
        ("PATCH", &machine_path, None),
        Some(json!({ "description": "changed in the console" })),
        200,
    )
    .await;
    let tested = console_call(
        ui,
        &session,
        ("POST", &format!("{machine_path}/test"), None),
        None,
        200,
    )
    .await;
    assert_eq!(tested["ok"], true, "{tested}");
    // "Save login credentials": started in the console, consented at the provider, called
    // back at the callback function, confirmed in the console as the signed-in person.
    let started = console_call(
        ui,
        &session,
        ("POST", &format!("{interactive_path}/authorize"), None),
        Some(json!({ "owner": "shared" })),
        200,
    )
    .await;
    let query = peer
        .authorize_headlessly(started["authorization_url"].as_str().unwrap())
        .await;
    let page = invoke(
        &callback.keyport,
        Function::Callback,
        &event_with_query("callback.json", None, &query),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let completion = keyport_tests::keyport::completion_on_page(&page.body);
    console_call(
        ui,
        &session,
        ("POST", "/console/api/oauth/complete", None),
        Some(json!({ "completion": completion })),
        200,
    )
    .await;
    for (method, path, query) in [
        ("POST", format!("{interactive_path}/token/refresh"), None),
        ("GET", "/console/api/me/connections".to_owned(), None),
        ("GET", format!("{interactive_path}/audit"), None),
        (
            "DELETE",
            format!("{interactive_path}/token"),
            Some("owner=shared"),
        ),
    ] {
        console_call(ui, &session, (method, &path, query), None, 200).await;
    }
    // A person's own token (read through the token function), listed and ended in the
    // console by the administrator.
    expect_status(
        &token,
        t,
        &event_with_query("token-get.json", Some(&console_machine), "owner=user"),
        200,
    )
    .await;
    let people = console_call(
        ui,
        &session,
        ("GET", &format!("{machine_path}/tokens"), None),
        None,
        200,
    )
    .await;
    assert_eq!(
        people["tokens"][0]["subject"], "admin@example.com",
        "{people}"
    );
    console_call(
        ui,
        &session,
        (
            "DELETE",
            &format!("{machine_path}/tokens/admin@example.com"),
            None,
        ),
        None,
        200,
    )
    .await;
    // A delete queues the connection for the workers, as the connections function's does.
    let deleting = console_call(ui, &session, ("DELETE", &machine_path, None), None, 202).await;
    assert_eq!(deleting["status"], "queued", "{deleting}");
    console_call(
        ui,
        &session,
        ("POST", "/console/api/signout", None),
        None,
        200,
    )
    .await;
    assert!(
        console
            .recorder
            .calls()
            .iter()
            .any(|call| call.secret.as_deref() == Some(console_secret.as_str())),
        "the console read its client secret from its own secret"
    );

    let policies = template_policies();
    let prefix = flag(&args, "--secret-prefix");
    let mut problems = std::collections::BTreeSet::new();
    let mut calls_by_function: BTreeMap<&str, Vec<AwsCall>> = BTreeMap::new();
    for instance in [
        &connections,
        &authorize,
        &callback,
        &callback_elsewhere,
        &token,
        &refresher_alone,
        &refresher,
        &worker,
        &console,
    ] {
        calls_by_function
            .entry(instance.resource)
            .or_default()
            .extend(instance.recorder.calls());
    }
    assert_eq!(calls_by_function.len(), 7);
    for (resource, calls) in &calls_by_function {
        let statements = policies
            .get(*resource)
            .unwrap_or_else(|| panic!("{resource} has no policy in the template"));
        assert!(!calls.is_empty(), "{resource} made no AWS call");
        for call in calls {
            if let Some(secret) = &call.secret {
                assert!(
                    secret.starts_with(prefix)
                        || (*resource == "ConsoleFunction" && is_console_sign_in_secret(secret)),
                    "{secret} is outside the prefix {prefix}"
                );
            }
            for action in &call.actions {
                if !statements.iter().any(|s| s.allows(action, call)) {
                    problems.insert(format!(
                        "{resource}: {} needs {action}, which its policy does not allow ({call:?})",
                        call.operation
                    ));
                }
            }
        }
        for statement in statements {
            if statement.acts_through_a_service() {
                continue;
            }
            for allowed in &statement.actions {
                let used = calls.iter().any(|call| {
                    call.actions.iter().any(|action| {
                        action_matches(allowed, action) && statement.allows(action, call)
                    })
                });
                if !used {
                    problems.insert(format!(
                        "{resource}: statement {} allows {allowed}, which no call of the function uses",
                        statement.sid
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "IAM policy does not match the code:\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// One `Allow` statement of a function's inline policy.
#[derive(Debug)]
struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    /// (operator, key, values)
    conditions: Vec<(String, String, Vec<String>)>,
}

impl Statement {
    /// A statement conditioned on `kms:ViaService` is used by another AWS service on the
    /// function's behalf (DynamoDB with the table's key), never by the function's own calls.
    fn acts_through_a_service(&self) -> bool {
        self.conditions
            .iter()
            .any(|(_, key, _)| key == "kms:ViaService")
    }

    fn allows(&self, action: &str, call: &AwsCall) -> bool {
        self.actions.iter().any(|a| action_matches(a, action))
            && self.covers_resource(action, call)
            && self.conditions.iter().all(|(operator, key, values)| {
                assert_eq!(
                    operator, "StringEquals",
                    "a condition operator this test does not evaluate"
                );
                if let Some(name) = key.strip_prefix("kms:EncryptionContext:") {
                    call.encryption_context
                        .get(name)
                        .is_some_and(|value| values.contains(value))
                } else if key == "kms:ViaService" {
                    false
                } else {
                    panic!("a condition key this test does not evaluate: {key}")
                }
            })
    }

    /// The resource shapes of the template: `Table.Arn` (from `!GetAtt`), the index ARN, the
    /// key's ARN and the secret-prefix ARN.
    fn covers_resource(&self, action: &str, call: &AwsCall) -> bool {
        let service = action.split(':').next().unwrap_or_default();
        self.resources.iter().any(|resource| match service {
            "dynamodb" => match &call.index {
                Some(index) => resource.ends_with(&format!("/index/{index}")),
                None => resource == "Table.Arn",
            },
            "kms" => resource == "KeyportKey.Arn",
            "secretsmanager" => match &call.secret {
                // `!Ref ConsoleSignInSecret`: that secret's ARN only.
                Some(secret) if is_console_sign_in_secret(secret) => {
                    resource == "ConsoleSignInSecret"
                }
                _ => resource.ends_with(":secret:${SecretPrefix}*"),
            },
            "sqs" => resource == "RefreshWorkQueue.Arn",
            "events" => resource == "KeyportEvents.Arn",
            other => panic!("a service this test does not know: {other}"),
        })
    }
}

/// The template's `ConsoleSignInSecret`, named as CloudFormation names it (logical id, dash,
/// suffix): the console's client secret at its identity provider.
fn is_console_sign_in_secret(secret: &str) -> bool {
    secret.contains(":secret:ConsoleSignInSecret-")
}

/// IAM action patterns are case-insensitive and may end in `*`.
fn action_matches(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}

fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(items) => items.iter().flat_map(strings).collect(),
        Yaml::BadValue => Vec::new(),
        other => panic!("expected a string or a list of strings, got {other:?}"),
    }
}

/// Each function's inline policy statements, by logical id. CloudFormation's short tags
/// (`!GetAtt Table.Arn`, `!Sub "..."`) read as their plain argument.
fn template_policies() -> BTreeMap<String, Vec<Statement>> {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml"))
        .expect("the template");
    let docs = YamlLoader::load_from_str(&text).expect("the template is YAML");
    let resources = docs[0]["Resources"].as_hash().expect("Resources");
    let mut policies = BTreeMap::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let mut statements = Vec::new();
        for policy in resource["Properties"]["Policies"]
            .as_vec()
            .expect("inline policies")
        {
            let hash = policy.as_hash().expect("a policy document");
            assert_eq!(
                hash.keys()
                    .map(|k| k.as_str().unwrap_or_default())
                    .collect::<Vec<_>>(),
                ["Statement"],
                "only inline statements (no SAM policy templates, whose actions this test cannot see)"
            );
            for statement in policy["Statement"].as_vec().expect("statements") {
                assert_eq!(statement["Effect"].as_str(), Some("Allow"));
                let mut conditions = Vec::new();
                if let Some(operators) = statement["Condition"].as_hash() {
                    for (operator, keys) in operators {
                        for (key, values) in keys.as_hash().expect("condition keys") {
                            conditions.push((
                                operator.as_str().unwrap().to_owned(),
                                key.as_str().unwrap().to_owned(),
                                strings(values),
                            ));
                        }
                    }
                }
                statements.push(Statement {
                    sid: statement["Sid"]
                        .as_str()
                        .expect("every statement has a Sid")
                        .to_owned(),
                    actions: strings(&statement["Action"]),
                    resources: strings(&statement["Resource"]),
                    conditions,
                });
            }
        }
        policies.insert(name.as_str().unwrap().to_owned(), statements);
    }
    assert_eq!(policies.len(), 7, "seven functions: {:?}", policies.keys());
    policies
}

#[test]
fn the_policy_reader_sees_every_statement() {
    let policies = template_policies();
    let token = &policies["TokenFunction"];
    assert!(token.iter().any(|s| s.sid == "TokenDataKeys"
        && s.conditions.iter().any(|(_, key, values)| key
            == "kms:EncryptionContext:keyport:purpose"
            && values == &["token"])));
    let call = |actions: &[&str]| AwsCall {
        operation: "test".into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        encryption_context: BTreeMap::from([("keyport:purpose".into(), "token".into())]),
        index: None,
        secret: None,
    };
    assert!(
        token
            .iter()
            .any(|s| s.allows("kms:Decrypt", &call(&["kms:Decrypt"])))
    );
    let mut other_purpose = call(&["kms:Decrypt"]);
    other_purpose
        .encryption_context
        .insert("keyport:purpose".into(), "other".into());
    assert!(
        !token
            .iter()
            .any(|s| s.allows("kms:Decrypt", &other_purpose)),
        "a data key of another purpose is refused"
    );
    assert!(action_matches("kms:ReEncrypt*", "kms:ReEncryptFrom"));
    assert!(!action_matches("kms:Decrypt", "kms:DecryptMore"));
}

/// A function's timeout in the template (its own, or the Globals').
fn template_timeouts() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml"))
        .expect("the template");
    let docs = YamlLoader::load_from_str(&text).expect("the template is YAML");
    let global = docs[0]["Globals"]["Function"]["Timeout"]
        .as_i64()
        .expect("a global timeout") as u64;
    docs[0]["Resources"]
        .as_hash()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| {
            let own = r["Properties"]["Timeout"].as_i64().map(|t| t as u64);
            (name.as_str().unwrap().to_owned(), own.unwrap_or(global))
        })
        .collect()
}

/// No provider call starts that its function could not wait for and store the answer of:
/// each function that calls providers has room for the provider's whole timeout and the grant
/// write's retry budget, with the default settings the functions run with; the token function
/// also for taking over a dead holder's lease first.
#[test]
fn function_timeouts_leave_room_for_a_provider_call_and_its_write() {
    let defaults = FunctionSettings::parse_from(["keyport"]);
    let common = &defaults.common;
    let call = common.provider_timeout_seconds + common.grant_write_seconds;
    let timeouts = template_timeouts();
    for function in [
        "ConnectionsFunction",
        "CallbackFunction",
        "TokenFunction",
        "ConsoleFunction",
        "RefresherFunction",
        "RefreshWorkerFunction",
    ] {
        assert!(
            timeouts[function] > call,
            "{function}: {} s is no room for a {} s provider call and its write",
            timeouts[function],
            call
        );
    }
    // The console refreshes on request too.
    for function in ["TokenFunction", "ConsoleFunction"] {
        assert!(
            timeouts[function] >= common.lease_seconds + call,
            "{function}: {} s is no room to take over a {} s lease and refresh",
            timeouts[function],
            common.lease_seconds
        );
    }
    assert!(
        common.lease_seconds > call,
        "the default lease holds a provider call and its write"
    );
}
