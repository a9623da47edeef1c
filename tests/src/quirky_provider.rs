//! An OAuth provider on loopback that behaves like the real ones where they depart from
//! RFC 6749, one switch per departure: form-encoded answers unless JSON is asked for (GitHub),
//! failures inside a 200 answer (Slack's `"ok": false`), the person's token nested in the answer
//! (Slack's `authed_user`), values added to the callback (QuickBooks' `realmId`, Shopify's
//! `shop`), JSON request bodies only (Notion, Atlassian), refresh answers without a refresh
//! token or `expires_in` (Salesforce), `expires_in` as a string, refresh tokens that rotate and
//! revoke the grant when reused (Atlassian, Zoom), client credentials that take only the
//! scopes given (Microsoft's `.default`), and refreshes that must name the scope (Microsoft).
//!
//! It serves `/authorize` (consents at once: a redirect to the callback with a code),
//! `/token` (every grant) and `/revoke` (RFC 7009), and records every request it receives.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

pub const CLIENT_ID: &str = "quirky-client";
/// With characters that must be form-encoded in a Basic credential (RFC 6749 §2.3.1).
pub const CLIENT_SECRET: &str = "quirky secret+/=9";

/// How the token endpoint encodes its answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Answers {
    #[default]
    Json,
    /// Form-encoded unless the request's `Accept` names `application/json` (GitHub).
    FormUnlessAcceptJson,
    /// Form-encoded whatever was asked for (a provider, or a proxy, that ignores `Accept`).
    Form,
}

/// What happens to a refresh token when it is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// The same refresh token serves every refresh (and is not sent again).
    #[default]
    Reused,
    /// A new one each refresh; presenting a used one revokes the whole grant.
    RotatesReuseRevokes,
}

/// The provider's departures; the default is a plain RFC 6749 provider.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    pub answers: Answers,
    /// A field that is `true` in successes and `false` (with `error`) in failures, which are
    /// then answered with 200 (Slack's `ok`).
    pub success_field: Option<&'static str>,
    /// A code exchange answers an app token at the top and the person's token inside this
    /// object (Slack's `authed_user`).
    pub nested_user_token: Option<&'static str>,
    /// Form-encoded request bodies are refused with 400 (Notion, Atlassian).
    pub json_requests_only: bool,
    /// Refresh answers carry no refresh token.
    pub refresh_omits_refresh_token: bool,
    /// No answer carries `expires_in`.
    pub omit_expires_in: bool,
    /// `expires_in` is sent as a string.
    pub expires_in_as_string: bool,
    pub rotation: Rotation,
    /// Client credentials requests must ask for exactly these scopes (Microsoft's
    /// `<resource>/.default`); anything else is `invalid_scope`.
    pub client_credentials_scopes: Option<Vec<String>>,
    /// A refresh without `scope` is refused with `invalid_request`.
    pub refresh_requires_scope: bool,
    /// Added to the redirect to the callback.
    pub callback_extra: Vec<(String, String)>,
    /// Added to every token answer (Salesforce's `instance_url`).
    pub extra_fields: Map<String, Value>,
}

/// One request the provider received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub accept: String,
    /// The `Authorization` header, decoded: `(client id, secret)` of a Basic credential.
    pub basic: Option<(String, String)>,
    /// The body's (or, for `/authorize`, the query's) parameters.
    pub params: BTreeMap<String, String>,
    /// The status answered, and whether the answer was form-encoded.
    pub status: u16,
    pub form_answer: bool,
}

