//! Every route answers malformed input with a 4xx JSON error (HTML for the callback), never a
//! 5xx, and changes nothing.

use keyport_tests::api::{Answer, Api};
use keyport_tests::backends;
use keyport_tests::server::TestServer;
use serde_json::json;

fn assert_json_error(answer: &Answer, expected: u16, what: &str) {
    assert_eq!(answer.status, expected, "{what}: {}", answer.text);
    let body = answer.json();
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{what}: {}",
        answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_4xx_errors_and_change_nothing() {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let api = Api::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let created = api
        .call(
            "POST",
            "/connections",
            Some(&admin),
            Some(json!({"name": "target", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
                        "token_url": "https://login.example.com/token", "invited_roles": ["keyport-admins"]})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let before = api
        .call("GET", "/connections", Some(&admin), None)
        .await
        .text;

    let bodies: Vec<(&str, String)> = vec![
        ("POST", "/connections".into()),
        ("PATCH", format!("/connections/{id}")),
        ("POST", format!("/connections/{id}/authorize")),
    ];
    for (method, path) in &bodies {
        let what = format!("{method} {path}");
        let json_type = "application/json";
        assert_json_error(
            &api.raw(method, path, &admin, json_type, b"{\"name\": ".to_vec())
                .await,
            400,
            &format!("{what} truncated JSON"),
        );
        assert_json_error(
            &api.raw(method, path, &admin, json_type, b"[1, 2, 3]".to_vec())
                .await,
            400,
            &format!("{what} an array"),
        );
        assert_json_error(
            &api.raw(
                method,
                path,
                &admin,
                json_type,
                br#"{"colour": "red"}"#.to_vec(),
            )
            .await,
            400,
            &format!("{what} unknown field"),
        );
        assert_json_error(
            &api.raw(
                method,
                path,
                &admin,
                json_type,
                br#"{"name": 42, "owner": 7}"#.to_vec(),
            )
            .await,
            400,
            &format!("{what} wrong types"),
        );
        assert_json_error(
            &api.raw(method, path, &admin, "text/plain", b"{}".to_vec())
                .await,
            415,
            &format!("{what} not JSON"),
        );
        let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(100 * 1024));
        assert_json_error(
            &api.raw(method, path, &admin, json_type, huge.into_bytes())
                .await,
            413,
            &format!("{what} 100 KB"),
        );
    }
    let missing = api
        .call(
            "POST",
            "/connections",
            Some(&admin),
            Some(json!({"name": "n", "grant_type": "client_credentials"})),
        )
        .await;
    assert_json_error(&missing, 400, "create without client_id");
    assert_eq!(missing.json()["field"], "client_id");
    let bad_field = api
        .call(
            "PATCH",
            &format!("/connections/{id}"),
            Some(&admin),
            Some(json!({"token_url": "ftp://insecure.example.com/token"})),
        )
        .await;
    assert_json_error(&bad_field, 400, "PATCH with an ftp token URL");
    assert_eq!(bad_field.json()["field"], "token_url");
    let bad_owner = api
        .call(
            "POST",
            &format!("/connections/{id}/authorize"),
            Some(&admin),
            Some(json!({"owner": "everyone"})),
        )
        .await;
    assert_json_error(&bad_owner, 400, "authorize with a bad owner");

    for bad_id in [
        "nope",
        "con_XYZ",
        "con_0123456789abcdef0123456789abcdef0",
        "..%2F..%2Fetc",
    ] {
        for (method, suffix) in [
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("POST", "/test"),
            ("POST", "/authorize"),
            ("GET", "/token"),
            ("POST", "/token/refresh"),
            ("DELETE", "/token"),
        ] {
            let body = (method == "PATCH" || suffix == "/authorize").then(|| json!({}));
            let answer = api
                .call(
                    method,
                    &format!("/connections/{bad_id}{suffix}"),
                    Some(&admin),
                    body,
                )
                .await;
            assert!(
                (400..500).contains(&answer.status),
                "{method} /connections/{bad_id}{suffix}: {}",
                answer.status
            );
            assert_json_error(
                &answer,
                answer.status,
                &format!("{method} /connections/{bad_id}{suffix}"),
            );
        }
    }
    let unknown = "con_0123456789abcdef0123456789abcdef";
    assert_json_error(
        &api.call(
            "GET",
            &format!("/connections/{unknown}"),
            Some(&admin),
            None,
        )
        .await,
        404,
        "an unknown id",
    );
    assert_json_error(
        &api.call(
            "GET",
            &format!("/connections/{unknown}/token"),
            Some(&admin),
            None,
        )
        .await,
        404,
        "an unknown id's token",
    );

    for query in [
        "?colour=red",
        "?owner=everyone",
        "?min_valid_seconds=-1",
        "?min_valid_seconds=abc",
        "?min_valid_seconds=99999999",
    ] {
        let answer = api
            .call(
                "GET",
                &format!("/connections/{id}/token{query}"),
                Some(&admin),
                None,
            )
            .await;
        assert_json_error(&answer, 400, &format!("token {query}"));
    }
    assert_json_error(
        &api.call("GET", "/connections?limit=ten", Some(&admin), None)
            .await,
        400,
        "a bad limit",
    );
    assert_json_error(
        &api.call(
            "GET",
            "/connections?cursor=not-a-cursor",
            Some(&admin),
            None,
        )
        .await,
        400,
        "a forged cursor",
    );
    assert_json_error(
        &api.call(
            "DELETE",
            &format!("/connections/{id}?version=x"),
            Some(&admin),
            None,
        )
        .await,
        400,
        "a bad version",
    );

    for query in [
        "",
        "?code=a",
        "?state=short&code=a",
        "?code=a&code=b&state=x",
        "?error=x",
    ] {
        let answer = api
            .call("GET", &format!("/oauth/callback{query}"), None, None)
            .await;
        assert_eq!(answer.status, 400, "callback {query}");
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "callback {query}"
        );
    }
    assert_json_error(
        &api.call("GET", "/no/such/route", Some(&admin), None).await,
        404,
        "an unknown route",
    );

    // Nothing changed.
    let after = api
        .call("GET", "/connections", Some(&admin), None)
        .await
        .text;
    assert_eq!(after, before, "bad requests changed stored connections");
    server.server.stop().await;
}
