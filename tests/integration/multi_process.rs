//! Several Keyport processes (the real `keyport serve`) sharing one store, against
//! oidc-provider with refresh-token rotation and reuse detection on: a hundred concurrent
//! readers of an expired token across two processes cause exactly one refresh; a process
//! killed in the middle of a refresh is taken over once its lease expires, and the grant
//! survives both.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use keyport_shared::domain::{ConnectionId, Owner, StoredToken};
use keyport_shared::http::DevSigningKey;
use keyport_shared::ports::{Expect, StoreError, TokenKey};
use keyport_tests::backends::Backend;
use keyport_tests::gate::TokenGate;
use keyport_tests::http_client::Http;
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::process::KeyportProcess;
use keyport_tests::server::{AUDIENCE, ISSUER, ROLES_CLAIM};
use serde_json::{Value, json};

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport-process");
const READERS: usize = 100;

crate::on_both_backends!(
    a_hundred_readers_in_two_processes_cause_one_refresh,
    a_process_killed_mid_refresh_is_taken_over_after_its_lease,
);

/// Bearer tokens every process sharing `backend`'s data directory accepts.
struct Callers {
    admin: String,
    bot: String,
}

impl Callers {
    fn new(backend: &Backend) -> Callers {
        let key = DevSigningKey::load_or_create(&backend.data_dir.path().join("dev-signing.key"))
            .expect("the development signing key");
        let mint = |subject: &str, role: &str| {
            key.mint(
                subject,
                &[role.to_owned()],
                Duration::from_secs(3600),
                ISSUER,
                AUDIENCE,
                ROLES_CLAIM,
            )
            .expect("a token")
        };
        Callers {
            admin: mint("admin", "keyport-admins"),
            bot: mint("bot-1", "bots"),
        }
    }
}

/// Creates a PKCE connection to the peer on `process` (endpoints discovered, or the token
/// endpoint replaced by `token_url`) and authorizes its shared token there.
async fn connect(
    process: &KeyportProcess,
    peer: &OidcPeer,
    callers: &Callers,
    token_url: Option<&str>,
) -> ConnectionId {
    let http = Http::new(&process.base);
    let mut body = json!({
        "name": format!("shared-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "issuer": peer.issuer,
        "client_id": "keyport-pkce",
        "client_secret": CLIENT_SECRET,
        "grant_type": "authorization_code_pkce",
        "scopes": "openid,offline_access,api:read",
        "invited_roles": ["bots"],
    });
    if let Some(token_url) = token_url {
        body["token_url"] = json!(token_url);
        body["authorization_url"] = json!(format!("{}/auth", peer.issuer));
    }
    let created = http
        .post("/connections", Some(&callers.admin), body)
        .await
        .expect_json(201, "creating the connection");
    let id = created["id"].as_str().expect("an id").to_owned();
    let started = http
        .post(
            &format!("/connections/{id}/authorize"),
            Some(&callers.admin),
            json!({"owner": "shared"}),
        )
        .await
        .expect_json(200, "starting the authorization");
    let url = started["authorization_url"].as_str().expect("a URL");
    let query = peer
        .authorize_headlessly_to(url, &process.url("/oauth/callback"))
        .await;
    let callback = http.get(&format!("/oauth/callback?{query}"), None).await;
    assert_eq!(callback.status, 200, "the callback: {}", callback.text);
    let completion = keyport_tests::keyport::completion_on_page(&callback.text);
    http.post(
        "/oauth/complete",
        Some(&callers.admin),
        json!({"completion": completion}),
    )
    .await
    .expect_json(200, "confirming the authorization");
    ConnectionId::parse(&id).expect("a connection id")
}

/// Makes the stored token look expired (and due), leaving its sealed secrets as they are.
async fn expire(backend: &Backend, key: &TokenKey) -> StoredToken {
    loop {
        let mut token = backend
            .store
            .get_token(key)
            .await
            .expect("read the token")
            .expect("the token exists");
        let past = Utc::now() - chrono::Duration::minutes(1);
        token.expires_at = Some(past);
        token.refresh_due_at = Some(past);
        token.lease = None;
        match backend
            .store
            .put_token(&token, Expect::Version(token.version))
            .await
        {
            Ok(written) => return written,
            // A refresher run wrote meanwhile: read again.
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => panic!("expiring the token: {error}"),
        }
    }
}

/// The refresh requests the peer received, as SHA-256 hashes of the refresh tokens presented.
fn refreshes_seen(peer: &OidcPeer) -> Vec<String> {
    peer.requests()
        .into_iter()
        .filter(|r| r["path"] == "/token" && r["grant_type"] == "refresh_token")
        .map(|r| r["refresh_token_sha256"].as_str().unwrap_or("?").to_owned())
        .collect()
}

async fn read_token(http: &Http, id: &ConnectionId, bearer: &str) -> Value {
    http.get(&format!("/connections/{id}/token"), Some(bearer))
        .await
        .expect_json(200, "a token read")
}

/// The grant is alive at the provider: a forced refresh works, and the access token it gives
/// is accepted by the provider's userinfo endpoint.
async fn assert_grant_alive(
    peer: &OidcPeer,
    process: &KeyportProcess,
    id: &ConnectionId,
    bot: &str,
) {
    let refreshed = Http::new(&process.base)
        .post(
            &format!("/connections/{id}/token/refresh"),
            Some(bot),
            json!({}),
        )
        .await
        .expect_json(200, "a forced refresh after the race");
    let access_token = refreshed["access_token"].as_str().expect("an access token");
    Http::new(&peer.issuer)
        .get("/me", Some(access_token))
        .await
        .expect_json(200, "the peer's userinfo with the newest access token");
}

fn assert_no_secret_in_logs(processes: &[&KeyportProcess], secrets: &[&str]) {
    for process in processes {
        for line in process.log_lines() {
            for secret in secrets {
                assert!(!line.contains(secret), "a secret in a log line: {line}");
            }
        }
    }
}

async fn a_hundred_readers_in_two_processes_cause_one_refresh(backend: Backend) {
    // Both run their refresher every second, so it races the readers too.
    let refresher = ["--refresh-interval-seconds", "1"];
    let first = KeyportProcess::start(KEYPORT, &backend, &refresher).await;
    let second = KeyportProcess::start(KEYPORT, &backend, &refresher).await;
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(first.url("/oauth/callback")),
        ..PeerOptions::default()
    });
    let callers = Callers::new(&backend);
    let id = connect(&first, &peer, &callers, None).await;
    let key = TokenKey {
        connection_id: id.clone(),
        owner: Owner::Shared,
    };
    let before = read_token(&Http::new(&first.base), &id, &callers.bot).await;
    let old_access_token = before["access_token"].as_str().expect("a token").to_owned();
    expire(&backend, &key).await;
    assert!(
        refreshes_seen(&peer).is_empty(),
        "no refresh before the race"
    );

    let (to_first, to_second) = (Http::new(&first.base), Http::new(&second.base));
    let mut readers = tokio::task::JoinSet::new();
    for reader in 0..READERS {
        let http = if reader % 2 == 0 {
            &to_first
        } else {
            &to_second
        };
        let (http, id, bot) = (http.clone(), id.clone(), callers.bot.clone());
        readers.spawn(async move { read_token(&http, &id, &bot).await });
    }
    let mut handed_out = BTreeSet::new();
    while let Some(answer) = readers.join_next().await {
        let answer = answer.expect("a reader finished");
        let expires_at: chrono::DateTime<Utc> = answer["expires_at"]
            .as_str()
            .expect("an expiry")
            .parse()
            .expect("RFC 3339");
        assert!(
            expires_at > Utc::now(),
            "a reader got an expired token: {answer}; refreshes at the provider: {:?}",
            refreshes_seen(&peer),
        );
        handed_out.insert(answer["access_token"].as_str().expect("a token").to_owned());
    }
    assert_eq!(handed_out.len(), 1, "every reader gets the one new token");
    assert!(
        !handed_out.contains(&old_access_token),
        "the expired token came back"
    );
    let refreshes = refreshes_seen(&peer);
    assert_eq!(
        refreshes.len(),
        1,
        "exactly one refresh at the provider: {refreshes:?}"
    );

    assert_grant_alive(&peer, &second, &id, &callers.bot).await;
    let refreshes = refreshes_seen(&peer);
    assert_eq!(refreshes.len(), 2, "{refreshes:?}");
    assert_ne!(
        refreshes[0], refreshes[1],
        "a refresh token was presented twice"
    );
    let mut secrets = vec![old_access_token.as_str(), CLIENT_SECRET];
    secrets.extend(handed_out.iter().map(String::as_str));
    assert_no_secret_in_logs(&[&first, &second], &secrets);
}

