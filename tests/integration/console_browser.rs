//! The console in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (tests/peers/chromium/console.mjs, one scenario per test) against the local server and the
//! oidc-provider peer. Each scenario also checks every screen it visits with axe-core (no
//! serious or critical finding), for Content-Security-Policy violations and script errors, and
//! that no response to the browser holds a token. What the browser did is then checked here,
//! through the API, as a bot or the people themselves would see it.

use std::process::Command;

use keyport_tests::backends;
use keyport_tests::http_client::Http;
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use keyport_tests::workspace_root;
use serde_json::{Value, json};

const ROLE: &str = "sales";
/// The peer's client every connection here uses.
const CLIENT_ID: &str = "keyport-pkce";

/// Runs `scenario` in Chromium with `settings`; its findings, or the test fails with its reason.
/// The browser meets the peer's sign-in and consent pages wherever it authorizes.
fn run_scenario(
    scenario: &str,
    server: &TestServer,
    peer: &OidcPeer,
    settings: &[(&str, String)],
) -> Value {
    let driver = workspace_root().join("tests/peers/chromium");
    assert!(
        driver.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: run scripts/install-test-peers (the README's test command does)",
        driver.display()
    );
    let mut command = Command::new("node");
    command
        .arg(driver.join("console.mjs"))
        .arg(scenario)
        .current_dir(&driver)
        .env("KEYPORT_URL", &server.base)
        .env("OIDC_ISSUER", &peer.issuer)
        .env("CLIENT_ID", CLIENT_ID);
    for (name, value) in settings {
        command.env(name, value);
    }
    let output = command.output().expect("node runs the browser driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {scenario} scenario failed: {stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("the {scenario} scenario said {stdout:?}"))
}

/// The server (over a back-end that must outlive it: its folder holds the database), and the
/// OAuth peer that knows the server's callback and shows its sign-in and consent pages.
async fn start() -> (TestServer, OidcPeer, backends::Backend) {
    let backend = backends::embedded().await;
    let server = TestServer::start(&backend, &[]).await;
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        consent_pages: true,
        ..PeerOptions::default()
    });
    (server, peer, backend)
}

/// A user-token connection to the peer inviting `ROLE`, made through the API.
async fn connection(server: &TestServer, peer: &OidcPeer, name: &str) -> String {
    connection_with(server, peer, name, "authorization_code_pkce", CLIENT_ID).await
}

