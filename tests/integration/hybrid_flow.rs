//! OpenID Connect's hybrid flow (`response_type=code id_token`, answered by form post) over
//! real HTTP to the local server, against the oidc-provider peer, on each back-end. The ID
//! token that arrives beside the code is verified (signature against the peer's JWKS, issuer,
//! audience, nonce, and a `c_hash` that must be this code's) before the code is spent. Tampered
//! answers get a 4xx JSON error, reach no token endpoint and store nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyport_shared::domain::{ConnectionId, Owner};
use keyport_shared::ports::TokenKey;
use keyport_tests::backends::Backend;
use keyport_tests::http_client::Http;
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

crate::on_both_backends!(
    the_hybrid_flow_verifies_the_id_token_then_exchanges_the_code,
    tampered_hybrid_answers_are_refused_before_the_code_is_spent,
);

const HYBRID_CLIENT: &str = "keyport-hybrid";

struct Scene {
    server: TestServer,
    http: Http,
    peer: OidcPeer,
    admin: String,
    bot: String,
    id: String,
}

async fn scene(backend: &Backend) -> Scene {
    let server = TestServer::start(backend, &[]).await;
    let http = Http::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let admin = server.token("admin@example.com", &["keyport-admins"]);
    let bot = server.token("bot-1", &["bots"]);
    let request = |scopes: &str| {
        json!({
            "name": format!("peer-hybrid-{}", uuid::Uuid::new_v4().simple()),
            "provider": "custom",
            "issuer": peer.issuer,
            "client_id": HYBRID_CLIENT,
            "client_secret": CLIENT_SECRET,
            "grant_type": "authorization_code_hybrid",
            "scopes": scopes,
            "invited_roles": ["bots"],
        })
    };
    // Without openid there would be no ID token to bind the code with.
    let refused = http
        .post("/connections", Some(&admin), request("api:read"))
        .await
        .expect_error_code(400, "invalid_request", "a hybrid connection without openid");
    assert_eq!(refused["field"], "scopes", "{refused}");
    let connection = http
        .post("/connections", Some(&admin), request("openid,api:read"))
        .await
        .expect_json(201, "POST /connections (hybrid)");
    assert_eq!(connection["grant_type"], "authorization_code_hybrid");
    let id = connection["id"].as_str().expect("an id").to_owned();
    Scene {
        server,
        http,
        peer,
        admin,
        bot,
        id,
    }
}

impl Scene {
    /// Starts an authorization of the shared token as the administrator, checks its URL asks
    /// for the hybrid flow, and walks the peer headlessly: the form the browser would post.
    async fn authorize(&self) -> Vec<(String, String)> {
        let started = self
            .http
            .post(
                &format!("/connections/{}/authorize", self.id),
                Some(&self.admin),
                json!({"owner": "shared"}),
            )
            .await
            .expect_json(200, "POST /connections/{id}/authorize");
        let url = started["authorization_url"].as_str().expect("a URL");
        let params: Vec<(String, String)> = url::Url::parse(url)
            .expect("an absolute URL")
            .query_pairs()
            .into_owned()
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(param("response_type"), Some("code id_token"), "{url}");
        assert_eq!(param("response_mode"), Some("form_post"), "{url}");
        assert_eq!(param("code_challenge_method"), Some("S256"), "{url}");
        assert!(param("nonce").is_some_and(|n| n.len() >= 32), "{url}");
        let fields = self
            .peer
            .authorize_by_form_post(url, &self.server.callback_url())
            .await;
        for name in ["code", "id_token", "state"] {
            assert!(
                fields.iter().any(|(k, v)| k == name && !v.is_empty()),
                "the peer's form lacks {name}: {:?}",
                fields.iter().map(|(k, _)| k).collect::<Vec<_>>()
            );
        }
        assert_eq!(
            field(&fields, "state"),
            started["state"].as_str().unwrap(),
            "the form carries this authorization's state"
        );
        fields
    }

    /// Posts `fields` to the callback as a form; `json` asks for JSON errors instead of pages.
    async fn post_callback(
        &self,
        fields: &[(String, String)],
        json: bool,
    ) -> (u16, String, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client")
            .post(self.server.callback_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "accept",
                if json {
                    "application/json"
                } else {
                    "text/html,application/xhtml+xml"
                },
            )
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, content_type, response.text().await.expect("a body"))
    }

    /// Code exchanges the peer saw.
    fn exchanges(&self) -> Vec<Value> {
        self.peer
            .requests()
            .into_iter()
            .filter(|r| r["path"] == "/token" && r["grant_type"] == "authorization_code")
            .collect()
    }

    async fn assert_nothing_stored(&self, backend: &Backend, what: &str) {
        self.http
            .get(&format!("/connections/{}/token", self.id), Some(&self.bot))
            .await
            .expect_error_code(409, "not_authorized", what);
        let key = TokenKey {
            connection_id: ConnectionId::parse(&self.id).expect("a connection id"),
            owner: Owner::Shared,
        };
        assert!(
            backend.store.get_token(&key).await.unwrap().is_none(),
            "{what}: a token was stored"
        );
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in the form"))
}

