//! Signing in to the console with OpenID Connect, against the oidc-provider peer and without a
//! browser: a client that keeps its cookies follows `/console/signin` to the provider (PKCE
//! S256, state, nonce), the provider logs its test user in and consents, and the callback
//! starts a session whose person and roles are the ID token's. The console is the one its
//! Lambda function assembles (its client secret a setting on the embedded back-end, a secret in
//! Secrets Manager on moto), served on a loopback port.
//!
//! And what an attacker tries: a callback with a missing or another sign-in's state, one
//! without the cookie that binds the sign-in to the browser that started it, one with a state
//! nobody issued, and a replayed callback. Each is refused with a 4xx page and starts no
//! session.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyport_shared::http::console::{self, CONTENT_SECURITY_POLICY};
use keyport_tests::backends::Backend;
use keyport_tests::console::{ClientSecretFrom, console_function, console_secret_on_moto};
use keyport_tests::oidc::{CONSOLE_CLIENT_ID, OidcPeer, PeerOptions};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::on_both_backends;

const BINDING_COOKIE: &str = "keyport_console_signin";
const SESSION_COOKIE: &str = "keyport_console";

/// The console function on a loopback port, and the identity provider it signs people in at.
struct Console {
    base: String,
    peer: OidcPeer,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Console {
    async fn start(backend: &Backend) -> Console {
        // Bound first: the provider must know the console's callback before it starts.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let peer = OidcPeer::start(PeerOptions {
            console_redirect_uri: Some(format!("{base}/console/signin/callback")),
            ..PeerOptions::default()
        });
        let secret = match backend.name {
            "aws" => ClientSecretFrom::SecretsManager(console_secret_on_moto().await),
            _ => ClientSecretFrom::Setting,
        };
        let keyport = Arc::new(keyport_tests::keyport::keyport(backend, |_| {}));
        let console = console_function(
            keyport,
            &format!("{base}/oauth/callback"),
            &peer.issuer,
            &secret,
            None,
        );
        let router = console::router(console);
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the console serves");
        });
        Console { base, peer, server }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn callback(&self) -> String {
        self.url("/console/signin/callback")
    }
}

/// A browser: its cookies, sent back with every request; redirects are the test's to follow.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_type: String,
    csp: String,
    body: String,
}

