//! Every route × every kind of caller over real HTTP to the local server: the table below
//! holds one expected status per (route, persona) and each cell is one assertion naming both.
//! On both back-ends: the rules live in the service, but each store answers the reads they use.

use std::time::Duration;

use keyport_shared::domain::StateToken;
use keyport_shared::http::DevSigningKey;
use keyport_tests::backends::Backend;
use keyport_tests::http_client::{Body, Http, Reply};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::{AUDIENCE, ISSUER, ROLES_CLAIM, TestServer};
use serde_json::{Value, json};

crate::on_both_backends!(every_route_answers_every_persona_as_the_access_rules_say);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persona {
    NoToken,
    BadSignature,
    Expired,
    WrongAudience,
    Admin,
    Invited,
    Uninvited,
    /// Holds a role invited to another connection only: an invitation must not leak from one
    /// connection to the next.
    InvitedElsewhere,
    OtherUser,
    /// An administrator whose token carries only `keyport/tokens.read`: it reads shared tokens
    /// but manages nothing.
    AdminReadingTokens,
    /// An application invited to the connections, with `keyport/tokens.read`.
    AppReader,
    /// An application with every Keyport scope, invited nowhere and no administrator.
    AppUninvited,
    /// The invited application with a token carrying no Keyport scope.
    AppUnscoped,
    /// An administrator application with `keyport/connections.manage` only.
    AppManager,
    /// The administrator application with `keyport/audit.read` only.
    AppAuditor,
}

/// The table's column order.
const PERSONAS: [Persona; 15] = [
    Persona::NoToken,
    Persona::BadSignature,
    Persona::Expired,
    Persona::WrongAudience,
    Persona::Admin,
    Persona::Invited,
    Persona::Uninvited,
    Persona::InvitedElsewhere,
    Persona::OtherUser,
    Persona::AdminReadingTokens,
    Persona::AppReader,
    Persona::AppUninvited,
    Persona::AppUnscoped,
    Persona::AppManager,
    Persona::AppAuditor,
];

const INVITED_SUBJECT: &str = "bot-1";
const OTHER_SUBJECT: &str = "bot-2";
const ELSEWHERE_SUBJECT: &str = "carol";
/// The role invited to the other connection, and to none the table's rows use.
const ELSEWHERE_ROLE: &str = "contractors";
/// The application invited to the table's connections.
const INVITED_APP: &str = "reporting-app";
/// The application the server counts as an administrator (`--admin-applications`).
const ADMIN_APP: &str = "ops-app";
const TOKENS_READ: &str = "keyport/tokens.read";
const CONNECTIONS_MANAGE: &str = "keyport/connections.manage";
const AUDIT_READ: &str = "keyport/audit.read";

struct Callers {
    forged: String,
    expired: String,
    wrong_audience: String,
    admin: String,
    invited: String,
    uninvited: String,
    elsewhere: String,
    other_user: String,
    admin_reading_tokens: String,
    app_reader: String,
    app_uninvited: String,
    app_unscoped: String,
    app_manager: String,
    app_auditor: String,
}

impl Callers {
    fn token(&self, persona: Persona) -> Option<&str> {
        Some(match persona {
            Persona::NoToken => return None,
            Persona::BadSignature => &self.forged,
            Persona::Expired => &self.expired,
            Persona::WrongAudience => &self.wrong_audience,
            Persona::Admin => &self.admin,
            Persona::Invited => &self.invited,
            Persona::Uninvited => &self.uninvited,
            Persona::InvitedElsewhere => &self.elsewhere,
            Persona::OtherUser => &self.other_user,
            Persona::AdminReadingTokens => &self.admin_reading_tokens,
            Persona::AppReader => &self.app_reader,
            Persona::AppUninvited => &self.app_uninvited,
            Persona::AppUnscoped => &self.app_unscoped,
            Persona::AppManager => &self.app_manager,
            Persona::AppAuditor => &self.app_auditor,
        })
    }
}

