//! A provider's documented grant lifetimes, on both back-ends: a grant whose refresh token dies
//! after an inactivity window is refreshed before the window closes, even while its access
//! token lasts longer; a grant nearing its absolute end is reported (its status on the routes,
//! and one audit event per grant, however often it is refreshed) before it dies. Time passes by
//! moving a stored token's times into the past, as the refresher tests make tokens due.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use keyport_shared::catalog::Catalog;
use keyport_shared::domain::{AuditAction, Connection, Owner, Principal, StoredToken};
use keyport_shared::ports::{Expect, PageRequest, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest, RefreshReport};
use keyport_tests::backends::Backend;
use keyport_tests::faulty_provider::{Answer, FaultyProvider, Tokens};
use keyport_tests::http_client::Http;
use keyport_tests::keyport::{admin, authorize_with_any_code, keyport, principal};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

crate::on_both_backends!(
    an_idle_grant_is_refreshed_before_its_inactivity_window_closes,
    a_grant_nearing_its_absolute_end_is_reported_once,
);

/// The one test-only catalog entry: a provider documenting both lifetimes (Atlassian's 90 days
/// inactive and 365 days absolute); its endpoints are the connection's own.
const LIFETIME_TEST_CATALOG: &str = r#"
[[provider]]
key = "lifetime-test"
display_name = "A provider documenting its grant lifetimes (tests only)"
grant_types = ["authorization_code"]

[provider.lifetime]
refresh_token_idle_days = 90
refresh_token_absolute_days = 365
"#;

const IDLE_DAYS: i64 = 90;
const ABSOLUTE_DAYS: i64 = 365;

/// A Keyport whose catalog is the test entry.
fn lifetime_keyport(backend: &Backend) -> Arc<Keyport> {
    let mut keyport = keyport(backend, |_| {});
    let catalog = Catalog::parse(LIFETIME_TEST_CATALOG).expect("the test catalog parses");
    keyport.catalog = Box::leak(Box::new(catalog));
    Arc::new(keyport)
}

fn alice() -> Principal {
    principal("alice@example.com", &["bots"])
}

async fn connect(keyport: &Keyport, provider: &FaultyProvider) -> Connection {
    let input = serde_json::from_value(json!({
        "name": format!("lifetime-{}", uuid::Uuid::new_v4().simple()),
        "provider": "lifetime-test",
        "grant_type": "authorization_code",
        "client_id": "keyport-lifetime",
        "client_secret": "lifetime-client-secret",
        "authorization_url": provider.authorization_url,
        "token_url": provider.token_url,
        "revocation_url": provider.revocation_url,
        "scopes": "api:read,offline_access",
        "invited_roles": ["bots"],
    }))
    .expect("a connection request");
    keyport
        .create_connection(&admin(), input)
        .await
        .expect("created")
}

fn key(connection: &Connection, owner: Owner) -> TokenKey {
    TokenKey {
        connection_id: connection.id.clone(),
        owner,
    }
}

async fn stored(keyport: &Keyport, key: &TokenKey) -> StoredToken {
    keyport
        .store
        .get_token(key)
        .await
        .expect("a read")
        .expect("a token")
}

/// Writes `token` changed by `change`, over its current version.
async fn rewrite(
    keyport: &Keyport,
    mut token: StoredToken,
    change: impl FnOnce(&mut StoredToken),
) -> StoredToken {
    let version = token.version;
    change(&mut token);
    keyport
        .store
        .put_token(&token, Expect::Version(version))
        .await
        .expect("the token is rewritten")
}

async fn run_refresher(keyport: &Arc<Keyport>) -> RefreshReport {
    keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .expect("a refresher run")
}

/// Tokens whose access token outlives the inactivity window.
fn long_lived() -> Tokens {
    Tokens {
        expires_in: 400 * 24 * 60 * 60,
        ..Tokens::fresh()
    }
}

