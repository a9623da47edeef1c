//! Signing in to the console with the installation's identity provider: OpenID Connect's
//! authorization code flow with PKCE (S256), a nonce, and a state bound to the browser that
//! started it by a short-lived cookie (so nobody can sign someone else in as themselves). The
//! ID token is verified (signature against the provider's JWKS, issuer, audience, expiry,
//! nonce), read for who signed in, and dropped: no token of the person's is kept.
//!
//! The request and the code exchange are Keyport's own OAuth client's, over the same checked
//! outbound HTTP, for a connection-shaped description of the identity provider's client.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration as ChronoDuration, Utc};
use cookie::{Cookie, SameSite};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{Console, assets, session::SignInMethod};
use crate::adapters::outbound::OutboundHttp;
use crate::crypto::constant_time_eq;
use crate::domain::{
    ClientSecret, Connection, ConnectionInput, EndpointUrl, PkceVerifier, StateToken,
};
use crate::http::LocalJwtVerifier;
use crate::http::identity::principal_from_claims;
use crate::oauth::{ClientCredentials, OAuthClient, OAuthSettings};
use crate::ports::{ConsoleRecordKind, InstallationSecret};

/// How long a person has to finish signing in at the identity provider.
const SIGN_IN_LIFETIME_MINUTES: i64 = 10;
const BINDING_COOKIE: &str = "keyport_console_signin";

/// The identity provider's side of the console's sign-in: settings of the installation.
pub struct OidcSignInSettings {
    pub issuer: String,
    pub client_id: String,
    /// Read on the first sign-in of each process (a setting's value, or a secret store's).
    pub client_secret: Arc<dyn InstallationSecret>,
    /// The ID token claim roles are read from (the API's roles claim).
    pub roles_claim: String,
}

/// What discovery found, once per process (on the first sign-in, not at cold start).
struct Discovered {
    client_secret: SecretString,
    client: Connection,
    oauth: OAuthClient,
    verifier: LocalJwtVerifier,
}

pub struct OidcSignIn {
    settings: OidcSignInSettings,
    http: OutboundHttp,
    /// Where the identity provider sends people back: the console's sign-in callback.
    redirect_uri: url::Url,
    discovered: OnceCell<Discovered>,
}

/// A sign-in in progress, stored under its state's digest.
#[derive(Serialize, Deserialize)]
struct SignInRecord {
    pkce_verifier: Option<String>,
    nonce: Option<String>,
}

impl OidcSignIn {
    pub fn new(settings: OidcSignInSettings, http: OutboundHttp, redirect_uri: url::Url) -> Self {
        Self {
            settings,
            http,
            redirect_uri,
            discovered: OnceCell::new(),
        }
    }

    async fn discovered(&self) -> Result<&Discovered, String> {
        let discovered = self.discovered.get_or_try_init(|| self.discover()).await;
        if let Err(error) = &discovered {
            // What failed, for the operator (the page only says sign-in is unavailable); no
            // value of the secret or the provider's answers is in it.
            tracing::warn!(%error, "console sign-in: the identity provider is not usable");
        }
        discovered
    }

    /// The provider's OpenID configuration: its endpoints and signing keys.
    async fn discover(&self) -> Result<Discovered, String> {
        let client_secret = self
            .settings
            .client_secret
            .read()
            .await
            .map_err(|e| format!("the console's client secret: {e}"))?;
        let policy = self.http.policy();
        let issuer = self.settings.issuer.trim_end_matches('/');
        let location = EndpointUrl::parse(
            "issuer",
            &format!("{issuer}/.well-known/openid-configuration"),
            policy,
        )
        .map_err(|e| e.message)?;
        let document = self
            .http
            .get_json(&location)
            .await
            .map_err(|e| format!("the identity provider's configuration: {e}"))?;
        let field = |name: &str| {
            document
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("the identity provider's configuration has no {name}"))
        };
        if field("issuer")?.trim_end_matches('/') != issuer {
            return Err("the identity provider's configuration names another issuer".into());
        }
        let jwks =
            EndpointUrl::parse("jwks_uri", &field("jwks_uri")?, policy).map_err(|e| e.message)?;
        let input: ConnectionInput = serde_json::from_value(serde_json::json!({
            "name": "console sign-in",
            "provider": "custom",
            "grant_type": "authorization_code_pkce",
            "client_id": self.settings.client_id,
            "client_auth": "client_secret_basic",
            // Checked as a connection's is (a basic-auth client needs one); the exchange takes
            // it from `credentials()`.
            "client_secret": client_secret.expose_secret(),
            "authorization_url": field("authorization_endpoint")?,
            "token_url": field("token_endpoint")?,
            "scopes": "openid,profile,email",
        }))
        .map_err(|e| format!("the console's sign-in client: {e}"))?;
        let (client, _) =
            Connection::create(input, Utc::now(), policy).map_err(|e| e.to_string())?;
        let oauth = OAuthClient::new(
            self.http.clone(),
            OAuthSettings {
                callback_url: self.redirect_uri.clone(),
                allow_password_grant: false,
            },
        );
        let verifier = LocalJwtVerifier::jwks(
            jwks,
            self.http.clone(),
            issuer,
            &self.settings.client_id,
            &self.settings.roles_claim,
        )
        .await
        .map_err(|_| "the identity provider's signing keys cannot be read".to_owned())?;
        Ok(Discovered {
            client_secret,
            client,
            oauth,
            verifier,
        })
    }
}

