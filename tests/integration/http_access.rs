//! Every route × every kind of caller, each cell one checked status code.

use keyport_shared::domain::StateToken;
use keyport_shared::http::DevSigningKey;
use keyport_tests::api::Api;
use keyport_tests::backends;
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::{AUDIENCE, ISSUER, ROLES_CLAIM, TestServer};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Persona {
    NoToken,
    BadSignature,
    Expired,
    WrongAudience,
    Admin,
    Invited,
    Uninvited,
    OtherUser,
}

const PERSONAS: [Persona; 8] = [
    Persona::NoToken,
    Persona::BadSignature,
    Persona::Expired,
    Persona::WrongAudience,
    Persona::Admin,
    Persona::Invited,
    Persona::Uninvited,
    Persona::OtherUser,
];

struct Callers {
    forged: String,
    expired: String,
    wrong_audience: String,
    admin: String,
    invited: String,
    uninvited: String,
    other_user: String,
}

impl Callers {
    fn token(&self, persona: Persona) -> Option<&str> {
        Some(match persona {
            Persona::NoToken => return None,
            Persona::BadSignature => &self.forged,
            Persona::Expired => &self.expired,
            Persona::WrongAudience => &self.wrong_audience,
            Persona::Admin => &self.admin,
            Persona::Invited => &self.invited,
            Persona::Uninvited => &self.uninvited,
            Persona::OtherUser => &self.other_user,
        })
    }
}

/// Expected statuses for (admin, invited, uninvited, other user); the four bad-credential
/// callers always get 401 on authenticated routes.
struct Row {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expect: [u16; 4],
}

