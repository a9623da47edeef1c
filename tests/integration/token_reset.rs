//! Resetting a client-credentials token (`POST /connections/{id}/token/reset`) over real HTTP
//! on both back-ends, against oidc-provider: the old token is revoked at the provider before
//! the new one is requested (the peer's request log and its introspection say so), a provider
//! without revocation still gets a new token, and everyone but an administrator, and every
//! other grant, is refused with nothing changed.

use keyport_tests::backends::Backend;
use keyport_tests::http_client::{Body, Http};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

crate::on_both_backends!(
    a_reset_revokes_the_old_token_then_requests_a_new_one,
    a_provider_without_revocation_still_gets_a_new_token,
    only_administrators_reset_and_only_client_credentials,
);

fn sha256_hex(value: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the peer says `token` is active (RFC 7662), asked as the connection's client.
async fn active(peer: &OidcPeer, token: &str) -> bool {
    let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let answer: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/token/introspection", peer.issuer))
        .basic_auth(encode("keyport-basic"), Some(encode(CLIENT_SECRET)))
        .form(&[("token", token)])
        .send()
        .await
        .expect("the peer answers")
        .json()
        .await
        .expect("an introspection answer");
    answer["active"]
        .as_bool()
        .unwrap_or_else(|| panic!("no active in {answer}"))
}

/// A client-credentials connection to the peer inviting `bots`; `fields` over the defaults.
async fn create(http: &Http, admin: &str, peer: &OidcPeer, fields: Value) -> String {
    let mut body = json!({
        "name": format!("reset-{}", uuid::Uuid::new_v4().simple()), "provider": "custom",
        "issuer": peer.issuer, "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials", "scopes": "api:read", "invited_roles": ["bots"],
    });
    for (name, value) in fields.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(name);
        } else {
            body[name] = value.clone();
        }
    }
    http.post("/connections", Some(admin), body)
        .await
        .expect_json(201, "creating the connection")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn access_token(view: &Value) -> String {
    view["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {view}"))
        .to_owned()
}

async fn a_reset_revokes_the_old_token_then_requests_a_new_one(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let id = create(&http, &admin, &peer, json!({})).await;
    let first = http
        .get(&format!("/connections/{id}/token"), Some(&admin))
        .await
        .expect_json(200, "the first token");
    let old = access_token(&first);
    assert!(active(&peer, &old).await, "the first token is live");
    let logged_before = peer.requests().len();

    let reset = http
        .send(
            "POST",
            &format!("/connections/{id}/token/reset"),
            Some(&admin),
            Body::None,
        )
        .await;
    let view = reset.expect_json(200, "the reset");
    assert_eq!(reset.headers["keyport-previous-token"], "revoked");
    let new = access_token(&view);
    assert_ne!(new, old, "a reset hands out a new token");
    assert_eq!(view["connection_id"], id.as_str());
    assert_eq!(view["owner"], "shared");
    assert_eq!(view["token_type"], first["token_type"]);
    assert_eq!(view["scope"], first["scope"]);
    assert!(view["expires_at"].is_string(), "{view}");
    assert!(!active(&peer, &old).await, "the old token is revoked");
    assert!(active(&peer, &new).await, "the new token is live");

    // At the peer: the old token revoked, then (and only then) a new one asked for.
    let since: Vec<Value> = peer.requests().split_off(logged_before);
    let steps: Vec<(&str, Option<&str>)> = since
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["grant_type"].as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("/token/revocation", None),
            ("/token", Some("client_credentials"))
        ],
        "{since:?}"
    );
    assert_eq!(since[0]["token_sha256"], sha256_hex(&old));
    assert_eq!(since[0]["status"], 200);

    // The token handed out afterwards is the new one, to the invited role too.
    let bot = server.token("bot-1", &["bots"]);
    let read = http
        .get(&format!("/connections/{id}/token"), Some(&bot))
        .await
        .expect_json(200, "a read after the reset");
    assert_eq!(access_token(&read), new);

    let audit = http
        .get(&format!("/connections/{id}/audit"), Some(&admin))
        .await
        .expect_json(200, "the audit trail");
    let resets: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token_reset")
        .collect();
    assert_eq!(resets.len(), 1, "{audit}");
    assert_eq!(resets[0]["actor"], "admin");
    assert_eq!(resets[0]["owner"], "shared");
    assert!(
        resets[0]["detail"].as_str().unwrap().contains("revoked"),
        "{audit}"
    );
    for token in [&old, &new] {
        assert!(
            !audit.to_string().contains(token.as_str()),
            "a token in the audit trail"
        );
    }

    // The command line's `keyport token NAME --reset`: the new token alone on standard output.
    let name = http
        .get(&format!("/connections/{id}"), Some(&admin))
        .await
        .expect_json(200, "the connection")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyport-process"))
        .args(["token", &name, "--reset", "--server", &server.base])
        .env("KEYPORT_TOKEN", &admin)
        .env_remove("KEYPORT_SERVER")
        .output()
        .await
        .expect("keyport runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let printed = printed.trim_end();
    assert_ne!(printed, new, "the command printed the token it replaced");
    assert!(active(&peer, printed).await, "the printed token is live");
    assert!(!active(&peer, &new).await, "the replaced token is revoked");
}

