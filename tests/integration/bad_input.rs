//! Every route answers malformed JSON, unknown fields, wrong content types, oversized bodies,
//! bad ids, bad query parameters and garbage callbacks with a 4xx error (JSON, or an HTML page
//! for the callback), never a 5xx, never echoing a secret, and changes nothing.

use keyport_shared::domain::StateToken;
use keyport_tests::backends;
use keyport_tests::http_client::{Body, Http, Reply};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

/// A client secret sent inside bad requests: no answer may ever contain it.
const MARKER: &str = "never-echo-this-secret-7f3a9c";

/// Sends requests as one caller and checks what holds for every answer: no 5xx, no secret.
struct Probe<'a> {
    http: &'a Http,
    token: &'a str,
    secrets: Vec<String>,
    sent: usize,
}

impl Probe<'_> {
    async fn send(&mut self, method: &str, path: &str, body: Body) -> Reply {
        let reply = self.http.send(method, path, Some(self.token), body).await;
        self.sent += 1;
        assert!(
            reply.status < 500,
            "{method} {path} answered {}: {}",
            reply.status,
            reply.text
        );
        for secret in &self.secrets {
            assert!(
                !reply.text.contains(secret.as_str()),
                "{method} {path} echoed a secret: {}",
                reply.text
            );
        }
        reply
    }

    /// Sends and expects Keyport's JSON error with `status`; returns the body.
    async fn refused(
        &mut self,
        method: &str,
        path: &str,
        body: Body,
        status: u16,
        what: &str,
    ) -> Value {
        let reply = self.send(method, path, body).await;
        reply.expect_error(status, &format!("{method} {path}: {what}"))
    }

    /// As [`Self::refused`] for a 400 that names `field` in `field` and in the message.
    async fn refused_naming(&mut self, method: &str, path: &str, body: Value, field: &str) {
        let what = format!("without a valid {field}");
        let error = self
            .refused(method, path, Body::Json(body), 400, &what)
            .await;
        assert_eq!(error["field"], field, "{method} {path} {what}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(field),
            "{method} {path} {what}: the message does not name {field}: {error}"
        );
    }
}