async fn create(api: &Api, admin: &str, peer: &OidcPeer, grant: &str) -> String {
    let answer = api
        .call(
            "POST",
            "/connections",
            Some(admin),
            Some(json!({
                "name": format!("c-{}", uuid::Uuid::new_v4().simple()), "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET, "grant_type": grant,
                "scopes": "api:read", "invited_roles": ["bots"]
            })),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_access_rules_say() {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let api = Api::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let other_key_dir = tempfile::tempdir().unwrap();
    let other_key = DevSigningKey::load_or_create(&other_key_dir.path().join("other.key")).unwrap();
    let callers = Callers {
        forged: other_key
            .mint(
                "admin",
                &["keyport-admins".into()],
                Duration::from_secs(600),
                ISSUER,
                AUDIENCE,
                ROLES_CLAIM,
            )
            .unwrap(),
        expired: server.expired_token("admin", &["keyport-admins"]),
        wrong_audience: server.token_with(
            "admin",
            &["keyport-admins"],
            ISSUER,
            "someone-else",
            Duration::from_secs(600),
        ),
        admin: server.token("admin", &["keyport-admins"]),
        invited: server.token("bot-1", &["bots"]),
        uninvited: server.token("eve", &["strangers"]),
        other_user: server.token("bot-2", &["bots"]),
    };
    let machine = create(&api, &callers.admin, &peer, "client_credentials").await;
    let interactive = create(&api, &callers.admin, &peer, "authorization_code").await;

    let rows = vec![
        Row {
            method: "GET",
            path: "/providers".into(),
            body: None,
            expect: [200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/connections".into(),
            body: None,
            expect: [200, 403, 403, 403],
        },
        Row {
            method: "GET",
            path: format!("/connections/{machine}"),
            body: None,
            expect: [200, 403, 403, 403],
        },
        Row {
            method: "PATCH",
            path: format!("/connections/{machine}"),
            body: Some(json!({"description": "x"})),
            expect: [200, 403, 403, 403],
        },
        Row {
            method: "POST",
            path: format!("/connections/{machine}/test"),
            body: None,
            expect: [200, 403, 403, 403],
        },
        Row {
            method: "POST",
            path: format!("/connections/{interactive}/authorize"),
            body: Some(json!({"owner": "shared"})),
            expect: [200, 403, 403, 403],
        },
        Row {
            method: "POST",
            path: format!("/connections/{interactive}/authorize"),
            body: Some(json!({"owner": "user"})),
            expect: [403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: format!("/connections/{machine}/token?owner=shared"),
            body: None,
            expect: [200, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: format!("/connections/{machine}/token?owner=user"),
            body: None,
            expect: [403, 200, 403, 200],
        },
        Row {
            method: "POST",
            path: format!("/connections/{machine}/token/refresh?owner=shared"),
            body: None,
            expect: [200, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/me/connections".into(),
            body: None,
            expect: [200, 200, 200, 200],
        },
    ];
    for row in &rows {
        for persona in PERSONAS {
            let answer = api
                .call(
                    row.method,
                    &row.path,
                    callers.token(persona),
                    row.body.clone(),
                )
                .await;
            let expected = match persona {
                Persona::NoToken
                | Persona::BadSignature
                | Persona::Expired
                | Persona::WrongAudience => 401,
                Persona::Admin => row.expect[0],
                Persona::Invited => row.expect[1],
                Persona::Uninvited => row.expect[2],
                Persona::OtherUser => row.expect[3],
            };
            assert_eq!(
                answer.status, expected,
                "{} {} as {persona:?}: {}",
                row.method, row.path, answer.text
            );
            if expected == 401 {
                assert_eq!(
                    answer.json()["error"],
                    "unauthenticated",
                    "{} {} as {persona:?}",
                    row.method,
                    row.path
                );
                assert!(answer.headers.contains_key("www-authenticate"));
            }
        }
    }

    // Creating and deleting change state: each caller gets resources of its own.
    for persona in PERSONAS {
        let expected = match persona {
            Persona::Admin => 201,
            Persona::Invited | Persona::Uninvited | Persona::OtherUser => 403,
            _ => 401,
        };
        let body = json!({"name": format!("by-{persona:?}"), "grant_type": "client_credentials", "client_id": "c",
                          "client_secret": "s", "token_url": "https://login.example.com/token"});
        let answer = api
            .call("POST", "/connections", callers.token(persona), Some(body))
            .await;
        assert_eq!(
            answer.status, expected,
            "POST /connections as {persona:?}: {}",
            answer.text
        );

        let doomed = create(&api, &callers.admin, &peer, "client_credentials").await;
        let expected = match persona {
            Persona::Admin => 204,
            Persona::Invited | Persona::Uninvited | Persona::OtherUser => 403,
            _ => 401,
        };
        let answer = api
            .call(
                "DELETE",
                &format!("/connections/{doomed}"),
                callers.token(persona),
                None,
            )
            .await;
        assert_eq!(
            answer.status, expected,
            "DELETE /connections/{{id}} as {persona:?}: {}",
            answer.text
        );

        // A shared token to disconnect, obtained by the admin first.
        let read = api
            .call(
                "GET",
                &format!("/connections/{machine}/token"),
                Some(&callers.admin),
                None,
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.text);
        let expected = match persona {
            Persona::Admin | Persona::Invited | Persona::OtherUser => 200,
            Persona::Uninvited => 403,
            _ => 401,
        };
        let answer = api
            .call(
                "DELETE",
                &format!("/connections/{machine}/token"),
                callers.token(persona),
                None,
            )
            .await;
        assert_eq!(
            answer.status, expected,
            "DELETE /connections/{{id}}/token as {persona:?}: {}",
            answer.text
        );

        // The callback needs no token: an unknown state is refused for everyone alike.
        let state = StateToken::generate();
        let answer = api
            .call(
                "GET",
                &format!("/oauth/callback?code=abc&state={}", state.expose_secret()),
                callers.token(persona),
                None,
            )
            .await;
        assert_eq!(answer.status, 400, "GET /oauth/callback as {persona:?}");
    }

    // A user's token is theirs alone: two users of the same role get different tokens.
    let mine = api
        .call(
            "GET",
            &format!("/connections/{machine}/token?owner=user"),
            Some(&callers.invited),
            None,
        )
        .await
        .json();
    let theirs = api
        .call(
            "GET",
            &format!("/connections/{machine}/token?owner=user"),
            Some(&callers.other_user),
            None,
        )
        .await
        .json();
    assert_eq!(mine["owner"], "user:bot-1");
    assert_eq!(theirs["owner"], "user:bot-2");
    assert_ne!(mine["access_token"], theirs["access_token"]);
    server.server.stop().await;
}
