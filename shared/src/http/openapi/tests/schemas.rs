//! The schemas: valid JSON Schema 2020-12, real serializations valid against them, examples
//! valid and free of secrets, and the limits, patterns and enumerations they state the code's.

use std::collections::BTreeSet;

use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    assert_valid, deref, operation, problems, schema_named, schema_types, spec, validator,
};
use crate::domain::{
    ClientAuthMethod, Connection, ConnectionId, ConnectionInput, GrantType, Owner, StoredToken,
    Subject, TokenFailure, TokenHealth, TokenStatus, UrlPolicy,
};
use crate::http::ApiError;
use crate::service::{AdministeredConnection, ConnectionCheck, TokenView, UsableConnection};

#[test]
fn every_schema_is_json_schema_2020_12() {
    let spec = spec();
    let mut schemas: Vec<(String, &Value)> = spec["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, schema)| (name.clone(), schema))
        .collect();
    fn media_schemas<'a>(at: String, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "schema" {
                        out.push((at.clone(), child));
                    } else {
                        media_schemas(format!("{at}/{key}"), child, out);
                    }
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    media_schemas(format!("{at}/{index}"), child, out);
                }
            }
            _ => {}
        }
    }
    media_schemas("paths".into(), &spec["paths"], &mut schemas);
    for kind in ["responses", "parameters", "headers"] {
        media_schemas(kind.into(), &spec["components"][kind], &mut schemas);
    }
    assert!(schemas.len() > 40);
    for (at, schema) in schemas {
        let mut document = schema.as_object().expect("an object schema").clone();
        document.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        let document = Value::Object(document);
        if let Err(error) = jsonschema::meta::validate(&document) {
            panic!("{at}: {error}");
        }
        validator(&spec, schema);
    }
}

