//! Connections between installations and in version control: `keyport export`, `keyport
//! import` and `keyport apply` (the real command, as a separate process) against local servers
//! over both back-ends. Secrets leave only encrypted to an age recipient, and Debian's age (the
//! Go implementation, not Keyport's crate) is what opens them here. An import with a conflict
//! writes nothing; a second apply changes nothing.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use keyport_shared::adapters::outbound::{OutboundHttp, OutboundSettings};
use keyport_shared::domain::{ClientSecret, ConnectionsDocument, ImportAction, UrlPolicy};
use keyport_shared::oauth::{OAuthClient, OAuthSettings};
use keyport_shared::ports::{SecretError, SecretRef, SecretStore};
use keyport_shared::service::{Keyport, KeyportSettings, ServiceError};
use keyport_tests::keyport::admin;

use keyport_tests::backends::{self, Backend};
use keyport_tests::http_client::{Body, Http};
use keyport_tests::logs::CapturedLogs;
use keyport_tests::oidc::{CALLBACK_URL, CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::server::TestServer;
use serde_json::{Value, json};

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport-process");

crate::on_both_backends!(
    an_import_with_a_conflict_writes_nothing,
    a_second_apply_changes_nothing,
    bad_documents_are_refused_and_change_nothing,
    a_failure_part_way_undoes_what_the_import_applied,
);

/// What a `keyport` command did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `keyport args…` against `server` as an administrator (asynchronously: the server
/// answers from this test's runtime), with `env` added.
async fn keyport(server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(KEYPORT)
        .args(args)
        .env("KEYPORT_SERVER", &server.base)
        .env("KEYPORT_TOKEN", admin_token(server))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("keyport runs");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn admin_token(server: &TestServer) -> String {
    server.token("admin@example.com", &["keyport-admins"])
}

fn age_tool(args: &[&str]) -> String {
    let output = std::process::Command::new(format!("/usr/bin/{}", args[0]))
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} runs (scripts/install-test-peers age): {e}", args[0]));
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("text")
}

/// Every connection's name and version, as `GET /connections` lists them.
async fn listing(server: &TestServer) -> Vec<(String, u64)> {
    let listed = Http::new(&server.base)
        .get("/connections?limit=1000", Some(&admin_token(server)))
        .await
        .expect_json(200, "the connections");
    let mut pairs: Vec<(String, u64)> = listed["connections"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("a name").to_owned(),
                c["version"].as_u64().expect("a version"),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

async fn create(server: &TestServer, body: Value) -> Value {
    Http::new(&server.base)
        .post("/connections", Some(&admin_token(server)), body)
        .await
        .expect_json(201, "the created connection")
}

/// The client-credentials connection to the peer, its secret given.
fn peer_connection(peer: &OidcPeer, name: &str) -> Value {
    json!({
        "name": name, "provider": "custom", "issuer": peer.issuer,
        "client_id": "keyport-basic", "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials", "scopes": "api:read",
        "invited_roles": ["bots"], "description": "machine to machine",
    })
}

async fn read_token(server: &TestServer, id: &str) -> String {
    let bot = server.token("bot-1", &["bots"]);
    let token = Http::new(&server.base)
        .get(&format!("/connections/{id}/token"), Some(&bot))
        .await
        .expect_json(200, "the shared token");
    token["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn an_export_with_secrets_moves_connections_from_embedded_to_dynamodb() {
    let (_guard, logs) = CapturedLogs::start();
    let peer = OidcPeer::start(PeerOptions::default());
    // Each back-end lives as long as its server (the embedded one's files are its own).
    let (embedded, dynamodb) = (backends::embedded().await, backends::aws().await);
    let source = TestServer::start(&embedded, &[]).await;
    let target = TestServer::start(&dynamodb, &[]).await;
    let machine = create(&source, peer_connection(&peer, "Peer machine")).await;
    let machine_id = machine["id"].as_str().unwrap();
    create(
        &source,
        json!({
            "name": "Acme CRM", "grant_type": "authorization_code_pkce", "client_id": "acme",
            "client_secret": "acme-client-secret-7d1f",
            "authorization_url": "https://login.acme.example/authorize",
            "token_url": "https://login.acme.example/token", "scopes": "openid,api",
            "invited_roles": ["sales"], "invited_applications": ["reporting-app"],
        }),
    )
    .await;
    let access_token = read_token(&source, machine_id).await;

    let folder = tempfile::tempdir().unwrap();
    let key = folder.path().join("key.txt");
    age_tool(&["age-keygen", "-o", key.to_str().unwrap()]);
    let recipient = age_tool(&["age-keygen", "-y", key.to_str().unwrap()]);
    let recipient = recipient.trim();

    // Without secrets: definitions only, by name.
    let plain = keyport(&source, &["export"], &[]).await;
    assert!(plain.ok, "{}", plain.stderr);
    let document: Value = serde_json::from_str(&plain.stdout).unwrap();
    assert_eq!(document["keyport_export"], 1);
    let names: Vec<&str> = document["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Acme CRM", "Peer machine"]);
    assert_eq!(
        document["connections"][0]["invited_applications"],
        json!(["reporting-app"])
    );
    assert!(document.get("sealed").is_none());
    for leak in [
        CLIENT_SECRET,
        "acme-client-secret-7d1f",
        &access_token,
        machine_id,
        "\"version\"",
    ] {
        assert!(
            !plain.stdout.contains(leak),
            "the plain export holds {leak}"
        );
    }

    // With secrets: they are in `sealed` only, which Debian's age opens with the identity.
    let sealed_file = folder.path().join("export.json");
    let exported = keyport(
        &source,
        &[
            "export",
            "--with-secrets",
            "--recipient",
            recipient,
            "-o",
            sealed_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(exported.ok, "{}", exported.stderr);
    let text = std::fs::read_to_string(&sealed_file).unwrap();
    for leak in [CLIENT_SECRET, "acme-client-secret-7d1f", &access_token] {
        assert!(
            !text.contains(leak),
            "the export holds a secret in the clear"
        );
    }
    let document: Value = serde_json::from_str(&text).unwrap();
    let sealed = document["sealed"].as_str().unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let armored = folder.path().join("sealed.age");
    std::fs::write(&armored, sealed).unwrap();
    let opened: Value = serde_json::from_str(&age_tool(&[
        "age",
        "-d",
        "-i",
        key.to_str().unwrap(),
        armored.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(
        opened["connections"]["Peer machine"]["client_secret"],
        CLIENT_SECRET
    );
    assert_eq!(
        opened["connections"]["Acme CRM"]["client_secret"],
        "acme-client-secret-7d1f"
    );
    let tokens = opened["connections"]["Peer machine"]["tokens"]
        .as_array()
        .unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["owner"], "shared");
    assert_eq!(tokens[0]["access_token"], access_token.as_str());
    // Each connection's trail says its secrets left.
    let trail = Http::new(&source.base)
        .get(
            &format!("/connections/{machine_id}/audit"),
            Some(&admin_token(&source)),
        )
        .await
        .expect_json(200, "the audit trail");
    assert!(
        trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "secrets_exported" && e["actor"] == "admin@example.com"),
        "{trail}"
    );

    // The target: without the identity the sealed export is refused here, before any request.
    let refused = keyport(
        &target,
        &["import", "-f", sealed_file.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(!refused.ok);
    assert!(refused.stderr.contains("--identity"), "{}", refused.stderr);
    let file = sealed_file.to_str().unwrap();
    let identity = key.to_str().unwrap();
    let planned = keyport(
        &target,
        &[
            "import",
            "-f",
            file,
            "--identity",
            identity,
            "--dry-run",
            "--json",
        ],
        &[],
    )
    .await;
    assert!(planned.ok, "{}", planned.stderr);
    let plan: Value = serde_json::from_str(&planned.stdout).unwrap();
    assert_eq!(
        plan["summary"],
        json!({"create": 2, "change": 0, "unchanged": 0, "conflict": 0})
    );
    assert!(
        listing(&target).await.is_empty(),
        "a dry run writes nothing"
    );
    let imported = keyport(
        &target,
        &["import", "-f", file, "--identity", identity, "--json"],
        &[],
    )
    .await;
    assert!(imported.ok, "{}", imported.stderr);
    let outcome: Value = serde_json::from_str(&imported.stdout).unwrap();
    assert_eq!(outcome["applied"], true);
    assert!(
        imported
            .stderr
            .contains("1 tokens in the export are not imported"),
        "{}",
        imported.stderr
    );
    assert_eq!(
        listing(&target).await,
        [("Acme CRM".to_owned(), 1), ("Peer machine".to_owned(), 1)]
    );
    // The imported secret works at the provider: the target gets its own token with it.
    let target_export = keyport(&target, &["export"], &[]).await;
    assert!(target_export.ok);
    assert_eq!(
        serde_json::from_str::<Value>(&target_export.stdout).unwrap()["connections"],
        serde_json::from_str::<Value>(&plain.stdout).unwrap()["connections"],
        "the target's connections are the source's"
    );
    let target_machine = Http::new(&target.base)
        .get("/connections?limit=1000", Some(&admin_token(&target)))
        .await
        .expect_json(200, "the target's connections")["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Peer machine")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target_token = read_token(&target, &target_machine).await;
    assert_ne!(
        target_token, access_token,
        "the target authorized its own grant"
    );

    // The same import again: nothing to do.
    let again = keyport(
        &target,
        &["import", "-f", file, "--identity", identity, "--json"],
        &[],
    )
    .await;
    assert!(again.ok, "{}", again.stderr);
    let plan: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        plan["summary"],
        json!({"create": 0, "change": 0, "unchanged": 2, "conflict": 0})
    );
    assert_eq!(
        listing(&target).await,
        [("Acme CRM".to_owned(), 1), ("Peer machine".to_owned(), 1)]
    );
    let cli_output = [&plain, &exported, &planned, &imported, &again]
        .iter()
        .map(|run| format!("{}{}", run.stdout, run.stderr))
        .collect::<String>();
    for leak in [
        CLIENT_SECRET,
        "acme-client-secret-7d1f",
        &access_token,
        &target_token,
    ] {
        assert!(!cli_output.contains(leak), "a command printed a secret");
    }
    logs.assert_free_of([
        CLIENT_SECRET,
        "acme-client-secret-7d1f",
        &access_token,
        &target_token,
    ]);
}

async fn an_import_with_a_conflict_writes_nothing(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let admin = admin_token(&server);
    create(
        &server,
        json!({
            "name": "crm", "grant_type": "client_credentials", "client_id": "crm",
            "client_secret": "crm-secret", "token_url": "https://login.crm.example/token",
            "scopes": "api",
        }),
    )
    .await;
    let before = listing(&server).await;
    let document = json!({"keyport_export": 1, "connections": [
        {"name": "new one", "grant_type": "client_credentials", "client_id": "n",
         "client_secret": "n-secret", "token_url": "https://login.new.example/token"},
        {"name": "CRM", "provider": "github", "grant_type": "authorization_code", "client_id": "crm"},
    ]});
    let refused = http
        .post("/connections/import?dry_run=false", Some(&admin), document)
        .await
        .expect_error_code(409, "import_conflict", "a conflicting import");
    assert_eq!(refused["applied"], false);
    assert_eq!(refused["connections"][0]["action"], "create");
    assert_eq!(refused["connections"][1]["name"], "CRM");
    assert_eq!(refused["connections"][1]["action"], "conflict");
    assert!(
        refused["connections"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("provider custom"),
        "{refused}"
    );
    assert_eq!(listing(&server).await, before, "nothing was written");

    // The insider rule holds through an import: moving the connection needs its secret.
    let moved = json!({"keyport_export": 1, "connections": [
        {"name": "crm", "grant_type": "client_credentials", "client_id": "crm",
         "token_url": "https://evil.example/token", "scopes": ["api"]},
    ]});
    let refused = http
        .post("/connections/import?dry_run=false", Some(&admin), moved)
        .await
        .expect_error_code(409, "import_conflict", "a move without the secret");
    let reason = refused["connections"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("client_secret") && reason.contains("token_url"),
        "{reason}"
    );
    assert_eq!(listing(&server).await, before, "nothing was written");

    // The same name twice (whatever the case) conflicts too.
    let twice = json!({"keyport_export": 1, "connections": [
        {"name": "dup", "token_url": "https://a.example/token", "grant_type": "client_credentials", "client_id": "a", "client_secret": "a-secret"},
        {"name": "DUP", "token_url": "https://a.example/token", "grant_type": "client_credentials", "client_id": "a", "client_secret": "a-secret"},
    ]});
    let refused = http
        .post("/connections/import?dry_run=false", Some(&admin), twice)
        .await
        .expect_error_code(409, "import_conflict", "a name twice");
    assert_eq!(refused["summary"]["conflict"], 1, "{refused}");
    assert_eq!(listing(&server).await, before, "nothing was written");
}

const APPLY_FILE: &str = "\
# Connections as code: secrets are named, never written here.
connections:
  - name: Billing
    grant_type: client_credentials
    client_id: billing
    client_secret: {env: BILLING_SECRET}
    token_url: https://login.billing.example/token
    scopes: [invoices.read]
    invited_roles: [bots]
  - name: Warehouse
    description: stock levels
    grant_type: client_credentials
    client_id: warehouse
    client_secret: {env: WAREHOUSE_SECRET}
    token_url: https://login.warehouse.example/token
";

async fn apply(server: &TestServer, file: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["apply", "-f", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    keyport(
        server,
        &args,
        &[
            ("BILLING_SECRET", "billing-secret-41f"),
            ("WAREHOUSE_SECRET", "warehouse-secret-93a"),
        ],
    )
    .await
}

async fn a_second_apply_changes_nothing(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("connections.yaml");
    std::fs::write(&file, APPLY_FILE).unwrap();

    let first = apply(&server, &file, &[]).await;
    assert!(first.ok, "{}", first.stderr);
    assert!(
        first
            .stdout
            .contains("applied: 2 to create, 0 to change, 0 unchanged, 0 in conflict"),
        "{}",
        first.stdout
    );
    let after_first = listing(&server).await;
    assert_eq!(
        after_first,
        [("Billing".to_owned(), 1), ("Warehouse".to_owned(), 1)]
    );

    let second = apply(&server, &file, &["--json"]).await;
    assert!(second.ok, "{}", second.stderr);
    let plan: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(
        plan["summary"],
        json!({"create": 0, "change": 0, "unchanged": 2, "conflict": 0})
    );
    assert_eq!(plan["applied"], false, "nothing was sent for real");
    assert_eq!(listing(&server).await, after_first, "versions unchanged");

    // A change to the file (and a new secret) is exactly a change of those fields.
    std::fs::write(
        &file,
        APPLY_FILE.replace("description: stock levels", "description: stock and orders"),
    )
    .unwrap();
    let changed = keyport(
        &server,
        &["apply", "-f", file.to_str().unwrap(), "--json"],
        &[
            ("BILLING_SECRET", "billing-secret-rotated"),
            ("WAREHOUSE_SECRET", "warehouse-secret-93a"),
        ],
    )
    .await;
    assert!(changed.ok, "{}", changed.stderr);
    let plan: Value = serde_json::from_str(&changed.stdout).unwrap();
    assert_eq!(plan["applied"], true);
    assert_eq!(
        plan["connections"],
        json!([
            {"name": "Billing", "action": "change", "fields": ["client_secret"]},
            {"name": "Warehouse", "action": "change", "fields": ["description"]},
        ])
    );
    assert_eq!(
        listing(&server).await,
        [("Billing".to_owned(), 2), ("Warehouse".to_owned(), 2)]
    );
    for run in [&first, &second, &changed] {
        for leak in ["billing-secret", "warehouse-secret"] {
            assert!(!run.stdout.contains(leak) && !run.stderr.contains(leak));
        }
    }
}

async fn bad_documents_are_refused_and_change_nothing(backend: Backend) {
    let server = TestServer::start(&backend, &[]).await;
    let http = Http::new(&server.base);
    let admin = admin_token(&server);
    create(
        &server,
        json!({"name": "kept", "grant_type": "client_credentials", "client_id": "k",
               "client_secret": "kept-secret", "token_url": "https://login.kept.example/token"}),
    )
    .await;
    let before = listing(&server).await;
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("connections.yaml");

    std::fs::write(&file, "connections:\n  - name: [unclosed\n").unwrap();
    let broken = apply(&server, &file, &[]).await;
    assert!(!broken.ok);
    assert!(
        broken.stderr.contains("is neither YAML nor JSON"),
        "{}",
        broken.stderr
    );

    std::fs::write(
        &file,
        APPLY_FILE.replace("{env: BILLING_SECRET}", "written-in-the-file"),
    )
    .unwrap();
    let inline = apply(&server, &file, &[]).await;
    assert!(!inline.ok);
    assert!(
        inline.stderr.contains(
            "connection Billing, client_secret: secrets are never written into an apply file"
        ),
        "{}",
        inline.stderr
    );
    assert!(!inline.stderr.contains("written-in-the-file"));

    std::fs::write(&file, APPLY_FILE.replace("scopes:", "scope:")).unwrap();
    let unknown = apply(&server, &file, &[]).await;
    assert!(!unknown.ok);
    assert!(unknown.stderr.contains("scope"), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("[invalid_json]"),
        "{}",
        unknown.stderr
    );

    // The API's own refusals, in Keyport's error shape.
    let unknown_field = http
        .post(
            "/connections/import",
            Some(&admin),
            json!({"keyport_export": 1, "connections": [{"name": "x", "scope": "a"}]}),
        )
        .await
        .expect_error_code(400, "invalid_json", "an unknown field");
    assert!(unknown_field["message"].as_str().unwrap().contains("scope"));
    http.post(
        "/connections/import",
        Some(&admin),
        json!({"keyport_export": 2, "connections": []}),
    )
    .await
    .expect_error_code(400, "invalid_request", "another format");
    let sealed = http
        .post(
            "/connections/import?dry_run=false",
            Some(&admin),
            json!({"keyport_export": 1, "connections": [], "sealed": "-----BEGIN AGE ENCRYPTED FILE-----"}),
        )
        .await
        .expect_error_code(400, "invalid_request", "a sealed import");
    assert_eq!(sealed["field"], "sealed");
    http.send(
        "POST",
        "/connections/import",
        Some(&admin),
        Body::json_text("connections: [] # YAML is for the command line"),
    )
    .await
    .expect_error_code(400, "invalid_json", "YAML sent to the API");
    let no_recipient = http
        .get("/connections/export?with_secrets=true", Some(&admin))
        .await
        .expect_error_code(400, "invalid_request", "secrets without a recipient");
    assert_eq!(no_recipient["field"], "recipient");
    let bad_recipient = http
        .get(
            "/connections/export?with_secrets=true&recipient=AGE-SECRET-KEY-1XYZ",
            Some(&admin),
        )
        .await
        .expect_error_code(400, "invalid_request", "not a recipient");
    assert_eq!(bad_recipient["field"], "recipient");
    // Not an administrator: neither export nor import.
    let bot = server.token("bot-1", &["bots"]);
    http.get("/connections/export", Some(&bot))
        .await
        .expect_error_code(403, "forbidden", "a bot exporting");
    http.post(
        "/connections/import",
        Some(&bot),
        json!({"keyport_export": 1, "connections": []}),
    )
    .await
    .expect_error_code(403, "forbidden", "a bot importing");
    assert_eq!(listing(&server).await, before, "nothing was written");
    // Only the refusals' audit trail was read; the kept connection's secret is still its own.
    let exported = http
        .get("/connections/export", Some(&admin))
        .await
        .expect_json(200, "the export");
    assert!(!exported.to_string().contains("kept-secret"));
}

/// A secret store that refuses to store one value: an import failing part-way, after it
/// applied what came before.
struct RefusingSecrets {
    inner: Arc<dyn SecretStore>,
    refused: &'static str,
}

#[async_trait]
impl SecretStore for RefusingSecrets {
    async fn put_secret(
        &self,
        secret: &SecretRef,
        value: &ClientSecret,
    ) -> Result<(), SecretError> {
        if value.expose_secret() == self.refused {
            return Err(SecretError::Unavailable("injected by the test".into()));
        }
        self.inner.put_secret(secret, value).await
    }

    async fn get_secret(&self, secret: &SecretRef) -> Result<Option<ClientSecret>, SecretError> {
        self.inner.get_secret(secret).await
    }

    async fn delete_secret(&self, secret: &SecretRef) -> Result<(), SecretError> {
        self.inner.delete_secret(secret).await
    }
}

/// Neither back-end writes connections in one transaction with their secrets (Secrets Manager
/// is outside DynamoDB's), so an import applies one connection after the other and undoes what
/// it applied when one fails: created connections are deleted, changed ones get their
/// definition and secret back.
async fn a_failure_part_way_undoes_what_the_import_applied(backend: Backend) {
    let secrets = Arc::new(RefusingSecrets {
        inner: backend.secrets.clone(),
        refused: "refused-secret",
    });
    let settings = KeyportSettings::new(UrlPolicy::LocalDevelopment);
    let http = OutboundHttp::new(OutboundSettings::new(settings.url_policy)).unwrap();
    let oauth = OAuthClient::new(
        http,
        OAuthSettings {
            callback_url: CALLBACK_URL.parse().unwrap(),
            allow_password_grant: false,
        },
    );
    let keyport = Keyport::new(
        backend.store.clone(),
        secrets,
        Arc::new(backend.cipher()),
        oauth,
        settings,
    );
    let definition = |name: &str, description: &str, secret: &str| {
        json!({"name": name, "description": description, "grant_type": "client_credentials",
               "client_id": "c", "client_secret": secret,
               "token_url": "https://login.example.com/token", "scopes": ["api"]})
    };
    let kept = keyport
        .create_connection(
            &admin(),
            serde_json::from_value(definition("kept", "before", "kept-secret")).unwrap(),
        )
        .await
        .unwrap();
    let before =
        serde_json::to_value(keyport.export_connections(&admin(), None).await.unwrap()).unwrap();
    let document = || {
        serde_json::from_value::<ConnectionsDocument>(json!({"keyport_export": 1, "connections": [
            definition("kept", "after", "kept-secret-2"),
            definition("first new", "", "new-secret"),
            definition("second new", "", "refused-secret"),
        ]}))
        .unwrap()
    };
    let plan = keyport
        .import_connections(&admin(), document(), true)
        .await
        .unwrap();
    let actions: Vec<ImportAction> = plan.connections.iter().map(|s| s.action).collect();
    assert_eq!(
        actions,
        [
            ImportAction::Change,
            ImportAction::Create,
            ImportAction::Create
        ]
    );
    let failed = keyport
        .import_connections(&admin(), document(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, ServiceError::Conflict(message) if message.contains("was undone, nothing changed")),
        "{failed}"
    );
    let after =
        serde_json::to_value(keyport.export_connections(&admin(), None).await.unwrap()).unwrap();
    assert_eq!(after, before, "every definition is as it was");
    let secret = backend
        .secrets
        .get_secret(&SecretRef::client_secret(&kept.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret.expose_secret(), "kept-secret", "the secret is back");
}
