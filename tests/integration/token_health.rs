//! Connections answer their token health over real HTTP, on both back-ends: the shared token's
//! status and the user tokens counted by status, in the list and in a single read, and never a
//! token value (nor, on AWS, a key service call: no token is opened for it).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use keyport_shared::domain::{
    ConnectionId, Owner, StoredToken, TokenFailure, TokenSecrets, TokenStatus,
};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_tests::backends::Backend;
use keyport_tests::http_client::Http;
use keyport_tests::server::TestServer;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::fixtures::user;

crate::on_both_backends!(connections_answer_their_token_health);

/// Whole seconds: what every store keeps of a time.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// A token in `owner`'s slot of `connection`, sealed as an authorization would seal it, whose
/// access and refresh tokens are `<value>-access` and `<value>-refresh`.
struct Seeded<'a> {
    owner: Owner,
    status: TokenStatus,
    expires_in: Duration,
    asked_ago: Duration,
    failure: Option<&'a str>,
    value: &'a str,
}

async fn seed(backend: &Backend, connection: &ConnectionId, token: Seeded<'_>) {
    let key = TokenKey {
        connection_id: connection.clone(),
        owner: token.owner.clone(),
    };
    let secrets = TokenSecrets {
        access_token: SecretString::from(format!("{}-access", token.value)),
        refresh_token: Some(SecretString::from(format!("{}-refresh", token.value))),
        id_token: None,
        extra: serde_json::Map::new(),
    };
    let now = now();
    let record = StoredToken {
        connection_id: connection.clone(),
        owner: token.owner,
        status: token.status,
        token_type: "Bearer".into(),
        scope: Some("openid api:read".into()),
        expires_at: Some(now + token.expires_in),
        refresh_due_at: None,
        has_refresh_token: true,
        last_error: token.failure.map(|code| TokenFailure {
            code: code.into(),
            message: format!("the provider answered {code}"),
            at: now - Duration::minutes(1),
        }),
        lease: None,
        issued_for: None,
        provider_asked_at: Some(now - token.asked_ago),
        grant_ends_at: None,
        grant_end_reported: false,
        filed_due_at: None,
        created_at: now,
        updated_at: now,
        sealed: backend
            .cipher()
            .seal_token(&key, &secrets)
            .await
            .expect("sealed"),
        version: 0,
    };
    backend
        .store
        .put_token(&record, Expect::Absent)
        .await
        .expect("the token is stored");
}

fn created_id(reply: &keyport_tests::http_client::Reply, what: &str) -> (ConnectionId, Value) {
    let body = reply.expect_json(201, what);
    let id = ConnectionId::parse(body["id"].as_str().expect("an id")).expect("a connection id");
    (id, body)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a time: {value}: {e}"))
}

/// `connection`'s entry in a `GET /connections` answer.
fn listed<'a>(list: &'a Value, id: &ConnectionId) -> &'a Value {
    list["connections"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} is not listed: {list}"))
}