impl Answer {
    /// The `Set-Cookie` of cookie `name`, if the answer sets (or clears) it.
    fn sets(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .map(String::as_str)
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// A refusal: a 4xx page in the console's look, under its policy, and no session.
    fn assert_refused(&self, why: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{why}: {}", self.body);
        assert!(self.content_type.starts_with("text/html"), "{why}");
        assert_eq!(self.csp, CONTENT_SECURITY_POLICY, "{why}");
        assert!(
            self.sets(SESSION_COOKIE).is_none(),
            "{why}: no session: {:?}",
            self.set_cookies
        );
    }
}

impl Browser {
    async fn get(&mut self, url: &str) -> Answer {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let mut request = client.get(url);
        if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(COOKIE, header);
        }
        let response = request.send().await.expect("the console answers");
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for set in &set_cookies {
            let pair = set.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: response.status(),
            location: header(LOCATION),
            content_type: header(CONTENT_TYPE).unwrap_or_default(),
            csp: header(reqwest::header::CONTENT_SECURITY_POLICY).unwrap_or_default(),
            set_cookies,
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// `GET /console/signin`: the authorization request the console sends the browser to,
    /// checked, with its parameters.
    async fn start_sign_in(&mut self, console: &Console) -> (String, BTreeMap<String, String>) {
        let started = self.get(&console.url("/console/signin")).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
        let location = started.location.clone().expect("a redirect");
        assert!(
            location.starts_with(&format!("{}/", console.peer.issuer)),
            "to the issuer: {location}"
        );
        let params: BTreeMap<String, String> = url::Url::parse(&location)
            .expect("an absolute URL")
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(params["response_type"], "code");
        assert_eq!(params["client_id"], CONSOLE_CLIENT_ID);
        assert_eq!(params["redirect_uri"], console.callback());
        assert_eq!(params["code_challenge_method"], "S256");
        assert_eq!(params["code_challenge"].len(), 43, "a SHA-256, base64url");
        assert!(
            params["scope"].split(' ').any(|s| s == "openid"),
            "{params:?}"
        );
        assert!(params["state"].len() >= 32, "{params:?}");
        assert!(params["nonce"].len() >= 16, "{params:?}");
        // The state is bound to this browser by a cookie only the sign-in routes see.
        let binding = started.sets(BINDING_COOKIE).expect("the binding cookie");
        assert!(
            binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
            "{binding}"
        );
        assert!(binding.contains("Path=/console/signin"), "{binding}");
        assert_eq!(self.cookies[BINDING_COOKIE], params["state"]);
        (location, params)
    }

    async fn session(&mut self, console: &Console) -> Value {
        let answer = self.get(&console.url("/console/api/session")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()
    }
}

/// The provider's answer to `authorization_url` (it logs its user in and consents): the query
/// it sends the browser back to the console's callback with.
async fn consent(console: &Console, authorization_url: &str) -> String {
    console
        .peer
        .authorize_headlessly_to(authorization_url, &console.callback())
        .await
}

async fn an_administrator_signs_in_and_a_replayed_callback_is_refused(backend: Backend) {
    let console = Console::start(&backend).await;
    let mut browser = Browser::default();
    assert_eq!(browser.session(&console).await["signed_in"], false);
    let (authorization_url, params) = browser.start_sign_in(&console).await;
    let query = consent(&console, &authorization_url).await;
    let back: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        back["state"], params["state"],
        "the provider returns the state"
    );
    let callback = format!("{}?{query}", console.callback());

    let signed_in = browser.get(&callback).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(signed_in.location.as_deref(), Some("/console/"));
    let session_cookie = signed_in.sets(SESSION_COOKIE).expect("a session cookie");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    assert!(
        !browser.cookies.contains_key(BINDING_COOKIE),
        "the binding cookie is cleared"
    );

    let session = browser.session(&console).await;
    assert_eq!(session["signed_in"], true, "{session}");
    assert_eq!(session["subject"], "test-user");
    assert_eq!(
        session["roles"],
        serde_json::json!(["bots", "keyport-admins"]),
        "the ID token's roles claim"
    );
    assert_eq!(session["administrator"], true);
    assert_eq!(session["via"], "oidc");
    assert_eq!(session["sign_in"]["oidc"], true);
    assert_eq!(session["sign_in"]["links"], false, "no links on AWS");
    let listed = browser.get(&console.url("/console/api/connections")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    // The console keeps no token of the person's, and shows none.
    for leaked in ["id_token", "access_token", "refresh_token", "eyJ"] {
        assert!(!session.to_string().contains(leaked), "{session}");
    }

    // The whole callback again, even with the binding cookie an attacker copied: the sign-in
    // was used up.
    let mut replayer = Browser::default();
    replayer
        .cookies
        .insert(BINDING_COOKIE.into(), params["state"].clone());
    replayer
        .get(&callback)
        .await
        .assert_refused("a replayed callback");
    assert_eq!(replayer.session(&console).await["signed_in"], false);
    // …and by the browser that signed in, which keeps its one session.
    browser
        .cookies
        .insert(BINDING_COOKIE.into(), params["state"].clone());
    let again = browser.get(&callback).await;
    again.assert_refused("the same browser's replay");
    assert!(again.body.contains("already used"), "{}", again.body);
    assert_eq!(browser.session(&console).await["subject"], "test-user");
}

async fn callbacks_not_bound_to_this_sign_in_are_refused(backend: Backend) {
    let console = Console::start(&backend).await;
    // A person (not an administrator) starts signing in.
    let mut person = Browser::default();
    let (authorization_url, params) = person.start_sign_in(&console).await;
    let query = consent(&console, &format!("{authorization_url}&login_hint=bea")).await;
    let callback = format!("{}?{query}", console.callback());

    // No state, and no code.
    let code = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .expect("a code");
    person
        .get(&format!("{}?code={code}", console.callback()))
        .await
        .assert_refused("a callback without a state");
    person
        .get(&console.callback())
        .await
        .assert_refused("a callback without anything");

    // The person's callback in another browser (a link sent to someone, or an attacker who
    // wants the person's session): that browser was not given the state.
    let mut elsewhere = Browser::default();
    let refused = elsewhere.get(&callback).await;
    refused.assert_refused("a callback without the binding cookie");
    assert!(refused.body.contains("another browser"), "{}", refused.body);

    // An attacker's own sign-in, completed at the provider, fed to the person's browser (login
    // CSRF: signing the person in as the attacker): its state is not the one this browser has.
    let mut attacker = Browser::default();
    let (attacker_url, _) = attacker.start_sign_in(&console).await;
    let attacker_query = consent(&console, &attacker_url).await;
    person
        .get(&format!("{}?{attacker_query}", console.callback()))
        .await
        .assert_refused("another sign-in's state");

    // A state nobody issued, in the cookie and the callback alike.
    let mut forger = Browser::default();
    let forged = "f".repeat(43);
    forger.cookies.insert(BINDING_COOKIE.into(), forged.clone());
    let refused = forger
        .get(&format!(
            "{}?code={code}&state={forged}",
            console.callback()
        ))
        .await;
    refused.assert_refused("a state nobody issued");
    for browser in [&mut elsewhere, &mut attacker, &mut forger] {
        assert_eq!(browser.session(&console).await["signed_in"], false);
    }

    // None of that used the person's sign-in up: their own callback signs them in, with the
    // roles the provider gives them.
    assert_eq!(person.cookies[BINDING_COOKIE], params["state"]);
    let signed_in = person.get(&callback).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let session = person.session(&console).await;
    assert_eq!(session["subject"], "bea", "{session}");
    assert_eq!(session["roles"], serde_json::json!(["sales"]));
    assert_eq!(session["administrator"], false);
    let listed = person.get(&console.url("/console/api/connections")).await;
    assert_eq!(listed.status, StatusCode::FORBIDDEN, "{}", listed.body);
    let mine = person
        .get(&console.url("/console/api/me/connections"))
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
}

on_both_backends!(
    an_administrator_signs_in_and_a_replayed_callback_is_refused,
    callbacks_not_bound_to_this_sign_in_are_refused,
);
