//! An authorization belongs to the principal who started it. Mallory, invited to a connection,
//! starts a user authorization and forwards the provider's consent link to Alice; Alice
//! consents, and the callback (in Alice's browser) exchanges the code. The grant is held, not
//! placed: only Mallory's own confirmation could place it in Mallory's slot, and Mallory never
//! sees the completion value. Alice confirming it as herself discards the grant and revokes it
//! at the provider; nobody's slot holds it.

use std::sync::Arc;

use keyport_shared::domain::{AuditAction, Owner, Principal};
use keyport_shared::ports::{PageRequest, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest, ServiceError};
use keyport_tests::backends::Backend;
use keyport_tests::faulty_provider::{Answer, FaultyProvider, Tokens};
use keyport_tests::keyport::{admin, keyport, principal};
use serde_json::json;

crate::on_both_backends!(
    a_forwarded_consent_link_fills_nobodys_slot_and_its_grant_is_revoked,
    the_starter_confirms_once_and_a_state_is_no_completion,
    a_grant_never_confirmed_is_revoked_once_it_expires,
);

fn mallory() -> Principal {
    principal("mallory@example.com", &["bots"])
}

fn alice() -> Principal {
    principal("alice@example.com", &["bots"])
}

async fn setup(
    backend: &Backend,
) -> (
    Arc<Keyport>,
    FaultyProvider,
    keyport_shared::domain::Connection,
) {
    let keyport = Arc::new(keyport(backend, |_| {}));
    let provider = FaultyProvider::start().await;
    let input = serde_json::from_value(json!({
        "name": format!("binding-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "grant_type": "authorization_code",
        "client_id": "keyport-binding",
        "client_secret": "binding-client-secret",
        "authorization_url": provider.authorization_url,
        "token_url": provider.token_url,
        "revocation_url": provider.revocation_url,
        "scopes": "api:read,offline_access",
        "invited_roles": ["bots"],
    }))
    .unwrap();
    let connection = keyport.create_connection(&admin(), input).await.unwrap();
    (keyport, provider, connection)
}

fn slot(connection: &keyport_shared::domain::Connection, who: &Principal) -> TokenKey {
    TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::User(who.subject.clone()),
    }
}

async fn a_forwarded_consent_link_fills_nobodys_slot_and_its_grant_is_revoked(backend: Backend) {
    let (keyport, provider, connection) = setup(&backend).await;
    let alices_grant = Tokens::fresh();
    provider.script([Answer::Tokens(alices_grant.clone())]);

    // Mallory starts; Alice's browser follows the link, consents, and reaches the callback.
    let started = keyport
        .start_authorization(&mallory(), &connection.id, OwnerRequest::User, None)
        .await
        .unwrap();
    let held = keyport
        .complete_authorization(&format!("code=alices-code&state={}", started.state))
        .await
        .expect("the callback exchanges the code");
    assert_eq!(held.owner, Owner::User(mallory().subject));
    for who in [mallory(), alice()] {
        assert!(
            backend
                .store
                .get_token(&slot(&connection, &who))
                .await
                .unwrap()
                .is_none(),
            "the callback alone places nothing"
        );
    }

    // Alice, signed in as herself, confirms what her browser shows: refused, grant revoked.
    let refused = keyport
        .confirm_authorization(&alice(), held.completion.expose_secret())
        .await;
    assert!(
        matches!(refused, Err(ServiceError::Forbidden(_))),
        "{refused:?}"
    );
    let revocations = provider.revocations().join("\n");
    assert_eq!(provider.revocations().len(), 1, "{revocations}");
    assert!(
        revocations.contains(alices_grant.refresh()),
        "{revocations}"
    );
    for who in [mallory(), alice()] {
        assert!(
            backend
                .store
                .get_token(&slot(&connection, &who))
                .await
                .unwrap()
                .is_none(),
            "nobody's slot holds Alice's grant"
        );
    }
    // The completion is spent: not even Mallory can use it now.
    let late = keyport
        .confirm_authorization(&mallory(), held.completion.expose_secret())
        .await;
    assert!(matches!(late, Err(ServiceError::InvalidState)), "{late:?}");
    assert!(
        backend
            .store
            .get_token(&slot(&connection, &mallory()))
            .await
            .unwrap()
            .is_none()
    );
    let trail = keyport
        .audit_trail(&admin(), &connection.id, PageRequest::first(20))
        .await
        .unwrap()
        .items;
    assert!(
        trail.iter().any(|e| e.action == AuditAction::TokenFailed
            && e.actor == "alice@example.com"
            && e.detail.as_deref().is_some_and(|d| d.contains("revoked"))),
        "{trail:?}"
    );
    assert!(
        !trail
            .iter()
            .any(|e| e.action == AuditAction::TokenAuthorized)
    );
}

