//! The local server verifying bearer tokens against an identity provider's JWKS: here the
//! oidc-provider peer's keys and an id token it issued.

use keyport_shared::domain::Owner;
use keyport_shared::ports::TokenKey;
use keyport_shared::service::OwnerRequest;
use keyport_tests::backends;
use keyport_tests::http_client::Http;
use keyport_tests::keyport::{admin, keyport};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use secrecy::ExposeSecret;

/// An id token from the peer, obtained through a real authorization (audience keyport-basic).
async fn id_token_from(peer: &OidcPeer) -> String {
    let backend = backends::embedded().await;
    let keyport = keyport(&backend, |_| {});
    let input = serde_json::from_value(serde_json::json!({
        "name": "idp", "provider": "custom", "issuer": peer.issuer, "client_id": "keyport-basic",
        "client_secret": CLIENT_SECRET, "grant_type": "authorization_code", "scopes": "openid"
    }))
    .unwrap();
    let connection = keyport.create_connection(&admin(), input).await.unwrap();
    let started = keyport
        .start_authorization(&admin(), &connection.id, OwnerRequest::Shared, None)
        .await
        .unwrap();
    let query = peer
        .authorize_headlessly(started.authorization_url.as_str())
        .await;
    keyport_tests::keyport::finish_authorization(&keyport, &admin(), &query)
        .await
        .unwrap();
    let key = TokenKey {
        connection_id: connection.id.clone(),
        owner: Owner::Shared,
    };
    let stored = keyport.store.get_token(&key).await.unwrap().unwrap();
    let secrets = keyport
        .cipher
        .open_token(&key, &stored.sealed)
        .await
        .unwrap();
    secrets
        .id_token
        .expect("the peer issued an id token")
        .expose_secret()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_verify_against_a_jwks_url() {
    let peer = OidcPeer::start(PeerOptions::default());
    let id_token = id_token_from(&peer).await;
    let jwks_url = format!("{}/jwks", peer.issuer);
    let backend = backends::embedded().await;
    let server = TestServer::start(
        &backend,
        &[
            "--jwks-url",
            &jwks_url,
            "--jwt-issuer",
            &peer.issuer,
            "--jwt-audience",
            "keyport-basic",
        ],
    )
    .await;
    let http = Http::new(&server.base);

    let accepted = http.get("/providers", Some(&id_token)).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let no_roles = http.get("/connections", Some(&id_token)).await;
    assert_eq!(
        no_roles.status, 403,
        "a verified caller without an administrator role"
    );

    let mut tampered = id_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let refused = http.get("/providers", Some(&tampered)).await;
    assert_eq!(refused.status, 401, "{}", refused.text);

    // The development key means nothing to a server configured with a JWKS.
    let dev = server.token("admin", &["keyport-admins"]);
    let refused = http.get("/providers", Some(&dev)).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    server.server.stop().await;
}
