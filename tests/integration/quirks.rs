//! Each class of provider quirk the catalog models (`[provider.protocol]`, per-grant default
//! scopes, lenient token answers), end to end over the local server's HTTP routes against
//! `quirky_provider`, a loopback provider that behaves like the real ones: a connection to the
//! catalog provider with that quirk (its endpoints pointed at loopback) is authorized, its token
//! read, refreshed and, where the provider offers it, revoked. Each test asserts what the
//! provider received, what Keyport returned, and that no token reached a log line; where cheap,
//! it also shows the provider refusing a connection that ignores the quirk.

use chrono::{DateTime, Duration, Utc};
use keyport_tests::backends::Backend;
use keyport_tests::http_client::{Http, Reply};
use keyport_tests::logs::CapturedLogs;
use keyport_tests::quirky_provider::{
    Answers, Behaviour, CLIENT_ID, CLIENT_SECRET, QuirkyProvider, Rotation,
};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

crate::on_both_backends_with_logs!(
    github_form_encoded_answers_and_errors_in_a_200,
    slack_errors_in_a_200_and_the_nested_user_token,
    quickbooks_and_shopify_callback_values_are_kept,
    notion_and_jira_take_json_request_bodies,
    salesforce_refreshes_without_refresh_token_or_expires_in,
    expires_in_as_a_string,
    atlassian_rotating_refresh_tokens_are_never_reused,
    microsoft_client_credentials_take_the_grants_default_scopes,
    microsoft_refresh_names_the_scope,
);

const ADMIN_ROLES: &[&str] = &["keyport-admins"];
const BOT_ROLES: &[&str] = &["bots"];

/// The local server, the provider, and the people who use them.
struct Flow {
    // Declared first so it stops first: its refresher never outlives the provider.
    server: TestServer,
    http: Http,
    provider: QuirkyProvider,
    admin: String,
    bot: String,
}

impl Flow {
    async fn start(backend: &Backend, behaviour: Behaviour) -> Flow {
        let server = TestServer::start(backend, &[]).await;
        let http = Http::new(&server.base);
        let admin = server.token("admin@example.com", ADMIN_ROLES);
        let bot = server.token("bot-1", BOT_ROLES);
        Flow {
            provider: QuirkyProvider::start(behaviour).await,
            server,
            http,
            admin,
            bot,
        }
    }

    /// Creates a connection to the loopback provider with `fields` over its endpoints and
    /// client (a `null` field is left out of the request). Returns the created connection.
    async fn create(&self, fields: Value) -> Value {
        let mut request = json!({
            "name": format!("quirk-{}", uuid::Uuid::new_v4().simple()),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "authorization_code",
            "authorization_url": self.provider.authorization_url(),
            "token_url": self.provider.token_url(),
            "revocation_url": self.provider.revocation_url(),
            "invited_roles": ["bots"],
        });
        for (name, value) in fields.as_object().expect("an object") {
            if value.is_null() {
                request.as_object_mut().unwrap().remove(name);
            } else {
                request[name] = value.clone();
            }
        }
        self.http
            .post("/connections", Some(&self.admin), request)
            .await
            .expect_json(201, "POST /connections")
    }

    async fn create_id(&self, fields: Value) -> String {
        id_of(&self.create(fields).await)
    }

    /// Starts the shared token's authorization, consents at the provider, and hands its
    /// redirect's query to the server's callback. Returns the callback's answer.
    async fn callback(&self, id: &str) -> Reply {
        let started = self
            .http
            .post(
                &format!("/connections/{id}/authorize"),
                Some(&self.admin),
                json!({"owner": "shared"}),
            )
            .await
            .expect_json(200, "POST /connections/{id}/authorize");
        let url = started["authorization_url"].as_str().expect("a URL");
        let query = self.provider.consent(url).await;
        self.http
            .get(&format!("/oauth/callback?{query}"), None)
            .await
    }

    /// [`Flow::callback`], then the administrator's confirmation.
    async fn authorize(&self, id: &str) {
        let callback = self.callback(id).await;
        assert_eq!(callback.status, 200, "the callback: {}", callback.text);
        let completion = keyport_tests::keyport::completion_on_page(&callback.text);
        self.http
            .post(
                "/oauth/complete",
                Some(&self.admin),
                json!({"completion": completion}),
            )
            .await
            .expect_json(200, "POST /oauth/complete");
    }

