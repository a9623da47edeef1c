//! Deleting a connection with refresh workers (the AWS shape: a Keyport with a work queue), on
//! both back-ends: the delete answers 202 at once and revokes nothing in the request; the
//! scheduled run hands deleted connections to the workers and ends none itself; the worker,
//! handed the queued message as SQS would deliver it (`events/refresh-work-deletion.json`),
//! revokes every token at the provider and deletes it, queues the connection again when its
//! deadline cuts it short, and purges it at the end. A message delivered twice, or to two
//! workers at once, ends each token once and leaves a connection in service alone.

use std::sync::Arc;

use keyport_shared::domain::{AuditAction, ConnectionId, Owner, Subject};
use keyport_shared::http::Function;
use keyport_shared::lambda::handle_refresh_work;
use keyport_shared::ports::{Expect, PageRequest, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest, RefreshWork};
use keyport_tests::backends::Backend;
use keyport_tests::keyport::{admin, bot, keyport};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use serde_json::json;

use crate::lambda_events::{event_text, in_ms, invoke, scheduled_event};
use crate::refresh_fanout::{KeptQueue, sqs_event_from};

/// More than a request ends in line without workers (`delete_in_line_tokens`, 20).
const TOKENS: usize = 30;

/// A Keyport with refresh workers behind `queue`; a deleted connection is purged as soon as
/// its tokens are gone.
fn with_workers(backend: &Backend, queue: &Arc<KeptQueue>) -> Arc<Keyport> {
    Arc::new(
        keyport(backend, |settings| {
            settings.retired_grace = std::time::Duration::ZERO;
        })
        .with_work_queue(queue.clone()),
    )
}

/// A connection holding `TOKENS` tokens: the shared grant, and copies of it for users.
async fn connection_with_tokens(
    backend: &Backend,
    keyport: &Keyport,
    peer: &OidcPeer,
    name: &str,
) -> (ConnectionId, Vec<TokenKey>) {
    let input = serde_json::from_value(json!({
        "name": name, "provider": "custom", "issuer": peer.issuer,
        "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials", "scopes": "api:read", "invited_roles": ["bots"]
    }))
    .unwrap();
    let connection = keyport.create_connection(&admin(), input).await.unwrap();
    assert!(connection.revocation_url.is_some(), "discovered");
    keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let shared = TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::Shared,
    };
    let stored = keyport.store.get_token(&shared).await.unwrap().unwrap();
    let cipher = backend.cipher();
    let secrets = cipher.open_token(&shared, &stored.sealed).await.unwrap();
    let mut keys = vec![shared];
    for index in 1..TOKENS {
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: Owner::User(Subject::parse(&format!("user-{index}")).unwrap()),
        };
        let mut copy = stored.clone();
        copy.owner = key.owner.clone();
        copy.sealed = cipher.seal_token(&key, &secrets).await.unwrap();
        keyport
            .store
            .put_token(&copy, Expect::Absent)
            .await
            .unwrap();
        keys.push(key);
    }
    (connection.id, keys)
}

fn revocations(peer: &OidcPeer) -> usize {
    peer.requests()
        .iter()
        .filter(|r| r["path"] == "/token/revocation")
        .count()
}

fn deletion(id: &ConnectionId) -> String {
    RefreshWork::DeletedConnection(id.clone()).body()
}

/// The worker's answer to `bodies` with `time` before its deadline: the failed message ids.
async fn work(keyport: &Arc<Keyport>, bodies: &[String], time: chrono::Duration) -> Vec<String> {
    let event = sqs_event_from("refresh-work-deletion.json", bodies, time);
    handle_refresh_work(keyport, event, 4)
        .await
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect()
}

async fn remaining_tokens(keyport: &Keyport, keys: &[TokenKey]) -> usize {
    let mut left = 0;
    for key in keys {
        if keyport.store.get_token(key).await.unwrap().is_some() {
            left += 1;
        }
    }
    left
}

