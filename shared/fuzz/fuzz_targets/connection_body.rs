//! A JSON body of `POST /connections` or `PATCH /connections/{id}`: the HTTP layer's JSON
//! extractor into `ConnectionInput`, then what the use cases do with it short of storage: for a
//! create, the catalog's defaults (`Provider::fill_defaults`, as `resolve_provider` applies them
//! for a catalog provider; discovery for a `custom` issuer needs the network and is left out)
//! and `Connection::create`; for a change, `Connection::apply` to an existing connection. Both
//! URL policies.
//!
//! Beyond "no panic": the outcome (the connection, or the error's text) does not depend on the
//! values of `client_secret`, `private_key` and `password`, only on their presence; a valid
//! connection round-trips through its JSON form (responses and storage) and is a fixed point of
//! an empty change.
#![no_main]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use keyport_shared::catalog::Catalog;
use keyport_shared::domain::{Connection, ConnectionInput, ProviderKey, UrlPolicy};
use keyport_shared::fuzzing::connection_body;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET_FIELDS: [&str; 3] = ["client_secret", "private_key", "password"];
const POLICIES: [UrlPolicy; 2] = [UrlPolicy::Production, UrlPolicy::LocalDevelopment];

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

/// The connection a `PATCH` changes.
fn existing() -> &'static Connection {
    static EXISTING: OnceLock<Connection> = OnceLock::new();
    EXISTING.get_or_init(|| {
        let input = connection_body(
            br#"{"name": "Acme CRM", "grant_type": "authorization_code_pkce", "client_id": "abc",
                 "client_secret": "s3cret", "authorization_url": "https://login.acme.example/authorize",
                 "token_url": "https://login.acme.example/token", "scopes": "openid, offline_access",
                 "invited_roles": ["bots"]}"#,
        )
        .expect("a valid body");
        let (mut connection, _) =
            Connection::create(input, now(), UrlPolicy::Production).expect("a valid connection");
        connection.version = 3;
        connection
    })
}

/// What `create_connection` does before storing, less discovery.
fn create(mut input: ConnectionInput, policy: UrlPolicy) -> Result<Connection, String> {
    let key = ProviderKey::parse(input.provider.as_deref().unwrap_or(ProviderKey::CUSTOM))
        .map_err(|e| e.to_string())?;
    if key.as_str() != ProviderKey::CUSTOM {
        let provider = Catalog::builtin()
            .get(key.as_str())
            .ok_or_else(|| "provider: is not in the catalog".to_owned())?;
        provider
            .fill_defaults(&mut input)
            .map_err(|e| e.to_string())?;
    }
    Connection::create(input, now(), policy)
        .map(|(connection, _secrets)| connection)
        .map_err(|e| e.to_string())
}

fn update(input: ConnectionInput, policy: UrlPolicy) -> Result<Connection, String> {
    existing()
        .apply(input, now(), policy)
        .map(|(connection, _secrets)| connection)
        .map_err(|e| e.to_string())
}

fn check_connection(connection: &Connection, policy: UrlPolicy) {
    let json = serde_json::to_vec(connection).expect("a connection serialises");
    let back: Connection = serde_json::from_slice(&json).expect("a connection reads back");
    assert_eq!(&back, connection, "the JSON form changed the connection");
    let (unchanged, _) = connection
        .apply(ConnectionInput::default(), now(), policy)
        .expect("an empty change to a valid connection is valid");
    assert_eq!(
        &unchanged, connection,
        "an empty change changed the connection"
    );
}

/// The message without serde's position, which moves with the length of the values before it.
fn without_position(message: &str) -> &str {
    message
        .find(" at line ")
        .map_or(message, |cut| &message[..cut])
}

/// Parses `body` and runs every path; the outcomes, as text, for comparison.
fn outcomes(body: &[u8]) -> Vec<String> {
    let input = match connection_body(body) {
        Ok(input) => input,
        Err(error) => {
            let status = error.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "a bad body is a 4xx, not {status}"
            );
            return vec![format!(
                "{status} {} {}",
                error.code(),
                without_position(&error.message())
            )];
        }
    };
    let mut seen = vec![format!("{input:?}")];
    for policy in POLICIES {
        for (path, result) in [
            ("create", create(reparse(body), policy)),
            ("update", update(reparse(body), policy)),
        ] {
            seen.push(match result {
                Ok(mut connection) => {
                    check_connection(&connection, policy);
                    // The id of a new connection is random.
                    if path == "create" {
                        connection.id = existing().id.clone();
                    }
                    format!(
                        "{path} ok {}",
                        serde_json::to_string(&connection).expect("JSON")
                    )
                }
                Err(error) => format!("{path} {error}"),
            });
        }
    }
    seen
}

fn reparse(body: &[u8]) -> ConnectionInput {
    connection_body(body).expect("a body that parsed once parses again")
}

fuzz_target!(|body: &[u8]| {
    let _ = outcomes(body);
    // The same body with other secret values (as long, never empty when they were not): the
    // same outcomes.
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let plain = outcomes(&serde_json::to_vec(&fields).expect("JSON"));
    for name in SECRET_FIELDS {
        if let Some(Value::String(secret)) = fields.get_mut(name) {
            *secret = "x".repeat(secret.len());
        }
    }
    let hidden = outcomes(&serde_json::to_vec(&fields).expect("JSON"));
    assert_eq!(plain, hidden, "a secret value changed an outcome");
});
