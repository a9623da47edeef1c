//! The console's server side, through its real routes on both back-ends: a sign-in link works
//! once and gives an HttpOnly session cookie; every change needs the session's CSRF token and
//! a same-origin request; the console's API has no route that answers with a token; people
//! without the manage-connections permission are refused the admin routes; signing out ends
//! the session; every page carries the strict Content-Security-Policy.

use keyport_shared::http::console::{CONTENT_SECURITY_POLICY, CSRF_HEADER};
use keyport_tests::server::TestServer;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::on_both_backends;

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// A signed-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(server: &TestServer, subject: &str, roles: &[&str]) -> Browser {
    let answer = client()
        .get(server.sign_in_link(subject, roles))
        .send()
        .await
        .expect("the sign-in link answers");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let set_cookie = answer.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let session: Value = client()
        .get(server.url("/console/api/session"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["signed_in"], true);
    assert_eq!(session["subject"], subject);
    Browser {
        cookie,
        csrf: session["csrf_token"].as_str().unwrap().to_owned(),
    }
}

impl Browser {
    fn send(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header(COOKIE, &self.cookie)
            .header(CSRF_HEADER, &self.csrf)
            .header("sec-fetch-site", "same-origin")
    }
}

async fn a_sign_in_link_works_once(backend: keyport_tests::backends::Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let link = server.sign_in_link("ada", &["keyport-admins"]);
    let first = client().get(&link).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert!(first.headers().contains_key(SET_COOKIE));
    let again = client().get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(!again.headers().contains_key(SET_COOKIE));
    assert!(again.text().await.unwrap().contains("already used"));
    // An API bearer token is not a sign-in ticket (another audience), nor a ticket a token.
    let token = server.token("ada", &["keyport-admins"]);
    let refused = client()
        .get(server.url(&format!("/console/signin/ticket?ticket={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let ticket = link.split("ticket=").nth(1).unwrap();
    let as_bearer = client()
        .get(server.url("/connections"))
        .bearer_auth(ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
}

async fn changes_need_the_csrf_token_from_the_same_origin(
    backend: keyport_tests::backends::Backend,
) {
    let server = TestServer::start(&backend, &[]).await;
    let browser = sign_in(&server, "ada", &["keyport-admins"]).await;
    let body = json!({"name": "Console made", "provider": "custom", "grant_type": "client_credentials",
        "client_id": "c", "client_secret": "s", "token_url": "http://127.0.0.1:9/token"});
    let url = server.url("/console/api/connections");
    let without_token = client()
        .post(&url)
        .header(COOKIE, &browser.cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(without_token.status(), StatusCode::UNAUTHORIZED);
    let cross_site = client()
        .post(&url)
        .header(COOKIE, &browser.cookie)
        .header(CSRF_HEADER, &browser.csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::UNAUTHORIZED);
    let other_origin = client()
        .post(&url)
        .header(COOKIE, &browser.cookie)
        .header(CSRF_HEADER, &browser.csrf)
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other_origin.status(), StatusCode::UNAUTHORIZED);
    // Nothing was created by the refused requests.
    let listed: Value = browser
        .send(client().get(&url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["connections"].as_array().unwrap().len(), 0);
    let created = browser
        .send(client().post(&url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["client_secret_set"], true);
    assert!(created.get("client_secret").is_none());
    // A field's error names the field, for the page to show beside it.
    let bad = browser
        .send(client().post(&url))
        .json(&json!({"name": "x", "provider": "custom", "client_id": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["field"], "grant_type");

    // No console route answers with a token.
    let id = created["id"].as_str().unwrap();
    let read = browser
        .send(client().get(server.url(&format!("/console/api/connections/{id}/token"))))
        .send()
        .await
        .unwrap();
    assert!(
        read.status() == StatusCode::METHOD_NOT_ALLOWED || read.status() == StatusCode::NOT_FOUND,
        "{}",
        read.status()
    );
}

async fn only_administrators_reach_the_admin_routes(backend: keyport_tests::backends::Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let person = sign_in(&server, "bob", &["sales"]).await;
    let session: Value = person
        .send(client().get(server.url("/console/api/session")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["administrator"], false);
    let listed = person
        .send(client().get(server.url("/console/api/connections")))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::FORBIDDEN);
    let mine = person
        .send(client().get(server.url("/console/api/me/connections")))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
}

async fn signing_out_ends_the_session(backend: keyport_tests::backends::Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let browser = sign_in(&server, "ada", &["keyport-admins"]).await;
    let out = browser
        .send(client().post(server.url("/console/api/signout")))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = browser
        .send(client().get(server.url("/console/api/connections")))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let session: Value = browser
        .send(client().get(server.url("/console/api/session")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["signed_in"], false);
}

async fn every_page_carries_the_strict_policy(backend: keyport_tests::backends::Backend) {
    let server = TestServer::start(&backend, &[]).await;
    for path in [
        "/console/",
        "/console/connections/new",
        "/console/assets/console.js",
        "/console/assets/console.css",
        "/console/signin/ticket",
    ] {
        let answer = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(
            answer.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(answer.headers()["x-frame-options"], "DENY", "{path}");
    }
}

on_both_backends!(
    a_sign_in_link_works_once,
    changes_need_the_csrf_token_from_the_same_origin,
    only_administrators_reach_the_admin_routes,
    signing_out_ends_the_session,
    every_page_carries_the_strict_policy,
);