async fn connections_answer_their_token_health(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let create = |name: &str| {
        json!({
            "name": name, "grant_type": "authorization_code_pkce", "client_id": "c",
            "client_secret": "never-answered", "invited_roles": ["bots"],
            "authorization_url": "https://login.example.com/authorize",
            "token_url": "https://login.example.com/token",
        })
    };
    let (idle, created) = created_id(
        &http
            .post("/connections", Some(&admin), create("Idle"))
            .await,
        "creating a connection",
    );
    assert_eq!(
        created["token_health"]["shared"]["status"], "not_authorized",
        "{created}"
    );
    assert_eq!(created["token_health"]["user_tokens"]["total"], 0);
    let (busy, _) = created_id(
        &http
            .post("/connections", Some(&admin), create("Busy"))
            .await,
        "creating a connection",
    );

    let token = |owner, status, expires_in, asked_ago, failure, value| Seeded {
        owner,
        status,
        expires_in,
        asked_ago,
        failure,
        value,
    };
    let hour = Duration::hours(1);
    let minutes = Duration::minutes;
    for seeded in [
        token(
            Owner::Shared,
            TokenStatus::Valid,
            hour,
            minutes(30),
            None,
            "shared",
        ),
        token(
            user("alice"),
            TokenStatus::Valid,
            hour,
            minutes(20),
            None,
            "alice",
        ),
        // Due soon: the refresher will get to it, nobody has to act.
        token(
            user("bob"),
            TokenStatus::Valid,
            minutes(5),
            minutes(55),
            None,
            "bob",
        ),
        // The provider refused the grant: the newest failure of the connection.
        token(
            user("carol"),
            TokenStatus::NeedsReauthorization,
            hour,
            minutes(2),
            Some("invalid_grant"),
            "carol",
        ),
        token(
            user("dave"),
            TokenStatus::Valid,
            -minutes(1),
            hour,
            None,
            "dave",
        ),
    ] {
        seed(&backend, &busy, seeded).await;
    }
    let kms_before = backend.kms_requests.as_ref().map(|c| c.count());

    let list = http
        .get("/connections", Some(&admin))
        .await
        .expect_json(200, "listing connections");
    let one = http
        .get(&format!("/connections/{busy}"), Some(&admin))
        .await;
    let one_text = one.text.clone();
    let one = one.expect_json(200, "reading a connection");
    let idle_one = http
        .get(&format!("/connections/{idle}"), Some(&admin))
        .await
        .expect_json(200, "reading a connection");

    for (what, health) in [
        ("listed", &listed(&list, &busy)["token_health"]),
        ("read", &one["token_health"]),
    ] {
        let shared = &health["shared"];
        assert_eq!(shared["status"], "valid", "{what}: {health}");
        assert!(
            (time(&shared["expires_at"]) - (now() + hour)).abs() < minutes(1),
            "{what}: {health}"
        );
        assert!(
            (time(&shared["last_refresh_at"]) - (now() - minutes(30))).abs() < minutes(1),
            "{what}: {health}"
        );
        assert_eq!(shared["last_error"], Value::Null, "{what}: {health}");
        assert_eq!(
            health["user_tokens"],
            json!({
                "total": 4, "valid": 1, "expiring_soon": 1, "expired": 1,
                "refresh_failing": 0, "grant_ending": 0, "needs_reauthorization": 1,
                "needs_attention": 2,
                "complete": true
            }),
            "{what}"
        );
        // The latest across all tokens: carol's.
        assert!(
            (time(&health["last_refresh_at"]) - (now() - minutes(2))).abs() < minutes(1),
            "{what}: {health}"
        );
        assert_eq!(health["last_error"]["code"], "invalid_grant", "{what}");
    }
    assert_eq!(one["name"], "Busy", "the connection's own fields stay");
    assert_eq!(one["client_secret_set"], true);

    for (what, health) in [
        ("listed", &listed(&list, &idle)["token_health"]),
        ("read", &idle_one["token_health"]),
    ] {
        assert_eq!(
            health,
            &json!({
                "shared": {
                    "status": "not_authorized", "expires_at": null, "last_refresh_at": null,
                    "last_error": null, "grant_ends_at": null
                },
                "user_tokens": {
                    "total": 0, "valid": 0, "expiring_soon": 0, "expired": 0,
                    "refresh_failing": 0, "grant_ending": 0, "needs_reauthorization": 0,
                    "needs_attention": 0,
                    "complete": true
                },
                "last_refresh_at": null,
                "last_error": null
            }),
            "{what}"
        );
    }

    // A change answers the health after it: a description does not end any token.
    let changed = http
        .patch(
            &format!("/connections/{busy}"),
            Some(&admin),
            json!({"description": "changed", "version": 1}),
        )
        .await
        .expect_json(200, "changing a connection");
    assert_eq!(changed["token_health"]["user_tokens"]["total"], 4);
    assert_eq!(changed["token_health"]["shared"]["status"], "valid");

    for text in [&one_text, &list.to_string(), &changed.to_string()] {
        for name in ["shared", "alice", "bob", "carol", "dave"] {
            for part in ["access", "refresh"] {
                let value = format!("{name}-{part}");
                assert!(!text.contains(&value), "{value} answered: {text}");
            }
        }
        assert!(!text.contains("never-answered"));
    }
    // No token was opened to answer (the key service is only counted on AWS).
    if let Some(counter) = &backend.kms_requests {
        assert_eq!(
            Some(counter.count()),
            kms_before,
            "the key service was called to summarize token health"
        );
    }

    // Administrators only, as the rest of the connection.
    let bot = server.token("bot-1", &["bots"]);
    http.get("/connections", Some(&bot))
        .await
        .expect_error(403, "a bot listing connections");
    http.get(&format!("/connections/{busy}"), Some(&bot))
        .await
        .expect_error(403, "a bot reading a connection");
}
