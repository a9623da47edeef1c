//! Every grant type and client authentication method against `oidc-provider`, with refresh
//! token rotation on; the callback's refusals; and no secret in any log line meanwhile.

use std::time::Duration;

use keyport_shared::domain::{Connection, Owner, TokenStatus};
use keyport_shared::ports::TokenKey;
use keyport_shared::service::{Keyport, OwnerRequest, ServiceError};
use keyport_tests::backends::{self, Backend};
use keyport_tests::keyport::{admin, bot, finish_authorization, keyport};
use keyport_tests::logs::CapturedLogs;
use keyport_tests::oidc::{
    CLIENT_SECRET, OidcPeer, PASSWORD_SECRET, PASSWORD_USER, PeerOptions, ec_key_pair,
};
use secrecy::ExposeSecret;

fn sha256_hex(value: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn create(keyport: &Keyport, peer: &OidcPeer, settings: serde_json::Value) -> Connection {
    keyport_tests::keyport::peer_connection(keyport, peer, "peer", settings).await
}

/// Starts an authorization of the shared token, consents headlessly, and hands the callback's
/// query to Keyport. Returns the callback query for tests that look at it.
async fn authorize(keyport: &Keyport, peer: &OidcPeer, connection: &Connection) -> String {
    let started = keyport
        .start_authorization(&admin(), &connection.id, OwnerRequest::Shared, None)
        .await
        .expect("the authorization starts");
    let query = peer
        .authorize_headlessly(started.authorization_url.as_str())
        .await;
    finish_authorization(keyport, &admin(), &query)
        .await
        .expect("the callback completes");
    query
}

fn shared_key(connection: &Connection) -> TokenKey {
    TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::Shared,
    }
}

/// The stored token's secrets, decrypted: (access token, refresh token).
async fn stored_secrets(keyport: &Keyport, connection: &Connection) -> (String, Option<String>) {
    let key = shared_key(connection);
    let stored = keyport
        .store
        .get_token(&key)
        .await
        .unwrap()
        .expect("a stored token");
    let secrets = keyport
        .cipher
        .open_token(&key, &stored.sealed)
        .await
        .unwrap();
    (
        secrets.access_token.expose_secret().to_owned(),
        secrets.refresh_token.map(|t| t.expose_secret().to_owned()),
    )
}

fn token_requests(peer: &OidcPeer, grant_type: &str) -> Vec<serde_json::Value> {
    peer.requests()
        .into_iter()
        .filter(|r| r["grant_type"] == grant_type)
        .collect()
}

#[tokio::test]
async fn authorization_code_with_each_client_authentication_method() {
    let (_guard, logs) = CapturedLogs::start();
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let mut secrets_seen: Vec<String> = vec![CLIENT_SECRET.to_owned()];
    for (client_id, client_auth, grant_type, wire) in [
        (
            "keyport-basic",
            "client_secret_basic",
            "authorization_code",
            "basic",
        ),
        (
            "keyport-post",
            "client_secret_post",
            "authorization_code",
            "post",
        ),
        (
            "keyport-pkce",
            "client_secret_basic",
            "authorization_code_pkce",
            "basic",
        ),
        (
            "keyport-pkce",
            "client_secret_post",
            "authorization_code_pkce",
            "post",
        ),
    ] {
        let connection = create(
            &keyport,
            &peer,
            serde_json::json!({"client_id": client_id, "client_auth": client_auth, "grant_type": grant_type}),
        )
        .await;
        assert_eq!(
            connection.token_url.as_str(),
            format!("{}/token", peer.issuer),
            "discovery filled the endpoints"
        );
        let query = authorize(&keyport, &peer, &connection).await;
        assert!(
            query.contains("iss="),
            "the peer identifies itself (RFC 9207)"
        );
        let code = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();

        let token = keyport
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
            .await
            .unwrap();
        assert!(!token.access_token.expose_secret().is_empty());
        assert_eq!(token.token_type.to_ascii_lowercase(), "bearer");
        let granted = token.scope.clone().unwrap_or_default();
        assert!(granted.contains("api:read"), "granted scope {granted:?}");

        let exchange = token_requests(&peer, "authorization_code")
            .into_iter()
            .last()
            .expect("a code exchange");
        assert_eq!(exchange["client_id"], client_id);
        assert_eq!(exchange["client_auth"], wire, "{client_auth} on the wire");
        assert_eq!(exchange["status"], 200);

        let (access, refresh) = stored_secrets(&keyport, &connection).await;
        assert!(refresh.is_some(), "a refresh token was issued and kept");
        secrets_seen.extend([access, refresh.unwrap(), code]);
    }
    logs.assert_free_of(secrets_seen.iter().map(String::as_str));
}