/// What must exist before each cell's request, so that every cell starts from the same state
/// even after a request that destroys something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prep {
    Nothing,
    /// A new, unused connection name goes into the body's `name`.
    FreshName,
    /// A new connection is created and its id replaces `{fresh}` in the path.
    FreshConnection,
    /// The client-credentials connection's shared token exists (read by the admin).
    SharedToken,
    /// The caller's own token on the client-credentials connection exists, where the caller
    /// may have one, and so do the shared token and the first user's own.
    OwnToken,
    /// The shared token and the first user's own on the client-credentials connection exist.
    FirstUsersToken,
}

struct Row {
    method: &'static str,
    /// `{cc}`: the client-credentials connection; `{ac}`: the authorization-code connection;
    /// `{fresh}`: a connection created for this cell; `{state}`: a well-formed unknown state.
    path: &'static str,
    body: Option<Value>,
    prep: Prep,
    /// One status per persona, in `PERSONAS` order.
    expect: [u16; 15],
}

/// The four bad-credential personas get 401; then the authenticated ones in `PERSONAS` order:
/// admin, invited, uninvited, invited elsewhere, other user, admin reading tokens, then the
/// applications: reader, uninvited, unscoped, manager, auditor.
const fn authenticated(statuses: [u16; 11]) -> [u16; 15] {
    let mut all = [401; 15];
    let mut i = 0;
    while i < 11 {
        all[i + 4] = statuses[i];
        i += 1;
    }
    all
}

