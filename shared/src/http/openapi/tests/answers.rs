//! (2) Real answers match the description: the real router over an embedded back-end, driven
//! through every operation and every status it gives offline, and the callback's pages; each
//! answer's status, headers and body are checked against the operation it comes from.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::response::Response;
use chrono::Utc;
use lambda_http::tower::ServiceExt;
use serde_json::{Value, json};

use super::{NamedCallers, deref, embedded_keyport, operation, operations, problems, spec};
use crate::domain::{ConnectionId, Owner, StoredToken, Subject, TokenSecrets, TokenStatus};
use crate::http::{ApiError, Function, MAX_BODY_BYTES};
use crate::ports::{Expect, TokenKey};
use crate::service::Keyport;

struct Harness {
    app: Router,
    keyport: Arc<Keyport>,
    spec: Value,
    /// `(METHOD, template, status)` of every answer checked.
    seen: BTreeSet<(String, String, u16)>,
    _data: tempfile::TempDir,
}

struct Answer {
    status: u16,
    body: Value,
    text: String,
}

impl Harness {
    fn new() -> Self {
        let (keyport, data) = embedded_keyport();
        let app = crate::http::router(keyport.clone(), Arc::new(NamedCallers), &Function::ALL);
        Self {
            app,
            keyport,
            spec: spec(),
            seen: BTreeSet::new(),
            _data: data,
        }
    }

    /// Runs one line of a scenario, `METHOD uri caller [body] => status`, and checks the answer
    /// against the operation it reaches. The caller is a name `NamedCallers` knows, another
    /// name (a token that does not verify) or `-` (none); the body is JSON text, or `plain` (a
    /// body that is not declared as JSON) or `huge` (one over the size limit).
    async fn run(&mut self, line: &str) -> Answer {
        let (request, status) = line.rsplit_once(" => ").expect("`… => status`");
        let mut parts = request.splitn(4, ' ');
        let (method, uri) = (parts.next().unwrap(), parts.next().expect("a URI"));
        let caller = parts.next().expect("a caller, or -");
        let mut builder = Request::builder().method(method).uri(uri);
        if caller != "-" {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {caller}"));
        }
        let body = match parts.next() {
            None => Body::empty(),
            Some("plain") => {
                builder = builder.header(header::CONTENT_TYPE, "text/plain");
                Body::from("{}")
            }
            Some("huge") => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                let padding = "x".repeat(MAX_BODY_BYTES);
                Body::from(format!("{{\"description\": \"{padding}\"}}"))
            }
            Some(form) if form.starts_with("form:") => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(form["form:".len()..].to_owned())
            }
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_owned())
            }
        };
        let template = self.template(uri);
        let response = self
            .app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let answer = self.conforms(method, &template, response).await;
        assert_eq!(answer.status.to_string(), status, "{line}: {}", answer.text);
        self.seen
            .insert((method.to_owned(), template, answer.status));
        answer
    }

    /// The described path `uri` reaches.
    fn template(&self, uri: &str) -> String {
        let path = uri.split('?').next().unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        let matching: Vec<&String> = self.spec["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|template| {
                let pattern: Vec<&str> = template.split('/').collect();
                pattern.len() == segments.len()
                    && pattern.iter().zip(&segments).all(|(p, s)| {
                        p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty())
                    })
            })
            .collect();
        // A literal path wins over a template it also fits, as in the router
        // (`/connections/export` over `/connections/{id}`).
        if let Some(literal) = matching.iter().find(|template| template.as_str() == path) {
            return (*literal).clone();
        }
        assert_eq!(matching.len(), 1, "{uri} reaches {matching:?}");
        matching[0].clone()
    }

    async fn conforms(&self, method: &str, template: &str, response: Response) -> Answer {
        let spec = &self.spec;
        let what = format!("{method} {template}");
        let status = response.status().as_u16();
        let op = operation(spec, method, template);
        let declared = deref(
            spec,
            op["responses"]
                .get(status.to_string())
                .unwrap_or_else(|| panic!("{what} answered {status}, which is not described")),
        );
        for (name, header_spec) in declared["headers"].as_object().into_iter().flatten() {
            let header_spec = deref(spec, header_spec);
            let value = response.headers().get(name.as_str());
            if header_spec["required"] == true {
                assert!(value.is_some(), "{what} {status}: no {name} header");
            }
            if let Some(value) = value {
                let text = value.to_str().unwrap();
                let parsed: Value = serde_json::from_str(text)
                    .ok()
                    .filter(Value::is_number)
                    .unwrap_or_else(|| json!(text));
                let found = problems(spec, &header_spec["schema"], &parsed);
                assert!(found.is_empty(), "{what} {status}: {name}: {found:?}");
            }
        }
        // Headers the API sets on purpose are described where they are set.
        for name in [
            header::LOCATION,
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
        ] {
            if response.headers().contains_key(&name) {
                let described = declared["headers"]
                    .as_object()
                    .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name.as_str())));
                assert!(
                    described,
                    "{what} {status}: the {name} header is not described"
                );
            }
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let Some(content) = declared.get("content").and_then(Value::as_object) else {
            assert!(
                text.is_empty(),
                "{what} {status}: a body where none is described"
            );
            return Answer {
                status,
                body: Value::Null,
                text,
            };
        };
        let media_type = content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("{what} {status}: no Content-Type"))
            .trim()
            .to_owned();
        let media = content
            .get(&media_type)
            .unwrap_or_else(|| panic!("{what} {status}: {media_type} is not described"));
        let body = if media_type == "application/json" {
            serde_json::from_str(&text).unwrap()
        } else {
            json!(text)
        };
        let found = problems(spec, &media["schema"], &body);
        assert!(
            found.is_empty(),
            "{what} {status}: {body}\n{}",
            found.join("\n")
        );
        Answer { status, body, text }
    }
}