#[tokio::test]
async fn the_pkce_grant_sends_a_challenge_and_the_peer_requires_it() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    // The same client, configured without PKCE: the peer refuses at the authorization step.
    let without = create(
        &keyport,
        &peer,
        serde_json::json!({"client_id": "keyport-pkce"}),
    )
    .await;
    let started = keyport
        .start_authorization(&admin(), &without.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    assert!(
        !started
            .authorization_url
            .as_str()
            .contains("code_challenge")
    );
    let query = peer
        .authorize_headlessly(started.authorization_url.as_str())
        .await;
    let err = keyport.complete_authorization(&query).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::AuthorizationDenied { .. }),
        "{err:?}"
    );
    assert!(
        keyport
            .store
            .get_token(&shared_key(&without))
            .await
            .unwrap()
            .is_none()
    );

    let with = create(
        &keyport,
        &peer,
        serde_json::json!({"client_id": "keyport-pkce", "grant_type": "authorization_code_pkce"}),
    )
    .await;
    let started = keyport
        .start_authorization(&admin(), &with.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let url = started.authorization_url.as_str();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("nonce="), "openid in scope brings a nonce");
    let query = peer.authorize_headlessly(url).await;
    finish_authorization(&keyport, &admin(), &query)
        .await
        .expect("PKCE satisfies the peer");
}

#[tokio::test]
async fn private_key_jwt_for_code_and_client_credentials() {
    let (_guard, logs) = CapturedLogs::start();
    let (private_pem, public_jwks) = ec_key_pair();
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions {
        jwt_client_jwks: Some(public_jwks),
        ..PeerOptions::default()
    });
    let settings = |grant: &str| {
        serde_json::json!({
            "client_id": "keyport-jwt", "client_auth": "private_key_jwt", "grant_type": grant,
            "client_secret": null, "private_key": private_pem,
        })
    };
    let code_flow = create(&keyport, &peer, settings("authorization_code_pkce")).await;
    authorize(&keyport, &peer, &code_flow).await;
    keyport
        .access_token(&bot(), &code_flow.id, OwnerRequest::Shared, None)
        .await
        .unwrap();

    let mut machine = settings("client_credentials");
    machine["scopes"] = serde_json::json!("api:read");
    let machine = create(&keyport, &peer, machine).await;
    keyport
        .access_token(&bot(), &machine.id, OwnerRequest::Shared, None)
        .await
        .unwrap();

    let requests = peer.requests();
    assert!(requests.len() >= 2);
    for request in &requests {
        assert_eq!(request["client_auth"], "jwt", "{request}");
        assert_eq!(request["status"], 200, "{request}");
    }
    logs.assert_free_of([private_pem.lines().nth(1).unwrap()]);
}

#[tokio::test]
async fn client_credentials_with_basic_and_post() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    for (client_id, client_auth, wire) in [
        ("keyport-basic", "client_secret_basic", "basic"),
        ("keyport-post", "client_secret_post", "post"),
    ] {
        let connection = create(
            &keyport,
            &peer,
            serde_json::json!({"client_id": client_id, "client_auth": client_auth, "grant_type": "client_credentials", "scopes": "api:read"}),
        )
        .await;
        let first = keyport
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
            .await
            .unwrap();
        let second = keyport
            .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
            .await
            .unwrap();
        assert_eq!(
            first.access_token.expose_secret(),
            second.access_token.expose_secret(),
            "a valid token is reused"
        );
        assert_eq!(first.scope.as_deref(), Some("api:read"));
        let requests: Vec<_> = token_requests(&peer, "client_credentials")
            .into_iter()
            .filter(|r| r["client_id"] == client_id)
            .collect();
        assert_eq!(requests.len(), 1, "one token request for two reads");
        assert_eq!(requests[0]["client_auth"], wire);
        assert_eq!(requests[0]["status"], 200);
    }
}

#[tokio::test]
async fn the_password_grant_works_only_where_enabled() {
    let backend = backends::embedded().await;
    let peer = OidcPeer::start(PeerOptions::default());
    let settings = serde_json::json!({
        "grant_type": "password", "username": PASSWORD_USER, "password": PASSWORD_SECRET, "scopes": "api:read"
    });
    let refused = keyport(&backend, |_| {});
    let input = serde_json::from_value(serde_json::json!({
        "name": "legacy", "provider": "custom", "issuer": peer.issuer, "client_id": "keyport-basic",
        "client_secret": CLIENT_SECRET, "grant_type": "password", "username": PASSWORD_USER, "password": PASSWORD_SECRET
    }))
    .unwrap();
    let err = refused
        .create_connection(&admin(), input)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Invalid(e) if e.field == "grant_type"),
        "{err:?}"
    );

    let allowed = keyport(&backend, |s| s.allow_password_grant = true);
    let connection = create(&allowed, &peer, settings).await;
    let token = allowed
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    assert!(!token.access_token.expose_secret().is_empty());
    let requests = token_requests(&peer, "password");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], 200);
}