async fn the_starter_confirms_once_and_a_state_is_no_completion(backend: Backend) {
    let (keyport, provider, connection) = setup(&backend).await;
    provider.otherwise(Answer::Tokens(Tokens::fresh()));
    let started = keyport
        .start_authorization(&alice(), &connection.id, OwnerRequest::User, None)
        .await
        .unwrap();
    // The state itself cannot confirm anything: it holds no grant yet.
    let early = keyport
        .confirm_authorization(&alice(), &started.state)
        .await;
    assert!(
        matches!(early, Err(ServiceError::InvalidState)),
        "{early:?}"
    );
    let started = keyport
        .start_authorization(&alice(), &connection.id, OwnerRequest::User, None)
        .await
        .unwrap();
    let held = keyport
        .complete_authorization(&format!("code=c&state={}", started.state))
        .await
        .unwrap();
    // Nor can a completion value stand in for a state at the callback.
    let swapped = keyport
        .complete_authorization(&format!("code=c&state={}", held.completion.expose_secret()))
        .await;
    assert!(
        matches!(swapped, Err(ServiceError::InvalidState)),
        "{swapped:?}"
    );
    let done = keyport
        .confirm_authorization(&alice(), held.completion.expose_secret())
        .await
        .expect("the starter confirms");
    assert_eq!(done.owner, Owner::User(alice().subject));
    assert!(
        backend
            .store
            .get_token(&slot(&connection, &alice()))
            .await
            .unwrap()
            .is_some()
    );
    let again = keyport
        .confirm_authorization(&alice(), held.completion.expose_secret())
        .await;
    assert!(
        matches!(again, Err(ServiceError::InvalidState)),
        "{again:?}"
    );
    assert!(provider.revocations().is_empty());
}

async fn a_grant_never_confirmed_is_revoked_once_it_expires(backend: Backend) {
    let (keyport, provider, connection) = setup(&backend).await;
    let held_grant = Tokens::fresh();
    provider.script([Answer::Tokens(held_grant.clone())]);
    let started = keyport
        .start_authorization(&mallory(), &connection.id, OwnerRequest::User, None)
        .await
        .unwrap();
    let held = keyport
        .complete_authorization(&format!("code=c&state={}", started.state))
        .await
        .unwrap();
    let now = chrono::Utc::now;
    let report = keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .unwrap();
    assert_eq!(report.unconfirmed_revoked, 0, "not expired yet: {report:?}");
    assert!(provider.revocations().is_empty());

    // Its time runs out unconfirmed (the record's expiry moved into the past).
    let key = held.completion.as_completion();
    let mut record = backend
        .store
        .take_pending(&key, now())
        .await
        .unwrap()
        .unwrap();
    record.expires_at = now() - chrono::Duration::seconds(1);
    backend.store.put_pending(&key, &record).await.unwrap();
    let report = keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .unwrap();
    assert_eq!(report.unconfirmed_revoked, 1, "{report:?}");
    let revocations = provider.revocations().join("\n");
    assert!(revocations.contains(held_grant.refresh()), "{revocations}");
    // Once only, and the value confirms nothing afterwards.
    let again = keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .unwrap();
    assert_eq!(again.unconfirmed_revoked, 0);
    assert_eq!(provider.revocations().len(), 1);
    let late = keyport
        .confirm_authorization(
            &mallory(),
            keyport_shared::domain::StateToken::expose_secret(&held.completion),
        )
        .await;
    assert!(matches!(late, Err(ServiceError::InvalidState)), "{late:?}");
    assert!(
        backend
            .store
            .get_token(&slot(&connection, &mallory()))
            .await
            .unwrap()
            .is_none()
    );
}
