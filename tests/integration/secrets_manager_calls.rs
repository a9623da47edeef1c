//! Secrets Manager requests counted on moto. A process reads a connection's client secret once
//! per credential-cache lifetime, not once per refresh; a PATCH that changes the secret (a new
//! connection version) and a provider's `invalid_client` each make the next refresh read it
//! again.

use std::time::Duration;

use keyport_shared::domain::{Connection, Owner, Subject, TokenSecrets};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest, ServiceError};
use keyport_tests::faulty_provider::{Answer, FaultyProvider, Tokens};
use keyport_tests::keyport::{admin, bot, keyport};
use secrecy::SecretString;

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

/// A cold process with many due tokens of one connection: the refreshes that need its secret at
/// once wait for one read of it instead of each reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_connection_in_a_cold_process_read_its_secret_once() {
    const TOKENS: usize = 16;
    let backend = keyport_tests::backends::aws().await;
    let secrets = backend
        .secrets_requests
        .clone()
        .expect("Secrets Manager requests counted");
    let provider = FaultyProvider::start().await;
    provider.otherwise(Answer::Tokens(Tokens::fresh()));
    let writer = keyport(&backend, |_| {});
    let input = serde_json::from_value(serde_json::json!({
        "name": format!("secret-stampede-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "grant_type": "authorization_code",
        "client_id": "keyport-secret-stampede",
        "client_secret": "secret-stampede",
        "client_auth": "client_secret_post",
        "authorization_url": format!("{}/authorize", provider.token_url.trim_end_matches("/token")),
        "token_url": provider.token_url,
        "invited_roles": ["bots"],
    }))
    .expect("a connection request");
    let connection = writer
        .create_connection(&admin(), input)
        .await
        .expect("created");
    let now = chrono::Utc::now();
    for person in 0..TOKENS {
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: Owner::User(Subject::parse(&format!("person-{person}")).unwrap()),
        };
        let mut record = crate::fixtures::token(&key, Some(now - chrono::Duration::seconds(5)));
        // Inside the refresh lead: due now.
        record.expires_at = Some(now + chrono::Duration::minutes(2));
        record.sealed = writer
            .cipher
            .seal_token(
                &key,
                &TokenSecrets {
                    access_token: SecretString::from(format!("stampede-access-{person}")),
                    refresh_token: Some(SecretString::from(format!("stampede-refresh-{person}"))),
                    id_token: None,
                    extra: serde_json::Map::new(),
                },
            )
            .await
            .expect("sealed");
        writer
            .store
            .put_token(&record, Expect::Absent)
            .await
            .expect("written");
    }

    // A new process (its own, empty credential cache) refreshes them all at once.
    let cold = std::sync::Arc::new(keyport(&backend, |_| {}));
    let before = secrets.count();
    let report = cold
        .refresh_due(
            tokio::time::Instant::now() + Duration::from_secs(60),
            TOKENS,
        )
        .await
        .expect("a run");
    assert!(report.refreshed >= TOKENS as u64, "{report:?}");
    assert_eq!(
        secrets.count() - before,
        1,
        "{TOKENS} refreshes at once read the connection's secret once"
    );
}