async fn a_delete_with_workers_answers_at_once_and_the_workers_end_every_token(backend: Backend) {
    let queue = Arc::new(KeptQueue::default());
    let keyport = with_workers(&backend, &queue);
    let peer = OidcPeer::start(PeerOptions::default());
    let (id, keys) = connection_with_tokens(&backend, &keyport, &peer, "doomed").await;
    let (live, live_keys) = connection_with_tokens(&backend, &keyport, &peer, "kept").await;

    let reply = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-delete.json", Some(id.as_str())),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["id"], id.as_str(), "{answer}");
    assert_eq!(answer["status"], "queued", "{answer}");
    assert!(answer.get("tokens_revoked").is_none(), "{answer}");
    assert_eq!(revocations(&peer), 0, "nothing revoked in the request");
    assert_eq!(remaining_tokens(&keyport, &keys).await, TOKENS);
    assert_eq!(queue.take(), [deletion(&id)]);
    let read = invoke(
        &keyport,
        Function::Connections,
        &event_text("connections-get.json", Some(id.as_str())),
    )
    .await;
    assert_eq!(read.status, 404, "gone for every caller: {}", read.body);

    // The scheduled run hands the deleted connection to the workers and ends nothing itself.
    let report = keyport_shared::lambda::handle_scheduled_event(
        &keyport,
        scheduled_event(in_ms(chrono::Duration::seconds(60))),
        4,
    )
    .await
    .unwrap();
    assert_eq!(report.deletions_queued, 1, "{report:?}");
    assert_eq!(report.deleted_connection_tokens_revoked, 0, "{report:?}");
    assert_eq!(report.deleted_connections_purged, 0, "{report:?}");
    let scheduled = queue.take();
    assert!(scheduled.contains(&deletion(&id)), "{scheduled:?}");
    assert_eq!(revocations(&peer), 0);

    // A deadline with no room for a revocation: nothing ended, the connection queued again.
    let message = [deletion(&id)];
    assert!(
        work(&keyport, &message, chrono::Duration::seconds(1))
            .await
            .is_empty()
    );
    assert_eq!(revocations(&peer), 0);
    assert_eq!(remaining_tokens(&keyport, &keys).await, TOKENS);
    let continuation = queue.take();
    assert_eq!(continuation, message, "the rest is queued again");

    // The continuation, with time: every token revoked and deleted, then the last trace.
    assert!(
        work(&keyport, &continuation, chrono::Duration::seconds(120))
            .await
            .is_empty()
    );
    assert_eq!(revocations(&peer), TOKENS, "each token revoked once");
    assert_eq!(remaining_tokens(&keyport, &keys).await, 0);
    assert!(queue.take().is_empty(), "finished: nothing queued again");
    assert!(
        keyport
            .store
            .retired_connection(&id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        keyport
            .store
            .retired_connections(10)
            .await
            .unwrap()
            .is_empty()
    );

    // Delivered again (SQS delivers at least once), and a message naming a connection in
    // service: nothing is revoked, nothing fails, nothing is queued.
    assert!(
        work(
            &keyport,
            &[deletion(&id), deletion(&live)],
            chrono::Duration::seconds(120)
        )
        .await
        .is_empty()
    );
    assert_eq!(revocations(&peer), TOKENS);
    assert!(queue.take().is_empty());
    assert_eq!(remaining_tokens(&keyport, &live_keys).await, TOKENS);
    assert!(keyport.store.get_connection(&live).await.unwrap().is_some());
}

async fn two_workers_on_one_deleted_connection_end_each_token_once(backend: Backend) {
    let queue = Arc::new(KeptQueue::default());
    let keyport = with_workers(&backend, &queue);
    // A second worker process: its own clients and caches over the same storage.
    let other = with_workers(&backend, &queue);
    let peer = OidcPeer::start(PeerOptions::default());
    let (id, keys) = connection_with_tokens(&backend, &keyport, &peer, "raced").await;
    let version = keyport
        .store
        .get_connection(&id)
        .await
        .unwrap()
        .unwrap()
        .version;
    keyport
        .delete_connection(&admin(), &id, Some(version))
        .await
        .unwrap();
    let message = queue.take();
    assert_eq!(message, [deletion(&id)]);

    let (first, second) = tokio::join!(
        work(&keyport, &message, chrono::Duration::seconds(120)),
        work(&other, &message, chrono::Duration::seconds(120)),
    );
    assert!(
        first.is_empty() && second.is_empty(),
        "{first:?} {second:?}"
    );
    assert_eq!(remaining_tokens(&keyport, &keys).await, 0);
    assert!(
        keyport
            .store
            .retired_connection(&id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(queue.take().is_empty(), "nothing left to queue");
    // A token both workers revoked is deleted by one of them, which alone audits it.
    assert!(revocations(&peer) >= TOKENS);
    let trail = keyport
        .store
        .list_audit(&id, PageRequest::first(100))
        .await
        .unwrap()
        .items;
    let revoked = trail
        .iter()
        .filter(|event| event.action == AuditAction::TokenRevoked)
        .count();
    assert_eq!(revoked, TOKENS, "{trail:?}");
}

crate::on_both_backends!(
    a_delete_with_workers_answers_at_once_and_the_workers_end_every_token,
    two_workers_on_one_deleted_connection_end_each_token_once,
);
