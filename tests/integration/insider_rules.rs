//! An administrator with an agenda, and a connection switched off. Stored credentials only ever
//! go to the endpoints they were issued for: a change to where they would be sent needs the
//! secret typed again and ends every stored token (revoked where it was issued), and a token
//! issued under the old destination is never sent to the new one, even when a refresh racing
//! the change writes it back. A disabled connection hands out, refreshes and authorizes nothing.
//! And no caller can make Keyport ask a provider for a still-valid token more than once per 30 s.
//! Both providers are loopback listeners that record everything reaching them.

use std::sync::Arc;

use chrono::Utc;
use keyport_shared::domain::{AuditAction, Connection, Owner, Principal, TokenStatus};
use keyport_shared::http::Function;
use keyport_shared::ports::{Expect, PageRequest, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest, ServiceError};
use keyport_tests::backends::Backend;
use keyport_tests::faulty_provider::{Answer, FaultyProvider, Tokens};
use keyport_tests::keyport::{admin, authorize_with_any_code, bot, keyport, principal};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::lambda_events::{event_text, invoke};

crate::on_both_backends!(
    moving_a_connection_needs_its_secret_again_and_ends_every_token_where_it_was_issued,
    a_disabled_connection_hands_out_refreshes_and_authorizes_nothing,
    callers_cannot_make_keyport_ask_the_provider_more_than_once_per_30_seconds,
);

fn alice() -> Principal {
    principal("alice@example.com", &["bots"])
}