fn get_json(reply: &Reply, what: &str) -> Value {
    reply.expect_json(200, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_json_errors_and_change_nothing() {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let admin = server.token("admin", &["keyport-admins"]);
    let bot = server.token("bot-1", &["bots"]);

    // A connection with a shared token: the state bad requests must leave alone.
    let created = http
        .post(
            "/connections",
            Some(&admin),
            json!({
                "name": "target", "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "grant_type": "client_credentials", "scopes": "api:read", "invited_roles": ["bots"],
            }),
        )
        .await
        .expect_json(201, "POST /connections");
    let id = created["id"].as_str().expect("an id").to_owned();
    let token_path = format!("/connections/{id}/token");
    let shared = get_json(&http.get(&token_path, Some(&bot)).await, "the shared token");
    let access_token = shared["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();

    let snapshot = || async {
        (
            get_json(
                &http.get("/connections", Some(&admin)).await,
                "GET /connections",
            ),
            get_json(
                &http.get(&format!("/connections/{id}"), Some(&admin)).await,
                "GET /connections/{id}",
            ),
            get_json(
                &http.get("/me/connections", Some(&bot)).await,
                "GET /me/connections",
            ),
        )
    };
    let before = snapshot().await;
    let version = before.1["version"].as_u64().expect("a version");
    let version_now = || async {
        get_json(
            &http.get(&format!("/connections/{id}"), Some(&admin)).await,
            "GET /connections/{id}",
        )["version"]
            .as_u64()
            .expect("a version")
    };

    let mut probe = Probe {
        http: &http,
        token: &admin,
        secrets: vec![
            MARKER.to_owned(),
            CLIENT_SECRET.to_owned(),
            access_token.clone(),
        ],
        sent: 0,
    };

    // Bodies.
    let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(100 * 1024));
    let body_routes = [
        ("POST", "/connections".to_owned()),
        ("PATCH", format!("/connections/{id}")),
        ("POST", format!("/connections/{id}/authorize")),
    ];
    for (method, path) in &body_routes {
        let mut cases: Vec<(&str, Body, u16)> = vec![
            ("truncated JSON", Body::json_text(r#"{"name": "#), 400),
            ("not JSON at all", Body::json_text("name=target"), 400),
            (
                "a trailing comma",
                Body::json_text(r#"{"owner": "user",}"#),
                400,
            ),
            ("an empty body", Body::json_text(""), 400),
            ("an array", Body::json_text("[1, 2, 3]"), 400),
            ("null", Body::json_text("null"), 400),
            ("a string", Body::json_text("\"shared\""), 400),
            (
                "invalid UTF-8",
                Body::json_text(b"{\"name\": \"\xff\xfe\"}".to_vec()),
                400,
            ),
            (
                "an unknown field",
                Body::json_text(r#"{"colour": "red"}"#),
                400,
            ),
            (
                "an unknown field next to a secret",
                Body::Json(json!({"client_secret": MARKER, "colour": "red"})),
                400,
            ),
            (
                "a mistyped field",
                Body::json_text(if path.ends_with("/authorize") {
                    r#"{"ownr": "shared"}"#
                } else {
                    r#"{"descriptoin": "x"}"#
                }),
                400,
            ),
            ("text/plain", Body::raw("text/plain", "{}"), 415),
            (
                "a form",
                Body::raw("application/x-www-form-urlencoded", "owner=shared"),
                415,
            ),
            (
                "no content type",
                Body::Raw {
                    content_type: None,
                    bytes: b"{}".to_vec(),
                },
                415,
            ),
            ("100 KB", Body::json_text(huge.clone()), 413),
        ];
        let wrong_types: Vec<Value> = if path.ends_with("/authorize") {
            vec![
                json!({"owner": 7}),
                json!({"owner": ["shared"]}),
                json!({"owner": "shared", "redirect_after": {"url": "x"}}),
            ]
        } else {
            vec![
                json!({"name": 42}),
                json!({"invited_roles": "bots"}),
                json!({"scopes": {"api": "read"}}),
                json!({"version": "1"}),
                json!({"provider_params": ["instance"]}),
                json!({"client_secret": [MARKER]}),
                json!({"client_secret": {"value": MARKER}}),
            ]
        };
        for wrong in wrong_types {
            cases.push(("wrong types", Body::Json(wrong), 400));
        }
        for (what, body, status) in cases {
            let error = probe.refused(method, path, body, status, what).await;
            if what == "an unknown field" {
                assert!(
                    error["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("colour"),
                    "{method} {path}: the unknown field is not named: {error}"
                );
                assert_eq!(error["field"], "colour", "{method} {path}: {error}");
            }
            if what == "a mistyped field" {
                let (typo, meant) = if path.ends_with("/authorize") {
                    ("ownr", "owner")
                } else {
                    ("descriptoin", "description")
                };
                assert_eq!(error["field"], typo, "{method} {path}: {error}");
                assert!(
                    error["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(&format!("did you mean `{meant}`")),
                    "{method} {path}: no suggestion: {error}"
                );
            }
            if what == "wrong types" {
                assert!(
                    error["field"].is_string(),
                    "{method} {path}: no field: {error}"
                );
            }
            if *method == "PATCH" {
                assert_eq!(
                    version_now().await,
                    version,
                    "{method} {path} {what} changed the version"
                );
            }
        }
    }

    // Valid JSON with missing or invalid values, named by field.
    let complete = json!({
        "name": "never-created", "provider": "custom", "grant_type": "client_credentials",
        "client_id": "c", "client_secret": MARKER, "token_url": "https://login.example.com/token",
    });
    for field in ["name", "grant_type", "client_id"] {
        let mut body = complete.clone();
        body.as_object_mut().expect("an object").remove(field);
        probe
            .refused_naming("POST", "/connections", body, field)
            .await;
    }
    for (field, value) in [
        ("grant_type", json!("implicit")),
        ("token_url", json!("ftp://login.example.com/token")),
        ("name", json!("")),
    ] {
        let mut body = complete.clone();
        body[field] = value;
        probe
            .refused_naming("POST", "/connections", body, field)
            .await;
    }
    let patch_path = format!("/connections/{id}");
    for (field, value) in [
        ("token_url", json!("ftp://login.example.com/token")),
        ("grant_type", json!("implicit")),
        ("name", json!("")),
    ] {
        probe
            .refused_naming("PATCH", &patch_path, json!({ field: value }), field)
            .await;
        assert_eq!(
            version_now().await,
            version,
            "a PATCH with a bad {field} changed the version"
        );
    }
    probe
        .refused_naming(
            "POST",
            &format!("/connections/{id}/authorize"),
            json!({"owner": "everyone"}),
            "owner",
        )
        .await;

    // Ids.
    let id_routes: [(&str, &str, Option<Value>); 9] = [
        ("GET", "", None),
        ("PATCH", "", Some(json!({"description": "changed"}))),
        ("DELETE", "", None),
        ("POST", "/test", None),
        ("POST", "/authorize", Some(json!({"owner": "shared"}))),
        ("GET", "/token", None),
        ("POST", "/token/refresh", None),
        ("POST", "/token/reset", None),
        ("DELETE", "/token", None),
    ];
    let malformed_ids = [
        "nope".to_owned(),
        "con_XYZ".to_owned(),
        format!("con_{}", "a".repeat(33)),
        format!("con_{}", "a".repeat(31)),
        format!("con_{}", "A".repeat(32)),
        format!("xyz_{}", "a".repeat(32)),
        format!("con_{}%20", "a".repeat(32)),
    ];
    let unknown_id = format!("con_{}", "0123456789abcdef".repeat(2));
    for (method, suffix, body) in &id_routes {
        let body = || body.clone().map_or(Body::None, Body::Json);
        for bad in &malformed_ids {
            let path = format!("/connections/{bad}{suffix}");
            let error = probe
                .refused(method, &path, body(), 400, "a malformed id")
                .await;
            assert_eq!(error["field"], "id", "{method} {path}: {error}");
        }
        for bad in ["%FF", "%00"] {
            let path = format!("/connections/{bad}{suffix}");
            probe
                .refused(method, &path, body(), 400, "an undecodable id")
                .await;
        }
        probe
            .refused(
                method,
                &format!("/connections/{unknown_id}{suffix}"),
                body(),
                404,
                "a well-formed id that does not exist",
            )
            .await;
    }

    // Query parameters.
    let mut queries: Vec<(&str, String)> = vec![
        ("GET", "/connections?colour=red".into()),
        ("GET", "/connections?limit=ten".into()),
        ("GET", "/connections?limit=-1".into()),
        ("GET", "/connections?cursor=not-a-cursor".into()),
        ("DELETE", format!("/connections/{id}?colour=red")),
        ("DELETE", format!("/connections/{id}?version=x")),
    ];
    for query in [
        "colour=red",
        "owner=everyone",
        "owner=",
        "owner=SHARED",
        "owner=shared&owner=user",
        "min_valid_seconds=-1",
        "min_valid_seconds=abc",
        "min_valid_seconds=99999999",
        "min_valid_seconds=1.5",
        "min_valid_seconds=",
        "min_valid_seconds=99999999999999999999999",
    ] {
        queries.push(("GET", format!("{token_path}?{query}")));
    }
    for query in ["colour=red", "owner=everyone", "min_valid_seconds=10"] {
        queries.push(("POST", format!("{token_path}/refresh?{query}")));
        queries.push(("DELETE", format!("{token_path}?{query}")));
    }
    for (method, path) in queries {
        probe
            .refused(method, &path, Body::None, 400, "a bad query parameter")
            .await;
    }

    // The callback: no token needed, an HTML page, never a reflection of what came in.
    let live_looking = StateToken::generate();
    let state = live_looking.expose_secret();
    for query in [
        String::new(),
        "?code=abc".into(),
        "?state=".into(),
        format!("?state={state}"),
        format!("?code=a&code=b&state={state}"),
        format!("?code=a&state={state}&state={state}"),
        "?%%%".into(),
        "?&&&=&=".into(),
        "?state=%FF%FE&code=%00".into(),
        "?state=%3Cscript%3Ealert(1)%3C%2Fscript%3E&code=x".into(),
        "?error=%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(),
        format!("?state={}&code=x", "a".repeat(4000)),
        format!("?error=access_denied&state={state}"),
    ] {
        let path = format!("/oauth/callback{query}");
        let reply = http.get(&path, None).await;
        probe.sent += 1;
        assert_eq!(reply.status, 400, "GET {path}: {}", reply.text);
        assert!(
            reply.content_type().starts_with("text/html"),
            "GET {path}: content type {:?}",
            reply.content_type()
        );
        assert!(
            !reply.text.contains("<script>"),
            "GET {path}: the page reflects markup: {}",
            reply.text
        );
    }

    // Unknown routes.
    for (method, path) in [
        ("GET", "/no/such/route".to_owned()),
        ("GET", format!("/connections/{id}/nothing")),
        ("POST", format!("/connections/{id}/token/nothing")),
        ("GET", "/connections/".to_owned()),
    ] {
        probe
            .refused(method, &path, Body::None, 404, "an unknown route")
            .await;
    }

    // Nothing changed: the connections, the connection (same version), the tokens; nothing
    // was revoked at the provider.
    let after = snapshot().await;
    assert_eq!(
        after.0, before.0,
        "bad requests changed the connection list"
    );
    assert_eq!(after.1, before.1, "bad requests changed the connection");
    assert_eq!(after.1["version"].as_u64(), Some(version));
    assert_eq!(after.2, before.2, "bad requests changed the tokens");
    let still = get_json(&http.get(&token_path, Some(&bot)).await, "the shared token");
    assert_eq!(
        still["access_token"],
        access_token.as_str(),
        "the shared token changed"
    );
    let revocations: Vec<Value> = peer
        .requests()
        .into_iter()
        .filter(|r| r["path"] != "/token")
        .collect();
    assert!(
        revocations.is_empty(),
        "bad requests reached the provider: {revocations:?}"
    );
    assert!(probe.sent >= 180, "only {} bad requests sent", probe.sent);
    server.server.stop().await;
}

/// A known route with a method it does not serve answers 405 in Keyport's error shape too
/// (DESIGN.md: errors are `{"error", "message"}` JSON), naming the methods it does serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_route_does_not_serve_is_a_json_405() {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let id = format!("con_{}", "0123456789abcdef".repeat(2));
    let mut wrong = Vec::new();
    for (method, path) in [
        ("PUT", "/connections".to_owned()),
        ("DELETE", "/providers".to_owned()),
        ("PUT", format!("/connections/{id}")),
        ("GET", format!("/connections/{id}/authorize")),
        ("PUT", "/oauth/callback".to_owned()),
        ("PATCH", format!("/connections/{id}/token")),
        ("GET", format!("/connections/{id}/token/refresh")),
        ("POST", "/me/connections".to_owned()),
    ] {
        let reply = http.send(method, &path, Some(&admin), Body::None).await;
        assert!(reply.status < 500, "{method} {path}: {}", reply.status);
        let error = serde_json::from_str::<Value>(&reply.text).ok();
        let shaped = error
            .as_ref()
            .is_some_and(|e| e["error"].is_string() && e["message"].is_string());
        if reply.status != 405 || !shaped || !reply.headers.contains_key("allow") {
            wrong.push(format!(
                "{method} {path} -> {} content-type {:?} body {:?}",
                reply.status,
                reply.content_type(),
                reply.text
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not a 405 JSON error with an Allow header:\n{}",
        wrong.join("\n")
    );
    server.server.stop().await;
}