    async fn read(&self, id: &str) -> Value {
        self.http
            .get(&format!("/connections/{id}/token"), Some(&self.bot))
            .await
            .expect_json(200, "GET /connections/{id}/token")
    }

    async fn refresh(&self, id: &str) -> Reply {
        self.http
            .post(
                &format!("/connections/{id}/token/refresh"),
                Some(&self.admin),
                json!({}),
            )
            .await
    }

    async fn refreshed(&self, id: &str) -> Value {
        self.refresh(id)
            .await
            .expect_json(200, "POST /connections/{id}/token/refresh")
    }

    /// Disconnects the shared token; whether the provider confirmed a revocation.
    async fn disconnect(&self, id: &str) -> bool {
        let answer = self
            .http
            .delete(&format!("/connections/{id}/token"), Some(&self.admin))
            .await
            .expect_json(200, "DELETE /connections/{id}/token");
        answer["revoked_at_provider"]
            .as_bool()
            .expect("revoked_at_provider")
    }

    fn assert_no_secret_in(&self, logs: &CapturedLogs, answers: &[&Reply]) {
        let secrets = self.provider.secrets();
        logs.assert_free_of(secrets.iter().map(String::as_str));
        for answer in answers {
            for secret in &secrets {
                assert!(
                    !answer.text.contains(secret.as_str()),
                    "an error answer holds a provider secret: {}",
                    answer.text.replace(secret.as_str(), "[THE SECRET]")
                );
            }
        }
    }
}

fn id_of(connection: &Value) -> String {
    connection["id"].as_str().expect("an id").to_owned()
}

fn access_token(token: &Value) -> String {
    token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {token}"))
        .to_owned()
}

fn expires_at(token: &Value) -> Option<DateTime<Utc>> {
    token["expires_at"].as_str().map(|t| {
        DateTime::parse_from_rfc3339(t)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    })
}

/// The provider's `invalid_grant` reached the caller as "authorize again".
fn assert_needs_reauthorization(answer: &Reply, what: &str) {
    answer.expect_error_code(409, "needs_reauthorization", what);
}

/// GitHub answers form-encoded unless asked for JSON, and reports a bad grant as `error=` in a
/// 200 answer. Keyport asks for JSON and still reads a form-encoded answer (whose
/// `expires_in` is then a string).
async fn github_form_encoded_answers_and_errors_in_a_200(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            answers: Answers::FormUnlessAcceptJson,
            ..Behaviour::default()
        },
    )
    .await;
    let id = flow
        .create_id(json!({"provider": "github", "scopes": "repo", "revocation_url": null}))
        .await;
    flow.authorize(&id).await;
    let exchange = flow.provider.token_requests("authorization_code");
    assert_eq!(exchange.len(), 1, "{exchange:?}");
    assert!(
        exchange[0].accept.contains("application/json"),
        "Keyport asks for JSON: {:?}",
        exchange[0].accept
    );
    assert!(!exchange[0].form_answer, "asked for JSON, JSON came back");
    let first = flow.read(&id).await;
    assert!(expires_at(&first).is_some(), "{first}");

    // The provider ignores Accept from now on: the refresh answer is form-encoded.
    flow.provider.change(|b| b.answers = Answers::Form);
    let before = Utc::now();
    let refreshed = flow.refreshed(&id).await;
    let after = Utc::now();
    let refresh = flow.provider.token_requests("refresh_token");
    assert_eq!(refresh.len(), 1);
    assert!(refresh[0].form_answer, "the refresh was answered in a form");
    assert_ne!(access_token(&refreshed), access_token(&first));
    assert_eq!(
        access_token(&flow.read(&id).await),
        access_token(&refreshed)
    );
    let expiry = expires_at(&refreshed).expect("expires_in read from the form");
    assert!(
        expiry >= before + Duration::seconds(3599) && expiry <= after + Duration::seconds(3599),
        "{expiry} not 3599 s after the refresh"
    );

    // The person revokes the app: the next refresh is answered `error=invalid_grant` in a 200.
    flow.provider.revoke_everything();
    let failed = flow.refresh(&id).await;
    let last = flow.provider.token_requests("refresh_token").pop().unwrap();
    assert_eq!((last.status, last.form_answer), (200, true), "{last:?}");
    assert_needs_reauthorization(&failed, "a refresh GitHub refused inside a 200");

    assert!(
        !flow.disconnect(&id).await,
        "GitHub offers no RFC 7009 revocation"
    );
    assert!(flow.provider.revocations().is_empty());
    flow.assert_no_secret_in(&logs, &[&failed]);
}