impl Received {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Grants {
    /// code -> (grant, scope, redirect_uri)
    codes: HashMap<String, (u32, String, String)>,
    /// refresh token -> (grant, still usable)
    refresh_tokens: HashMap<String, (u32, bool)>,
    scopes: HashMap<u32, String>,
    revoked: Vec<u32>,
    next: u32,
    /// Every code and token handed out, for the log check.
    issued: Vec<String>,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    grants: Mutex<Grants>,
    received: Mutex<Vec<Received>>,
}

pub struct QuirkyProvider {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    shared: Arc<Shared>,
    serve: JoinHandle<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl QuirkyProvider {
    pub async fn start(behaviour: Behaviour) -> QuirkyProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            grants: Mutex::new(Grants::default()),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .with_state(shared.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        QuirkyProvider {
            base: format!("http://{addr}"),
            shared,
            serve,
        }
    }

    pub fn authorization_url(&self) -> String {
        format!("{}/authorize", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    pub fn revocation_url(&self) -> String {
        format!("{}/revoke", self.base)
    }

    /// Changes the behaviour for the requests that follow.
    pub fn change(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut lock(&self.shared.behaviour));
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// The token-endpoint requests of one grant type.
    pub fn token_requests(&self, grant_type: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == "/token" && r.param("grant_type") == Some(grant_type))
            .collect()
    }

    pub fn revocations(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == "/revoke")
            .collect()
    }

    /// How many grants were revoked (by a revocation or by a reused refresh token).
    pub fn revoked_grants(&self) -> usize {
        lock(&self.shared.grants).revoked.len()
    }

    /// The person removes the app: every grant so far is revoked.
    pub fn revoke_everything(&self) {
        let mut grants = lock(&self.shared.grants);
        let all: Vec<u32> = (1..=grants.next).collect();
        grants.revoked.extend(all);
    }

    /// Every code and token the provider handed out, and the client secret.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = lock(&self.shared.grants).issued.clone();
        secrets.push(CLIENT_SECRET.to_owned());
        secrets
    }