#[rustfmt::skip]
fn table() -> Vec<Row> {
    let row = |method, path, body: Option<Value>, prep, expect| Row {
        method,
        path,
        body,
        prep,
        expect,
    };
    let connection = json!({
        "provider": "custom", "grant_type": "client_credentials", "client_id": "c",
        "client_secret": "s", "token_url": "https://login.example.com/token",
    });
    // Columns: no token, bad signature, expired, wrong audience, then (see `authenticated`)
    //                 admin  inv  uninv else other admR appR appU app0 appM appA
    vec![
        // Any authenticated caller.
        row("GET", "/providers", None, Prep::Nothing, authenticated([200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200])),
        // manage_connections: an administrator (role or application) with the scope for it.
        row("POST", "/connections", Some(connection), Prep::FreshName, authenticated([201, 403, 403, 403, 403, 403, 403, 403, 403, 201, 403])),
        row("GET", "/connections", None, Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("GET", "/connections/{cc}", None, Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("PATCH", "/connections/{cc}", Some(json!({"description": "changed"})), Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("POST", "/connections/{cc}/test", None, Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("DELETE", "/connections/{fresh}", None, Prep::FreshConnection, authenticated([204, 403, 403, 403, 403, 403, 403, 403, 403, 204, 403])),
        // The audit trail: an administrator with the scope for reading it.
        row("GET", "/connections/{cc}/audit", None, Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 200])),
        // Authorize: the shared token is the administrators'; a user's own needs an invitation.
        row("POST", "/connections/{ac}/authorize", Some(json!({"owner": "shared"})), Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("POST", "/connections/{ac}/authorize", Some(json!({"owner": "user"})), Prep::Nothing, authenticated([403, 200, 403, 403, 200, 403, 200, 403, 403, 403, 403])),
        // The callback needs no token: an unknown state is refused for everyone alike.
        row("GET", "/oauth/callback?code=abc&state={state}", None, Prep::Nothing, [400; 15]),
        // Tokens: an invitation and the scope for reading tokens; administrators hold shared
        // tokens.
        row("GET", "/connections/{cc}/token?owner=shared", None, Prep::Nothing, authenticated([200, 200, 403, 403, 200, 200, 200, 403, 403, 403, 403])),
        row("GET", "/connections/{cc}/token?owner=user", None, Prep::Nothing, authenticated([403, 200, 403, 403, 200, 403, 200, 403, 403, 403, 403])),
        row("POST", "/connections/{cc}/token/refresh", None, Prep::SharedToken, authenticated([200, 200, 403, 403, 200, 200, 200, 403, 403, 403, 403])),
        row("POST", "/connections/{cc}/token/refresh?owner=user", None, Prep::OwnToken, authenticated([403, 200, 403, 403, 200, 403, 200, 403, 403, 403, 403])),
        // Disconnecting the shared token ends it for everyone: an administrator's action, with
        // both scopes.
        row("DELETE", "/connections/{cc}/token", None, Prep::SharedToken, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403])),
        row("DELETE", "/connections/{cc}/token?owner=user", None, Prep::OwnToken, authenticated([403, 200, 403, 403, 200, 403, 200, 403, 403, 403, 403])),
        row("GET", "/me/connections", None, Prep::Nothing, authenticated([200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200])),
        // The installation's settings: an administrator with the scope for managing.
        row("PUT", "/settings/outbound-proxy", Some(json!({"url": "http://127.0.0.1:9"})), Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("GET", "/settings/outbound-proxy", None, Prep::Nothing, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("DELETE", "/settings/outbound-proxy", None, Prep::Nothing, authenticated([204, 403, 403, 403, 403, 403, 403, 403, 403, 204, 403])),
        // Resetting the shared token replaces it for everyone and hands the new one out: an
        // administrator's action, with both scopes.
        row("POST", "/connections/{cc}/token/reset", None, Prep::SharedToken, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403])),
        // People's own tokens as administrators see them: nobody else lists or ends them, not
        // even their holder through this route.
        row("GET", "/connections/{cc}/tokens", None, Prep::FirstUsersToken, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
        row("DELETE", "/connections/{cc}/tokens/bot-1", None, Prep::FirstUsersToken, authenticated([200, 403, 403, 403, 403, 403, 403, 403, 403, 200, 403])),
    ]
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn id_of(reply: &Reply, what: &str) -> String {
    reply.expect_json(201, what)["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no id in {}", reply.text))
        .to_owned()
}

/// A connection to the peer that invites `bots`.
async fn create(http: &Http, admin: &str, peer: &OidcPeer, grant_type: &str) -> String {
    create_inviting(http, admin, peer, grant_type, "bots").await
}

async fn create_inviting(
    http: &Http,
    admin: &str,
    peer: &OidcPeer,
    grant_type: &str,
    role: &str,
) -> String {
    let reply = http
        .post(
            "/connections",
            Some(admin),
            json!({
                "name": unique(grant_type), "provider": "custom", "issuer": peer.issuer,
                "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
                "grant_type": grant_type, "scopes": "api:read", "invited_roles": [role],
                "invited_applications": [INVITED_APP],
            }),
        )
        .await;
    id_of(&reply, &format!("creating a {grant_type} connection"))
}

async fn every_route_answers_every_persona_as_the_access_rules_say(backend: Backend) {
    let server = TestServer::start(&backend, &["--admin-applications", ADMIN_APP]).await;
    let http = Http::new(&server.base);
    let peer = OidcPeer::start(PeerOptions {
        redirect_uri: Some(server.callback_url()),
        ..PeerOptions::default()
    });
    let other_key_dir = tempfile::tempdir().expect("temporary folder");
    let other_key = DevSigningKey::load_or_create(&other_key_dir.path().join("other.key"))
        .expect("another signing key");
    let admin_roles = vec!["keyport-admins".to_owned()];
    let callers = Callers {
        // Right issuer, audience and roles, signed by a key the server does not know.
        forged: other_key
            .mint(
                "admin",
                &admin_roles,
                Duration::from_secs(600),
                ISSUER,
                AUDIENCE,
                ROLES_CLAIM,
            )
            .expect("a token"),
        expired: server.expired_token("admin", &["keyport-admins"]),
        wrong_audience: server.token_with(
            "admin",
            &["keyport-admins"],
            ISSUER,
            "someone-else",
            Duration::from_secs(600),
        ),
        admin: server.token("admin", &["keyport-admins"]),
        invited: server.token(INVITED_SUBJECT, &["bots"]),
        uninvited: server.token("eve", &["strangers"]),
        elsewhere: server.token(ELSEWHERE_SUBJECT, &[ELSEWHERE_ROLE]),
        other_user: server.token(OTHER_SUBJECT, &["bots"]),
        admin_reading_tokens: server.scoped_token("admin", &["keyport-admins"], &[TOKENS_READ]),
        app_reader: server.application_token(INVITED_APP, &[TOKENS_READ]),
        app_uninvited: server.application_token(
            "stranger-app",
            &[TOKENS_READ, CONNECTIONS_MANAGE, AUDIT_READ],
        ),
        app_unscoped: server.application_token(INVITED_APP, &[]),
        app_manager: server.application_token(ADMIN_APP, &[CONNECTIONS_MANAGE]),
        app_auditor: server.application_token(ADMIN_APP, &[AUDIT_READ]),
    };
    let cc = create(&http, &callers.admin, &peer, "client_credentials").await;
    let ac = create(&http, &callers.admin, &peer, "authorization_code").await;
    let elsewhere = create_inviting(
        &http,
        &callers.admin,
        &peer,
        "client_credentials",
        ELSEWHERE_ROLE,
    )
    .await;
    // The persona's refusals below mean something only if its invitation works where it is.
    let own = http
        .get(
            &format!("/connections/{elsewhere}/token"),
            Some(&callers.elsewhere),
        )
        .await
        .expect_json(
            200,
            "the shared token of the connection carol is invited to",
        );
    assert_eq!(own["connection_id"], elsewhere.as_str());

    // The first user's own token, which the other user must never get.
    let first_users = http
        .get(
            &format!("/connections/{cc}/token?owner=user"),
            Some(&callers.invited),
        )
        .await
        .expect_json(200, "the invited user's own token");
    assert_eq!(first_users["owner"], format!("user:{INVITED_SUBJECT}"));
    let mut first_users_token = first_users["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();

    let mut cells = 0;
    for row in table() {
        for (column, persona) in PERSONAS.into_iter().enumerate() {
            let expected = row.expect[column];
            let token = callers.token(persona);
            let mut path = row
                .path
                .replace("{cc}", &cc)
                .replace("{ac}", &ac)
                .replace("{state}", StateToken::generate().expose_secret());
            let mut body = row.body.clone();
            match row.prep {
                Prep::Nothing => {}
                Prep::FreshName => {
                    body.as_mut().expect("a body")["name"] = json!(unique("by-persona"));
                }
                Prep::FreshConnection => {
                    let doomed = create(&http, &callers.admin, &peer, "client_credentials").await;
                    path = path.replace("{fresh}", &doomed);
                }
                Prep::SharedToken => {
                    http.get(&format!("/connections/{cc}/token"), Some(&callers.admin))
                        .await
                        .expect_json(200, "preparing the shared token");
                }
                Prep::FirstUsersToken => {
                    http.get(&format!("/connections/{cc}/token"), Some(&callers.admin))
                        .await
                        .expect_json(200, "preparing the shared token");
                    let own = http
                        .get(
                            &format!("/connections/{cc}/token?owner=user"),
                            Some(&callers.invited),
                        )
                        .await
                        .expect_json(200, "preparing the first user's own token");
                    first_users_token = own["access_token"]
                        .as_str()
                        .expect("an access token")
                        .to_owned();
                }
                Prep::OwnToken => {
                    // The shared token and the first user's exist too, for the caller to (not)
                    // touch.
                    http.get(&format!("/connections/{cc}/token"), Some(&callers.admin))
                        .await
                        .expect_json(200, "preparing the shared token");
                    for holder in [Some(callers.invited.as_str()), token] {
                        if matches!(
                            persona,
                            Persona::Invited | Persona::OtherUser | Persona::AppReader
                        ) {
                            let own = http
                                .get(&format!("/connections/{cc}/token?owner=user"), holder)
                                .await
                                .expect_json(200, "preparing the caller's own token");
                            if holder == Some(callers.invited.as_str()) {
                                first_users_token = own["access_token"]
                                    .as_str()
                                    .expect("an access token")
                                    .to_owned();
                            }
                        }
                    }
                }
            }
            let what = format!("{} {} as {persona:?}", row.method, row.path);
            let body = body.map_or(Body::None, Body::Json);
            let reply = http.send(row.method, &path, token, body).await;
            // The cell.
            assert_eq!(reply.status, expected, "{what}: {}", reply.text);
            cells += 1;

            // What the status promises.
            match expected {
                401 => {
                    reply.expect_error_code(401, "unauthenticated", &what);
                    assert!(
                        reply.headers.contains_key("www-authenticate"),
                        "{what}: no www-authenticate header"
                    );
                }
                403 => {
                    reply.expect_error_code(403, "forbidden", &what);
                }
                400 => {
                    assert!(
                        reply.content_type().starts_with("text/html"),
                        "{what}: the callback answers a page, not {:?}",
                        reply.content_type()
                    );
                }
                _ => {}
            }
            if !(200..300).contains(&expected) {
                assert!(
                    !reply.text.contains(&first_users_token),
                    "{what}: a refusal carries a token: {}",
                    reply.text
                );
                if row.method == "DELETE" && row.path == "/connections/{cc}/token" {
                    let entry = listed_entry(&http, &callers.invited, &cc, &what).await;
                    assert_eq!(
                        entry["shared_token"], "valid",
                        "{what}: a refused disconnect still removed the shared token: {entry}"
                    );
                }
                if row.method == "DELETE" && row.path.contains("/tokens/") {
                    let entry = listed_entry(&http, &callers.invited, &cc, &what).await;
                    assert_eq!(
                        entry["user_token"], "valid",
                        "{what}: a refused disconnect still removed the first user's token: {entry}"
                    );
                }
                continue;
            }
            if expected == 204 {
                continue;
            }
            let json = reply.expect_json(expected, &what);
            if row.path.contains("/tokens") {
                // Statuses, never a token.
                assert!(
                    !reply.text.contains(&first_users_token)
                        && !reply.text.contains("access_token"),
                    "{what}: a token in {}",
                    reply.text
                );
                let entry = listed_entry(&http, &callers.invited, &cc, &what).await;
                if row.method == "DELETE" {
                    assert_eq!(json["disconnected"], true, "{what}: {json}");
                    assert!(
                        entry["user_token"].is_null(),
                        "{what}: still there: {entry}"
                    );
                } else {
                    let listed = json["tokens"].as_array().expect("a list");
                    assert!(
                        listed.iter().any(|t| t["subject"] == INVITED_SUBJECT),
                        "{what}: the first user's token is not listed: {json}"
                    );
                    assert_eq!(entry["user_token"], "valid", "{what}: {entry}");
                }
                assert_eq!(entry["shared_token"], "valid", "{what}: {entry}");
                continue;
            }
            if row.method == "DELETE" && row.path.contains("/token") {
                assert_eq!(json["disconnected"], true, "{what}: {json}");
                let entry = listed_entry(&http, &callers.invited, &cc, &what).await;
                if row.path.contains("owner=user") {
                    let first_users_left = if persona == Persona::Invited {
                        Value::Null
                    } else {
                        json!("valid")
                    };
                    assert_eq!(
                        entry["user_token"], first_users_left,
                        "{what}: the first user's own token afterwards: {entry}"
                    );
                    assert_eq!(entry["shared_token"], "valid", "{what}: {entry}");
                } else {
                    assert!(
                        entry["shared_token"].is_null(),
                        "{what}: the shared token is still there: {entry}"
                    );
                }
            }
            if row.path.contains("/token") && row.method != "DELETE" {
                let owner = match (row.path.contains("owner=user"), persona) {
                    (false, _) => "shared".to_owned(),
                    (true, Persona::Invited) => format!("user:{INVITED_SUBJECT}"),
                    (true, Persona::OtherUser) => format!("user:{OTHER_SUBJECT}"),
                    (true, Persona::AppReader) => format!("user:{INVITED_APP}"),
                    (true, other) => panic!("{what}: {other:?} got a user token"),
                };
                assert_eq!(json["owner"], owner.as_str(), "{what}: {json}");
                assert!(
                    json["access_token"].as_str().is_some_and(|t| !t.is_empty()),
                    "{what}: no access token in {json}"
                );
                if persona == Persona::Invited && row.path.contains("owner=user") {
                    first_users_token = json["access_token"]
                        .as_str()
                        .expect("an access token")
                        .to_owned();
                }
                if matches!(persona, Persona::OtherUser | Persona::AppReader) {
                    assert_ne!(
                        json["access_token"],
                        first_users_token.as_str(),
                        "{what}: the other user got the first user's token"
                    );
                }
            }
            if row.path == "/me/connections" {
                let listed = json["connections"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: no list in {json}"));
                let sees_cc = listed.iter().any(|c| c["id"] == cc.as_str());
                match persona {
                    // Not invited anywhere, or a token that may read no token.
                    Persona::Uninvited
                    | Persona::AppUninvited
                    | Persona::AppUnscoped
                    | Persona::AppManager
                    | Persona::AppAuditor => {
                        assert!(listed.is_empty(), "{what}: uses nothing, sees {json}")
                    }
                    // Administrators hold the shared tokens: they see every connection.
                    Persona::Admin | Persona::AdminReadingTokens => {
                        let ids: std::collections::BTreeSet<&str> =
                            listed.iter().filter_map(|c| c["id"].as_str()).collect();
                        assert!(
                            ids.contains(cc.as_str()) && ids.contains(elsewhere.as_str()),
                            "{what}: an administrator sees every connection: {json}"
                        );
                    }
                    Persona::InvitedElsewhere => {
                        let ids: Vec<&Value> = listed.iter().map(|c| &c["id"]).collect();
                        assert_eq!(
                            ids,
                            [elsewhere.as_str()],
                            "{what}: sees exactly the connection it is invited to: {json}"
                        )
                    }
                    _ => assert!(sees_cc, "{what}: the invited connection is missing: {json}"),
                }
            }
            if row.path.ends_with("/test") {
                assert_eq!(
                    json["ok"], true,
                    "{what}: the peer accepted the client: {json}"
                );
            }
            if row.path.starts_with("/connections/{cc}") && !row.path.contains("token") {
                assert!(
                    !reply.text.contains(CLIENT_SECRET),
                    "{what}: the client secret came back"
                );
            }
        }
    }
    assert_eq!(cells, table().len() * PERSONAS.len());

    // An administrator whose roles include an invited one may authorize a token of their own.
    let both = server.token("admin", &["keyport-admins", "bots"]);
    http.post(
        &format!("/connections/{ac}/authorize"),
        Some(&both),
        json!({"owner": "user"}),
    )
    .await
    .expect_json(200, "authorize owner user as an invited administrator");

    // Everything above left its trail on the connection: who did what, never a secret.
    let trail = audit_trail(&http, &callers.admin, &cc).await;
    let has = |action: &str, actor: &str| {
        trail
            .iter()
            .any(|event| event["action"] == action && event["actor"] == actor)
    };
    for (action, actor) in [
        ("connection_created", "admin"),
        ("connection_changed", "admin"),
        ("token_authorized", INVITED_SUBJECT),
        ("token_refreshed", "admin"),
        ("token_revoked", INVITED_SUBJECT),
        ("access_denied", "eve"),
        ("access_denied", ELSEWHERE_SUBJECT),
        ("access_denied", INVITED_SUBJECT),
    ] {
        assert!(has(action, actor), "no {action} by {actor} in {trail:#?}");
    }
    assert!(
        trail.iter().any(|event| event["action"] == "token_revoked"
            && event["actor"] == "admin"
            && event["owner"] == format!("user:{INVITED_SUBJECT}")),
        "no revocation of the first user's token by the administrator in {trail:#?}"
    );
    let text = serde_json::to_string(&trail).expect("JSON");
    assert!(!text.contains(CLIENT_SECRET), "a secret in the audit trail");
    assert!(
        !text.contains(&first_users_token),
        "a token in the audit trail"
    );
    server.server.stop().await;
}

/// The connection `id` as `who` sees it in `GET /me/connections`: which tokens exist (the
/// read creates none).
async fn listed_entry(http: &Http, who: &str, id: &str, what: &str) -> Value {
    let mine = http
        .get("/me/connections", Some(who))
        .await
        .expect_json(200, "GET /me/connections");
    mine["connections"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{what}: the connection is not listed: {mine}"))
        .clone()
}

/// Every audit event of a connection, following the cursor, newest first.
async fn audit_trail(http: &Http, admin: &str, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = format!("/connections/{id}/audit?limit=7");
    loop {
        let page = http
            .get(&path, Some(admin))
            .await
            .expect_json(200, "the audit trail");
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/connections/{id}/audit?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    let times: Vec<chrono::DateTime<chrono::Utc>> = events
        .iter()
        .map(|e| {
            e["at"]
                .as_str()
                .expect("at")
                .parse()
                .expect("an RFC 3339 time")
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "not newest first: {times:?}"
    );
    events
}