/// Slack answers 200 `{"ok": false, "error": …}` for failures, and nests the person's token
/// in `authed_user` next to the app's own.
async fn slack_errors_in_a_200_and_the_nested_user_token(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            success_field: Some("ok"),
            nested_user_token: Some("authed_user"),
            rotation: Rotation::RotatesReuseRevokes,
            ..Behaviour::default()
        },
    )
    .await;
    let id = flow
        .create_id(json!({
            "provider": "slack", "scopes": "chat:write", "client_auth": "client_secret_post",
            "revocation_url": null,
        }))
        .await;
    flow.authorize(&id).await;
    let token = flow.read(&id).await;
    let person = access_token(&token);
    assert!(
        person.starts_with("qat-"),
        "the person's token, not the app's: {}",
        &person[..5]
    );
    assert_eq!(token["token_type"], "user", "{token}");
    assert_eq!(token["scope"], "chat:write", "{token}");
    assert!(
        expires_at(&token).is_some(),
        "the person's expires_in: {token}"
    );

    // The person's refresh token (not the app's) is what refreshes.
    let refreshed = flow.refreshed(&id).await;
    assert_ne!(access_token(&refreshed), person);
    let refresh = flow.provider.token_requests("refresh_token");
    assert_eq!(refresh[0].status, 200, "{refresh:?}");

    // The grant is revoked at Slack: `ok: false` in a 200 answer is a refusal.
    flow.provider.revoke_everything();
    let failed = flow.refresh(&id).await;
    let last = flow.provider.token_requests("refresh_token").pop().unwrap();
    assert_eq!(last.status, 200, "Slack answers its failures with 200");
    assert_needs_reauthorization(&failed, "a refresh Slack refused with ok: false");
    flow.assert_no_secret_in(&logs, &[&failed]);
}

/// QuickBooks adds `realmId` to the callback, Shopify `shop`: the API calls that follow need
/// them, so Keyport keeps them with the token (and through refreshes). Undeclared parameters
/// are dropped, and a malformed declared one refuses the callback.
async fn quickbooks_and_shopify_callback_values_are_kept(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            callback_extra: vec![
                ("realmId".into(), "4620816365213455".into()),
                ("shop".into(), "acme.myshopify.com".into()),
                ("stray".into(), "kept-nowhere".into()),
            ],
            ..Behaviour::default()
        },
    )
    .await;
    for (provider, name, value) in [
        ("quickbooks-online", "realmId", "4620816365213455"),
        ("shopify", "shop", "acme.myshopify.com"),
    ] {
        let id = flow.create_id(json!({"provider": provider})).await;
        flow.authorize(&id).await;
        let token = flow.read(&id).await;
        assert_eq!(token["extra"][name], value, "{provider}: {token}");
        assert!(
            token["extra"].get("stray").is_none(),
            "{provider}: an undeclared callback parameter was kept: {token}"
        );
        let refreshed = flow.refreshed(&id).await;
        assert_eq!(
            refreshed["extra"][name], value,
            "{provider}: the value outlives the refresh: {refreshed}"
        );
        assert!(flow.disconnect(&id).await, "{provider} revocation");
    }
    let revoked: Vec<String> = flow
        .provider
        .revocations()
        .iter()
        .map(|r| r.param("token").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(revoked.len(), 2, "{revoked:?}");

    // A value that is not a plain identifier refuses the callback; no code is exchanged.
    flow.provider.change(|b| {
        b.callback_extra = vec![("realmId".into(), "<script>alert(1)</script>".into())];
    });
    let id = flow
        .create_id(json!({"provider": "quickbooks-online"}))
        .await;
    let exchanges = flow.provider.token_requests("authorization_code").len();
    let refused = flow.callback(&id).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("realmId"), "{}", refused.text);
    assert_eq!(
        flow.provider.token_requests("authorization_code").len(),
        exchanges,
        "the code was not spent"
    );
    flow.http
        .get(&format!("/connections/{id}/token"), Some(&flow.bot))
        .await
        .expect_error_code(409, "not_authorized", "nothing was stored");
    flow.assert_no_secret_in(&logs, &[&refused]);
}

