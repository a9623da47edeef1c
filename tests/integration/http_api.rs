//! Keyport over HTTP, end to end: the local server, the oidc-provider peer, real bearer tokens.
//! The scenario runs on both back-ends.

use keyport_tests::api::Api;
use keyport_tests::backends::{self, Backend};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::json;

const ADMIN: &[&str] = &["keyport-admins"];
const BOTS: &[&str] = &["bots"];

/// Starts an authorization over HTTP as `token`'s holder, walks the peer's login and consent,
/// and delivers the callback to the server; returns the callback page.
async fn authorize(
    api: &Api,
    server: &TestServer,
    peer: &OidcPeer,
    token: &str,
    id: &str,
    owner: &str,
    login_hint: Option<&str>,
) -> String {
    let started = api
        .call(
            "POST",
            &format!("/connections/{id}/authorize"),
            Some(token),
            Some(json!({"owner": owner})),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text);
    let mut url = started.json()["authorization_url"]
        .as_str()
        .unwrap()
        .to_owned();
    if let Some(hint) = login_hint {
        url.push_str(&format!("&login_hint={hint}"));
    }
    let query = peer
        .authorize_headlessly_to(&url, &server.callback_url())
        .await;
    let page = api
        .call("GET", &format!("/oauth/callback?{query}"), None, None)
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    page.text
}

async fn scenario(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let api = Api::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let admin = server.token("admin@example.com", ADMIN);

    // An administrator creates a PKCE connection to the peer and invites a role.
    let created = api
        .call(
            "POST",
            "/connections",
            Some(&admin),
            Some(json!({
                "name": "peer", "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-pkce", "client_secret": CLIENT_SECRET,
                "grant_type": "authorization_code_pkce", "scopes": "openid,offline_access,api:read"
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(
        !created.text.contains(CLIENT_SECRET),
        "the secret is write-only"
    );
    let connection = created.json();
    assert_eq!(connection["client_secret_set"], true);
    let id = connection["id"].as_str().unwrap().to_owned();
    let invited = api
        .call(
            "PATCH",
            &format!("/connections/{id}"),
            Some(&admin),
            Some(json!({"invited_roles": ["bots"]})),
        )
        .await;
    assert_eq!(invited.status, 200, "{}", invited.text);
    assert_eq!(invited.json()["invited_roles"], json!(["bots"]));

    // The shared token, authorized headlessly; a bot with the invited role reads it.
    let page = authorize(&api, &server, &peer, &admin, &id, "shared", None).await;
    assert!(page.contains("Connected"), "{page}");
    let bot = server.token("bot-1", BOTS);
    let token = api
        .call("GET", &format!("/connections/{id}/token"), Some(&bot), None)
        .await;
    assert_eq!(token.status, 200, "{}", token.text);
    let token = token.json();
    assert!(!token["access_token"].as_str().unwrap().is_empty());
    assert_eq!(token["owner"], "shared");
    assert_eq!(token["connection_id"], id.as_str());
    assert_eq!(
        token["token_type"].as_str().unwrap().to_ascii_lowercase(),
        "bearer"
    );
    assert!(
        peer.requests()
            .iter()
            .any(|r| r["grant_type"] == "authorization_code" && r["status"] == 200)
    );

    // A user authorizes a token of their own; only that user can read it.
    let alice = server.token("alice", BOTS);
    authorize(&api, &server, &peer, &alice, &id, "user", Some("alice")).await;
    let own = api
        .call(
            "GET",
            &format!("/connections/{id}/token?owner=user"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json()["owner"], "user:alice");
    assert_ne!(own.json()["access_token"], token["access_token"]);
    let bob = server.token("bob", BOTS);
    let not_bobs = api
        .call(
            "GET",
            &format!("/connections/{id}/token?owner=user"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(not_bobs.status, 409, "{}", not_bobs.text);
    assert_eq!(not_bobs.json()["error"], "not_authorized");
    let stranger = server.token("eve", &["strangers"]);
    let refused = api
        .call(
            "GET",
            &format!("/connections/{id}/token"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    let mine = api.call("GET", "/me/connections", Some(&alice), None).await;
    assert_eq!(mine.status, 200);
    let listed = &mine.json()["connections"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["shared_token"], "valid");
    assert_eq!(listed["user_token"], "valid");
    server.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_on_the_embedded_back_end() {
    scenario(backends::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_on_the_aws_back_ends_on_moto() {
    scenario(backends::aws().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_read_refreshes_in_line_within_min_valid_seconds() {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let api = Api::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let admin = server.token("admin@example.com", ADMIN);
    let created = api
        .call(
            "POST",
            "/connections",
            Some(&admin),
            Some(json!({
                "name": "short-lived", "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "grant_type": "authorization_code", "scopes": "openid,offline_access,api:read",
                "invited_roles": ["bots"]
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    authorize(&api, &server, &peer, &admin, &id, "shared", None).await;
    let bot = server.token("bot-1", BOTS);
    let read = |min: u64| {
        let path = format!("/connections/{id}/token?min_valid_seconds={min}");
        let (api, bot) = (&api, &bot);
        async move {
            let answer = api.call("GET", &path, Some(bot), None).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            answer.json()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let first = read(10).await;
    assert_eq!(read(10).await, first, "60 s left satisfies 10 s");
    let refreshes = || {
        peer.requests()
            .into_iter()
            .filter(|r| r["grant_type"] == "refresh_token")
            .count()
    };
    assert_eq!(refreshes(), 0);
    let fresh = read(120).await;
    assert_ne!(
        fresh, first,
        "60 s left does not satisfy 120 s: refreshed in line"
    );
    assert_eq!(refreshes(), 1);
    server.server.stop().await;
}
