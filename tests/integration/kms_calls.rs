//! A warm token read makes no KMS call: the data key comes from the in-memory cache; and a
//! token read through the service is one DynamoDB request.

use keyport_shared::domain::{Owner, TokenSecrets};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_shared::service::OwnerRequest;
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
        "one GenerateDataKey per write"
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
    // (DynamoDB, KMS) requests: cold, then warm.
    for (read, expected) in [(1, 1), (1, 0), (1, 0)].into_iter().enumerate() {
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