/// Notion and Atlassian take JSON request bodies at the token endpoint and refuse forms.
/// Client authentication stays as configured: Basic for Notion, in the body for Jira. Neither
/// offers RFC 7009 revocation: disconnecting deletes the token without calling the provider.
async fn notion_and_jira_take_json_request_bodies(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            json_requests_only: true,
            ..Behaviour::default()
        },
    )
    .await;
    for (provider, client_auth) in [
        ("notion", "client_secret_basic"),
        ("jira", "client_secret_post"),
    ] {
        let id = flow
            .create_id(json!({
                "provider": provider, "client_auth": client_auth, "revocation_url": null,
            }))
            .await;
        flow.authorize(&id).await;
        let first = flow.read(&id).await;
        let refreshed = flow.refreshed(&id).await;
        assert_ne!(access_token(&first), access_token(&refreshed));
        let disconnected = flow.disconnect(&id).await;
        let requests: Vec<_> = flow
            .provider
            .received()
            .into_iter()
            .filter(|r| r.path != "/authorize")
            .rev()
            .take(2)
            .collect();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].param("grant_type"), Some("refresh_token"));
        assert!(
            requests[0]
                .param("refresh_token")
                .is_some_and(|t| t.starts_with("qrt-"))
        );
        for request in &requests {
            assert!(
                request.content_type.starts_with("application/json"),
                "{provider}: {} sent as {:?}",
                request.path,
                request.content_type
            );
            assert_eq!(request.status, 200, "{provider}: {request:?}");
            match client_auth {
                "client_secret_basic" => {
                    assert_eq!(
                        request.basic,
                        Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
                    );
                    assert!(request.param("client_secret").is_none());
                }
                _ => {
                    assert!(request.basic.is_none());
                    assert_eq!(request.param("client_secret"), Some(CLIENT_SECRET));
                    assert_eq!(request.param("client_id"), Some(CLIENT_ID));
                }
            }
        }
        let exchange = flow
            .provider
            .token_requests("authorization_code")
            .pop()
            .unwrap();
        assert!(
            exchange
                .param("code")
                .is_some_and(|c| c.starts_with("qcode-"))
        );
        assert_eq!(
            exchange.param("redirect_uri"),
            Some(flow.server.callback_url().as_str())
        );
        assert!(
            !disconnected && flow.provider.revocations().is_empty(),
            "{provider} offers no RFC 7009 revocation"
        );
    }

    // The same provider behind a plain (custom) connection: the form body is refused.
    let id = flow.create_id(json!({"provider": "custom"})).await;
    let refused = flow.callback(&id).await;
    assert_eq!(refused.status, 502, "{}", refused.text);
    assert!(refused.text.contains("invalid_request"), "{}", refused.text);
    let last = flow.provider.received().pop().unwrap();
    assert_eq!(
        (last.path.as_str(), last.status),
        ("/token", 400),
        "the provider refused the form: {last:?}"
    );
    flow.assert_no_secret_in(&logs, &[&refused]);
}

