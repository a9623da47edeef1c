//! The outbound-proxy setting through a real forward proxy, Debian's tinyproxy, on loopback:
//! set through the API (the password write-only), every request to the provider goes through
//! it (tinyproxy's log shows them); a proxy refusing Keyport's credentials fails the request
//! with an error naming the setting (never its value), not retried; once the setting is
//! deleted requests go direct; and under the production URL policy a target resolving to
//! loopback is refused before anything reaches the proxy.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use keyport_shared::adapters::outbound::{
    HostLookup, OutboundError, OutboundHttp, OutboundSettings, ProxySetting,
};
use keyport_shared::domain::UrlPolicy;
use keyport_tests::backends::Backend;
use keyport_tests::http_client::{Body, Http};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use keyport_tests::tinyproxy::{PASSWORD, Tinyproxy, USERNAME};
use serde_json::json;

crate::on_both_backends!(
    requests_to_the_provider_go_through_the_proxy_the_setting_names,
    a_proxy_refusing_the_credentials_fails_naming_the_setting,
    a_setting_removed_and_set_again_keeps_its_new_password,
);

const SETTING: &str = "/settings/outbound-proxy";

/// A client-credentials connection to the peer (endpoints discovered through whatever proxy
/// is set); its id.
async fn connection(http: &Http, admin: &str, peer: &OidcPeer) -> String {
    http.post(
        "/connections",
        Some(admin),
        json!({
            "name": format!("proxied-{}", uuid::Uuid::new_v4().simple()), "provider": "custom",
            "issuer": peer.issuer, "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
            "grant_type": "client_credentials", "scopes": "api:read", "invited_roles": ["bots"],
        }),
    )
    .await
    .expect_json(201, "creating the connection")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn to_peer(proxy: &Tinyproxy, peer: &OidcPeer, method_and_path: &str) -> usize {
    let (method, path) = method_and_path.split_once(' ').unwrap();
    let line = format!("{method} {}{path} HTTP/1.1", peer.issuer);
    proxy.requests().iter().filter(|r| **r == line).count()
}

async fn requests_to_the_provider_go_through_the_proxy_the_setting_names(backend: Backend) {
    let proxy = Tinyproxy::start();
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let bot = server.token("bot-1", &["bots"]);

    http.get(SETTING, Some(&admin))
        .await
        .expect_error_code(404, "not_found", "no setting yet");
    let body = json!({"url": proxy.url(), "username": USERNAME, "password": PASSWORD});
    // Only administrators, and only valid settings.
    http.send("PUT", SETTING, Some(&bot), Body::Json(body.clone()))
        .await
        .expect_error_code(403, "forbidden", "a bot setting the proxy");
    http.get(SETTING, Some(&bot)).await.expect_error_code(
        403,
        "forbidden",
        "a bot reading the proxy",
    );
    for (bad, field) in [
        (
            json!({"url": format!("http://{USERNAME}:{PASSWORD}@127.0.0.1:{}", proxy.port)}),
            "url",
        ),
        (json!({"url": "socks5://127.0.0.1:1080"}), "url"),
        (
            json!({"url": proxy.url(), "password": PASSWORD}),
            "password",
        ),
    ] {
        let refused = http
            .send("PUT", SETTING, Some(&admin), Body::Json(bad))
            .await;
        let error = refused.expect_error(400, "a bad setting");
        assert_eq!(error["field"], field, "{error}");
        assert!(!refused.text.contains(PASSWORD), "the password echoed");
    }
    http.get(SETTING, Some(&admin)).await.expect_error_code(
        404,
        "not_found",
        "the refusals stored nothing",
    );

    let set = http
        .send("PUT", SETTING, Some(&admin), Body::Json(body))
        .await;
    let stored = set.expect_json(200, "setting the proxy");
    assert_eq!(stored["url"], proxy.url());
    assert_eq!(stored["username"], USERNAME);
    assert_eq!(stored["password_set"], true);
    assert!(stored.get("password").is_none(), "{stored}");
    assert!(!set.text.contains(PASSWORD));
    let read = http.get(SETTING, Some(&admin)).await;
    assert_eq!(read.expect_json(200, "reading the setting"), stored);
    assert!(!read.text.contains(PASSWORD));
    // Nothing the store holds is the password in the clear.
    for record in backend.raw_everything().await {
        assert!(
            !String::from_utf8_lossy(&record.bytes).contains(PASSWORD),
            "the proxy password in the clear in {}",
            record.place
        );
    }

    // Discovery and the token request both went through the proxy.
    let id = connection(&http, &admin, &peer).await;
    http.get(&format!("/connections/{id}/token"), Some(&bot))
        .await
        .expect_json(200, "a token through the proxy");
    assert_eq!(
        to_peer(&proxy, &peer, "GET /.well-known/openid-configuration"),
        1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        to_peer(&proxy, &peer, "POST /token"),
        1,
        "{:?}",
        proxy.requests()
    );

    // Deleted: the next request goes direct, the proxy sees nothing more.
    http.delete(SETTING, Some(&admin)).await;
    http.get(SETTING, Some(&admin)).await.expect_error_code(
        404,
        "not_found",
        "the setting is gone",
    );
    let seen = proxy.requests();
    http.send(
        "POST",
        &format!("/connections/{id}/token/refresh"),
        Some(&bot),
        Body::None,
    )
    .await
    .expect_json(200, "a refresh with the setting deleted");
    let tokens_at_peer = peer
        .requests()
        .iter()
        .filter(|r| r["path"] == "/token")
        .count();
    assert_eq!(tokens_at_peer, 2, "the refresh reached the provider");
    assert_eq!(
        proxy.requests(),
        seen,
        "the proxy saw a request after the delete"
    );
    // Deleting again is no error.
    let again = http.delete(SETTING, Some(&admin)).await;
    assert_eq!(again.status, 204, "{}", again.text);
}

async fn a_proxy_refusing_the_credentials_fails_naming_the_setting(backend: Backend) {
    let proxy = Tinyproxy::start();
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let bot = server.token("bot-1", &["bots"]);
    let id = connection(&http, &admin, &peer).await;

    // Without credentials the proxy answers 407: a clear error naming the setting, not
    // retried (one request at the proxy), nothing sent on to the provider.
    http.send(
        "PUT",
        SETTING,
        Some(&admin),
        Body::Json(json!({"url": proxy.url()})),
    )
    .await
    .expect_json(200, "a setting without credentials");
    let refused = http
        .get(&format!("/connections/{id}/token"), Some(&bot))
        .await;
    let error = refused.expect_error_code(
        502,
        "proxy_authentication_failed",
        "a proxy asking for credentials",
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("the outbound-proxy setting"), "{message}");
    assert!(!message.contains(&proxy.port.to_string()), "{message}");
    assert!(!refused.headers.contains_key("retry-after"));
    assert_eq!(to_peer(&proxy, &peer, "POST /token"), 1, "retried");
    assert!(peer.requests().is_empty(), "the provider was reached");

    // A wrong password: tinyproxy 1.11.1 answers 401 (not 407) when the credentials do not
    // match, with a body reqwest cannot read, so Keyport cannot tell it from a provider that
    // failed mid-answer. The request fails all the same, the provider is never reached, and
    // the password appears in no answer.
    let wrong = "not-the-password";
    http.send(
        "PUT",
        SETTING,
        Some(&admin),
        Body::Json(json!({"url": proxy.url(), "username": USERNAME, "password": wrong})),
    )
    .await
    .expect_json(200, "a wrong password");
    let failed = http
        .get(&format!("/connections/{id}/token"), Some(&bot))
        .await;
    assert!(failed.status >= 400, "{}: {}", failed.status, failed.text);
    assert!(!failed.text.contains("access_token"), "{}", failed.text);
    assert!(!failed.text.contains(wrong), "{}", failed.text);
    assert_eq!(to_peer(&proxy, &peer, "POST /token"), 2, "retried");
    assert!(peer.requests().is_empty(), "the provider was reached");

    // The right one: through.
    http.send(
        "PUT",
        SETTING,
        Some(&admin),
        Body::Json(json!({"url": proxy.url(), "username": USERNAME, "password": PASSWORD})),
    )
    .await
    .expect_json(200, "the right password");
    http.get(&format!("/connections/{id}/token"), Some(&bot))
        .await
        .expect_json(200, "a token through the proxy");
    assert_eq!(to_peer(&proxy, &peer, "POST /token"), 3);
    assert_eq!(peer.requests().len(), 1, "{:?}", peer.requests());
}

/// Secrets Manager keeps a deleted secret's name through a recovery window (in production;
/// the test back-end deletes at once), and refuses writes to it: the setting set again after a
/// delete must still find its password. Here with the production store's recovery window.
async fn a_setting_removed_and_set_again_keeps_its_new_password(mut backend: Backend) {
    if backend.name == "aws" {
        let moto = keyport_tests::moto::Moto::get();
        let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
        let prefix = format!("keyport-test/{}/", uuid::Uuid::new_v4().simple());
        backend.secrets = Arc::new(keyport_shared::adapters::aws::SecretsManagerStore::new(
            client, prefix,
        ));
    }
    let proxy = Tinyproxy::start();
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions::default());
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let id = connection(&http, &admin, &peer).await;
    let body = json!({"url": proxy.url(), "username": USERNAME, "password": PASSWORD});
    for step in ["set", "removed", "set again"] {
        if step == "removed" {
            let removed = http.delete(SETTING, Some(&admin)).await;
            assert_eq!(removed.status, 204, "{}", removed.text);
        } else {
            http.send("PUT", SETTING, Some(&admin), Body::Json(body.clone()))
                .await
                .expect_json(200, step);
        }
    }
    // A new server over the same store: it knows the setting only from what is stored.
    let other = TestServer::start(&backend, &[]).await;
    Http::new(&other.base)
        .send(
            "POST",
            &format!("/connections/{id}/token/refresh"),
            Some(&other.token("bot-1", &["bots"])),
            Body::None,
        )
        .await
        .expect_json(
            200,
            "a token through the proxy, with the password set again",
        );
    assert_eq!(
        to_peer(&proxy, &peer, "POST /token"),
        1,
        "{:?}",
        proxy.requests()
    );
}

