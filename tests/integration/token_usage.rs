//! Who used which token: every token handed out is one audit log line naming the caller, the
//! rule and scope that let it, the connection, the owner and the token's fingerprint (never
//! the token); and the audit route lists, per caller, its last fetch, written at most once per
//! caller per interval. Over real HTTP on both back-ends, with the logs captured.

use keyport_shared::domain::{
    CallerKind, ConnectionId, Owner, Subject, TokenFetch, token_fingerprint,
};
use keyport_tests::backends::Backend;
use keyport_tests::http_client::Http;
use keyport_tests::logs::CapturedLogs;
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

crate::on_both_backends_with_logs!(
    each_caller_is_recorded_once_per_interval_with_the_rule_that_let_it
);

const APP: &str = "reporting-app";

async fn fetches(http: &Http, admin: &str, id: &str) -> Vec<Value> {
    http.get(&format!("/connections/{id}/audit"), Some(admin))
        .await
        .expect_json(200, "the audit trail")["last_fetches"]
        .as_array()
        .expect("last_fetches")
        .clone()
}

fn token_of(reply: &Value) -> String {
    reply["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

async fn each_caller_is_recorded_once_per_interval_with_the_rule_that_let_it(
    backend: Backend,
    logs: CapturedLogs,
) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let peer = OidcPeer::start(PeerOptions::default());
    let admin = server.token("admin", &["keyport-admins"]);
    let created = http
        .post(
            "/connections",
            Some(&admin),
            json!({
                "name": "usage", "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "grant_type": "client_credentials", "scopes": "api:read",
                "invited_roles": ["bots"], "invited_applications": [APP],
            }),
        )
        .await
        .expect_json(201, "creating the connection");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(fetches(&http, &admin, &id).await.is_empty(), "nobody yet");

    // A bot reads the shared token three times within the interval: one record.
    let bot = server.token("bot-1", &["bots"]);
    let path = format!("/connections/{id}/token");
    let first = http
        .get(&path, Some(&bot))
        .await
        .expect_json(200, "the bot's first read");
    let after_first = fetches(&http, &admin, &id).await;
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    let record = &after_first[0];
    assert_eq!(record["caller"], "bot-1");
    assert_eq!(record["caller_kind"], "person");
    assert_eq!(record["via"], "invited_role:bots");
    assert_eq!(
        record["scope"],
        Value::Null,
        "a sign-in token carries no Keyport scope"
    );
    assert_eq!(record["owner"], "shared");
    assert_eq!(
        record["token_fingerprint"],
        token_fingerprint(&token_of(&first)).as_str()
    );
    for _ in 0..2 {
        http.get(&path, Some(&bot))
            .await
            .expect_json(200, "the bot's next reads");
    }
    assert_eq!(
        fetches(&http, &admin, &id).await,
        after_first,
        "reads within the interval write nothing"
    );

    // The application: its own record, naming the invitation and the scope.
    let app = server.application_token(APP, &["keyport/tokens.read"]);
    let read = http
        .get(&path, Some(&app))
        .await
        .expect_json(200, "the application's read");
    let both = fetches(&http, &admin, &id).await;
    assert_eq!(both.len(), 2, "{both:?}");
    let app_record = both
        .iter()
        .find(|f| f["caller"] == APP)
        .unwrap_or_else(|| panic!("the application's record in {both:?}"));
    assert_eq!(app_record["caller_kind"], "application");
    assert_eq!(app_record["via"], "invited_application");
    assert_eq!(app_record["scope"], "keyport/tokens.read");
    // The administrator reads the shared token as its holder.
    http.post(&format!("{path}/refresh"), Some(&admin), json!({}))
        .await
        .expect_json(200, "the administrator's forced refresh");
    let all = fetches(&http, &admin, &id).await;
    let admin_record = all
        .iter()
        .find(|f| f["caller"] == "admin")
        .unwrap_or_else(|| panic!("the administrator's record in {all:?}"));
    assert_eq!(admin_record["via"], "admin_role:keyport-admins");

    // Reading who used a token is reading the audit trail: not for the bot.
    http.get(&format!("/connections/{id}/audit"), Some(&bot))
        .await
        .expect_error_code(403, "forbidden", "a bot reading the audit trail");

    // One audit line per token handed out, each with the fingerprint of what was handed out,
    // and no token in any line.
    let text = logs.text();
    let issued: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["event"] == "token_issued")
        .collect();
    assert_eq!(
        issued.len(),
        5,
        "three bot reads, one application read, one refresh"
    );
    let app_line = issued
        .iter()
        .find(|line| line["fields"]["caller"] == APP)
        .expect("the application's line");
    assert_eq!(app_line["fields"]["client_id"], APP);
    assert_eq!(app_line["fields"]["connection_name"], "usage");
    assert_eq!(
        app_line["fields"]["token_fingerprint"],
        token_fingerprint(&token_of(&read)).as_str()
    );
    logs.assert_free_of([
        token_of(&first).as_str(),
        token_of(&read).as_str(),
        CLIENT_SECRET,
    ]);
}

mod store_condition {
    use super::*;

    crate::on_both_backends!(another_process_does_not_write_a_record_again_within_the_interval);

    /// The store's own condition: a second process (which has no memory of the first one's write)
    /// writes a caller's record again only once the interval has passed.
    async fn another_process_does_not_write_a_record_again_within_the_interval(backend: Backend) {
        let connection_id = ConnectionId::generate();
        let at = chrono::Utc::now();
        let fetch = |at: chrono::DateTime<chrono::Utc>, fingerprint: &str| TokenFetch {
            connection_id: connection_id.clone(),
            caller: Subject::parse("bot-1").unwrap(),
            caller_kind: CallerKind::Person,
            via: "invited_role:bots".into(),
            scope: None,
            owner: Owner::Shared,
            token_fingerprint: fingerprint.into(),
            last_at: at,
        };
        let interval = chrono::Duration::seconds(300);
        let store = &backend.store;
        assert!(
            store
                .record_fetch(&fetch(at, "sha256:first"), at - interval)
                .await
                .unwrap()
        );
        let soon = at + chrono::Duration::seconds(10);
        assert!(
            !store
                .record_fetch(&fetch(soon, "sha256:second"), soon - interval)
                .await
                .unwrap(),
            "within the interval"
        );
        let listed = store.list_fetches(&connection_id, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].token_fingerprint, "sha256:first");
        let later = at + interval + chrono::Duration::seconds(1);
        assert!(
            store
                .record_fetch(&fetch(later, "sha256:third"), later - interval)
                .await
                .unwrap()
        );
        let listed = store.list_fetches(&connection_id, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "one record per caller");
        assert_eq!(listed[0].token_fingerprint, "sha256:third");
    }
}