#[tokio::test]
async fn a_rotated_refresh_token_replaces_the_stored_one() {
    let (_guard, logs) = CapturedLogs::start();
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let connection = create(&keyport, &peer, serde_json::json!({})).await;
    authorize(&keyport, &peer, &connection).await;
    let (first_access, first_refresh) = stored_secrets(&keyport, &connection).await;
    let first_refresh = first_refresh.unwrap();

    keyport
        .force_refresh(&bot(), &connection.id, OwnerRequest::Shared)
        .await
        .unwrap();
    let (second_access, second_refresh) = stored_secrets(&keyport, &connection).await;
    let second_refresh = second_refresh.unwrap();
    assert_ne!(second_access, first_access);
    assert_ne!(
        second_refresh, first_refresh,
        "the provider rotated the refresh token and Keyport kept the new one"
    );

    keyport
        .force_refresh(&bot(), &connection.id, OwnerRequest::Shared)
        .await
        .unwrap();
    let (_, third_refresh) = stored_secrets(&keyport, &connection).await;

    let presented: Vec<String> = token_requests(&peer, "refresh_token")
        .iter()
        .map(|r| r["refresh_token_sha256"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        presented,
        [sha256_hex(&first_refresh), sha256_hex(&second_refresh)],
        "each refresh token used once, in order"
    );
    assert!(
        token_requests(&peer, "refresh_token")
            .iter()
            .all(|r| r["status"] == 200)
    );
    logs.assert_free_of([
        first_refresh.as_str(),
        second_refresh.as_str(),
        third_refresh.as_deref().unwrap(),
        first_access.as_str(),
        second_access.as_str(),
    ]);
}

#[tokio::test]
async fn a_read_refreshes_in_line_when_the_token_expires_within_min_valid() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions {
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let connection = create(&keyport, &peer, serde_json::json!({})).await;
    authorize(&keyport, &peer, &connection).await;
    let relaxed = keyport
        .access_token(
            &bot(),
            &connection.id,
            OwnerRequest::Shared,
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(
        token_requests(&peer, "refresh_token").is_empty(),
        "a token valid for 60 s satisfies 10 s"
    );
    let strict = keyport
        .access_token(
            &bot(),
            &connection.id,
            OwnerRequest::Shared,
            Some(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert_ne!(
        strict.access_token.expose_secret(),
        relaxed.access_token.expose_secret()
    );
    assert_eq!(
        token_requests(&peer, "refresh_token").len(),
        1,
        "refreshed in line, once"
    );
}

#[tokio::test]
async fn invalid_grant_needs_reauthorization_and_authorizing_again_recovers() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let connection = create(&keyport, &peer, serde_json::json!({})).await;
    authorize(&keyport, &peer, &connection).await;
    let key = shared_key(&connection);
    let original = keyport.store.get_token(&key).await.unwrap().unwrap();

    // The grant dies at the provider: rotate once, then put the stale copy back, so the next
    // refresh presents a consumed refresh token (reuse detection revokes the whole grant).
    keyport
        .force_refresh(&bot(), &connection.id, OwnerRequest::Shared)
        .await
        .unwrap();
    let current = keyport.store.get_token(&key).await.unwrap().unwrap();
    let mut stale = original.clone();
    stale.expires_at = Some(chrono::Utc::now());
    keyport
        .store
        .put_token(
            &stale,
            keyport_shared::ports::Expect::Version(current.version),
        )
        .await
        .unwrap();

    let err = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::NeedsReauthorization { .. }),
        "{err:?}"
    );
    let stored = keyport.store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(stored.status, TokenStatus::NeedsReauthorization);
    assert!(
        stored.refresh_due_at.is_none(),
        "the refresher leaves it alone"
    );
    assert!(stored.lease.is_none());
    let err = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::NeedsReauthorization { .. }),
        "and says so without calling the provider"
    );

    authorize(&keyport, &peer, &connection).await;
    let token = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    assert!(!token.access_token.expose_secret().is_empty());
}