/// Names resolved from a fixed table: the test does not depend on the machine's DNS.
struct Table(&'static [(&'static str, &'static str)]);

#[async_trait]
impl HostLookup for Table {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(self
            .0
            .iter()
            .filter(|(name, _)| *name == host)
            .map(|(_, ip)| ip.parse().unwrap())
            .collect())
    }
}

/// Under the production policy the proxy resolves the target's name, so Keyport checks it
/// first: a target resolving to loopback is refused before anything reaches the proxy.
#[tokio::test]
async fn production_refuses_a_loopback_target_before_the_proxy_sees_it() {
    let proxy = Tinyproxy::start();
    let http = OutboundHttp::with_lookup(
        OutboundSettings::new(UrlPolicy::Production),
        Arc::new(Table(&[("login.provider.example", "127.0.0.1")])),
    )
    .unwrap();
    let setting = ProxySetting {
        url: proxy.url(),
        no_proxy: None,
        username: Some(USERNAME.into()),
        password: Some(PASSWORD.to_owned().into()),
    };
    http.use_proxy_setting(Some((chrono::Utc::now(), &setting)))
        .unwrap();
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("https://login.provider.example/token")
        .body(b"grant_type=client_credentials".to_vec())
        .unwrap();
    let outcome = http.execute(request).await;
    assert!(
        matches!(&outcome, Err(OutboundError::Refused(reason)) if reason.contains("non-public")),
        "{outcome:?}"
    );
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}