/// Salesforce: no `expires_in` anywhere, and refresh answers without a refresh token (the one
/// issued at authorization keeps working); `instance_url` is kept for callers.
async fn salesforce_refreshes_without_refresh_token_or_expires_in(
    backend: Backend,
    logs: CapturedLogs,
) {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "instance_url".into(),
        "https://acme.my.salesforce.com".into(),
    );
    let flow = Flow::start(
        &backend,
        Behaviour {
            refresh_omits_refresh_token: true,
            omit_expires_in: true,
            extra_fields: extra,
            ..Behaviour::default()
        },
    )
    .await;
    let id = flow.create_id(json!({"provider": "salesforce"})).await;
    flow.authorize(&id).await;
    let token = flow.read(&id).await;
    assert_eq!(token["expires_at"], Value::Null, "{token}");
    assert_eq!(
        token["extra"]["instance_url"],
        "https://acme.my.salesforce.com"
    );
    let first = flow.refreshed(&id).await;
    let second = flow.refreshed(&id).await;
    assert_ne!(access_token(&first), access_token(&second));
    assert_eq!(second["expires_at"], Value::Null, "{second}");
    assert_eq!(
        second["extra"]["instance_url"],
        "https://acme.my.salesforce.com"
    );
    let presented: Vec<_> = flow
        .provider
        .token_requests("refresh_token")
        .iter()
        .map(|r| r.param("refresh_token").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(presented.len(), 2);
    assert!(presented[0].starts_with("qrt-"));
    assert_eq!(
        presented[0], presented[1],
        "the original refresh token is kept"
    );
    assert!(flow.disconnect(&id).await);
    assert_eq!(
        flow.provider.revocations()[0].param("token"),
        Some(presented[0].as_str()),
        "the refresh token is revoked"
    );
    flow.assert_no_secret_in(&logs, &[]);
}

/// `expires_in` as a JSON string (older Microsoft endpoints, and any form-encoded answer).
async fn expires_in_as_a_string(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            expires_in_as_string: true,
            ..Behaviour::default()
        },
    )
    .await;
    let id = flow.create_id(json!({"provider": "custom"})).await;
    let before = Utc::now();
    flow.authorize(&id).await;
    let token = flow.read(&id).await;
    let after = Utc::now();
    let expiry = expires_at(&token).expect("an expiry from the string");
    assert!(
        expiry >= before + Duration::seconds(3599) && expiry <= after + Duration::seconds(3599),
        "{expiry} not 3599 s after the exchange"
    );
    let before = Utc::now();
    let refreshed = flow.refreshed(&id).await;
    let expiry = expires_at(&refreshed).expect("an expiry from the string");
    assert!(expiry >= before + Duration::seconds(3599), "{refreshed}");
    assert!(flow.disconnect(&id).await);
    flow.assert_no_secret_in(&logs, &[]);
}

/// Atlassian rotates the refresh token on every refresh and revokes the whole grant when a used
/// one comes back. Keyport presents each new one exactly once, also under concurrent refreshes.
async fn atlassian_rotating_refresh_tokens_are_never_reused(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            json_requests_only: true,
            rotation: Rotation::RotatesReuseRevokes,
            ..Behaviour::default()
        },
    )
    .await;
    let id = flow.create_id(json!({"provider": "jira"})).await;
    flow.authorize(&id).await;
    for _ in 0..3 {
        flow.refreshed(&id).await;
    }
    let path = format!("/connections/{id}/token/refresh");
    let concurrent = futures_join4(
        flow.http.post(&path, Some(&flow.admin), json!({})),
        flow.http.post(&path, Some(&flow.admin), json!({})),
        flow.http.post(&path, Some(&flow.admin), json!({})),
        flow.http.post(&path, Some(&flow.admin), json!({})),
    )
    .await;
    for answer in &concurrent {
        assert!(
            answer.status == 200 || answer.status == 503,
            "a concurrent refresh: {} {}",
            answer.status,
            answer.text
        );
    }
    let presented: Vec<String> = flow
        .provider
        .token_requests("refresh_token")
        .iter()
        .map(|r| r.param("refresh_token").unwrap_or_default().to_owned())
        .collect();
    assert!(presented.len() >= 4, "{}", presented.len());
    let mut distinct = presented.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        presented.len(),
        "a refresh token was presented twice"
    );
    assert_eq!(flow.provider.revoked_grants(), 0, "the grant is alive");
    let token = flow.read(&id).await;
    assert!(access_token(&token).starts_with("qat-"));

    // What reuse costs: a used refresh token presented again (by anyone) kills the grant, and
    // Keyport's next refresh learns that the person must authorize again.
    let reused = reqwest::Client::new()
        .post(flow.provider.token_url())
        .json(&json!({
            "grant_type": "refresh_token", "refresh_token": presented[0],
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        }))
        .send()
        .await
        .expect("the provider answers");
    assert_eq!(reused.status(), 400);
    assert_eq!(flow.provider.revoked_grants(), 1);
    let failed = flow.refresh(&id).await;
    assert_needs_reauthorization(&failed, "a refresh after the grant died");
    flow.assert_no_secret_in(&logs, &[&failed]);
}