async fn an_idle_grant_is_refreshed_before_its_inactivity_window_closes(backend: Backend) {
    let keyport = lifetime_keyport(&backend);
    let provider = FaultyProvider::start().await;
    let (first, second) = (long_lived(), long_lived());
    provider.script([Answer::Tokens(first.clone()), Answer::Tokens(second)]);
    let connection = connect(&keyport, &provider).await;
    let before = Utc::now();
    authorize_with_any_code(&keyport, &connection, &admin(), OwnerRequest::Shared).await;
    let after = Utc::now();
    let shared = key(&connection, Owner::Shared);

    // Due a week before the inactivity window closes, though its access token lasts 400 days.
    let authorized = stored(&keyport, &shared).await;
    let due = authorized.refresh_due_at.expect("in the due index");
    let margin = Duration::days(7);
    let window = Duration::days(IDLE_DAYS);
    assert!(
        due >= before + window - margin - Duration::seconds(1) && due <= after + window - margin,
        "due {due} for a grant written between {before} and {after}"
    );
    assert!(due < authorized.expires_at.expect("an expiry"));
    assert_eq!(
        authorized.grant_ends_at,
        Some(authorized.created_at + Duration::days(ABSOLUTE_DAYS))
    );
    assert!(!authorized.grant_end_reported);

    // Nothing is due yet: a run leaves it alone.
    let report = run_refresher(&keyport).await;
    assert_eq!(report.refreshed, 0, "{report:?}");
    assert_eq!(provider.requests().len(), 1, "only the code exchange");

    // 84 days later, untouched since: six days are left of its inactivity window.
    let idle_for = Duration::days(84);
    let aged = rewrite(&keyport, authorized, |t| {
        t.created_at -= idle_for;
        t.updated_at -= idle_for;
        t.provider_asked_at = t.provider_asked_at.map(|at| at - idle_for);
        t.expires_at = t.expires_at.map(|at| at - idle_for);
        t.refresh_due_at = t.refresh_due_at.map(|at| at - idle_for);
        t.grant_ends_at = t.grant_ends_at.map(|at| at - idle_for);
    })
    .await;
    let last_used = aged.provider_asked_at.expect("asked when authorized");
    assert!(
        aged.expires_at
            .is_some_and(|expiry| expiry > Utc::now() + Duration::days(300)),
        "the access token alone would not bring it due"
    );

    let run_started = Utc::now();
    let report = run_refresher(&keyport).await;
    let run_ended = Utc::now();
    assert_eq!((report.refreshed, report.failed), (1, 0), "{report:?}");
    assert!(
        run_ended < last_used + window,
        "refreshed before the window closed"
    );
    let requests = provider.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].grant_type, "refresh_token");
    assert_eq!(requests[1].refresh_token.as_deref(), Some(first.refresh()));

    // Alive again: the next window counts from this refresh, and the grant is the same one.
    let refreshed = stored(&keyport, &shared).await;
    let next_due = refreshed.refresh_due_at.expect("still in the due index");
    assert!(
        next_due >= run_started + window - margin - Duration::seconds(1)
            && next_due <= run_ended + window - margin,
        "next due {next_due} for a refresh between {run_started} and {run_ended}"
    );
    assert_eq!(refreshed.created_at, aged.created_at, "the same grant");
    assert_eq!(refreshed.grant_ends_at, aged.grant_ends_at);
    assert!(!refreshed.grant_end_reported, "281 days are left of it");

    let report = run_refresher(&keyport).await;
    assert_eq!(report.refreshed, 0, "{report:?}");
    assert_eq!(provider.requests().len(), 2);
}

/// The `grant_ending` events of a connection's audit trail, by owner.
async fn grant_ending_events(keyport: &Keyport, connection: &Connection) -> Vec<Owner> {
    keyport
        .audit_trail(&admin(), &connection.id, PageRequest::first(100))
        .await
        .expect("the audit trail")
        .items
        .into_iter()
        .filter(|event| event.action == AuditAction::GrantEnding)
        .map(|event| event.owner.expect("a token's owner"))
        .collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a time: {value}: {e}"))
}

/// What the routes say of the connection's shared token and of alice's: each one's status
/// and grant end, from `GET /connections/{id}`, `GET /connections/{id}/tokens` and alice's
/// `GET /me/connections`.
struct OnTheRoutes {
    shared_status: Value,
    shared_ends: Value,
    alice_status: Value,
    alice_ends: Value,
    grant_ending_count: Value,
    needs_attention: Value,
    mine_shared_ends: Value,
    mine_user_ends: Value,
}