/// A connection to `provider` whose client secret is `secret`.
async fn connect(keyport: &Keyport, provider: &FaultyProvider, secret: &str) -> Connection {
    let input = serde_json::from_value(json!({
        "name": format!("insider-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "grant_type": "authorization_code",
        "client_id": "keyport-insider",
        "client_secret": secret,
        "authorization_url": provider.authorization_url,
        "token_url": provider.token_url,
        "revocation_url": provider.revocation_url,
        "scopes": "api:read,offline_access",
        "invited_roles": ["bots"],
    }))
    .expect("a connection request");
    keyport
        .create_connection(&admin(), input)
        .await
        .expect("created")
}

fn change(fields: Value) -> keyport_shared::domain::ConnectionInput {
    serde_json::from_value(fields).expect("a change request")
}

async fn moving_a_connection_needs_its_secret_again_and_ends_every_token_where_it_was_issued(
    backend: Backend,
) {
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let legit = FaultyProvider::start().await;
    let evil = FaultyProvider::start().await;
    let secret = format!("legit-client-secret-{}", uuid::Uuid::new_v4().simple());
    let (shared_tokens, user_tokens) = (Tokens::fresh(), Tokens::fresh());
    legit.script([
        Answer::Tokens(shared_tokens.clone()),
        Answer::Tokens(user_tokens.clone()),
    ]);
    let connection = connect(&keyport, &legit, &secret).await;
    authorize_with_any_code(&keyport, &connection, &admin(), OwnerRequest::Shared).await;
    authorize_with_any_code(&keyport, &connection, &alice(), OwnerRequest::User).await;
    let shared_key = TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::Shared,
    };
    let user_key = TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::User(alice().subject),
    };
    let issued = backend
        .store
        .get_token(&shared_key)
        .await
        .unwrap()
        .expect("the shared token");

    // Every way to point the stored credentials elsewhere, without typing the secret again:
    // refused, and nothing changes.
    for (field, value) in [
        ("revocation_url", json!(evil.revocation_url)),
        ("token_url", json!(evil.token_url)),
        ("authorization_url", json!(evil.authorization_url)),
        ("issuer", json!("http://127.0.0.1:9/evil")),
        ("client_id", json!("someone-elses-client")),
        ("client_auth", json!("client_secret_post")),
        ("provider_params", json!({"instance": "evil"})),
    ] {
        let refused = keyport
            .update_connection(&admin(), &connection.id, change(json!({ field: value })))
            .await
            .expect_err(field);
        match refused {
            ServiceError::Invalid(error) => {
                assert_eq!(error.field, "client_secret", "{field}: {error}");
                assert!(error.message.contains(field), "{}", error.message);
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let unchanged = keyport
        .get_connection(&admin(), &connection.id)
        .await
        .unwrap();
    assert_eq!(
        unchanged.version, connection.version,
        "the refused changes wrote nothing"
    );
    assert_eq!(unchanged.revocation_url, connection.revocation_url);
    assert!(
        backend
            .store
            .get_token(&shared_key)
            .await
            .unwrap()
            .is_some()
    );
    assert!(backend.store.get_token(&user_key).await.unwrap().is_some());
    assert!(legit.revocations().is_empty());

    // With the secret typed again the change goes through, and ends both tokens: revoked at
    // the provider that issued them, with the credentials they were issued to, then deleted.
    let moved = keyport
        .update_connection(
            &admin(),
            &connection.id,
            change(json!({
                "token_url": evil.token_url,
                "revocation_url": evil.revocation_url,
                "client_secret": "typed-by-the-administrator",
            })),
        )
        .await
        .expect("the change with the secret");
    assert_eq!(moved.token_url.as_str(), evil.token_url);
    let revocations = legit.revocations().join("\n");
    assert_eq!(legit.revocations().len(), 2, "{revocations}");
    for tokens in [&shared_tokens, &user_tokens] {
        assert!(revocations.contains(tokens.refresh()), "{revocations}");
    }
    assert!(
        backend
            .store
            .get_token(&shared_key)
            .await
            .unwrap()
            .is_none()
    );
    assert!(backend.store.get_token(&user_key).await.unwrap().is_none());
    let read = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await;
    assert!(
        matches!(read, Err(ServiceError::NotAuthorized { .. })),
        "{read:?}"
    );
    let trail = keyport
        .audit_trail(&admin(), &connection.id, PageRequest::first(50))
        .await
        .unwrap()
        .items;
    let ended: Vec<_> = trail
        .iter()
        .filter(|e| e.action == AuditAction::TokenRevoked)
        .collect();
    assert_eq!(ended.len(), 2, "{trail:?}");
    assert!(
        ended
            .iter()
            .all(|e| e.detail.as_deref().is_some_and(|d| d.contains("token_url")))
    );

    // A refresh that raced the change writes the old grant back (stamped with the old
    // destination): it is neither refreshed at, revoked at, nor handed out for the new one.
    let mut late = issued.clone();
    late.lease = None;
    backend
        .store
        .put_token(&late, Expect::Absent)
        .await
        .unwrap();
    let forced = keyport
        .force_refresh(&admin(), &connection.id, OwnerRequest::Shared)
        .await;
    assert!(
        matches!(forced, Err(ServiceError::NotAuthorized { .. })),
        "{forced:?}"
    );
    assert!(
        backend
            .store
            .get_token(&shared_key)
            .await
            .unwrap()
            .is_none(),
        "the stale token is discarded"
    );
    backend
        .store
        .put_token(&late, Expect::Absent)
        .await
        .unwrap();
    keyport
        .delete_connection(&admin(), &connection.id, None)
        .await
        .expect("deleted");

    let received = evil.everything_received();
    for leaked in [
        secret.as_str(),
        shared_tokens.refresh(),
        &shared_tokens.access_token,
        user_tokens.refresh(),
        &user_tokens.access_token,
    ] {
        assert!(
            !received.contains(leaked),
            "the new endpoint received a stored credential:\n{received}"
        );
    }
    assert!(
        received.is_empty(),
        "nothing stored went to the new endpoint:\n{received}"
    );
}

async fn a_disabled_connection_hands_out_refreshes_and_authorizes_nothing(backend: Backend) {
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let provider = FaultyProvider::start().await;
    provider.otherwise(Answer::Tokens(Tokens::fresh()));
    let connection = connect(&keyport, &provider, "disabled-test-secret").await;
    authorize_with_any_code(&keyport, &connection, &admin(), OwnerRequest::Shared).await;
    let pending = keyport
        .start_authorization(&alice(), &connection.id, OwnerRequest::User, None)
        .await
        .expect("started before the connection is disabled");
    let key = TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::Shared,
    };

    let disabled = keyport
        .update_connection(
            &admin(),
            &connection.id,
            change(json!({"status": "disabled"})),
        )
        .await
        .expect("disabled");
    assert!(!disabled.is_enabled());
    assert!(
        backend.store.get_token(&key).await.unwrap().is_some(),
        "disabling is not a move: the token stays"
    );
    let calls_before = provider.requests().len();

    let disabled_error = |result: Result<_, ServiceError>, what: &str| match result {
        Err(ServiceError::ConnectionDisabled) => {}
        Err(other) => panic!("{what}: {other:?}"),
        Ok(_) => panic!("{what} succeeded on a disabled connection"),
    };
    disabled_error(
        keyport
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
            .await
            .map(|_| ()),
        "a read",
    );
    disabled_error(
        keyport
            .force_refresh(&admin(), &connection.id, OwnerRequest::Shared)
            .await
            .map(|_| ()),
        "a forced refresh",
    );
    disabled_error(
        keyport
            .start_authorization(&alice(), &connection.id, OwnerRequest::User, None)
            .await
            .map(|_| ()),
        "an authorization",
    );
    disabled_error(
        keyport
            .complete_authorization(&format!("code=any-code&state={}", pending.state))
            .await
            .map(|_| ()),
        "a callback of an authorization started before",
    );
    // Through the token function's route: a 409 in Keyport's error shape.
    let reply = invoke(
        &keyport,
        Function::Token,
        &event_text("token-get.json", Some(connection.id.as_str())),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(
        reply.json()["error"],
        "connection_disabled",
        "{}",
        reply.body
    );

    // The refresher passes the due token over without calling the provider.
    let mut due = backend.store.get_token(&key).await.unwrap().unwrap();
    due.refresh_due_at = Some(Utc::now() - chrono::Duration::seconds(1));
    due.expires_at = Some(Utc::now() + chrono::Duration::seconds(10));
    let version = due.version;
    let due = backend
        .store
        .put_token(&due, Expect::Version(version))
        .await
        .unwrap();
    let report = keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .unwrap();
    assert_eq!((report.refreshed, report.skipped), (0, 1), "{report:?}");
    assert_eq!(
        provider.requests().len(),
        calls_before,
        "no provider call while disabled"
    );
    let untouched = backend.store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(untouched.version, due.version);

    // Enabled again, everything resumes.
    keyport
        .update_connection(
            &admin(),
            &connection.id,
            change(json!({"status": "active"})),
        )
        .await
        .expect("enabled");
    let report = keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .unwrap();
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert!(provider.requests().len() > calls_before);
    let read = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .expect("a read once enabled");
    assert_eq!(read.owner, Owner::Shared);
    let token = backend.store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(token.status, TokenStatus::Valid);
}

/// Callers cannot make Keyport hammer a provider: reads asking for more validity than the
/// provider grants, and forced refreshes, ask the provider at most once per 30 s for a token
/// that is still valid, and the answer says when the validity asked for is not met.
async fn callers_cannot_make_keyport_ask_the_provider_more_than_once_per_30_seconds(
    backend: Backend,
) {
    let keyport = Arc::new(keyport(&backend, |settings| {
        settings.on_demand_refresh_interval = std::time::Duration::from_secs(30)
    }));
    let provider = FaultyProvider::start().await;
    let (granted, refreshed) = (Tokens::fresh(), Tokens::fresh());
    provider.script([
        Answer::Tokens(granted.clone()),
        Answer::Tokens(refreshed.clone()),
    ]);
    let connection = connect(&keyport, &provider, "throttle-test-secret").await;
    authorize_with_any_code(&keyport, &connection, &admin(), OwnerRequest::Shared).await;
    assert_eq!(provider.requests().len(), 1, "the code exchange");
    let two_hours = Some(std::time::Duration::from_secs(2 * 60 * 60));
    for _ in 0..5 {
        let view = keyport
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, two_hours)
            .await
            .expect("the current token");
        assert_eq!(view.access_token.expose_secret(), granted.access_token);
        assert!(
            !view.min_valid_met,
            "an hour's token cannot stay valid for two"
        );
        assert_eq!(serde_json::to_value(&view).unwrap()["min_valid_met"], false);
        let forced = keyport
            .force_refresh(&admin(), &connection.id, OwnerRequest::Shared)
            .await
            .expect("the current token");
        assert_eq!(forced.access_token.expose_secret(), granted.access_token);
    }
    assert_eq!(provider.requests().len(), 1, "no provider call within 30 s");
    let enough = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    assert!(enough.min_valid_met, "the default margin is met");

    // Once the last request is 30 s old, a caller may make Keyport ask again, once.
    let key = TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::Shared,
    };
    let mut aged = backend.store.get_token(&key).await.unwrap().unwrap();
    aged.provider_asked_at = Some(Utc::now() - chrono::Duration::seconds(31));
    let version = aged.version;
    backend
        .store
        .put_token(&aged, Expect::Version(version))
        .await
        .unwrap();
    for _ in 0..3 {
        let view = keyport
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, two_hours)
            .await
            .unwrap();
        assert_eq!(view.access_token.expose_secret(), refreshed.access_token);
        assert!(!view.min_valid_met);
    }
    assert_eq!(provider.requests().len(), 2, "one refresh, not three");
}
