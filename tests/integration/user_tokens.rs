//! An administrator's view of a connection's user tokens, over real HTTP on both back-ends:
//! each person's token status a page at a time, never a token; one person's token disconnected
//! (revoked at the provider, deleted, recorded as the administrator's doing). Everyone else,
//! and bad input, is refused and changes nothing. The console serves both routes to its
//! administrators only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyport_tests::backends::Backend;
use keyport_tests::http_client::Http;
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

crate::on_both_backends!(
    an_administrator_lists_and_disconnects_peoples_tokens,
    the_console_serves_the_user_tokens_to_administrators_only,
);

const PEOPLE: [&str; 3] = ["u1", "u2", "u3"];

fn sha256_hex(value: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A client-credentials connection to the peer inviting `bots`, with the shared token and
/// each of `PEOPLE`'s own; its id and every access token handed out.
async fn connection_with_tokens(
    server: &TestServer,
    peer: &OidcPeer,
) -> (String, Vec<(String, String)>) {
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let created = http
        .post(
            "/connections",
            Some(&admin),
            json!({
                "name": "People tokens", "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "grant_type": "client_credentials", "scopes": "api:read",
                "invited_roles": ["bots"],
            }),
        )
        .await
        .expect_json(201, "creating the connection");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for who in PEOPLE {
        let caller = server.token(who, &["bots"]);
        let own = http
            .get(
                &format!("/connections/{id}/token?owner=user"),
                Some(&caller),
            )
            .await
            .expect_json(200, "a person's own token");
        tokens.push((
            who.to_owned(),
            own["access_token"].as_str().unwrap().to_owned(),
        ));
    }
    let shared = http
        .get(&format!("/connections/{id}/token"), Some(&admin))
        .await
        .expect_json(200, "the shared token");
    tokens.push((
        "shared".to_owned(),
        shared["access_token"].as_str().unwrap().to_owned(),
    ));
    (id, tokens)
}

fn subjects(page: &Value) -> Vec<&str> {
    page["tokens"]
        .as_array()
        .expect("a list of tokens")
        .iter()
        .map(|t| t["subject"].as_str().expect("a subject"))
        .collect()
}

async fn an_administrator_lists_and_disconnects_peoples_tokens(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let (id, handed_out) = connection_with_tokens(&server, &peer).await;
    let list = |query: &str| format!("/connections/{id}/tokens{query}");

    // Two pages of two, by subject: status and times, never a token (nor the shared one).
    let first = http.get(&list("?limit=2"), Some(&admin)).await;
    let first_page = first.expect_json(200, "the first page");
    assert_eq!(subjects(&first_page), ["u1", "u2"], "{first_page}");
    for entry in first_page["tokens"].as_array().unwrap() {
        let keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "expires_at",
                "grant_ends_at",
                "last_error",
                "last_refresh_at",
                "status",
                "subject"
            ],
            "{entry}"
        );
        // A custom provider documents no absolute lifetime.
        assert!(entry["grant_ends_at"].is_null(), "{entry}");
        assert_eq!(entry["status"], "valid", "{entry}");
        assert!(entry["expires_at"].is_string(), "{entry}");
        assert!(entry["last_refresh_at"].is_string(), "{entry}");
        assert!(entry["last_error"].is_null(), "{entry}");
    }
    let cursor = first_page["next_cursor"].as_str().expect("a next page");
    let second = http
        .get(&list(&format!("?limit=2&cursor={cursor}")), Some(&admin))
        .await;
    let second_page = second.expect_json(200, "the second page");
    assert_eq!(subjects(&second_page), ["u3"], "{second_page}");
    assert!(second_page["next_cursor"].is_null(), "{second_page}");
    for reply in [&first, &second] {
        for (owner, token) in &handed_out {
            assert!(
                !reply.text.contains(token.as_str()),
                "{owner}'s token listed"
            );
        }
        assert!(!reply.text.contains("access_token"), "{}", reply.text);
    }

    // Bad input: 400, naming what is wrong.
    let shared_cursor = URL_SAFE_NO_PAD.encode("\"shared\"");
    for (query, what) in [
        ("?cursor=not-a-cursor".to_owned(), "a made-up cursor"),
        (
            format!("?cursor={shared_cursor}"),
            "a cursor at the shared token",
        ),
        ("?owner=user".to_owned(), "an unknown parameter"),
    ] {
        let refused = http.get(&list(&query), Some(&admin)).await;
        assert_eq!(refused.status, 400, "{what}: {}", refused.text);
    }
    http.get("/connections/not-an-id/tokens", Some(&admin))
        .await
        .expect_error(400, "a malformed connection id");
    let unknown = "con_00000000000000000000000000000000";
    http.get(&format!("/connections/{unknown}/tokens"), Some(&admin))
        .await
        .expect_error_code(404, "not_found", "an unknown connection");
    let spaced = http
        .delete(&format!("/connections/{id}/tokens/%20u2"), Some(&admin))
        .await
        .expect_error(400, "a subject with a space");
    assert_eq!(spaced["field"], "subject", "{spaced}");
    http.delete(&format!("/connections/{id}/tokens/nobody"), Some(&admin))
        .await
        .expect_error_code(409, "not_authorized", "a person without a token");

    // People, however invited, neither list nor end anyone's token, their own included.
    for who in ["u1", "u2"] {
        let caller = server.token(who, &["bots"]);
        http.get(&list(""), Some(&caller)).await.expect_error_code(
            403,
            "forbidden",
            "a person listing the tokens",
        );
        http.delete(&format!("/connections/{id}/tokens/u2"), Some(&caller))
            .await
            .expect_error_code(403, "forbidden", "a person ending a token");
    }
    let all = http
        .get(&list(""), Some(&admin))
        .await
        .expect_json(200, "all");
    assert_eq!(
        subjects(&all),
        PEOPLE,
        "the refusals changed nothing: {all}"
    );

    // The administrator ends u2's: revoked at the provider, deleted, audited.
    let ended = http
        .delete(&format!("/connections/{id}/tokens/u2"), Some(&admin))
        .await
        .expect_json(200, "ending u2's token");
    assert_eq!(
        ended,
        json!({"disconnected": true, "revoked_at_provider": true})
    );
    let u2s = &handed_out.iter().find(|(who, _)| who == "u2").unwrap().1;
    let revocations: Vec<Value> = peer
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/token/revocation")
        .collect();
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0]["token_sha256"], sha256_hex(u2s));
    let after = http
        .get(&list(""), Some(&admin))
        .await
        .expect_json(200, "after");
    assert_eq!(subjects(&after), ["u1", "u3"], "{after}");
    let connection = http
        .get(&format!("/connections/{id}"), Some(&admin))
        .await
        .expect_json(200, "the connection");
    assert_eq!(connection["token_health"]["shared"]["status"], "valid");
    assert_eq!(connection["token_health"]["user_tokens"]["total"], 2);
    let audit = http
        .get(&format!("/connections/{id}/audit"), Some(&admin))
        .await
        .expect_json(200, "the audit trail");
    let revoked: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token_revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{audit}");
    assert_eq!(revoked[0]["owner"], "user:u2");
    assert_eq!(revoked[0]["actor"], "admin");
    // A subject with characters a path must escape is named percent-encoded.
    let odd = server.token("ops/a b", &["bots"]);
    http.get(&format!("/connections/{id}/token?owner=user"), Some(&odd))
        .await
        .expect_json(200, "an oddly named person's own token");
    let listed = http
        .get(&list(""), Some(&admin))
        .await
        .expect_json(200, "odd");
    assert_eq!(subjects(&listed), ["ops/a b", "u1", "u3"], "{listed}");
    http.delete(
        &format!("/connections/{id}/tokens/ops%2Fa%20b"),
        Some(&admin),
    )
    .await
    .expect_json(200, "ending the oddly named person's token");
    let after = http
        .get(&list(""), Some(&admin))
        .await
        .expect_json(200, "after");
    assert_eq!(subjects(&after), ["u1", "u3"], "{after}");
    // Again: nothing left to end.
    http.delete(&format!("/connections/{id}/tokens/u2"), Some(&admin))
        .await
        .expect_error_code(409, "not_authorized", "ending it twice");
}

async fn the_console_serves_the_user_tokens_to_administrators_only(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let (id, handed_out) = connection_with_tokens(&server, &peer).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = |subject: &str, roles: &[&str]| {
        let link = server.sign_in_link(subject, roles);
        let client = client.clone();
        async move {
            let answer = client.get(link).send().await.unwrap();
            let cookie = answer.headers()["set-cookie"].to_str().unwrap();
            cookie.split(';').next().unwrap().to_owned()
        }
    };
    let url = server.url(&format!("/console/api/connections/{id}/tokens"));
    let ada = signed_in("ada", &["keyport-admins"]).await;
    let listed = client.get(&url).header(COOKIE, &ada).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.unwrap();
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(subjects(&page), PEOPLE, "{page}");
    for (owner, token) in &handed_out {
        assert!(
            !text.contains(token.as_str()),
            "{owner}'s token in the console"
        );
    }
    // A person with the invited role, signed in to the console, sees nobody's.
    let u1 = signed_in("u1", &["bots"]).await;
    let refused = client.get(&url).header(COOKIE, &u1).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = refused.text().await.unwrap();
    for (owner, token) in &handed_out {
        assert!(
            !refused.contains(token.as_str()),
            "{owner}'s token in a refusal"
        );
    }
}
