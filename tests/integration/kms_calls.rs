//! KMS requests counted on moto. A process seals every token with one data key for the key's
//! lifetime (one GenerateDataKey, however many writes); a warm token read makes no KMS call:
//! the data key comes from the in-memory cache; a cold process pays one Decrypt per data key,
//! not per token; and a token read through the service is one DynamoDB request.

use keyport_shared::domain::{Connection, Owner, TokenSecrets};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest};
use keyport_tests::faulty_provider::{Answer, FaultyProvider, Tokens};
use keyport_tests::keyport::{admin, bot};
use secrecy::{ExposeSecret, SecretString};

use crate::fixtures::{connection, key, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_read_decrypts_once_and_the_next_hundred_not_at_all() {
    let backend = keyport_tests::backends::aws().await;
    let kms_requests = backend
        .kms_requests
        .clone()
        .expect("the AWS back-end counts KMS requests");
    let key = key(Owner::Shared);

    // Written by one instance...
    let writer = backend.cipher();
    let secrets = TokenSecrets {
        access_token: SecretString::from("warm-read-access-token"),
        refresh_token: None,
        id_token: None,
        extra: serde_json::Map::new(),
    };
    let before_write = kms_requests.count();
    let mut record = token(&key, None);
    record.sealed = writer.seal_token(&key, &secrets).await.unwrap();
    assert_eq!(
        kms_requests.count() - before_write,
        1,
        "the first write makes one GenerateDataKey"
    );
    for _ in 0..20 {
        writer.seal_token(&key, &secrets).await.unwrap();
    }
    assert_eq!(
        kms_requests.count() - before_write,
        1,
        "the next writes reuse its data key"
    );
    backend
        .store
        .put_token(&record, Expect::Absent)
        .await
        .unwrap();

    // ...read by another, whose cache starts cold.
    let reader = backend.cipher();
    let before_first = kms_requests.count();
    let stored = backend.store.get_token(&key).await.unwrap().unwrap();
    let opened = reader.open_token(&key, &stored.sealed).await.unwrap();
    assert_eq!(
        opened.access_token.expose_secret(),
        "warm-read-access-token"
    );
    assert_eq!(
        kms_requests.count() - before_first,
        1,
        "the first read makes one Decrypt"
    );

    let before_warm = kms_requests.count();
    for _ in 0..100 {
        let stored = backend.store.get_token(&key).await.unwrap().unwrap();
        let opened = reader.open_token(&key, &stored.sealed).await.unwrap();
        assert_eq!(
            opened.access_token.expose_secret(),
            "warm-read-access-token"
        );
    }
    assert_eq!(
        kms_requests.count() - before_warm,
        0,
        "warm reads make no KMS call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_read_is_one_dynamodb_request_and_warm_no_kms_call() {
    let backend = keyport_tests::backends::aws().await;
    let (kms, dynamodb) = (
        backend.kms_requests.clone().expect("KMS requests counted"),
        backend
            .dynamodb_requests
            .clone()
            .expect("DynamoDB requests counted"),
    );
    let stored = backend
        .store
        .create_connection(&connection(&format!("one-trip-{}", uuid::Uuid::new_v4())))
        .await
        .unwrap();
    let key = TokenKey {
        connection_id: stored.id.clone(),
        owner: Owner::Shared,
    };
    let secrets = TokenSecrets {
        access_token: SecretString::from("one-trip-access-token"),
        refresh_token: Some(SecretString::from("one-trip-refresh-token")),
        id_token: None,
        extra: serde_json::Map::new(),
    };
    let mut record = token(&key, None);
    record.sealed = backend.cipher().seal_token(&key, &secrets).await.unwrap();
    backend
        .store
        .put_token(&record, Expect::Absent)
        .await
        .unwrap();

    // A new instance: its data-key cache is cold.
    let keyport = keyport_tests::keyport::keyport(&backend, |_| {});
    let bot = keyport_tests::keyport::bot();
    // (DynamoDB, KMS) requests: cold, then warm. The caller's first read also writes its fetch
    // record (who used which token); the next ones within the interval write nothing.
    for (read, expected) in [(2, 1), (1, 0), (1, 0)].into_iter().enumerate() {
        let (kms_before, dynamodb_before) = (kms.count(), dynamodb.count());
        let view = keyport
            .access_token(&bot, &stored.id, OwnerRequest::Shared, None)
            .await
            .unwrap();
        assert_eq!(view.access_token.expose_secret(), "one-trip-access-token");
        assert_eq!(
            (dynamodb.count() - dynamodb_before, kms.count() - kms_before),
            expected,
            "read {read}: (DynamoDB, KMS) requests"
        );
    }
}

/// A client-credentials connection to `provider`, readable by the bots.
async fn unattended_connection(keyport: &Keyport, provider: &FaultyProvider) -> Connection {
    let input = serde_json::from_value(serde_json::json!({
        "name": format!("kms-economy-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "grant_type": "client_credentials",
        "client_id": "keyport-kms-economy",
        "client_secret": "kms-economy-client-secret",
        "token_url": provider.token_url,
        "invited_roles": ["bots"],
    }))
    .expect("a connection request");
    keyport
        .create_connection(&admin(), input)
        .await
        .expect("created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_token_writes_cost_one_data_key_and_a_cold_process_reads_them_with_one_decrypt() {
    const TOKENS: usize = 50;
    let backend = keyport_tests::backends::aws().await;
    let (kms, dynamodb) = (
        backend.kms_requests.clone().expect("KMS requests counted"),
        backend
            .dynamodb_requests
            .clone()
            .expect("DynamoDB requests counted"),
    );
    let provider = FaultyProvider::start().await;
    provider.script((0..TOKENS + 10).map(|_| Answer::Tokens(Tokens::fresh())));
    let writer = keyport_tests::keyport::keyport(&backend, |_| {});
    let mut connections = Vec::new();
    for _ in 0..TOKENS {
        connections.push(unattended_connection(&writer, &provider).await);
    }

    // Each first read obtains a grant from the provider and seals it: 50 token writes through
    // the service, then 10 forced refreshes of one of them, in one process.
    let before_writes = kms.count();
    let mut issued = Vec::new();
    for connection in &connections {
        let view = writer
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
            .await
            .expect("a grant");
        issued.push(view.access_token.expose_secret().to_owned());
    }
    for _ in 0..10 {
        writer
            .force_refresh(&bot(), &connections[0].id, OwnerRequest::Shared)
            .await
            .expect("refreshed");
    }
    assert_eq!(
        provider.requests().len(),
        TOKENS + 10,
        "every write came from the provider"
    );
    assert_eq!(
        kms.count() - before_writes,
        1,
        "one GenerateDataKey for 60 writes (and no Decrypt: the writer remembers its key)"
    );
    issued[0] = writer
        .access_token(&bot(), &connections[0].id, OwnerRequest::Shared, None)
        .await
        .unwrap()
        .access_token
        .expose_secret()
        .to_owned();

    // A new process, its data-key cache cold, reads them all.
    let reader = keyport_tests::keyport::keyport(&backend, |_| {});
    let (kms_before, dynamodb_before) = (kms.count(), dynamodb.count());
    for (connection, issued) in connections.iter().zip(&issued) {
        let view = reader
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
            .await
            .expect("a stored token");
        assert_eq!(view.access_token.expose_secret(), issued);
    }
    assert_eq!(
        (dynamodb.count() - dynamodb_before, kms.count() - kms_before),
        (2 * TOKENS as u64, 1),
        "(DynamoDB, KMS) requests for 50 cold reads (each the bot's first of its connection: a read and its fetch record): one Decrypt for the shared data key"
    );
}
