//! Secrets Manager requests counted on moto. A process reads a connection's client secret once
//! per credential-cache lifetime, not once per refresh; a PATCH that changes the secret (a new
//! connection version) and a provider's `invalid_client` each make the next refresh read it
//! again.

use std::time::Duration;

use keyport_shared::domain::Connection;
use keyport_shared::service::{Keyport, OwnerRequest, ServiceError};
use keyport_tests::faulty_provider::{Answer, FaultyProvider, Tokens};
use keyport_tests::keyport::{admin, bot, keyport};

const REFRESHES: usize = 20;

async fn connect(keyport: &Keyport, provider: &FaultyProvider, secret: &str) -> Connection {
    let input = serde_json::from_value(serde_json::json!({
        "name": format!("secret-economy-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "grant_type": "client_credentials",
        "client_id": "keyport-secret-economy",
        "client_secret": secret,
        // In the form body, where the test can see which secret the provider got.
        "client_auth": "client_secret_post",
        "token_url": provider.token_url,
        "invited_roles": ["bots"],
    }))
    .expect("a connection request");
    keyport
        .create_connection(&admin(), input)
        .await
        .expect("created")
}

async fn refresh(keyport: &Keyport, connection: &Connection) -> Result<(), ServiceError> {
    keyport
        .force_refresh(&bot(), &connection.id, OwnerRequest::Shared)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_refreshes_of_one_connection_read_its_secret_once_per_cache_lifetime() {
    let backend = keyport_tests::backends::aws().await;
    let secrets = backend
        .secrets_requests
        .clone()
        .expect("Secrets Manager requests counted");
    let provider = FaultyProvider::start().await;
    provider.otherwise(Answer::Tokens(Tokens::fresh()));
    let keyport = keyport(&backend, |_| {});
    let connection = connect(&keyport, &provider, "secret-one").await;

    let before = secrets.count();
    keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .expect("a first grant");
    for _ in 0..REFRESHES {
        refresh(&keyport, &connection).await.expect("refreshed");
    }
    assert_eq!(provider.requests().len(), REFRESHES + 1);
    assert_eq!(
        secrets.count() - before,
        1,
        "one GetSecretValue for a grant and 20 refreshes"
    );

    // A PATCH of the secret is a new connection version: the next refresh reads, and sends,
    // the new secret at once.
    keyport
        .update_connection(
            &admin(),
            &connection.id,
            serde_json::from_value(serde_json::json!({ "client_secret": "secret-two" }))
                .expect("a change request"),
        )
        .await
        .expect("changed");
    let before = secrets.count();
    for _ in 0..REFRESHES {
        refresh(&keyport, &connection).await.expect("refreshed");
    }
    assert_eq!(
        secrets.count() - before,
        1,
        "the new version's secret, read once"
    );
    assert!(
        provider.everything_received().contains("secret-two"),
        "the provider got the new secret"
    );

    // A provider refusing the client drops the cached secret: the next refresh reads it again.
    provider.script([Answer::InvalidClient]);
    let refused = refresh(&keyport, &connection).await.expect_err("refused");
    assert!(refused.to_string().contains("invalid_client"), "{refused}");
    let before = secrets.count();
    for _ in 0..REFRESHES {
        refresh(&keyport, &connection).await.expect("refreshed");
    }
    assert_eq!(
        secrets.count() - before,
        1,
        "read again after invalid_client, then cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_lifetime_every_refresh_reads_the_secret() {
    let backend = keyport_tests::backends::aws().await;
    let secrets = backend
        .secrets_requests
        .clone()
        .expect("Secrets Manager requests counted");
    let provider = FaultyProvider::start().await;
    provider.otherwise(Answer::Tokens(Tokens::fresh()));
    // A zero lifetime: each cached entry is already stale when next asked for.
    let keyport = keyport(&backend, |settings| {
        settings.credential_cache.max_age = Duration::ZERO;
    });
    let connection = connect(&keyport, &provider, "secret-uncached").await;
    keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .expect("a first grant");
    let before = secrets.count();
    for _ in 0..REFRESHES {
        refresh(&keyport, &connection).await.expect("refreshed");
    }
    assert_eq!(secrets.count() - before, REFRESHES as u64);
}