#[tokio::test]
async fn disconnect_revokes_the_grant_at_the_provider() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let connection = create(&keyport, &peer, serde_json::json!({})).await;
    assert!(connection.revocation_url.is_some(), "discovered");
    authorize(&keyport, &peer, &connection).await;
    let (_, refresh) = stored_secrets(&keyport, &connection).await;
    // The shared token serves every invited caller: one of them may not end it for the rest.
    let refused = keyport
        .disconnect(&bot(), &connection.id, OwnerRequest::Shared)
        .await;
    assert!(
        matches!(refused, Err(ServiceError::Forbidden(_))),
        "an invited bot disconnects the shared token: {refused:?}"
    );
    assert!(
        keyport
            .store
            .get_token(&shared_key(&connection))
            .await
            .unwrap()
            .is_some(),
        "the refusal left the token"
    );
    assert!(
        peer.requests()
            .iter()
            .all(|r| r["path"] != "/token/revocation"),
        "the refusal revoked nothing"
    );
    assert!(
        keyport
            .disconnect(&admin(), &connection.id, OwnerRequest::Shared)
            .await
            .unwrap()
    );
    assert!(
        keyport
            .store
            .get_token(&shared_key(&connection))
            .await
            .unwrap()
            .is_none()
    );
    let revocations: Vec<_> = peer
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/token/revocation")
        .collect();
    assert_eq!(revocations.len(), 1);
    assert_eq!(
        revocations[0]["token_sha256"],
        sha256_hex(&refresh.unwrap()),
        "the refresh token, which ends the grant"
    );
    assert_eq!(revocations[0]["status"], 200);
}

#[tokio::test]
async fn a_state_works_once_and_only_if_keyport_issued_it() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let connection = create(&keyport, &peer, serde_json::json!({})).await;
    let query = authorize(&keyport, &peer, &connection).await;

    let replay = keyport.complete_authorization(&query).await.unwrap_err();
    assert!(matches!(replay, ServiceError::InvalidState), "{replay:?}");
    let forged_state = keyport_shared::domain::StateToken::generate();
    let unknown = keyport
        .complete_authorization(&format!("code=abc&state={}", forged_state.expose_secret()))
        .await
        .unwrap_err();
    assert!(matches!(unknown, ServiceError::InvalidState), "{unknown:?}");
    let malformed = keyport
        .complete_authorization("code=abc&state=short")
        .await
        .unwrap_err();
    assert!(
        matches!(malformed, ServiceError::Invalid(_)),
        "{malformed:?}"
    );

    // An error callback is refused with the provider's words, and uses the state up.
    let started = keyport
        .start_authorization(&admin(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    // With the issuer's iss, as the peer sends it on errors too (RFC 9207 §2).
    let denied = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("error", "access_denied")
        .append_pair("error_description", "The user said no")
        .append_pair("state", &started.state)
        .append_pair(
            "iss",
            connection.issuer.as_ref().expect("discovered").as_str(),
        )
        .finish();
    let err = keyport.complete_authorization(&denied).await.unwrap_err();
    assert!(
        matches!(&err, ServiceError::AuthorizationDenied { error, .. } if error == "access_denied"),
        "{err:?}"
    );
    assert!(err.to_string().contains("The user said no"));
    let again = keyport.complete_authorization(&denied).await.unwrap_err();
    assert!(matches!(again, ServiceError::InvalidState));
}

#[tokio::test]
async fn a_response_from_another_issuer_or_without_its_iss_is_refused() {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let connection = create(&keyport, &peer, serde_json::json!({})).await;
    let started = keyport
        .start_authorization(&admin(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let query = peer
        .authorize_headlessly(started.authorization_url.as_str())
        .await;
    // RFC 9207 §2.4: the peer advertises iss in its responses, so one without it is refused.
    assert!(connection.callback_iss_required, "set by discovery");
    let without_iss: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "iss"))
        .finish();
    assert_ne!(without_iss, query, "the peer sent iss");
    let err = keyport
        .complete_authorization(&without_iss)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::IssuerMissing), "{err:?}");
    let started = keyport
        .start_authorization(&admin(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let query = peer
        .authorize_headlessly(started.authorization_url.as_str())
        .await;
    let forged: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| {
            if k == "iss" {
                (k.into_owned(), "https://attacker.example".to_owned())
            } else {
                (k.into_owned(), v.into_owned())
            }
        }))
        .finish();
    let err = keyport.complete_authorization(&forged).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::IssuerMismatch { .. }),
        "{err:?}"
    );
    assert!(
        keyport
            .store
            .get_token(&shared_key(&connection))
            .await
            .unwrap()
            .is_none(),
        "no code was exchanged"
    );
    assert!(token_requests(&peer, "authorization_code").is_empty());
}

#[tokio::test]
async fn the_code_flow_works_on_the_aws_back_ends_too() {
    let backend: Backend = backends::aws().await;
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let connection = create(
        &keyport,
        &peer,
        serde_json::json!({"grant_type": "authorization_code_pkce", "client_id": "keyport-pkce"}),
    )
    .await;
    authorize(&keyport, &peer, &connection).await;
    let first = keyport
        .access_token(&bot(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let refreshed = keyport
        .force_refresh(&bot(), &connection.id, OwnerRequest::Shared)
        .await
        .unwrap();
    assert_ne!(
        first.access_token.expose_secret(),
        refreshed.access_token.expose_secret()
    );
}
