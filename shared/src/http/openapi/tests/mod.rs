//! The generated description, held to the code: its routes are exactly the routers' (each
//! function's, and the local server's), its documents and schemas are valid, its examples and
//! limits are the code's, and real answers of the real router match it.

mod answers;
mod design;
mod document;
mod readme;
mod routes;
mod schemas;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::header;
use axum::http::request::Parts;
use serde_json::Value;

use crate::domain::{Principal, Role, Subject, UrlPolicy};
use crate::http::Authenticator;
use crate::service::{Keyport, KeyportSettings};

pub(super) const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The description as the local server serves it.
fn spec() -> Value {
    serde_json::from_str(super::json()).expect("the description is JSON")
}

/// `(METHOD, path, operation)` of every operation in `spec`.
fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (key, operation) in item.as_object().expect("a path item") {
            if METHODS.contains(&key.as_str()) {
                found.push((key.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

/// The JSON types `schema` names.
fn schema_types(schema: &Value) -> std::collections::BTreeSet<&str> {
    match &schema["type"] {
        Value::String(t) => [t.as_str()].into(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => std::collections::BTreeSet::new(),
    }
}

/// Follows `$ref`s (local JSON pointers) until a non-reference.
fn deref<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => deref(spec, resolve(spec, reference)),
        None => value,
    }
}

fn resolve<'a>(spec: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("$ref {reference} is not local"));
    spec.pointer(pointer)
        .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
}

fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> &'a Value {
    let found = &spec["paths"][path][method.to_lowercase()];
    assert!(found.is_object(), "{method} {path} is not described");
    found
}

/// The operation's parameters, path-level ones included, by `(in, name)`.
fn parameters<'a>(
    spec: &'a Value,
    path: &str,
    op: &'a Value,
) -> BTreeMap<(String, String), &'a Value> {
    let mut found = BTreeMap::new();
    for list in [&spec["paths"][path]["parameters"], &op["parameters"]] {
        for parameter in list.as_array().into_iter().flatten() {
            let parameter = deref(spec, parameter);
            let key = (
                parameter["in"].as_str().expect("in").to_owned(),
                parameter["name"].as_str().expect("name").to_owned(),
            );
            assert!(
                found.insert(key.clone(), parameter).is_none(),
                "{path}: {key:?} twice"
            );
        }
    }
    found
}

fn schema_named<'a>(spec: &'a Value, name: &str) -> &'a Value {
    let schema = &spec["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

/// A validator for `schema`, whose `$ref`s point into the description's components.
fn validator(spec: &Value, schema: &Value) -> jsonschema::Validator {
    let mut document = match schema {
        Value::Object(map) => map.clone(),
        Value::Bool(_) => panic!("boolean schemas are not used"),
        other => panic!("not a schema: {other}"),
    };
    document.insert("components".into(), spec["components"].clone());
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&Value::Object(document))
        .expect("a valid schema")
}

fn problems(spec: &Value, schema: &Value, value: &Value) -> Vec<String> {
    validator(spec, schema)
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(spec: &Value, name: &str, value: &Value) {
    let found = problems(spec, schema_named(spec, name), value);
    assert!(found.is_empty(), "{name} {value}\n{}", found.join("\n"));
}

fn each_ref<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference);
            }
            map.values().for_each(|v| each_ref(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| each_ref(v, found)),
        _ => {}
    }
}

/// Bearer tokens named after who they stand for; anything else does not verify.
struct NamedCallers;

#[async_trait::async_trait]
impl Authenticator for NamedCallers {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, String> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or("a bearer token is required")?;
        let name = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("the Authorization header is not a bearer token")?;
        let roles: &[&str] = match name {
            "admin" => &["keyport-admins"],
            "bot" => &["bots"],
            "stranger" => &["others"],
            _ => return Err("the bearer token does not verify".into()),
        };
        Ok(principal(name, roles))
    }
}

fn principal(subject: &str, roles: &[&str]) -> Principal {
    Principal::new(
        Subject::parse(subject).unwrap(),
        roles.iter().map(|r| Role::parse(r).unwrap()),
    )
}

/// Keyport over a fresh embedded back-end (kept while the directory lives), in production URL
/// policy, with one allowed redirect host.
fn embedded_keyport() -> (Arc<Keyport>, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let backends = crate::config::embedded_backends(data.path()).unwrap();
    let mut settings = KeyportSettings::new(UrlPolicy::Production);
    settings
        .redirect_allow_list
        .insert("app.example.com".into());
    let keyport = Arc::new(crate::service::keyport_for_tests(backends, settings));
    (keyport, data)
}