#[test]
fn connection_create_and_update_accept_the_same_fields() {
    let spec = spec();
    let create = schema_named(&spec, "ConnectionCreate");
    let update = schema_named(&spec, "ConnectionInput");
    assert_eq!(
        create["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        update["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    assert!(
        update.get("required").is_none(),
        "an update may change any subset"
    );
    // Every field the description accepts, with a value of each of its types, deserializes.
    fn samples(spec: &Value, schema: &Value, values: &mut Vec<Value>) {
        let schema = deref(spec, schema);
        for branch in ["oneOf", "anyOf"] {
            for item in schema[branch].as_array().into_iter().flatten() {
                samples(spec, item, values);
            }
        }
        if let Some(options) = schema["enum"].as_array() {
            values.extend(options.iter().cloned());
            return;
        }
        for t in schema_types(schema) {
            values.push(match t {
                "null" => Value::Null,
                "string" => json!("x"),
                "integer" => json!(1),
                "boolean" => json!(true),
                "array" => json!(["x"]),
                "object" => json!({"k": "v"}),
                other => panic!("{other}"),
            });
        }
    }
    for (field, schema) in update["properties"].as_object().unwrap() {
        let mut values = Vec::new();
        samples(&spec, schema, &mut values);
        assert!(!values.is_empty(), "{field}");
        for value in values {
            let body = json!({ field.as_str(): value });
            assert!(
                serde_json::from_value::<ConnectionInput>(body.clone()).is_ok(),
                "{body} is described but refused"
            );
        }
    }
    assert!(serde_json::from_value::<ConnectionInput>(json!({"colour": "red"})).is_err());
}

fn connection(name: &str) -> Connection {
    let input: ConnectionInput = serde_json::from_value(json!({
        "name": name, "grant_type": "authorization_code_pkce", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://login.acme.example/authorize",
        "token_url": "https://login.acme.example/token",
        "revocation_url": "https://login.acme.example/revoke",
        "scopes": "openid,api", "invited_roles": ["bots"], "provider_params": {"tenant": "t"},
        "authorization_params": {"prompt": "consent"}, "audience": "https://api.acme.example"
    }))
    .unwrap();
    let mut connection = Connection::create(input, Utc::now(), UrlPolicy::Production)
        .unwrap()
        .0;
    connection.version = 1;
    connection
}

/// `connection` as the connection routes answer it, with `token_health`.
fn answered(connection: Connection, token_health: TokenHealth) -> Value {
    serde_json::to_value(AdministeredConnection {
        connection,
        token_health,
    })
    .unwrap()
}

/// A stored token's metadata, for health summaries.
fn stored(owner: Owner, status: TokenStatus, failed: bool) -> StoredToken {
    let now = Utc::now();
    StoredToken {
        connection_id: ConnectionId::generate(),
        owner,
        status,
        token_type: "Bearer".into(),
        scope: None,
        expires_at: Some(now + chrono::Duration::minutes(5)),
        refresh_due_at: None,
        has_refresh_token: true,
        last_error: failed.then(|| TokenFailure {
            code: "invalid_grant".into(),
            message: "the provider refused the refresh token".into(),
            at: now,
        }),
        lease: None,
        issued_for: None,
        provider_asked_at: Some(now),
        grant_ends_at: None,
        grant_end_reported: false,
        filed_due_at: None,
        created_at: now,
        updated_at: now,
        sealed: vec![],
        version: 1,
    }
}

#[test]
fn serialized_connections_and_providers_match_their_schemas() {
    let spec = spec();
    let connection = answered(connection("Acme"), TokenHealth::without_tokens());
    assert_valid(&spec, "Connection", &connection);
    // With every nullable field of the health filled in, too.
    let shared = stored(Owner::Shared, TokenStatus::Valid, true);
    let user = stored(
        Owner::User(Subject::parse("alice").unwrap()),
        TokenStatus::NeedsReauthorization,
        true,
    );
    let health = TokenHealth::summarize(Some(&shared), [&user], false, Utc::now());
    assert!(health.shared.expires_at.is_some() && health.last_error.is_some());
    assert_valid(
        &spec,
        "Connection",
        &answered(self::connection("Acme"), health),
    );
    // Every described property is serialized: the schema requires them all.
    let described = schema_named(&spec, "Connection")["properties"]
        .as_object()
        .unwrap();
    assert_eq!(
        schema_named(&spec, "Connection")["required"]
            .as_array()
            .unwrap()
            .len(),
        described.len()
    );
    assert!(connection.get("client_secret").is_none());
    let providers = json!({"providers": crate::catalog::Catalog::builtin().providers()});
    assert!(providers["providers"].as_array().unwrap().len() > 3);
    assert_valid(&spec, "Providers", &providers);
}

#[test]
fn the_validator_catches_what_drifts() {
    let spec = spec();
    let mut drifted = answered(connection("Acme"), TokenHealth::without_tokens());
    drifted["surprise"] = json!(1);
    drifted.as_object_mut().unwrap().remove("token_url");
    drifted["created_at"] = json!("yesterday");
    drifted["id"] = json!("con_XYZ");
    drifted["token_health"]["shared"]["status"] = json!("fine");
    let found = problems(&spec, schema_named(&spec, "Connection"), &drifted);
    assert_eq!(found.len(), 5, "{found:?}");
    // The health is required, as every other field.
    drifted = answered(connection("Acme"), TokenHealth::without_tokens());
    drifted.as_object_mut().unwrap().remove("token_health");
    let found = problems(&spec, schema_named(&spec, "Connection"), &drifted);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[tokio::test]
async fn error_bodies_match_the_error_schema() {
    let spec = spec();
    for error in [
        ApiError::Unauthenticated("a bearer token is required".into()),
        ApiError::from(crate::domain::ValidationError::new(
            "token_url",
            "must use https",
        )),
        ApiError::Service(crate::service::ServiceError::NotFound("connection")),
        ApiError::Service(crate::service::ServiceError::RefreshInProgress),
        ApiError::bad_request("invalid_query", "unknown field `x`"),
    ] {
        let status = error.status();
        let response = error.into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_valid(&spec, "Error", &body);
        let declared = deref(
            &spec,
            &spec["components"]["responses"][match status.as_u16() {
                400 => "BadRequest",
                401 => "Unauthenticated",
                404 => "NotFound",
                503 => "Unavailable",
                other => panic!("{other}"),
            }],
        );
        let schema = &declared["content"]["application/json"]["schema"];
        assert!(
            problems(&spec, schema, &body).is_empty(),
            "{status}: {body}"
        );
    }
}

#[test]
fn token_views_and_service_answers_match_their_schemas() {
    let spec = spec();
    let mut extra = serde_json::Map::new();
    extra.insert("instance_url".into(), json!("https://acme.my.example.com"));
    for (owner, expires_at, scope, extra) in [
        (
            Owner::Shared,
            Some(Utc::now()),
            None,
            serde_json::Map::new(),
        ),
        (
            Owner::User(Subject::parse("alice@example.com").unwrap()),
            None,
            Some("openid api".to_owned()),
            extra,
        ),
    ] {
        let view = TokenView {
            access_token: secrecy::SecretString::from("at"),
            token_type: "Bearer".into(),
            expires_at,
            scope,
            connection_id: ConnectionId::generate(),
            owner,
            extra,
            min_valid_met: true,
        };
        assert_valid(&spec, "Token", &serde_json::to_value(&view).unwrap());
    }
    for check in [
        ConnectionCheck {
            ok: true,
            message: "the provider accepted the client's credentials".into(),
            error: None,
        },
        ConnectionCheck {
            ok: false,
            message: "the provider refused the client".into(),
            error: Some("invalid_client".into()),
        },
    ] {
        assert_valid(
            &spec,
            "ConnectionCheck",
            &serde_json::to_value(&check).unwrap(),
        );
    }
    let usable = UsableConnection {
        id: ConnectionId::generate(),
        name: "Acme".into(),
        description: String::new(),
        provider: "custom".into(),
        grant_type: GrantType::ClientCredentials,
        shared_token: Some(TokenStatus::NeedsReauthorization),
        user_token: None,
        shared_grant_ends_at: Some(Utc::now()),
        user_grant_ends_at: None,
    };
    assert_valid(
        &spec,
        "MyConnections",
        &json!({"connections": [serde_json::to_value(&usable).unwrap()]}),
    );
}

#[test]
fn every_example_is_valid_and_names_no_secret() {
    let spec = spec();
    let mut checked = 0;
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        let examples = schema
            .get("example")
            .into_iter()
            .chain(schema["examples"].as_array().into_iter().flatten());
        for example in examples {
            let found = problems(&spec, schema, example);
            assert!(found.is_empty(), "{name}'s example: {}", found.join("\n"));
            checked += 1;
            // A secret's place holds a placeholder, never a value.
            for field in [
                "client_secret",
                "private_key",
                "password",
                "access_token",
                "refresh_token",
            ] {
                if let Some(value) = example.get(field) {
                    let text = value.as_str().unwrap_or_default();
                    assert!(
                        text.starts_with('<') && text.ends_with('>'),
                        "{name}'s example gives {field} a value: {value}"
                    );
                }
            }
        }
    }
    // The main shapes carry one.
    for name in [
        "Connection",
        "TokenHealth",
        "ConnectionCreate",
        "ConnectionInput",
        "Token",
        "Error",
    ] {
        assert!(schema_named(&spec, name).get("example").is_some(), "{name}");
    }
    assert!(checked >= 10, "{checked} examples");
}

#[test]
fn the_connection_id_pattern_is_the_codes_rule() {
    let spec = spec();
    let schema = schema_named(&spec, "ConnectionId");
    let check = validator(&spec, schema);
    for _ in 0..20 {
        let id = ConnectionId::generate();
        assert!(check.is_valid(&json!(id.as_str())), "{id}");
    }
    let good = ConnectionId::generate().as_str().to_owned();
    let bad = [
        good.to_uppercase(),
        good.replace("con_", "conn_"),
        format!("{good}0"),
        good[..good.len() - 1].to_owned(),
        format!("{good}\n"),
        format!(" {good}"),
        format!("{}g", &good[..good.len() - 1]),
        "con_".to_owned(),
    ];
    for candidate in bad {
        assert!(ConnectionId::parse(&candidate).is_err(), "{candidate:?}");
        assert!(!check.is_valid(&json!(candidate)), "{candidate:?}");
    }
}

#[test]
fn enumerations_are_the_codes_variants() {
    fn described(spec: &Value, name: &str) -> Vec<Value> {
        schema_named(spec, name)["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not an enumeration"))
            .clone()
    }
    fn wire<T: serde::Serialize>(values: &[T]) -> Vec<Value> {
        values
            .iter()
            .map(|v| serde_json::to_value(v).unwrap())
            .collect()
    }
    /// Each described value reads back as `T`.
    fn read_back<T: serde::de::DeserializeOwned>(spec: &Value, name: &str) -> usize {
        let values = described(spec, name);
        for value in &values {
            serde_json::from_value::<T>(value.clone())
                .unwrap_or_else(|_| panic!("{name}: {value}"));
        }
        values.len()
    }
    let spec = spec();
    assert_eq!(described(&spec, "GrantType"), wire(&GrantType::ALL));
    assert_eq!(
        described(&spec, "ClientAuthMethod"),
        wire(&ClientAuthMethod::ALL)
    );
    assert_eq!(
        read_back::<crate::domain::ConnectionStatus>(&spec, "ConnectionStatus"),
        2
    );
    assert_eq!(read_back::<TokenStatus>(&spec, "TokenStatus"), 4);
    assert_eq!(
        described(&spec, "TokenHealthStatus"),
        wire(&[
            crate::domain::TokenHealthStatus::Valid,
            crate::domain::TokenHealthStatus::ExpiringSoon,
            crate::domain::TokenHealthStatus::Expired,
            crate::domain::TokenHealthStatus::RefreshFailing,
            crate::domain::TokenHealthStatus::GrantEnding,
            crate::domain::TokenHealthStatus::NeedsReauthorization,
            crate::domain::TokenHealthStatus::NotAuthorized,
        ])
    );
    assert_eq!(
        read_back::<crate::domain::PlaceholderKind>(&spec, "PlaceholderKind"),
        3
    );
    assert_eq!(
        read_back::<crate::domain::AuditAction>(&spec, "AuditAction"),
        11
    );
    // The owner a caller asks for is parsed, not deserialized.
    let owners = described(&spec, "OwnerRequest");
    assert_eq!(owners, [json!("shared"), json!("user")]);
    for owner in owners {
        owner
            .as_str()
            .unwrap()
            .parse::<crate::service::OwnerRequest>()
            .unwrap();
    }
    assert_eq!(schema_named(&spec, "OwnerRequest")["default"], "shared");
}

/// A create request that passes validation, to change one field of.
fn valid_create() -> Value {
    json!({
        "name": "Acme", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
        "token_url": "https://login.acme.example/token"
    })
}

/// Whether `Connection::create` accepts `body`, and which field it refuses otherwise.
fn create(body: &Value) -> Result<(), String> {
    let input: ConnectionInput = serde_json::from_value(body.clone()).map_err(|e| e.to_string())?;
    Connection::create(input, Utc::now(), UrlPolicy::Production)
        .map(drop)
        .map_err(|e| e.field)
}

#[test]
fn the_described_limits_and_patterns_are_the_validations() {
    let spec = spec();
    let properties = &schema_named(&spec, "ConnectionInput")["properties"];
    // A value of `length` characters each field accepts when short enough.
    let filler = |field: &str, length: usize| -> String {
        match field {
            "scope_separator" => ",".repeat(length),
            "resource" => format!("https://r.example/{}", "a".repeat(length - 18)),
            _ => "a".repeat(length),
        }
    };
    let mut limited = BTreeSet::new();
    for (field, schema) in properties.as_object().unwrap() {
        let Some(max) = schema["maxLength"].as_u64() else {
            continue;
        };
        limited.insert(field.as_str());
        let max = max as usize;
        let check = validator(&spec, schema);
        for (length, accepted) in [(max, true), (max + 1, false)] {
            let value = filler(field, length);
            assert_eq!(
                check.is_valid(&json!(value)),
                accepted,
                "{field} of {length}"
            );
            let mut body = valid_create();
            body[field] = json!(value);
            let outcome = create(&body);
            assert_eq!(
                outcome.is_ok(),
                accepted,
                "{field} of {length} characters: {outcome:?}"
            );
            if !accepted {
                assert_eq!(outcome, Err(field.clone()));
            }
        }
    }
    assert_eq!(
        limited,
        [
            "audience",
            "client_id",
            "description",
            "name",
            "resource",
            "scope_separator",
            "username"
        ]
        .into()
    );
    // Patterns: what they refuse, the code refuses too.
    let name = validator(&spec, &properties["name"]);
    for (value, accepted) in [
        ("Acme CRM", true),
        ("a.b_c-d", true),
        ("   ", false),
        ("a/b", false),
    ] {
        assert_eq!(name.is_valid(&json!(value)), accepted, "{value:?}");
        let mut body = valid_create();
        body["name"] = json!(value);
        assert_eq!(create(&body).is_ok(), accepted, "{value:?}");
    }
    let provider = validator(&spec, &properties["provider"]);
    for (value, accepted) in [
        ("custom", true),
        ("google-workspace", true),
        ("Custom", false),
        ("", false),
    ] {
        assert_eq!(provider.is_valid(&json!(value)), accepted, "{value:?}");
        assert_eq!(
            crate::domain::ProviderKey::parse(value).is_ok(),
            accepted,
            "{value:?}"
        );
    }
    let extras = validator(&spec, &properties["token_response_extras"]);
    let many = |n: usize| json!((0..n).map(|i| format!("field{i}")).collect::<Vec<_>>());
    for (value, accepted) in [
        (many(32), true),
        (many(33), false),
        (json!(["a".repeat(64)]), true),
        (json!(["a".repeat(65)]), false),
        (json!(["a b"]), false),
    ] {
        assert_eq!(extras.is_valid(&value), accepted, "{value}");
        let mut body = valid_create();
        body["token_response_extras"] = value.clone();
        assert_eq!(create(&body).is_ok(), accepted, "{value}");
    }
}

#[test]
fn the_described_token_validity_limit_is_the_codes() {
    let spec = spec();
    let op = operation(&spec, "GET", "/connections/{id}/token");
    let parameter = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "min_valid_seconds")
        .expect("min_valid_seconds");
    assert_eq!(
        parameter["schema"]["maximum"],
        crate::http::routes::token::MAX_MIN_VALID_SECONDS
    );
}