async fn on_the_routes(server: &TestServer, connection: &Connection) -> OnTheRoutes {
    let http = Http::new(&server.base);
    let admin = server.token("admin@example.com", &["keyport-admins"]);
    let alice = server.token("alice@example.com", &["bots"]);
    let id = connection.id.as_str();
    let read = http
        .get(&format!("/connections/{id}"), Some(&admin))
        .await
        .expect_json(200, "reading the connection");
    let health = &read["token_health"];
    let tokens = http
        .get(&format!("/connections/{id}/tokens"), Some(&admin))
        .await
        .expect_json(200, "listing the user tokens");
    let listed = &tokens["tokens"][0];
    assert_eq!(listed["subject"], "alice@example.com", "{tokens}");
    let mine = http
        .get("/me/connections", Some(&alice))
        .await
        .expect_json(200, "alice's connections");
    let usable = mine["connections"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not among alice's: {mine}"))
        .clone();
    OnTheRoutes {
        shared_status: health["shared"]["status"].clone(),
        shared_ends: health["shared"]["grant_ends_at"].clone(),
        alice_status: listed["status"].clone(),
        alice_ends: listed["grant_ends_at"].clone(),
        grant_ending_count: health["user_tokens"]["grant_ending"].clone(),
        needs_attention: health["user_tokens"]["needs_attention"].clone(),
        mine_shared_ends: usable["shared_grant_ends_at"].clone(),
        mine_user_ends: usable["user_grant_ends_at"].clone(),
    }
}

async fn a_grant_nearing_its_absolute_end_is_reported_once(backend: Backend) {
    let keyport = lifetime_keyport(&backend);
    let provider = FaultyProvider::start().await;
    provider.otherwise(Answer::Tokens(Tokens::fresh()));
    let connection = connect(&keyport, &provider).await;
    authorize_with_any_code(&keyport, &connection, &admin(), OwnerRequest::Shared).await;
    authorize_with_any_code(&keyport, &connection, &alice(), OwnerRequest::User).await;
    let shared = key(&connection, Owner::Shared);
    let user = key(&connection, Owner::User(alice().subject.clone()));

    // Freshly authorized: its end is known, and not near.
    for key in [&shared, &user] {
        let token = stored(&keyport, key).await;
        assert_eq!(
            token.grant_ends_at,
            Some(token.created_at + Duration::days(ABSOLUTE_DAYS))
        );
        assert!(!token.grant_end_reported);
    }
    assert!(grant_ending_events(&keyport, &connection).await.is_empty());

    // 352 days on, refreshed hourly meanwhile: the last refresh's schedule brings each token
    // back when its 14-day warning window opens, which it did a day ago.
    let authorized_ago = Duration::days(ABSOLUTE_DAYS - 13);
    for key in [&shared, &user] {
        let token = stored(&keyport, key).await;
        rewrite(&keyport, token, |t| {
            t.created_at -= authorized_ago;
            t.grant_ends_at = t.grant_ends_at.map(|at| at - authorized_ago);
            t.refresh_due_at = t.grant_ends_at.map(|at| at - Duration::days(14));
        })
        .await;
    }
    let report = run_refresher(&keyport).await;
    assert_eq!((report.refreshed, report.failed), (2, 0), "{report:?}");
    let mut reported = grant_ending_events(&keyport, &connection).await;
    let mut expected = vec![Owner::Shared, user.owner.clone()];
    reported.sort_by_key(|owner| owner.to_string());
    expected.sort_by_key(|owner| owner.to_string());
    assert_eq!(reported, expected, "one event per grant");
    for key in [&shared, &user] {
        let token = stored(&keyport, key).await;
        assert!(token.grant_end_reported, "{key:?}");
        let ends = token.grant_ends_at.expect("a documented end");
        assert!(ends > Utc::now() + Duration::days(12) && ends < Utc::now() + Duration::days(14));
    }

    // Refreshed again, by the refresher and by a person: not reported again.
    let token = stored(&keyport, &shared).await;
    rewrite(&keyport, token, |t| {
        t.refresh_due_at = Some(Utc::now() - Duration::seconds(1));
    })
    .await;
    let report = run_refresher(&keyport).await;
    assert_eq!(report.refreshed, 1, "{report:?}");
    keyport
        .force_refresh(&alice(), &connection.id, OwnerRequest::User)
        .await
        .expect("a forced refresh");
    assert_eq!(grant_ending_events(&keyport, &connection).await.len(), 2);

    // On the routes (a server over the same store; started only now, as its own refresher
    // would run over the built-in catalog, which lacks the test entry).
    let server = TestServer::start(&backend, &[]).await;
    let ending = on_the_routes(&server, &connection).await;
    let shared_ends = stored(&keyport, &shared).await.grant_ends_at;
    let user_ends = stored(&keyport, &user).await.grant_ends_at;
    assert_eq!(ending.shared_status, "grant_ending");
    assert_eq!(Some(time(&ending.shared_ends)), shared_ends);
    assert_eq!(ending.alice_status, "grant_ending");
    assert_eq!(Some(time(&ending.alice_ends)), user_ends);
    assert_eq!(Some(time(&ending.mine_shared_ends)), shared_ends);
    assert_eq!(Some(time(&ending.mine_user_ends)), user_ends);
    assert_eq!(ending.grant_ending_count, 1);
    assert_eq!(ending.needs_attention, 1);

    // A new authorization is a new grant: a year ahead of it again.
    authorize_with_any_code(&keyport, &connection, &admin(), OwnerRequest::Shared).await;
    let renewed = stored(&keyport, &shared).await;
    assert!(!renewed.grant_end_reported);
    assert_eq!(
        renewed.grant_ends_at,
        Some(renewed.created_at + Duration::days(ABSOLUTE_DAYS))
    );
    let after = on_the_routes(&server, &connection).await;
    assert_eq!(after.shared_status, "valid");
    assert_eq!(
        Some(time(&after.shared_ends)),
        renewed.grant_ends_at,
        "a valid grant's end is shown too"
    );
    assert_eq!(after.alice_status, "grant_ending");
    assert_eq!(grant_ending_events(&keyport, &connection).await.len(), 2);
}