async fn a_process_killed_mid_refresh_is_taken_over_after_its_lease(backend: Backend) {
    // A short lease, so the survivor takes over soon; no scheduled refresher in the way.
    let args = [
        "--lease-seconds",
        "4",
        "--provider-timeout-seconds",
        "2",
        "--grant-write-seconds",
        "1",
        "--refresh-interval-seconds",
        "3600",
    ];
    let mut doomed = KeyportProcess::start(KEYPORT, &backend, &args).await;
    let survivor = KeyportProcess::start(KEYPORT, &backend, &args).await;
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(doomed.url("/oauth/callback")),
        ..PeerOptions::default()
    });
    let mut gate = TokenGate::start(&format!("{}/token", peer.issuer)).await;
    let callers = Callers::new(&backend);
    let id = connect(&doomed, &peer, &callers, Some(&gate.url)).await;
    let key = TokenKey {
        connection_id: id.clone(),
        owner: Owner::Shared,
    };
    expire(&backend, &key).await;

    // The doomed process takes the lease and sends its refresh, which the gate holds.
    gate.hold_next_refresh();
    let stuck = {
        let (http, id, bot) = (Http::new(&doomed.base), id.clone(), callers.bot.clone());
        tokio::spawn(async move {
            http.get(&format!("/connections/{id}/token"), Some(&bot))
                .await
        })
    };
    gate.wait_until_held().await;
    let leased = backend.store.get_token(&key).await.unwrap().unwrap();
    assert!(leased.lease.is_some(), "the doomed process holds the lease");
    doomed.kill().await;
    stuck.abort();

    // The next reader waits out the dead holder's lease, takes over and refreshes once.
    let answer = read_token(&Http::new(&survivor.base), &id, &callers.bot).await;
    assert!(
        answer["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let refreshes = refreshes_seen(&peer);
    assert_eq!(
        refreshes.len(),
        1,
        "the held request never reached the provider; the takeover is the one refresh"
    );
    let after = backend.store.get_token(&key).await.unwrap().unwrap();
    assert!(after.lease.is_none(), "the survivor released the lease");
    assert!(after.expires_at.is_some_and(|e| e > Utc::now()));

    assert_grant_alive(&peer, &survivor, &id, &callers.bot).await;
    let refreshes = refreshes_seen(&peer);
    assert_eq!(refreshes.len(), 2, "{refreshes:?}");
    assert_ne!(
        refreshes[0], refreshes[1],
        "a refresh token was presented twice"
    );
    assert_no_secret_in_logs(&[&survivor], &[CLIENT_SECRET]);
}