fn with(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| {
            let v = if k == name { value } else { v };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// A JSON error of the callback: its status, `error` code, and message mentioning `about`.
fn assert_refused(answer: &(u16, String, String), status: u16, code: &str, about: &str) {
    let (got, content_type, text) = answer;
    assert_eq!(*got, status, "{code}: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{code}: content type {content_type}: {text}"
    );
    let body: Value = serde_json::from_str(text).expect("a JSON error");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(about)),
        "{code}: the message does not say {about:?}: {body}"
    );
}

async fn the_hybrid_flow_verifies_the_id_token_then_exchanges_the_code(backend: Backend) {
    let scene = scene(&backend).await;
    let fields = scene.authorize().await;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(field(&fields, "id_token").split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(claims["c_hash"].is_string(), "{claims}");

    // The browser posts the form: the page asks for the confirmation.
    let (status, content_type, page) = scene.post_callback(&fields, false).await;
    assert_eq!(status, 200, "{page}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("Almost connected"), "{page}");
    let exchanges = scene.exchanges();
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(exchanges[0]["client_id"], HYBRID_CLIENT, "{exchanges:?}");
    assert_eq!(exchanges[0]["status"], 200, "{exchanges:?}");

    // The starter confirms; the invited bot reads a token the peer knows.
    let completion = keyport_tests::keyport::completion_on_page(&page);
    scene
        .http
        .post(
            "/oauth/complete",
            Some(&scene.admin),
            json!({"completion": completion}),
        )
        .await
        .expect_json(200, "POST /oauth/complete");
    let token = scene
        .http
        .get(
            &format!("/connections/{}/token", scene.id),
            Some(&scene.bot),
        )
        .await
        .expect_json(200, "the bot's shared token");
    let access_token = token["access_token"].as_str().expect("an access token");
    let userinfo = Http::new(&scene.peer.issuer)
        .send(
            "GET",
            "/me",
            Some(access_token),
            keyport_tests::http_client::Body::None,
        )
        .await
        .expect_json(200, "the peer's userinfo for the token");
    assert_eq!(userinfo["sub"], claims["sub"], "{userinfo}");

    // The same answer again: its state is spent.
    let replayed = scene.post_callback(&fields, true).await;
    assert_refused(&replayed, 400, "invalid_state", "state");
    assert_eq!(
        scene.exchanges().len(),
        1,
        "a replay reaches no token endpoint"
    );
}

async fn tampered_hybrid_answers_are_refused_before_the_code_is_spent(backend: Backend) {
    let scene = scene(&backend).await;

    // A code from another authorization, with this one's state and ID token: its c_hash is
    // not the injected code's.
    let mine = scene.authorize().await;
    let other = scene.authorize().await;
    let injected = with(&mine, "code", field(&other, "code"));
    let answer = scene.post_callback(&injected, true).await;
    assert_refused(&answer, 400, "id_token_rejected", "c_hash");

    // Another authorization's code with its own (valid, signed) ID token, under this one's
    // state: the nonce is not this authorization's.
    let victim = scene.authorize().await;
    let swapped = with(
        &with(&victim, "code", field(&other, "code")),
        "id_token",
        field(&other, "id_token"),
    );
    let answer = scene.post_callback(&swapped, true).await;
    assert_refused(&answer, 400, "id_token_rejected", "nonce");

    // One bit of the signature flipped.
    let signed = scene.authorize().await;
    let id_token = field(&signed, "id_token");
    let (content, signature) = id_token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 0x01;
    let forged = format!("{content}.{}", URL_SAFE_NO_PAD.encode(bytes));
    let answer = scene
        .post_callback(&with(&signed, "id_token", &forged), true)
        .await;
    assert_refused(&answer, 400, "id_token_rejected", "signature");

    // No ID token at all (a page for a browser, this time).
    let bare = scene.authorize().await;
    let without: Vec<_> = bare
        .iter()
        .filter(|(k, _)| k != "id_token")
        .cloned()
        .collect();
    let (status, content_type, page) = scene.post_callback(&without, false).await;
    assert_eq!(status, 400, "{page}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("ID token"), "{page}");

    // The code handed to the query callback instead, without its ID token: refused too.
    let by_query = scene.authorize().await;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", field(&by_query, "code"))
        .append_pair("state", field(&by_query, "state"))
        .finish();
    let answer = scene
        .http
        .get(&format!("/oauth/callback?{query}"), None)
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.text.contains("form post"), "{}", answer.text);

    // None of them reached the token endpoint, and nothing is stored.
    assert_eq!(
        scene.exchanges(),
        Vec::<Value>::new(),
        "no code was exchanged"
    );
    scene
        .assert_nothing_stored(&backend, "after the tampered answers")
        .await;
    // Each state was spent by its refusal: the untampered answer is refused now too.
    let answer = scene.post_callback(&mine, true).await;
    assert_refused(&answer, 400, "invalid_state", "state");

    // The other authorization was never touched: its own answer still goes through.
    let (status, _, page) = scene.post_callback(&other, false).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(scene.exchanges().len(), 1);
}