    /// The person's consent: follows `authorization_url` (which must be this provider's) and
    /// returns the query the provider's redirect hands the callback.
    pub async fn consent(&self, authorization_url: &str) -> String {
        assert!(
            authorization_url.starts_with(&self.authorization_url()),
            "{authorization_url} is not this provider's"
        );
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client");
        let answer = client
            .get(authorization_url)
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(answer.status(), 302, "the provider did not redirect");
        let location = answer.headers()[header::LOCATION]
            .to_str()
            .expect("a text location")
            .to_owned();
        url::Url::parse(&location)
            .expect("an absolute redirect")
            .query()
            .expect("a query")
            .to_owned()
    }
}

impl Drop for QuirkyProvider {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let behaviour = lock(&shared.behaviour).clone();
    let (status, location) = match (query.get("redirect_uri"), query.get("client_id")) {
        (Some(redirect), Some(client)) if client == CLIENT_ID => {
            let code = unique("qcode");
            let mut grants = lock(&shared.grants);
            grants.next += 1;
            let grant = grants.next;
            let scope = query.get("scope").cloned().unwrap_or_default();
            grants
                .codes
                .insert(code.clone(), (grant, scope, redirect.clone()));
            grants.issued.push(code.clone());
            let mut target = url::Url::parse(redirect).expect("an absolute redirect_uri");
            {
                let mut pairs = target.query_pairs_mut();
                pairs.append_pair("code", &code);
                if let Some(state) = query.get("state") {
                    pairs.append_pair("state", state);
                }
                for (name, value) in &behaviour.callback_extra {
                    pairs.append_pair(name, value);
                }
            }
            (StatusCode::FOUND, Some(target.to_string()))
        }
        _ => (StatusCode::BAD_REQUEST, None),
    };
    lock(&shared.received).push(Received {
        path: "/authorize".into(),
        content_type: String::new(),
        accept: String::new(),
        basic: None,
        params: query,
        status: status.as_u16(),
        form_answer: false,
    });
    match location {
        Some(location) => (status, [(header::LOCATION, location)]).into_response(),
        None => status.into_response(),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn form_decode(bytes: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// The Basic credential, each half form-decoded (RFC 6749 §2.3.1).
fn basic_credential(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_text(headers, header::AUTHORIZATION);
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// What one request carried, and whether its body is in an encoding the provider takes.
fn read_request(
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    behaviour: &Behaviour,
) -> (Received, bool) {
    let content_type = header_text(headers, header::CONTENT_TYPE);
    let json = content_type.starts_with("application/json");
    let params: BTreeMap<String, String> = if json {
        serde_json::from_slice::<Map<String, Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or(v.to_string())))
            .collect()
    } else {
        form_decode(body)
    };
    let accept = header_text(headers, header::ACCEPT);
    let form_answer = match behaviour.answers {
        Answers::Json => false,
        Answers::Form => true,
        Answers::FormUnlessAcceptJson => !accept.contains("application/json"),
    };
    let acceptable = json || !behaviour.json_requests_only;
    (
        Received {
            path: path.into(),
            content_type,
            accept,
            basic: basic_credential(headers),
            params,
            status: 0,
            form_answer,
        },
        acceptable,
    )
}

/// An answer in the provider's encoding. Failures: 200 with the success field `false` where
/// the provider has one; 200 with `error` where it answers form-encoded (GitHub); else 400.
struct Answer {
    status: StatusCode,
    fields: Map<String, Value>,
}

impl Answer {
    fn error(code: &str, description: &str) -> Answer {
        let mut fields = Map::new();
        fields.insert("error".into(), code.into());
        fields.insert("error_description".into(), description.into());
        Answer {
            status: StatusCode::BAD_REQUEST,
            fields,
        }
    }

    fn render(mut self, behaviour: &Behaviour, received: &mut Received) -> Response {
        let failed = self.fields.contains_key("error");
        if let Some(flag) = behaviour.success_field {
            self.fields.insert(flag.into(), Value::Bool(!failed));
            self.status = StatusCode::OK;
        } else if failed && received.form_answer {
            self.status = StatusCode::OK;
        }
        received.status = self.status.as_u16();
        if received.form_answer {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &self.fields {
                match value {
                    Value::String(s) => form.append_pair(name, s),
                    other => form.append_pair(name, &other.to_string()),
                };
            }
            (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                form.finish(),
            )
                .into_response()
        } else {
            (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                Value::Object(self.fields).to_string(),
            )
                .into_response()
        }
    }
}

fn token_fields(
    grants: &mut Grants,
    behaviour: &Behaviour,
    grant: Option<u32>,
    scope: &str,
    refresh_token: Option<String>,
) -> Map<String, Value> {
    let access = unique("qat");
    grants.issued.push(access.clone());
    let mut fields = Map::new();
    fields.insert("access_token".into(), access.into());
    fields.insert("token_type".into(), "Bearer".into());
    if !behaviour.omit_expires_in {
        fields.insert(
            "expires_in".into(),
            if behaviour.expires_in_as_string {
                "3599".into()
            } else {
                3599.into()
            },
        );
    }
    if let Some(refresh) = refresh_token {
        if let Some(grant) = grant {
            grants.refresh_tokens.insert(refresh.clone(), (grant, true));
        }
        grants.issued.push(refresh.clone());
        fields.insert("refresh_token".into(), refresh.into());
    }
    if !scope.is_empty() {
        fields.insert("scope".into(), scope.into());
    }
    fields.extend(behaviour.extra_fields.clone());
    fields
}

fn client_authenticated(received: &Received) -> bool {
    let from_body = (
        received.param("client_id").map(str::to_owned),
        received.param("client_secret").map(str::to_owned),
    );
    match (&received.basic, from_body) {
        (Some((id, secret)), _) => id == CLIENT_ID && secret == CLIENT_SECRET,
        (None, (Some(id), Some(secret))) => id == CLIENT_ID && secret == CLIENT_SECRET,
        _ => false,
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = lock(&shared.behaviour).clone();
    let (mut received, acceptable) = read_request("/token", &headers, &body, &behaviour);
    let answer = if !acceptable {
        Answer::error("invalid_request", "the body must be JSON")
    } else if !client_authenticated(&received) {
        Answer::error("invalid_client", "unknown client")
    } else {
        let mut grants = lock(&shared.grants);
        match received.param("grant_type").unwrap_or_default() {
            "authorization_code" => code_exchange(&mut grants, &behaviour, &received),
            "refresh_token" => refresh(&mut grants, &behaviour, &received),
            "client_credentials" => client_credentials(&mut grants, &behaviour, &received),
            _ => Answer::error("unsupported_grant_type", "not here"),
        }
    };
    let response = answer.render(&behaviour, &mut received);
    lock(&shared.received).push(received);
    response
}

fn code_exchange(grants: &mut Grants, behaviour: &Behaviour, received: &Received) -> Answer {
    let Some((grant, scope, redirect)) = received
        .param("code")
        .and_then(|code| grants.codes.remove(code))
    else {
        return Answer::error("invalid_grant", "unknown or used code");
    };
    if received.param("redirect_uri") != Some(redirect.as_str()) {
        return Answer::error("invalid_grant", "redirect_uri differs");
    }
    grants.scopes.insert(grant, scope.clone());
    let mut fields = token_fields(grants, behaviour, Some(grant), &scope, Some(unique("qrt")));
    if let Some(nesting) = behaviour.nested_user_token {
        // The app's token at the top, the person's inside (Slack's v2 install answer).
        let app = unique("qapp");
        grants.issued.push(app.clone());
        let mut person = fields;
        person.insert("id".into(), "U0PERSON".into());
        person.insert("token_type".into(), "user".into());
        fields = Map::new();
        fields.insert("access_token".into(), app.into());
        fields.insert("token_type".into(), "bot".into());
        fields.insert("scope".into(), "commands".into());
        fields.insert(nesting.into(), Value::Object(person));
        fields.insert("team".into(), json!({"id": "T0TEAM", "name": "Acme"}));
    }
    Answer {
        status: StatusCode::OK,
        fields,
    }
}

fn refresh(grants: &mut Grants, behaviour: &Behaviour, received: &Received) -> Answer {
    let presented = received
        .param("refresh_token")
        .unwrap_or_default()
        .to_owned();
    let Some((grant, usable)) = grants.refresh_tokens.get(&presented).copied() else {
        return Answer::error("invalid_grant", "unknown refresh token");
    };
    if grants.revoked.contains(&grant) {
        return Answer::error("invalid_grant", "the grant was revoked");
    }
    if !usable {
        // Reuse of a rotated refresh token: the whole grant dies (Atlassian, Zoom).
        grants.revoked.push(grant);
        return Answer::error("invalid_grant", "refresh token reused: grant revoked");
    }
    if behaviour.refresh_requires_scope && received.param("scope").is_none() {
        return Answer::error("invalid_request", "scope is required on refresh");
    }
    let scope = received
        .param("scope")
        .map(str::to_owned)
        .or_else(|| grants.scopes.get(&grant).cloned())
        .unwrap_or_default();
    let next = match behaviour.rotation {
        Rotation::RotatesReuseRevokes => {
            grants.refresh_tokens.insert(presented, (grant, false));
            Some(unique("qrt"))
        }
        Rotation::Reused => None,
    };
    let next = if behaviour.refresh_omits_refresh_token {
        None
    } else {
        next
    };
    Answer {
        status: StatusCode::OK,
        fields: token_fields(grants, behaviour, Some(grant), &scope, next),
    }
}

fn client_credentials(grants: &mut Grants, behaviour: &Behaviour, received: &Received) -> Answer {
    let scope = received.param("scope").unwrap_or_default().to_owned();
    if let Some(allowed) = &behaviour.client_credentials_scopes {
        let mut asked: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        let mut allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        asked.sort_unstable();
        allowed.sort_unstable();
        if asked != allowed {
            return Answer::error(
                "invalid_scope",
                "AADSTS1002012: only <resource>/.default is accepted here",
            );
        }
    }
    Answer {
        status: StatusCode::OK,
        fields: token_fields(grants, behaviour, None, &scope, None),
    }
}

async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = lock(&shared.behaviour).clone();
    let (mut received, acceptable) = read_request("/revoke", &headers, &body, &behaviour);
    let status = if !acceptable {
        StatusCode::BAD_REQUEST
    } else if !client_authenticated(&received) {
        StatusCode::UNAUTHORIZED
    } else {
        let mut grants = lock(&shared.grants);
        let token = received.param("token").unwrap_or_default();
        if let Some((grant, _)) = grants.refresh_tokens.get(token).copied() {
            grants.revoked.push(grant);
        }
        StatusCode::OK
    };
    received.status = status.as_u16();
    received.form_answer = false;
    lock(&shared.received).push(received);
    status.into_response()
}
