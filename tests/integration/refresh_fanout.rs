//! The fanned-out refresher, through its real event types on both back-ends: a scheduled run
//! with a work queue refreshes nothing itself and queues one message per due shard; the
//! worker, handed those messages as the SQS event SQS would deliver (`events/refresh-work.json`),
//! refreshes every due token exactly once, and reports a message that is not work as failed
//! (and only that one). A message delivered twice costs no second refresh.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use keyport_shared::domain::{ConnectionId, Owner};
use keyport_shared::ports::{Expect, QueueError, TokenKey, WorkQueue};
use keyport_shared::service::{Keyport, OwnerRequest};
use keyport_tests::backends::Backend;
use keyport_tests::keyport::{admin, bot, keyport};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use serde_json::{Value, json};

use crate::lambda_events::{event_json, in_ms, scheduled_event};

/// A queue that keeps what it is sent.
#[derive(Default)]
pub(crate) struct KeptQueue(Mutex<Vec<String>>);

impl KeptQueue {
    /// Everything sent so far, taken out of the queue.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[async_trait]
impl WorkQueue for KeptQueue {
    async fn send(&self, bodies: &[String]) -> Result<(), QueueError> {
        self.0.lock().unwrap().extend_from_slice(bodies);
        Ok(())
    }
}

/// The SQS event delivering `bodies`, one record each, shaped as the sample event.
fn sqs_event(bodies: &[String]) -> lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent> {
    sqs_event_from("refresh-work.json", bodies, chrono::Duration::seconds(120))
}

/// The SQS event delivering `bodies`, one record each, shaped as the `sample` event, with
/// `time` left before its deadline.
pub(crate) fn sqs_event_from(
    sample: &str,
    bodies: &[String],
    time: chrono::Duration,
) -> lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent> {
    let sample = event_json(sample, None);
    let template = sample["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(format!("message-{index}"));
            record["body"] = json!(body);
            record
        })
        .collect();
    let payload: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
    let mut context = lambda_runtime::Context::default();
    context.deadline = in_ms(time);
    lambda_runtime::LambdaEvent::new(payload, context)
}

async fn due_tokens(keyport: &Keyport, peer: &OidcPeer, count: usize) -> Vec<TokenKey> {
    let mut keys = Vec::new();
    for index in 0..count {
        let input = serde_json::from_value(json!({
            "name": format!("fanout-{index}"), "provider": "custom", "issuer": peer.issuer,
            "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
            "grant_type": "client_credentials", "scopes": "api:read", "invited_roles": ["bots"]
        }))
        .unwrap();
        let id = keyport.create_connection(&admin(), input).await.unwrap().id;
        keyport
            .access_token(&bot(), &id, OwnerRequest::Shared, None)
            .await
            .unwrap();
        let key = TokenKey {
            connection_id: ConnectionId::parse(id.as_str()).unwrap(),
            owner: Owner::Shared,
        };
        let mut token = keyport.store.get_token(&key).await.unwrap().unwrap();
        let version = token.version;
        token.refresh_due_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
        keyport
            .store
            .put_token(&token, Expect::Version(version))
            .await
            .unwrap();
        keys.push(key);
    }
    keys
}

fn token_requests(peer: &OidcPeer) -> usize {
    peer.requests()
        .iter()
        .filter(|r| r["path"] == "/token" && r["grant_type"] == "client_credentials")
        .count()
}

async fn the_refresher_fans_due_spans_out_to_workers(backend: Backend) {
    let queue = Arc::new(KeptQueue::default());
    let keyport = Arc::new(keyport(&backend, |_| {}).with_work_queue(queue.clone()));
    let peer = OidcPeer::start(PeerOptions {
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let keys = due_tokens(&keyport, &peer, 6).await;
    let asked_before = token_requests(&peer);

    let report = keyport_shared::lambda::handle_scheduled_event(
        &keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(60))),
        4,
    )
    .await
    .unwrap();
    let windows = keyport.settings.refresh_windows;
    assert_eq!(
        report.work_queued,
        u64::from(windows + 1),
        "the backlog and the spans of the last minute: {report:?}"
    );
    assert_eq!(
        report.refreshed, 0,
        "the scheduler refreshes nothing itself"
    );
    assert_eq!(token_requests(&peer), asked_before);
    assert_eq!(report.deletions_queued, 0, "nothing deleted: {report:?}");
    let mut bodies = queue.take();
    let backlog: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(
        backlog["span"]["due_by"].is_string() && backlog["span"].get("due_after").is_none(),
        "{backlog}"
    );
    assert!(bodies[1..].iter().all(|body| {
        serde_json::from_str::<Value>(body).unwrap()["span"]["due_after"].is_string()
    }));

    // Every span's message, one of them twice (SQS delivers at least once), and one that is
    // not work at all.
    bodies.push(bodies[0].clone());
    bodies.push("{\"shard\": \"all\"}".to_owned());
    let answer = keyport_shared::lambda::handle_refresh_work(&keyport, sqs_event(&bodies), 4).await;
    let failed: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, [format!("message-{}", bodies.len() - 1)]);
    assert_eq!(
        token_requests(&peer) - asked_before,
        keys.len(),
        "each due token refreshed exactly once"
    );
    for key in &keys {
        let token = keyport.store.get_token(key).await.unwrap().unwrap();
        assert!(
            token
                .refresh_due_at
                .is_some_and(|due| due > chrono::Utc::now()),
            "{key:?} is no longer due"
        );
    }
}

/// Messages an earlier scheduled run queued (one shard each, with or without a window) are
/// still done after an upgrade: each token they name is refreshed once.
async fn messages_of_earlier_runs_are_still_worked(backend: Backend) {
    let keyport =
        Arc::new(keyport(&backend, |_| {}).with_work_queue(Arc::new(KeptQueue::default())));
    let peer = OidcPeer::start(PeerOptions {
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let keys = due_tokens(&keyport, &peer, 4).await;
    let asked_before = token_requests(&peer);
    let now = chrono::Utc::now();
    let bodies: Vec<String> = (0..keyport.store.due_shards())
        .map(|shard| {
            if shard % 2 == 0 {
                format!("{{\"shard\": {shard}}}")
            } else {
                json!({"window": {"shard": shard, "due_by": now}}).to_string()
            }
        })
        .collect();
    let answer = keyport_shared::lambda::handle_refresh_work(&keyport, sqs_event(&bodies), 4).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(token_requests(&peer) - asked_before, keys.len());
}

crate::on_both_backends!(
    the_refresher_fans_due_spans_out_to_workers,
    messages_of_earlier_runs_are_still_worked
);
