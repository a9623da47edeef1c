//! A token that does not exist answers the same way on every route that names one: 409
//! `not_authorized` with the same sentence, whether it is read, refreshed or disconnected, for
//! the shared token and for a user's own, on both back-ends; and nothing changes.

use keyport_tests::backends::Backend;
use keyport_tests::http_client::Http;
use keyport_tests::server::TestServer;
use serde_json::json;

async fn missing_tokens_answer_alike_everywhere(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let admin = server.token("admin-1", &["keyport-admins"]);
    let person = server.token("alice", &["staff"]);
    let created = http
        .post(
            "/connections",
            Some(&admin),
            json!({
                "name": "never-authorized",
                "provider": "custom",
                "grant_type": "authorization_code_pkce",
                "client_id": "keyport-pkce",
                "client_secret": "unused-secret",
                "authorization_url": "https://idp.example.com/authorize",
                "token_url": "https://idp.example.com/token",
                "invited_roles": ["staff"],
            }),
        )
        .await
        .expect_json(201, "create");
    let id = created["id"].as_str().unwrap();
    for (owner, caller) in [("shared", &admin), ("user", &person)] {
        let token = format!("/connections/{id}/token?owner={owner}");
        let refresh = format!("/connections/{id}/token/refresh?owner={owner}");
        let answers = [
            http.get(&token, Some(caller)).await,
            http.send(
                "POST",
                &refresh,
                Some(caller),
                keyport_tests::http_client::Body::None,
            )
            .await,
            http.delete(&token, Some(caller)).await,
        ];
        let first = answers[0].expect_error_code(409, "not_authorized", "read");
        for (answer, route) in answers.iter().zip(["read", "refresh", "disconnect"]) {
            let body = answer.expect_error_code(409, "not_authorized", route);
            assert_eq!(body, first, "{owner} {route}");
        }
        assert!(
            first["message"]
                .as_str()
                .unwrap()
                .contains("authorize it first"),
            "{first}"
        );
    }
    // Nothing was stored by any of it.
    let key = |owner| keyport_shared::ports::TokenKey {
        connection_id: keyport_shared::domain::ConnectionId::parse(id).unwrap(),
        owner,
    };
    for owner in [
        keyport_shared::domain::Owner::Shared,
        keyport_shared::domain::Owner::User(
            keyport_shared::domain::Subject::parse("alice").unwrap(),
        ),
    ] {
        assert!(
            backend
                .store
                .get_token(&key(owner))
                .await
                .unwrap()
                .is_none()
        );
    }
    server.server.stop().await;
}

crate::on_both_backends!(missing_tokens_answer_alike_everywhere);
