//! The OpenAPI description cannot drift from the code: its routes are the routes declared in
//! `routes.rs`, every reference resolves, and real serializations of each response type
//! validate against its schema.

use std::collections::BTreeSet;

use axum::response::IntoResponse;
use serde_json::Value;

use super::{ApiError, OPENAPI_JSON};
use crate::domain::{Connection, ConnectionInput, UrlPolicy};

fn spec() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// `(METHOD, path)` for every `.route("<path>", <method>(..).<method>(..))` in routes.rs.
fn routes_in_code() -> BTreeSet<(String, String)> {
    let source = include_str!("routes.rs");
    let mut routes = BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        let Some(call) = call.trim_start().strip_prefix('"') else {
            continue;
        };
        let (path, rest) = call.split_once('"').expect("a quoted path");
        // The handler expression runs to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let mut end = rest.len();
        for (index, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = index;
                        break;
                    }
                }
                _ => {}
            }
        }
        let handlers = &rest[..end];
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = handlers
                .match_indices(&format!("{method}("))
                .any(|(at, _)| {
                    at == 0 || !handlers[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
            if called {
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

fn routes_in_spec(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_description_is_openapi_3_1() {
    assert!(spec()["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn the_described_routes_are_exactly_the_served_routes() {
    let code = routes_in_code();
    assert!(code.len() >= 13, "routes.rs parsed into only {code:?}");
    let mut described = routes_in_spec(&spec());
    assert!(
        described.remove(&("GET".to_owned(), "/openapi.json".to_owned())),
        "the local server's /openapi.json is described"
    );
    assert_eq!(described, code);
}

#[test]
fn only_the_callback_and_the_description_are_public() {
    let spec = spec();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let public = operation.get("security") == Some(&Value::Array(vec![]));
            assert_eq!(
                public,
                path == "/oauth/callback" || path == "/openapi.json",
                "{method} {path}"
            );
        }
    }
}

fn resolve<'a>(spec: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
    spec["components"]["schemas"]
        .get(name)
        .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
}

fn each_ref(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|v| each_ref(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| each_ref(v, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let spec = spec();
    let mut references = Vec::new();
    each_ref(&spec, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        resolve(&spec, &reference);
    }
}

/// The subset of JSON Schema the description uses: type (one or a list), enum, properties,
/// required, additionalProperties (false or a schema), items, pattern-free strings, $ref.
fn validate(spec: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return validate(spec, resolve(spec, reference), value, at);
    }
    let mut problems = Vec::new();
    let type_name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let accepted = allowed.is_empty()
        || allowed.contains(&type_name)
        || (type_name == "integer" && allowed.contains(&"number"));
    if !accepted {
        problems.push(format!("{at}: {type_name} is not {allowed:?}"));
        return problems;
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Value::Object(object) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                problems.push(format!("{at}: required {name} is missing"));
            }
        }
        for (name, field) in object {
            match (
                properties.and_then(|p| p.get(name)),
                schema.get("additionalProperties"),
            ) {
                (Some(field_schema), _) => {
                    problems.extend(validate(spec, field_schema, field, &format!("{at}.{name}")))
                }
                (None, Some(Value::Bool(false))) => {
                    problems.push(format!("{at}: {name} is not described"))
                }
                (None, Some(extra @ Value::Object(_))) => {
                    problems.extend(validate(spec, extra, field, &format!("{at}.{name}")))
                }
                (None, _) => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            problems.extend(validate(spec, item_schema, item, &format!("{at}[{index}]")));
        }
    }
    problems
}

fn assert_valid(schema_name: &str, value: &Value) {
    let spec = spec();
    let schema = &spec["components"]["schemas"][schema_name];
    assert!(schema.is_object(), "no schema {schema_name}");
    let problems = validate(&spec, schema, value, schema_name);
    assert!(problems.is_empty(), "{value}\n{}", problems.join("\n"));
}

fn connection() -> Connection {
    let input: ConnectionInput = serde_json::from_value(serde_json::json!({
        "name": "Acme", "grant_type": "authorization_code_pkce", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://login.acme.example/authorize", "token_url": "https://login.acme.example/token",
        "scopes": "openid,api", "invited_roles": ["bots"], "provider_params": {"tenant": "t"}
    }))
    .unwrap();
    let mut connection = Connection::create(input, chrono::Utc::now(), UrlPolicy::Production)
        .unwrap()
        .0;
    connection.version = 1;
    connection
}

#[test]
fn serialized_connections_and_providers_match_their_schemas() {
    assert_valid("Connection", &serde_json::to_value(connection()).unwrap());
    let list = serde_json::json!({"connections": [serde_json::to_value(connection()).unwrap()], "next_cursor": null});
    assert_valid("ConnectionList", &list);
    let providers = serde_json::json!({"providers": serde_json::to_value(crate::catalog::Catalog::builtin().providers()).unwrap()});
    assert_valid("Providers", &providers);
}

#[test]
fn the_validator_catches_what_drifts() {
    let mut drifted = serde_json::to_value(connection()).unwrap();
    drifted["surprise"] = serde_json::json!(1);
    drifted.as_object_mut().unwrap().remove("token_url");
    let spec = spec();
    let problems = validate(
        &spec,
        &spec["components"]["schemas"]["Connection"],
        &drifted,
        "Connection",
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[tokio::test]
async fn error_bodies_match_the_error_schema() {
    for error in [
        ApiError::Unauthenticated("a bearer token is required".into()),
        ApiError::from(crate::domain::ValidationError::new(
            "token_url",
            "must use https",
        )),
        ApiError::Service(crate::service::ServiceError::NotFound("connection")),
    ] {
        let response = error.into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_valid("Error", &serde_json::from_slice(&body).unwrap());
    }
}

#[test]
fn token_views_match_the_token_schema() {
    use secrecy::SecretString;
    let view = crate::service::TokenView {
        access_token: SecretString::from("at"),
        token_type: "Bearer".into(),
        expires_at: Some(chrono::Utc::now()),
        scope: None,
        connection_id: crate::domain::ConnectionId::generate(),
        owner: crate::domain::Owner::Shared,
        extra: serde_json::Map::new(),
    };
    assert_valid("Token", &serde_json::to_value(&view).unwrap());
}