fn create_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "the CRM",
        "grant_type": "authorization_code_pkce",
        "client_id": "keyport",
        "client_secret": "s3cret",
        "authorization_url": "https://login.acme.example/authorize",
        "token_url": "https://login.acme.example/token",
        "issuer": "https://login.acme.example",
        "scopes": ["openid", "api"],
        "invited_roles": ["bots"],
        "token_response_extras": ["instance_url"],
        "username": null
    })
}

/// A token of `owner`, stored as a completed authorization would store it.
async fn seed_token(keyport: &Keyport, id: &str, owner: Owner) {
    let key = TokenKey {
        connection_id: ConnectionId::parse(id).unwrap(),
        owner,
    };
    let mut extra = serde_json::Map::new();
    extra.insert("instance_url".into(), json!("https://acme.example.com"));
    let secrets = TokenSecrets {
        access_token: secrecy::SecretString::from("access-token"),
        refresh_token: None,
        id_token: None,
        extra,
    };
    let now = Utc::now();
    let record = StoredToken {
        connection_id: key.connection_id.clone(),
        owner: key.owner.clone(),
        status: TokenStatus::Valid,
        token_type: "Bearer".into(),
        scope: Some("openid api".into()),
        expires_at: Some(now + chrono::Duration::hours(1)),
        refresh_due_at: None,
        has_refresh_token: false,
        last_error: None,
        lease: None,
        issued_for: None,
        provider_asked_at: None,
        grant_ends_at: None,
        grant_end_reported: false,
        filed_due_at: None,
        created_at: now,
        updated_at: now,
        sealed: keyport.cipher.seal_token(&key, &secrets).await.unwrap(),
        version: 0,
    };
    keyport
        .store
        .put_token(&record, Expect::Absent)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_routers_answers_are_described() {
    let mut h = Harness::new();
    let acme = create_body("Acme CRM").to_string();
    let created = h
        .run(&format!("POST /connections admin {acme} => 201"))
        .await;
    assert_eq!(created.body["version"], 1);
    let other = create_body("Other").to_string();
    let other = h
        .run(&format!("POST /connections admin {other} => 201"))
        .await;
    let page = h.run("GET /connections?limit=1 admin => 200").await;
    let cursor = page.body["next_cursor"].as_str().expect("a second page");
    let last = h
        .run(&format!(
            "GET /connections?limit=1&cursor={cursor} admin => 200"
        ))
        .await;
    assert_eq!(last.body["next_cursor"], Value::Null);
    let none = ConnectionId::generate();
    let vars = [
        ("$acme", acme.clone()),
        ("$clash", create_body("ACME crm").to_string()),
        ("$conn", created.body["id"].as_str().unwrap().to_owned()),
        ("$other", other.body["id"].as_str().unwrap().to_owned()),
        ("$none", none.as_str().to_owned()),
    ];
    let fill = |line: &str| {
        vars.iter().fold(line.to_owned(), |line, (name, value)| {
            line.replace(name, value)
        })
    };
    let before_tokens = [
        "GET /providers bot => 200",
        "GET /providers - => 401",
        "GET /providers forged => 401",
        // Creating.
        "POST /connections admin $clash => 409",
        "POST /connections bot $acme => 403",
        "POST /connections - $acme => 401",
        r#"POST /connections admin {"name": "X", "colour": "red"} => 400"#,
        r#"POST /connections admin {"name": "X", "grant_type": "client_credentials"} => 400"#,
        r#"POST /connections admin {"name": "X", "grant_type": "implicit", "client_id": "c"} => 400"#,
        r#"POST /connections admin {"name": => 400"#,
        "POST /connections admin [1, 2] => 400",
        "POST /connections admin plain => 415",
        "POST /connections admin huge => 413",
        // Listing.
        "GET /connections admin => 200",
        "GET /connections?colour=red admin => 400",
        "GET /connections?limit=-1 admin => 400",
        "GET /connections?cursor=bogus admin => 400",
        "GET /connections bot => 403",
        "GET /connections - => 401",
        // One connection.
        "GET /connections/$conn admin => 200",
        "GET /connections/$none admin => 404",
        "GET /connections/con_nope admin => 400",
        "GET /connections/$conn bot => 403",
        "GET /connections/$conn - => 401",
        r#"PATCH /connections/$conn admin {"description": "changed", "version": 1} => 200"#,
        r#"PATCH /connections/$conn admin {"description": "again", "version": 1} => 409"#,
        r#"PATCH /connections/$conn admin {"name": "Other"} => 409"#,
        r#"PATCH /connections/$conn admin {"token_url": "http://login.acme.example/t"} => 400"#,
        r#"PATCH /connections/$conn admin {"scopes": "a,,b"} => 400"#,
        r#"PATCH /connections/$conn admin {"secret": "x"} => 400"#,
        "PATCH /connections/$none admin {} => 404",
        "PATCH /connections/$conn bot {} => 403",
        "PATCH /connections/$conn admin plain => 415",
        "PATCH /connections/$conn admin huge => 413",
        "PATCH /connections/$conn - plain => 401",
        // Testing asks the provider; only the refusals before that are offline.
        "POST /connections/$none/test admin => 404",
        "POST /connections/x/test admin => 400",
        "POST /connections/$conn/test bot => 403",
        "POST /connections/$conn/test - => 401",
        // Authorizing.
        r#"POST /connections/$conn/authorize bot {"owner": "shared"} => 403"#,
        r#"POST /connections/$conn/authorize stranger {"owner": "user"} => 403"#,
        r#"POST /connections/$conn/authorize admin {"owner": "everyone"} => 400"#,
        r#"POST /connections/$conn/authorize admin {"redirect_after": "https://evil.example/"} => 400"#,
        r#"POST /connections/$conn/authorize admin {"colour": "red"} => 400"#,
        "POST /connections/$none/authorize admin {} => 404",
        "POST /connections/con_/authorize admin {} => 400",
        "POST /connections/$conn/authorize admin plain => 415",
        "POST /connections/$conn/authorize admin huge => 413",
        "POST /connections/$conn/authorize - => 401",
        // The callback, refusing before any provider is asked.
        "GET /oauth/callback - => 400",
        "GET /oauth/callback?code=abc - => 400",
        "GET /oauth/callback?state=not-a-state&code=abc - => 400",
        // The confirmation, with values no callback handed out.
        r#"POST /oauth/complete bot {"completion": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} => 400"#,
        r#"POST /oauth/complete bot {"completion": "short"} => 400"#,
        r#"POST /oauth/complete bot {"completion": "AAAA", "extra": 1} => 400"#,
        "POST /oauth/complete - => 401",
        // Tokens, before there is one.
        "GET /connections/$conn/token bot => 409",
        "GET /connections/$conn/token?owner=user bot => 409",
        "GET /connections/$conn/token?owner=anyone bot => 400",
        "GET /connections/$conn/token?min_valid_seconds=86401 bot => 400",
        "GET /connections/$conn/token?min_valid_seconds=-1 bot => 400",
        "GET /connections/$conn/token?colour=red bot => 400",
        "GET /connections/$conn/token stranger => 403",
        "GET /connections/$none/token bot => 404",
        "GET /connections/con_1/token bot => 400",
        "GET /connections/$conn/token - => 401",
        "POST /connections/$conn/token/refresh bot => 409",
        "POST /connections/$conn/token/refresh?owner=x bot => 400",
        "POST /connections/$conn/token/refresh?min_valid_seconds=1 bot => 400",
        "POST /connections/$conn/token/refresh stranger => 403",
        "POST /connections/$none/token/refresh bot => 404",
        "POST /connections/$conn/token/refresh - => 401",
        // A reset: administrators, client-credentials connections only.
        "POST /connections/$conn/token/reset bot => 403",
        "POST /connections/$conn/token/reset admin => 409",
        "POST /connections/$conn/token/reset?owner=user admin => 400",
        "POST /connections/$none/token/reset admin => 404",
        "POST /connections/con_1/token/reset admin => 400",
        "POST /connections/$conn/token/reset - => 401",
    ];
    for line in before_tokens {
        h.run(&fill(line)).await;
    }

    // Three authorizations: one the provider refuses, one answered by another issuer, and one
    // whose connection is gone by the time the browser comes back.
    let mut states = Vec::new();
    for body in [
        r#"{}"#,
        r#"{"owner": null, "redirect_after": "https://app.example.com/done"}"#,
    ] {
        let line = fill(&format!(
            "POST /connections/$conn/authorize admin {body} => 200"
        ));
        states.push(
            h.run(&line).await.body["state"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let line = fill(r#"POST /connections/$conn/authorize bot {"owner": "user"} => 200"#);
    states.push(
        h.run(&line).await.body["state"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let (denied, elsewhere, orphan) = (&states[0], &states[1], &states[2]);
    h.run(&format!(
        "GET /oauth/callback?state={denied}&error=access_denied - => 400"
    ))
    .await;
    h.run(&format!(
        "GET /oauth/callback?state={denied}&code=abc - => 400"
    ))
    .await;
    // The form post callback: a spent state, a body that is not a form, one too large.
    h.run(&format!(
        "POST /oauth/callback - form:state={denied}&code=abc => 400"
    ))
    .await;
    h.run("POST /oauth/callback - plain => 415").await;
    h.run("POST /oauth/callback - huge => 413").await;
    let evil = "https%3A%2F%2Fevil.example";
    h.run(&format!(
        "GET /oauth/callback?state={elsewhere}&code=abc&iss={evil} - => 400"
    ))
    .await;

    // A stored token.
    seed_token(&h.keyport, &vars[2].1, Owner::Shared).await;
    let bots = Owner::User(Subject::parse("bot").unwrap());
    seed_token(&h.keyport, &vars[2].1, bots).await;
    let token = fill("GET /connections/$conn/token?owner=shared&min_valid_seconds=60 bot => 200");
    let token = h.run(&token).await;
    assert_eq!(
        token.body["extra"]["instance_url"],
        "https://acme.example.com"
    );
    let mine = h.run("GET /me/connections bot => 200").await;
    let usable = mine.body["connections"].as_array().unwrap();
    assert_eq!(usable.len(), 2);
    assert!(usable.iter().any(|c| c["shared_token"] == "valid"));
    let theirs = h.run("GET /me/connections stranger => 200").await;
    assert_eq!(theirs.body["connections"], json!([]));
    let after_tokens = [
        "GET /connections/$conn/token admin => 200",
        "GET /me/connections - => 401",
        // Disconnecting: the connection names no revocation endpoint, so nothing leaves.
        "DELETE /connections/$conn/token?owner=bogus bot => 400",
        "DELETE /connections/$conn/token?min_valid_seconds=1 bot => 400",
        "DELETE /connections/$conn/token stranger => 403",
        "DELETE /connections/$conn/token - => 401",
        // The shared token is the administrators' to end, however invited the caller.
        "DELETE /connections/$conn/token bot => 403",
        "DELETE /connections/$conn/token admin => 200",
        // A missing token: 409 not_authorized, as a read or a refresh of it answers.
        "DELETE /connections/$conn/token admin => 409",
        // People's own tokens, for administrators: statuses, and one person's ended.
        "GET /connections/$conn/tokens?limit=1 admin => 200",
        "GET /connections/$conn/tokens?cursor=bogus admin => 400",
        "GET /connections/$conn/tokens?owner=user admin => 400",
        "GET /connections/$conn/tokens bot => 403",
        "GET /connections/$none/tokens admin => 404",
        "GET /connections/$conn/tokens - => 401",
        "DELETE /connections/$conn/tokens/bot bot => 403",
        "DELETE /connections/$conn/tokens/%20bot admin => 400",
        "DELETE /connections/$none/tokens/bot admin => 404",
        "DELETE /connections/$conn/tokens/bot - => 401",
        "DELETE /connections/$conn/tokens/bot admin => 200",
        "DELETE /connections/$conn/tokens/bot admin => 409",
        "DELETE /connections/$conn/token?owner=user bot => 409",
        // The trail of all of the above.
        "GET /connections/$conn/audit?limit=2 admin => 200",
        "GET /connections/$conn/audit?cursor=bogus admin => 400",
        "GET /connections/$conn/audit?colour=red admin => 400",
        "GET /connections/$conn/audit bot => 403",
        "GET /connections/$conn/audit - => 401",
        // Export (with a token stored: with secrets, it is decrypted and sealed) and import.
        "GET /connections/export admin => 200",
        "GET /connections/export?with_secrets=true&recipient=age1lf49r0tpu0z04r3yw55pnqf7unlfcf0n565ac29e0vlek8c72dfsrf33vj admin => 200",
        "GET /connections/export?with_secrets=true admin => 400",
        "GET /connections/export?recipient=age1lf49r0tpu0z04r3yw55pnqf7unlfcf0n565ac29e0vlek8c72dfsrf33vj admin => 400",
        "GET /connections/export?colour=red admin => 400",
        "GET /connections/export bot => 403",
        "GET /connections/export - => 401",
        r#"POST /connections/import admin {"keyport_export": 1, "connections": []} => 200"#,
        r#"POST /connections/import?dry_run=false admin {"keyport_export": 1, "connections": [{"name": "Acme CRM", "provider": "github"}]} => 409"#,
        r#"POST /connections/import admin {"keyport_export": 1, "connections": [], "colour": 1} => 400"#,
        r#"POST /connections/import?dry_run=maybe admin {"keyport_export": 1, "connections": []} => 400"#,
        r#"POST /connections/import bot {"keyport_export": 1, "connections": []} => 403"#,
        "POST /connections/import admin plain => 415",
        "POST /connections/import admin huge => 413",
        "POST /connections/import - plain => 401",
        // Deleting.
        "DELETE /connections/$conn?version=1 admin => 409",
        "DELETE /connections/$conn?colour=red admin => 400",
        "DELETE /connections/$conn?version=x admin => 400",
        "DELETE /connections/$conn bot => 403",
        "DELETE /connections/$conn - => 401",
        "DELETE /connections/$conn?version=2 admin => 204",
        "DELETE /connections/$conn admin => 404",
        "DELETE /connections/$other admin => 204",
        // The outbound-proxy setting: administrators only; the password never answered.
        "GET /settings/outbound-proxy admin => 404",
        "GET /settings/outbound-proxy bot => 403",
        "GET /settings/outbound-proxy - => 401",
        r#"PUT /settings/outbound-proxy admin {"url": "ftp://proxy.example.com"} => 400"#,
        r#"PUT /settings/outbound-proxy admin {"url": "http://proxy.example.com:3128", "colour": 1} => 400"#,
        r#"PUT /settings/outbound-proxy bot {"url": "http://proxy.example.com:3128"} => 403"#,
        "PUT /settings/outbound-proxy admin plain => 415",
        "PUT /settings/outbound-proxy admin huge => 413",
        "PUT /settings/outbound-proxy - plain => 401",
        r#"PUT /settings/outbound-proxy admin {"url": "http://proxy.example.com:3128", "username": "keyport", "password": "p"} => 200"#,
        "GET /settings/outbound-proxy admin => 200",
        "DELETE /settings/outbound-proxy bot => 403",
        "DELETE /settings/outbound-proxy - => 401",
        "DELETE /settings/outbound-proxy admin => 204",
    ];
    for line in after_tokens {
        h.run(&fill(line)).await;
    }
    h.run(&format!(
        "GET /oauth/callback?state={orphan}&code=abc - => 404"
    ))
    .await;

    // Webhook subscriptions.
    let hook = h
        .run(r#"POST /webhooks admin {"url": "https://hooks.example.com/keyport", "event_types": ["token.refresh_failed"]} => 201"#)
        .await;
    assert!(
        hook.body["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let id = hook.body["webhook"]["id"].as_str().unwrap().to_owned();
    for line in [
        r#"POST /webhooks admin {"url": "http://hooks.example.com/"} => 400"#,
        r#"POST /webhooks admin {"url": "https://hooks.example.com/", "event_types": ["token.stolen"]} => 400"#,
        r#"POST /webhooks admin {"url": "https://hooks.example.com/", "colour": "red"} => 400"#,
        "POST /webhooks admin plain => 415",
        "POST /webhooks admin huge => 413",
        r#"POST /webhooks bot {"url": "https://hooks.example.com/"} => 403"#,
        r#"POST /webhooks - {"url": "https://hooks.example.com/"} => 401"#,
        "GET /webhooks admin => 200",
        "GET /webhooks bot => 403",
        "GET /webhooks - => 401",
        "GET /webhooks/$hook admin => 200",
        "GET /webhooks/whk_nope admin => 400",
        "GET /webhooks/whk_00000000000000000000000000000000 admin => 404",
        "GET /webhooks/$hook bot => 403",
        "GET /webhooks/$hook - => 401",
        r#"PATCH /webhooks/$hook admin {"enabled": false, "version": 1} => 200"#,
        r#"PATCH /webhooks/$hook admin {"enabled": true, "version": 1} => 409"#,
        r#"PATCH /webhooks/$hook admin {"event_types": ["nope"]} => 400"#,
        "PATCH /webhooks/whk_nope admin {} => 400",
        "PATCH /webhooks/whk_00000000000000000000000000000000 admin {} => 404",
        "PATCH /webhooks/$hook admin plain => 415",
        "PATCH /webhooks/$hook admin huge => 413",
        "PATCH /webhooks/$hook bot {} => 403",
        "PATCH /webhooks/$hook - {} => 401",
        "POST /webhooks/$hook/rotate-secret admin => 200",
        "POST /webhooks/whk_nope/rotate-secret admin => 400",
        "POST /webhooks/whk_00000000000000000000000000000000/rotate-secret admin => 404",
        "POST /webhooks/$hook/rotate-secret bot => 403",
        "POST /webhooks/$hook/rotate-secret - => 401",
        "DELETE /webhooks/$hook bot => 403",
        "DELETE /webhooks/$hook - => 401",
        "DELETE /webhooks/whk_nope admin => 400",
        "DELETE /webhooks/$hook admin => 204",
        "DELETE /webhooks/$hook admin => 404",
    ] {
        h.run(&line.replace("$hook", &id)).await;
    }

    // Every operation was reached, and every kind of answer the API gives offline was seen.
    let reached: BTreeSet<(String, String)> = h
        .seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(reached, served_by_functions());
    let statuses: BTreeSet<u16> = h.seen.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(
        statuses,
        [200, 201, 204, 400, 401, 403, 404, 409, 413, 415].into()
    );
}

#[tokio::test]
async fn the_callbacks_pages_are_described() {
    let harness = Harness::new();
    let done = |redirect_after: Option<&str>| crate::service::AuthorizationAwaitingConfirmation {
        connection_id: ConnectionId::generate(),
        owner: Owner::User(Subject::parse("alice").unwrap()),
        completion: crate::domain::StateToken::generate(),
        expires_at: chrono::Utc::now(),
        redirect_after: redirect_after.map(str::to_owned),
    };
    let callback = "/oauth/callback";
    let held = crate::http::page::awaiting_confirmation(&done(None));
    let held = harness.conforms("GET", callback, held).await;
    assert_eq!(held.status, 200);
    assert!(held.text.contains("Almost connected"));
    let redirected =
        crate::http::page::awaiting_confirmation(&done(Some("https://app.example.com/done?x=1")));
    let redirected = harness.conforms("GET", callback, redirected).await;
    assert_eq!(redirected.status, 303);
    for (error, status) in [
        (
            crate::oauth::OAuthError::InvalidGrant { description: None },
            409,
        ),
        (
            crate::oauth::OAuthError::BadResponse("nonsense".into()),
            502,
        ),
        (crate::oauth::OAuthError::Timeout, 503),
    ] {
        let error = ApiError::Service(crate::service::ServiceError::Provider(error));
        let page = harness
            .conforms("GET", callback, crate::http::page::failed(&error))
            .await;
        assert_eq!(page.status, status);
        assert!(page.text.contains("Authorization failed"));
    }
}

/// `(METHOD, path)` of every operation the functions serve: all but the local server's.
fn served_by_functions() -> BTreeSet<(String, String)> {
    let spec = spec();
    operations(&spec)
        .into_iter()
        .filter(|(_, _, operation)| operation["tags"] != json!([super::super::LOCAL]))
        .map(|(method, path, _)| (method, path))
        .collect()
}