impl Discovered {
    fn credentials(&self) -> ClientCredentials {
        ClientCredentials {
            client_secret: Some(ClientSecret::new(
                self.client_secret.expose_secret().to_owned(),
            )),
            ..ClientCredentials::default()
        }
    }
}

fn binding_cookie(console: &Console, value: &str, max_age_seconds: i64) -> HeaderValue {
    let cookie = Cookie::build((BINDING_COOKIE, value.to_owned()))
        .path("/console/signin")
        .http_only(true)
        .secure(console.origin.starts_with("https://"))
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age_seconds))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie is a header value")
}

fn unavailable(why: &str) -> Response {
    assets::problem_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        why,
    )
}

/// `GET /console/signin`: off to the identity provider.
pub async fn start(State(console): State<Arc<Console>>) -> Response {
    let Some(oidc) = &console.sign_in.oidc else {
        return assets::problem_page(
            StatusCode::NOT_FOUND,
            "No identity provider",
            "This Keyport signs people in with the one-time links it prints (keyport dev-login), not through an identity provider.",
        );
    };
    let discovered = match oidc.discovered().await {
        Ok(discovered) => discovered,
        Err(_) => return unavailable("Keyport cannot reach its identity provider just now."),
    };
    let state = StateToken::generate();
    let start = match discovered
        .oauth
        .start_authorization(&discovered.client, &state)
    {
        Ok(start) => start,
        Err(_) => return unavailable("The identity provider's sign-in is not usable."),
    };
    let record = SignInRecord {
        pkce_verifier: start.pkce_verifier.map(|v| v.expose_secret().to_owned()),
        nonce: start.nonce,
    };
    let doc = serde_json::to_string(&record).expect("a sign-in record serializes");
    let expires_at = Utc::now() + ChronoDuration::minutes(SIGN_IN_LIFETIME_MINUTES);
    match console
        .keyport
        .store
        .put_console_record(
            ConsoleRecordKind::SignIn,
            &state.lookup_key(),
            &doc,
            expires_at,
        )
        .await
    {
        Ok(true) => {}
        _ => return unavailable("Keyport could not start the sign-in just now."),
    }
    let mut response = Redirect::to(start.url.as_str()).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        binding_cookie(
            &console,
            state.expose_secret(),
            SIGN_IN_LIFETIME_MINUTES * 60,
        ),
    );
    assets::secure_page_headers(response.headers_mut());
    response
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/signin/callback`: back from the identity provider.
pub async fn finish(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let refuse =
        |why: &str| assets::problem_page(StatusCode::BAD_REQUEST, "Sign-in did not complete", why);
    let Some(oidc) = &console.sign_in.oidc else {
        return refuse("This Keyport has no identity provider.");
    };
    if callback.error.is_some() {
        return refuse("The identity provider did not sign you in. Try again from the console.");
    }
    let (Some(code), Some(state)) = (callback.code, callback.state) else {
        return refuse("The identity provider's answer lacks a code or a state.");
    };
    // The state must be the one this browser was given when it left for the provider.
    let bound = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == BINDING_COOKIE)
        .is_some_and(|c| constant_time_eq(c.value().as_bytes(), state.as_bytes()));
    if !bound {
        return refuse("This sign-in was started in another browser. Start it again here.");
    }
    let Ok(state) = StateToken::parse(&state) else {
        return refuse("The identity provider's answer has a state Keyport did not issue.");
    };
    let record = match console
        .keyport
        .store
        .take_console_record(ConsoleRecordKind::SignIn, &state.lookup_key(), Utc::now())
        .await
    {
        Ok(Some(doc)) => match serde_json::from_str::<SignInRecord>(&doc) {
            Ok(record) => record,
            Err(_) => return refuse("The sign-in record is unreadable; start again."),
        },
        Ok(None) => return refuse("This sign-in expired or was already used; start again."),
        Err(_) => return unavailable("Keyport could not check the sign-in just now."),
    };
    let Ok(discovered) = oidc.discovered().await else {
        return unavailable("Keyport cannot reach its identity provider just now.");
    };
    let grant = match discovered
        .oauth
        .exchange_code(
            &discovered.client,
            &discovered.credentials(),
            &code,
            record.pkce_verifier.map(PkceVerifier::new),
        )
        .await
    {
        Ok(grant) => grant,
        Err(_) => return refuse("The identity provider refused the sign-in code."),
    };
    let Some(id_token) = grant.secrets.id_token else {
        return refuse("The identity provider answered without an ID token.");
    };
    let claims = match discovered
        .verifier
        .verify_claims(id_token.expose_secret())
        .await
    {
        Ok(claims) => claims,
        Err(_) => return refuse("The identity provider's ID token does not verify."),
    };
    let nonce_matches = match (&record.nonce, claims.get("nonce").and_then(|n| n.as_str())) {
        (Some(expected), Some(sent)) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
        _ => false,
    };
    if !nonce_matches {
        return refuse("The ID token is not the answer to this sign-in.");
    }
    let principal = match principal_from_claims(&claims, &oidc.settings.roles_claim) {
        Ok(principal) => principal,
        Err(_) => return refuse("The ID token names no valid person."),
    };
    let mut response = console
        .signed_in(&principal, SignInMethod::Oidc, "/console/")
        .await;
    response
        .headers_mut()
        .append(header::SET_COOKIE, binding_cookie(&console, "", 0));
    response
}
