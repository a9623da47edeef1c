//! A warm token read makes no KMS call: the data key comes from the in-memory cache.

use keyport_shared::domain::{Owner, TokenSecrets};
use keyport_shared::ports::Expect;
use secrecy::{ExposeSecret, SecretString};

use crate::fixtures::{key, token};

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