async fn a_provider_without_revocation_still_gets_a_new_token(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    // Endpoints named, no issuer to discover a revocation endpoint from.
    let id = create(
        &http,
        &admin,
        &peer,
        json!({"issuer": null, "token_url": format!("{}/token", peer.issuer)}),
    )
    .await;
    let connection = http
        .get(&format!("/connections/{id}"), Some(&admin))
        .await
        .expect_json(200, "the connection");
    assert!(connection["revocation_url"].is_null(), "{connection}");
    let old = access_token(
        &http
            .get(&format!("/connections/{id}/token"), Some(&admin))
            .await
            .expect_json(200, "the first token"),
    );
    let logged_before = peer.requests().len();
    let reset = http
        .send(
            "POST",
            &format!("/connections/{id}/token/reset"),
            Some(&admin),
            Body::None,
        )
        .await;
    let new = access_token(&reset.expect_json(200, "the reset"));
    assert_eq!(
        reset.headers["keyport-previous-token"],
        "no_revocation_endpoint"
    );
    assert_ne!(new, old);
    let since: Vec<Value> = peer.requests().split_off(logged_before);
    assert_eq!(since.len(), 1, "{since:?}");
    assert_eq!(since[0]["path"], "/token");
    assert!(active(&peer, &new).await);
    // Nothing revoked it: it lives until it expires, as the header said.
    assert!(active(&peer, &old).await);
}

async fn only_administrators_reset_and_only_client_credentials(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let bot = server.token("bot-1", &["bots"]);
    let id = create(&http, &admin, &peer, json!({})).await;
    let token = access_token(
        &http
            .get(&format!("/connections/{id}/token"), Some(&bot))
            .await
            .expect_json(200, "the token"),
    );
    let logged_before = peer.requests().len();
    for (caller, what) in [
        (&bot, "an invited bot"),
        (&server.token("eve", &["others"]), "an uninvited caller"),
    ] {
        http.send(
            "POST",
            &format!("/connections/{id}/token/reset"),
            Some(caller),
            Body::None,
        )
        .await
        .expect_error_code(403, "forbidden", what);
    }
    assert_eq!(peer.requests().len(), logged_before, "the peer was asked");
    let read = http
        .get(&format!("/connections/{id}/token"), Some(&bot))
        .await
        .expect_json(200, "the token after the refusals");
    assert_eq!(access_token(&read), token, "the refusals changed the token");
    assert!(active(&peer, &token).await);

    // An authorization-code connection with its shared token authorized.
    let interactive = create(
        &http,
        &admin,
        &peer,
        json!({"grant_type": "authorization_code", "scopes": "openid,offline_access,api:read"}),
    )
    .await;
    let started = http
        .post(
            &format!("/connections/{interactive}/authorize"),
            Some(&admin),
            json!({"owner": "shared"}),
        )
        .await
        .expect_json(200, "starting the authorization");
    let query = peer
        .authorize_headlessly_to(
            started["authorization_url"].as_str().unwrap(),
            &server.callback_url(),
        )
        .await;
    let page = http.get(&format!("/oauth/callback?{query}"), None).await;
    let completion = keyport_tests::keyport::completion_on_page(&page.text);
    http.post(
        "/oauth/complete",
        Some(&admin),
        json!({"completion": completion}),
    )
    .await
    .expect_json(200, "confirming the authorization");
    let held = access_token(
        &http
            .get(&format!("/connections/{interactive}/token"), Some(&admin))
            .await
            .expect_json(200, "the authorized token"),
    );
    let logged_before = peer.requests().len();
    let refused = http
        .send(
            "POST",
            &format!("/connections/{interactive}/token/reset"),
            Some(&admin),
            Body::None,
        )
        .await
        .expect_error_code(409, "not_client_credentials", "an authorization-code reset");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("authorization_code"),
        "{refused}"
    );
    assert_eq!(peer.requests().len(), logged_before, "the peer was asked");
    let after = http
        .get(&format!("/connections/{interactive}/token"), Some(&admin))
        .await
        .expect_json(200, "the token after the refusal");
    assert_eq!(access_token(&after), held, "the refusal changed the token");
    assert!(active(&peer, &held).await);
    let audit = http
        .get(&format!("/connections/{interactive}/audit"), Some(&admin))
        .await
        .expect_json(200, "the audit trail");
    assert!(
        !audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "token_reset"),
        "{audit}"
    );
}