/// As [`connection`], with another grant type and peer client.
async fn connection_with(
    server: &TestServer,
    peer: &OidcPeer,
    name: &str,
    grant_type: &str,
    client_id: &str,
) -> String {
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let reply = http
        .post(
            "/connections",
            Some(&admin),
            json!({
                "name": name, "provider": "custom", "grant_type": grant_type,
                "client_id": client_id, "client_secret": CLIENT_SECRET,
                "issuer": peer.issuer, "scopes": "openid,offline_access,api:read",
                "invited_roles": [ROLE],
            }),
        )
        .await;
    reply.expect_json(201, "creating the connection")["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_creates_authorizes_and_invites_then_a_bot_reads_the_token() {
    let (server, peer, _backend) = start().await;
    let name = "Sales CRM";
    let found = run_scenario(
        "admin-creates-a-connection",
        &server,
        &peer,
        &[
            (
                "ADMIN_LINK",
                server.sign_in_link("ada", &["keyport-admins"]),
            ),
            ("CONNECTION_NAME", name.to_owned()),
            ("CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("ROLE", ROLE.to_owned()),
        ],
    );
    assert!(found["screens"].as_array().unwrap().len() >= 5, "{found}");
    let id = found["connection_id"]
        .as_str()
        .expect("the connection's id");
    // A bot with the invited role reads the shared token the browser authorized.
    let bot = server.token("sales-bot", &[ROLE]);
    let token = Http::new(&server.base)
        .get(&format!("/connections/{id}/token"), Some(&bot))
        .await
        .expect_json(200, "the bot's token read");
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(token["owner"], "shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_person_connects_their_own_token() {
    let (server, peer, _backend) = start().await;
    let name = "Sales mailbox";
    let id = connection(&server, &peer, name).await;
    run_scenario(
        "user-connects",
        &server,
        &peer,
        &[
            ("USER_LINK", server.sign_in_link("bea", &[ROLE])),
            ("CONNECTION_NAME", name.to_owned()),
        ],
    );
    let bea = server.token("bea", &[ROLE]);
    let token = Http::new(&server.base)
        .get(&format!("/connections/{id}/token?owner=user"), Some(&bea))
        .await
        .expect_json(200, "Bea's own token");
    assert_eq!(token["owner"], "user:bea");
}

/// The hybrid flow in a real browser: the peer's answer is a page whose script posts the code
/// and ID token to Keyport's callback (form_post), which verifies the ID token, exchanges the
/// code and sends the browser back to the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_person_connects_through_the_hybrid_flow() {
    let (server, peer, _backend) = start().await;
    let name = "Sales directory";
    let hybrid_client = "keyport-hybrid";
    let id = connection_with(
        &server,
        &peer,
        name,
        "authorization_code_hybrid",
        hybrid_client,
    )
    .await;
    run_scenario(
        "user-connects",
        &server,
        &peer,
        &[
            ("USER_LINK", server.sign_in_link("bea", &[ROLE])),
            ("CONNECTION_NAME", name.to_owned()),
            ("CLIENT_ID", hybrid_client.to_owned()),
        ],
    );
    let bea = server.token("bea", &[ROLE]);
    let token = Http::new(&server.base)
        .get(&format!("/connections/{id}/token?owner=user"), Some(&bea))
        .await
        .expect_json(200, "Bea's own token, by the hybrid flow");
    assert_eq!(token["owner"], "user:bea");
    let exchanges: Vec<Value> = peer
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/token" && r["grant_type"] == "authorization_code")
        .collect();
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(exchanges[0]["client_id"], hybrid_client, "{exchanges:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_declines_at_the_provider_is_told_calmly_and_their_slot_stays_empty() {
    let (server, peer, _backend) = start().await;
    let name = "Sales calendar";
    let id = connection(&server, &peer, name).await;
    let found = run_scenario(
        "user-declines",
        &server,
        &peer,
        &[
            ("USER_LINK", server.sign_in_link("bea", &[ROLE])),
            ("CONNECTION_NAME", name.to_owned()),
        ],
    );
    assert_eq!(
        found["screens"],
        json!(["authorization-declined"]),
        "{found}"
    );
    let http = Http::new(&server.base);
    let bea = server.token("bea", &[ROLE]);
    http.get(&format!("/connections/{id}/token?owner=user"), Some(&bea))
        .await
        .expect_error_code(409, "not_authorized", "Bea's token after she declined");
    // Nothing reached the provider's token endpoint: there was no code to exchange.
    assert!(
        peer.requests().is_empty(),
        "the peer saw token requests: {:?}",
        peer.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_without_the_role_sees_no_connection_and_no_admin_screen() {
    let (server, peer, _backend) = start().await;
    connection(&server, &peer, "Finance ledger").await;
    run_scenario(
        "no-role",
        &server,
        &peer,
        &[("USER_LINK", server.sign_in_link("eve", &["strangers"]))],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_consent_link_leaves_every_slot_empty() {
    let (server, peer, _backend) = start().await;
    let name = "Shared drive";
    let id = connection(&server, &peer, name).await;
    run_scenario(
        "phishing",
        &server,
        &peer,
        &[
            ("ATTACKER_LINK", server.sign_in_link("mallory", &[ROLE])),
            ("VICTIM_LINK", server.sign_in_link("alice", &[ROLE])),
            ("CONNECTION_ID", id.clone()),
            ("CONNECTION_NAME", name.to_owned()),
        ],
    );
    let http = Http::new(&server.base);
    for who in ["mallory", "alice"] {
        let token = server.token(who, &[ROLE]);
        let reply = http
            .get(&format!("/connections/{id}/token?owner=user"), Some(&token))
            .await;
        assert_ne!(reply.status, 200, "{who}'s slot holds a token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_disconnects_a_persons_token_and_edits_the_connection() {
    let (server, peer, _backend) = start().await;
    let name = "Sales inbox";
    let id = connection(&server, &peer, name).await;
    let description = "The inbox the sales team shares";
    let moved = format!("{}/moved/token", peer.issuer.trim_end_matches('/'));
    let found = run_scenario(
        "admin-manages-user-tokens-and-edits",
        &server,
        &peer,
        &[
            (
                "ADMIN_LINK",
                server.sign_in_link("ada", &["keyport-admins"]),
            ),
            ("USER_LINK", server.sign_in_link("bea", &[ROLE])),
            ("USER_SUBJECT", "bea".to_owned()),
            ("CONNECTION_ID", id.clone()),
            ("CONNECTION_NAME", name.to_owned()),
            ("CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("NEW_DESCRIPTION", description.to_owned()),
            ("NEW_TOKEN_URL", moved.clone()),
        ],
    );
    assert_eq!(
        found["screens"],
        json!([
            "connection-user-tokens",
            "connection-edit-needs-secret",
            "connection-edited"
        ]),
        "{found}"
    );
    let http = Http::new(&server.base);
    // Bea's slot is empty: the administrator's disconnect ended her token.
    let bea = server.token("bea", &[ROLE]);
    http.get(&format!("/connections/{id}/token?owner=user"), Some(&bea))
        .await
        .expect_error_code(409, "not_authorized", "Bea's token after the disconnect");
    // The edits the browser saved, and only those.
    let admin = server.token("admin", &["keyport-admins"]);
    let connection = http
        .get(&format!("/connections/{id}"), Some(&admin))
        .await
        .expect_json(200, "the connection after the edits");
    assert_eq!(connection["description"], description);
    assert_eq!(connection["token_url"], moved.as_str());
    assert_eq!(connection["client_secret_set"], true);
    assert_eq!(connection["client_id"], CLIENT_ID);
    // The audit trail names the administrator as the one who revoked Bea's token.
    let audit = http
        .get(&format!("/connections/{id}/audit"), Some(&admin))
        .await
        .expect_json(200, "the audit trail");
    let revoked = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == "token_revoked" && e["owner"] == "user:bea")
        .unwrap_or_else(|| panic!("no revocation of Bea's token in {audit}"));
    assert_eq!(revoked["actor"], "ada", "{revoked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sees_who_used_a_connections_tokens() {
    let (server, peer, _backend) = start().await;
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let created = http
        .post(
            "/connections",
            Some(&admin),
            json!({
                "name": "Reports", "provider": "custom", "grant_type": "client_credentials",
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "issuer": peer.issuer, "scopes": "api:read",
                "invited_roles": [ROLE], "invited_applications": ["reporting-app"],
            }),
        )
        .await
        .expect_json(201, "creating the connection");
    let id = created["id"].as_str().expect("an id").to_owned();
    let path = format!("/connections/{id}/token");
    let bot = http
        .get(&path, Some(&server.token("sales-bot", &[ROLE])))
        .await
        .expect_json(200, "the bot's read");
    let app = http
        .get(
            &path,
            Some(&server.application_token("reporting-app", &["keyport/tokens.read"])),
        )
        .await
        .expect_json(200, "the application's read");
    let token = |reply: &Value| reply["access_token"].as_str().unwrap().to_owned();
    let found = run_scenario(
        "admin-sees-who-used-tokens",
        &server,
        &peer,
        &[
            (
                "ADMIN_LINK",
                server.sign_in_link("ada", &["keyport-admins"]),
            ),
            ("CONNECTION_ID", id),
            ("BOT", "sales-bot".to_owned()),
            (
                "BOT_FINGERPRINT",
                keyport_shared::domain::token_fingerprint(&token(&bot)),
            ),
            ("APP", "reporting-app".to_owned()),
            ("TOKENS", format!("{} {}", token(&bot), token(&app))),
        ],
    );
    assert_eq!(found["screens"], json!(["connection-used-by"]), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_subscribes_a_webhook_and_sees_its_delivery() {
    let (server, peer, _backend) = start().await;
    let receiver = keyport_tests::webhook_receiver::WebhookReceiver::start();
    let admin_link = || server.sign_in_link("ada", &["keyport-admins"]);
    let found = run_scenario(
        "admin-subscribes-a-webhook",
        &server,
        &peer,
        &[
            ("ADMIN_LINK", admin_link()),
            ("RECEIVER_URL", receiver.url.clone()),
        ],
    );
    assert_eq!(found["screens"], json!(["notifications"]), "{found}");
    let secret = found["secret"]
        .as_str()
        .expect("the secret the page showed");
    receiver.trust(secret);
    // A role invited: the event the browser subscribed to, delivered and verified.
    connection(&server, &peer, "Support desk").await;
    server
        .server
        .keyport
        .deliver_notifications(tokio::time::Instant::now() + std::time::Duration::from_secs(60))
        .await
        .expect("a delivery pass");
    let verified: Vec<Value> = receiver
        .received()
        .into_iter()
        .filter(|r| r["verified"] == true)
        .collect();
    assert_eq!(verified.len(), 1, "{:?}", receiver.received());
    assert_eq!(verified[0]["payload"]["type"], "connection.role_invited");
    assert_eq!(
        verified[0]["payload"]["data"]["connection_name"],
        "Support desk"
    );
    let found = run_scenario(
        "admin-sees-a-delivery",
        &server,
        &peer,
        &[
            ("ADMIN_LINK", admin_link()),
            ("RECEIVER_URL", receiver.url.clone()),
        ],
    );
    assert_eq!(
        found["screens"],
        json!(["notifications-delivered"]),
        "{found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_exports_then_imports_a_changed_file_after_its_dry_run() {
    let (server, peer, _backend) = start().await;
    let name = "Sales CRM";
    let id = connection(&server, &peer, name).await;
    let found = run_scenario(
        "admin-exports-and-imports",
        &server,
        &peer,
        &[
            (
                "ADMIN_LINK",
                server.sign_in_link("ada", &["keyport-admins"]),
            ),
            ("CONNECTION_NAME", name.to_owned()),
            ("CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("NEW_DESCRIPTION", "Imported from a file".to_owned()),
            ("NEW_NAME", "Support desk".to_owned()),
            ("NEW_SECRET", "support-desk-secret-5e2".to_owned()),
        ],
    );
    assert_eq!(
        found["screens"],
        json!(["transfer", "import-plan", "import-applied"])
    );
    // What the browser applied, as the API has it.
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let changed = http
        .get(&format!("/connections/{id}"), Some(&admin))
        .await
        .expect_json(200, "the changed connection");
    assert_eq!(changed["description"], "Imported from a file");
    assert_eq!(changed["version"], 2);
    let listed = http
        .get("/connections", Some(&admin))
        .await
        .expect_json(200, "the connections");
    let created = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Support desk")
        .expect("the imported connection");
    assert_eq!(created["client_secret_set"], true);
    assert_eq!(created["invited_roles"], json!([ROLE]));
}
