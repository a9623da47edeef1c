//! The whole story over real HTTP to the local server, on each back-end: an administrator
//! creates an authorization-code-with-PKCE connection to the oidc-provider peer, invites a
//! role and authorizes the shared token (headless consent); a bot with the invited role reads
//! a valid access token; a user authorizes a token of their own that only they can read. And
//! a token read that refreshes in line when the token is about to expire.

use chrono::{DateTime, Utc};
use keyport_tests::backends::{self, Backend};
use keyport_tests::http_client::{Http, Reply};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

const ADMIN_ROLES: &[&str] = &["keyport-admins"];
const BOT_ROLES: &[&str] = &["bots"];

/// The authorization-code-with-PKCE connection of the scenario, as the administrator creates it.
fn pkce_connection(peer: &OidcPeer) -> Value {
    json!({
        "name": format!("peer-pkce-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "issuer": peer.issuer,
        "client_id": "keyport-pkce",
        "client_secret": CLIENT_SECRET,
        "grant_type": "authorization_code_pkce",
        "scopes": "openid,offline_access,api:read",
    })
}

fn string_field(body: &Value, field: &str, what: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{field}` is not a string in {body}"))
        .to_owned()
}

fn rfc3339(body: &Value, field: &str, what: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&string_field(body, field, what))
        .unwrap_or_else(|e| panic!("{what}: `{field}` is not RFC 3339 ({e}) in {body}"))
        .with_timezone(&Utc)
}

/// Requests to the peer's token endpoint with this grant type.
fn token_requests(peer: &OidcPeer, grant_type: &str) -> Vec<Value> {
    peer.requests()
        .into_iter()
        .filter(|r| r["path"] == "/token" && r["grant_type"] == grant_type)
        .collect()
}

/// The subject the peer issued an access token for, from its userinfo endpoint.
async fn subject_at_peer(peer: &OidcPeer, access_token: &str) -> String {
    let answer = Http::new(&peer.issuer)
        .send(
            "GET",
            "/me",
            Some(access_token),
            keyport_tests::http_client::Body::None,
        )
        .await;
    let body = answer.expect_json(200, "the peer's userinfo for a token Keyport handed out");
    string_field(&body, "sub", "userinfo")
}

/// Starts an authorization as `token`'s holder, walks the peer's login and consent headlessly
/// (as `login_hint`'s account when given), and hands the callback's query to the server's own
/// callback over HTTP. Returns the callback's answer.
async fn authorize(
    http: &Http,
    server: &TestServer,
    peer: &OidcPeer,
    id: &str,
    token: &str,
    owner: &str,
    login_hint: Option<&str>,
) -> Reply {
    let what = format!("POST /connections/{{id}}/authorize owner {owner}");
    let started = http
        .post(
            &format!("/connections/{id}/authorize"),
            Some(token),
            json!({"owner": owner}),
        )
        .await
        .expect_json(200, &what);
    let mut url = string_field(&started, "authorization_url", &what);
    let state = string_field(&started, "state", &what);
    assert!(
        rfc3339(&started, "expires_at", &what) > Utc::now(),
        "{what}: the pending authorization is already expired: {started}"
    );
    assert!(
        url.starts_with(&format!("{}/", peer.issuer)),
        "{what}: the authorization URL {url} is not the peer's"
    );
    let params: Vec<(String, String)> = url::Url::parse(&url)
        .expect("an absolute authorization URL")
        .query_pairs()
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        param("code_challenge_method").as_deref(),
        Some("S256"),
        "{what}: PKCE"
    );
    assert!(param("code_challenge").is_some(), "{what}: PKCE challenge");
    assert_eq!(
        param("state").as_deref(),
        Some(state.as_str()),
        "{what}: state"
    );
    assert_eq!(
        param("redirect_uri").as_deref(),
        Some(server.callback_url().as_str()),
        "{what}: the server's own callback"
    );
    if let Some(hint) = login_hint {
        url.push_str(&format!("&login_hint={hint}"));
    }
    let query = peer
        .authorize_headlessly_to(&url, &server.callback_url())
        .await;
    assert!(
        query.contains("code="),
        "the peer sent no code to the callback: {query}"
    );
    http.get(&format!("/oauth/callback?{query}"), None).await
}

/// The callback's "Almost connected" page, then the confirmation by `token`'s holder (who
/// started the authorization) with the completion value the page shows.
async fn confirm_connected(http: &Http, callback: &Reply, token: &str, what: &str) {
    assert_eq!(callback.status, 200, "{what}: {}", callback.text);
    assert!(
        callback.content_type().starts_with("text/html"),
        "{what}: content type {:?}",
        callback.content_type()
    );
    assert!(
        callback.text.contains("Almost connected"),
        "{what}: the page does not ask for the confirmation: {}",
        callback.text
    );
    let completion = keyport_tests::keyport::completion_on_page(&callback.text);
    let confirmed = http
        .post(
            "/oauth/complete",
            Some(token),
            json!({"completion": completion}),
        )
        .await
        .expect_json(200, &format!("{what}: POST /oauth/complete"));
    assert!(
        confirmed["connection_id"].is_string(),
        "{what}: {confirmed}"
    );
}

async fn scenario(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let admin = server.token("admin@example.com", ADMIN_ROLES);
    let bot = server.token("bot-1", BOT_ROLES);
    let alice = server.token("alice", BOT_ROLES);
    let bob = server.token("bob", BOT_ROLES);
    let outsider = server.token("mallory", &["other"]);

    // The administrator creates the connection: endpoints come from the peer's discovery, the
    // client secret is accepted and never shown.
    let created = http
        .post("/connections", Some(&admin), pkce_connection(&peer))
        .await;
    let connection = created.expect_json(201, "POST /connections");
    let id = string_field(&connection, "id", "POST /connections");
    assert_eq!(connection["grant_type"], "authorization_code_pkce");
    assert_eq!(connection["token_url"], format!("{}/token", peer.issuer));
    assert_eq!(connection["client_secret_set"], true, "{connection}");
    assert!(
        connection.get("client_secret").is_none() && !created.text.contains(CLIENT_SECRET),
        "the client secret came back: {}",
        created.text
    );
    let created_version = connection["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {connection}"));
    let token_path = format!("/connections/{id}/token");

    // Before the invitation the bot's role may not read anything.
    http.get(&token_path, Some(&bot)).await.expect_error_code(
        403,
        "forbidden",
        "a bot before its role is invited",
    );

    // The invitation.
    let invited = http
        .patch(
            &format!("/connections/{id}"),
            Some(&admin),
            json!({"invited_roles": ["bots"]}),
        )
        .await
        .expect_json(200, "PATCH /connections/{id} invited_roles");
    assert_eq!(invited["invited_roles"], json!(["bots"]), "{invited}");
    assert!(
        invited["version"].as_u64() > Some(created_version),
        "the invitation did not bump the version: {invited}"
    );

    // Invited, but nothing authorized yet.
    http.get(&token_path, Some(&bot)).await.expect_error_code(
        409,
        "not_authorized",
        "a bot before the shared token is authorized",
    );

    // The administrator authorizes the shared token.
    let callback = authorize(&http, &server, &peer, &id, &admin, "shared", None).await;
    confirm_connected(&http, &callback, &admin, "the shared token's callback").await;
    let exchanges = token_requests(&peer, "authorization_code");
    assert_eq!(exchanges.len(), 1, "one code exchange: {exchanges:?}");
    assert_eq!(exchanges[0]["client_id"], "keyport-pkce", "{exchanges:?}");
    assert_eq!(exchanges[0]["status"], 200, "{exchanges:?}");

    // The bot reads a valid access token.
    let read = http.get(&token_path, Some(&bot)).await;
    let shared = read.expect_json(200, "the bot's shared token");
    let shared_token = string_field(&shared, "access_token", "shared token");
    assert!(!shared_token.is_empty(), "an empty access token");
    assert!(
        string_field(&shared, "token_type", "shared token").eq_ignore_ascii_case("bearer"),
        "{shared}"
    );
    assert_eq!(shared["connection_id"], id.as_str(), "{shared}");
    assert_eq!(shared["owner"], "shared", "{shared}");
    assert!(
        rfc3339(&shared, "expires_at", "shared token") > Utc::now(),
        "an expired token: {shared}"
    );
    assert!(
        shared.get("refresh_token").is_none(),
        "the refresh token left Keyport: {shared}"
    );
    assert_eq!(
        subject_at_peer(&peer, &shared_token).await,
        "test-user",
        "the peer does not accept the shared token as the consenting account's"
    );
    // Reading it does not touch the peer again.
    let again = http
        .get(&token_path, Some(&bot))
        .await
        .expect_json(200, "the bot's second read");
    assert_eq!(again["access_token"], shared_token.as_str());
    assert_eq!(token_requests(&peer, "refresh_token").len(), 0);

    // A connection read never shows the token.
    let shown = http.get(&format!("/connections/{id}"), Some(&admin)).await;
    shown.expect_json(200, "GET /connections/{id}");
    assert!(
        !shown.text.contains(&shared_token) && !shown.text.contains(CLIENT_SECRET),
        "GET /connections/{{id}} shows a secret: {}",
        shown.text
    );

    // Alice authorizes a token of her own, logging in at the peer as alice.
    let callback = authorize(&http, &server, &peer, &id, &alice, "user", Some("alice")).await;
    confirm_connected(&http, &callback, &alice, "alice's callback").await;
    let user_path = format!("{token_path}?owner=user");
    let mine = http
        .get(&user_path, Some(&alice))
        .await
        .expect_json(200, "alice's own token");
    let alice_token = string_field(&mine, "access_token", "alice's token");
    assert_eq!(mine["owner"], "user:alice", "{mine}");
    assert_eq!(mine["connection_id"], id.as_str(), "{mine}");
    assert_ne!(alice_token, shared_token, "alice got the shared token");
    assert_eq!(
        subject_at_peer(&peer, &alice_token).await,
        "alice",
        "alice's token is not for alice's account at the peer"
    );

    // Bob shares alice's role but has no token of his own, and can never get hers.
    let bobs = http.get(&user_path, Some(&bob)).await;
    bobs.expect_error_code(409, "not_authorized", "bob's user token");
    assert!(
        !bobs.text.contains(&alice_token),
        "bob saw alice's token: {}",
        bobs.text
    );
    // A role that is not invited gets nothing, user or shared.
    for path in [&user_path, &token_path] {
        let refused = http.get(path, Some(&outsider)).await;
        refused.expect_error_code(403, "forbidden", &format!("uninvited GET {path}"));
        assert!(!refused.text.contains(&shared_token) && !refused.text.contains(&alice_token));
    }
    // The shared token is unchanged by alice's authorization.
    let shared_again = http
        .get(&token_path, Some(&alice))
        .await
        .expect_json(200, "alice reads the shared token");
    assert_eq!(shared_again["access_token"], shared_token.as_str());
    assert_eq!(shared_again["owner"], "shared");

    // Alice's view of her connections.
    let listed = http
        .get("/me/connections", Some(&alice))
        .await
        .expect_json(200, "GET /me/connections as alice");
    let entry = listed["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections list: {listed}"))
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("alice does not see the connection: {listed}"))
        .clone();
    assert_eq!(entry["shared_token"], "valid", "{entry}");
    assert_eq!(entry["user_token"], "valid", "{entry}");
    // Bob sees the shared token but has none of his own.
    let bobs_list = http
        .get("/me/connections", Some(&bob))
        .await
        .expect_json(200, "GET /me/connections as bob");
    let bobs_entry = bobs_list["connections"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("bob does not see the connection: {bobs_list}"));
    assert_eq!(bobs_entry["shared_token"], "valid", "{bobs_entry}");
    assert!(bobs_entry["user_token"].is_null(), "{bobs_entry}");
    // The uninvited role sees nothing.
    let outsiders = http
        .get("/me/connections", Some(&outsider))
        .await
        .expect_json(200, "GET /me/connections as an uninvited role");
    assert_eq!(outsiders["connections"], json!([]), "{outsiders}");

    assert_eq!(
        token_requests(&peer, "authorization_code").len(),
        2,
        "one code exchange per authorization"
    );
    server.server.stop().await;
}

/// A token read with `min_valid_seconds` beyond the token's remaining life refreshes it in
/// line, once; reads within its life do not.
async fn in_line_refresh(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        access_token_ttl: Some(60),
        ..PeerOptions::default()
    });
    let admin = server.token("admin@example.com", ADMIN_ROLES);
    let bot = server.token("bot-1", BOT_ROLES);
    let mut request = pkce_connection(&peer);
    request["invited_roles"] = json!(["bots"]);
    let connection = http
        .post("/connections", Some(&admin), request)
        .await
        .expect_json(201, "POST /connections");
    let id = string_field(&connection, "id", "POST /connections");
    let callback = authorize(&http, &server, &peer, &id, &admin, "shared", None).await;
    confirm_connected(&http, &callback, &admin, "the shared token's callback").await;

    let read = |min_valid: u64| {
        let http = &http;
        let bot = &bot;
        let id = &id;
        async move {
            let what = format!("GET token?min_valid_seconds={min_valid}");
            let body = http
                .get(
                    &format!("/connections/{id}/token?min_valid_seconds={min_valid}"),
                    Some(bot),
                )
                .await
                .expect_json(200, &what);
            let token = string_field(&body, "access_token", &what);
            (token, rfc3339(&body, "expires_at", &what))
        }
    };
    let (first, first_expiry) = read(10).await;
    assert!(
        first_expiry <= Utc::now() + chrono::Duration::seconds(61),
        "the peer's token should live 60 s, expires {first_expiry}"
    );
    let (second, _) = read(10).await;
    assert_eq!(first, second, "a token valid for 10 s more was refreshed");
    assert_eq!(
        token_requests(&peer, "refresh_token").len(),
        0,
        "no refresh while the token is valid long enough"
    );

    let (third, third_expiry) = read(120).await;
    assert_ne!(
        third, first,
        "a token expiring within 120 s was not refreshed"
    );
    assert!(
        third_expiry >= first_expiry,
        "the refreshed token expires earlier ({third_expiry}) than the old one ({first_expiry})"
    );
    let refreshes = token_requests(&peer, "refresh_token");
    assert_eq!(refreshes.len(), 1, "exactly one refresh: {refreshes:?}");
    assert_eq!(refreshes[0]["status"], 200, "{refreshes:?}");
    assert_eq!(refreshes[0]["client_id"], "keyport-pkce", "{refreshes:?}");

    // The refreshed token is the one stored: the next read gets it without another refresh.
    let (fourth, _) = read(10).await;
    assert_eq!(fourth, third, "the refreshed token was not kept");
    assert_eq!(token_requests(&peer, "refresh_token").len(), 1);
    assert_eq!(
        subject_at_peer(&peer, &fourth).await,
        "test-user",
        "the peer does not accept the refreshed token"
    );
    server.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_the_embedded_backend() {
    scenario(backends::embedded().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_the_aws_backends_on_moto() {
    scenario(backends::aws().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_line_refresh_on_the_embedded_backend() {
    in_line_refresh(backends::embedded().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_line_refresh_on_the_aws_backends_on_moto() {
    in_line_refresh(backends::aws().await).await
}