async fn futures_join4<F: std::future::Future>(a: F, b: F, c: F, d: F) -> Vec<F::Output> {
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    vec![a, b, c, d]
}

/// Microsoft's client credentials take only `<resource>/.default` (AADSTS1002012): the
/// catalog's per-grant default scopes give a client-credentials connection exactly that.
async fn microsoft_client_credentials_take_the_grants_default_scopes(
    backend: Backend,
    logs: CapturedLogs,
) {
    const DEFAULT: &str = "https://graph.microsoft.com/.default";
    let flow = Flow::start(
        &backend,
        Behaviour {
            client_credentials_scopes: Some(vec![DEFAULT.into()]),
            ..Behaviour::default()
        },
    )
    .await;
    let fields = json!({
        "provider": "microsoft-entra", "grant_type": "client_credentials",
        "provider_params": {"tenant": "contoso.onmicrosoft.com"},
        "authorization_url": null, "revocation_url": null,
    });
    let connection = flow.create(fields.clone()).await;
    assert_eq!(connection["scopes"], json!([DEFAULT]), "{connection}");
    let id = id_of(&connection);
    let token = flow.read(&id).await;
    let again = flow.refreshed(&id).await;
    assert_ne!(access_token(&token), access_token(&again));
    let requests = flow.provider.token_requests("client_credentials");
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.param("scope"), Some(DEFAULT));
        assert_eq!(request.status, 200);
    }

    // The delegated scopes a person's grant asks for are refused in this flow.
    let mut delegated = fields;
    delegated["scopes"] = json!("https://graph.microsoft.com/User.Read");
    let id = flow.create_id(delegated).await;
    let refused = flow
        .http
        .get(&format!("/connections/{id}/token"), Some(&flow.bot))
        .await;
    assert_eq!(refused.status, 502, "{}", refused.text);
    assert!(refused.text.contains("invalid_scope"), "{}", refused.text);
    flow.assert_no_secret_in(&logs, &[&refused]);
}

/// Microsoft's v2 endpoint documents `scope` as required on refresh: Keyport names the scope
/// the authorization asked for. A connection without that quirk is refused on refresh.
async fn microsoft_refresh_names_the_scope(backend: Backend, logs: CapturedLogs) {
    let flow = Flow::start(
        &backend,
        Behaviour {
            refresh_requires_scope: true,
            ..Behaviour::default()
        },
    )
    .await;
    let connection = flow
        .create(json!({
            "provider": "microsoft-entra", "grant_type": "authorization_code_pkce",
            "revocation_url": null,
        }))
        .await;
    let id = id_of(&connection);
    let requested: Vec<String> = connection["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert!(
        requested.contains(&"offline_access".to_owned()),
        "{connection}"
    );
    flow.authorize(&id).await;
    let first = flow.read(&id).await;
    let refreshed = flow.refreshed(&id).await;
    assert_ne!(access_token(&first), access_token(&refreshed));
    let refresh = flow.provider.token_requests("refresh_token").pop().unwrap();
    assert_eq!(refresh.param("scope"), Some(requested.join(" ").as_str()));
    assert_eq!(refresh.status, 200);

    // Without the quirk the refresh names no scope, and the provider refuses it.
    let id = flow
        .create_id(json!({"provider": "custom", "scopes": ["openid", "offline_access"]}))
        .await;
    flow.authorize(&id).await;
    let refused = flow.refresh(&id).await;
    let last = flow.provider.token_requests("refresh_token").pop().unwrap();
    assert_eq!((last.param("scope"), last.status), (None, 400));
    assert_eq!(refused.status, 502, "{}", refused.text);
    assert!(refused.text.contains("invalid_request"), "{}", refused.text);
    flow.assert_no_secret_in(&logs, &[&refused]);
}
