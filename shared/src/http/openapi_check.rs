//! `shared/openapi.json` cannot drift from the code. Its operations are exactly the routes
//! declared in `routes.rs`; what each handler extracts (caller, connection id, query struct,
//! JSON body) and returns shows up in the operation's security, parameters, request body and
//! responses; the request schemas name exactly the fields the request structs accept; every
//! reference resolves and every schema is valid JSON Schema 2020-12; and real responses, from the
//! real router over an embedded back-end and from real serializations, carry statuses, headers
//! and bodies the description declares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use lambda_http::tower::ServiceExt;
use serde_json::{Value, json};

use super::{ApiError, Authenticator, Function, MAX_BODY_BYTES, OPENAPI_JSON};
use crate::domain::{
    ClientAuthMethod, Connection, ConnectionId, ConnectionInput, GrantType, Owner, Principal, Role,
    StoredToken, Subject, TokenSecrets, TokenStatus, UrlPolicy,
};
use crate::ports::{Expect, TokenKey};
use crate::service::{ConnectionCheck, Keyport, KeyportSettings, TokenView, UsableConnection};

const ROUTES_RS: &str = include_str!("routes.rs");
const CONNECTION_RS: &str = include_str!("../domain/connection.rs");
const TOKEN_RS: &str = include_str!("../domain/token.rs");
const PROVIDER_RS: &str = include_str!("../domain/provider.rs");

const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];
/// Served by the local server next to the functions' routes, not declared in `routes.rs`.
const LOCAL_ONLY: &str = "/openapi.json";

fn spec() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

// ---------------------------------------------------------------------------------------------
// Reading the code: route declarations, handler signatures, struct fields and enum variants.
// ---------------------------------------------------------------------------------------------

/// The text inside the brackets that open just before `text`, up to the matching close.
fn inside(text: &str, open: char, close: char) -> &str {
    let mut depth = 1;
    for (index, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return &text[..index];
            }
        }
    }
    panic!("unbalanced {open}{close} in {text:.80}")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Where `name(` is called as a free function (not a method, not part of a longer name).
fn free_calls<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let pattern = format!("{name}(");
    text.match_indices(&pattern)
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| is_ident(c) || c == '.'))
        .map(|(at, _)| &text[at + pattern.len()..])
        .collect()
}

/// Like `free_calls`, and also as a method (`.get(` chained on a method router).
fn calls<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let pattern = format!("{name}(");
    text.match_indices(&pattern)
        .filter(|(at, _)| !text[..*at].ends_with(is_ident))
        .map(|(at, _)| &text[at + pattern.len()..])
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Declared {
    method: String,
    path: String,
    handler: String,
}

/// Every `(METHOD, path, handler)` of `.route("<path>", get(a).post(b)…)` in `source`.
fn declared_routes(source: &str) -> Vec<Declared> {
    let mut routes = Vec::new();
    for call in source.split(".route(").skip(1) {
        let arguments = inside(call, '(', ')');
        let (path, handlers) = arguments
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split_once('"'))
            .unwrap_or_else(|| panic!("a .route( without a literal path: {arguments}"));
        let mut found = false;
        for method in METHODS {
            for rest in calls(handlers, method) {
                found = true;
                routes.push(Declared {
                    method: method.to_uppercase(),
                    path: path.to_owned(),
                    handler: inside(rest, '(', ')').trim().to_owned(),
                });
            }
        }
        assert!(found, "no method router in .route(\"{path}\", {handlers})");
    }
    routes.sort();
    routes
}

/// Routing forms the parser above does not read; using one must update this check.
fn unread_routing_forms(source: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for method in [
        ".route_service(",
        ".nest(",
        ".nest_service(",
        "MethodFilter",
    ] {
        if source.contains(method) {
            found.push(method);
        }
    }
    for function in ["any", "on", "any_service", "get_service", "post_service"] {
        if !free_calls(source, function).is_empty() {
            found.push(function);
        }
    }
    found
}

fn routes_in_code() -> BTreeSet<(String, String)> {
    declared_routes(ROUTES_RS)
        .into_iter()
        .map(|d| (d.method, d.path))
        .collect()
}

/// `(METHOD, path)` of every operation in the description.
fn routes_in_spec(spec: &Value) -> BTreeSet<(String, String)> {
    operations(spec)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

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

/// The signature of handler `name`: from `fn name(` to the `{` of its body, and the body.
fn handler(source: &str, name: &str) -> (String, String) {
    let start = source
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("no fn {name} in routes.rs"));
    let rest = &source[start..];
    let open = rest.find('{').expect("a body");
    let body = inside(&rest[open + 1..], '{', '}');
    (rest[..open].to_owned(), body.to_owned())
}

/// The identifier right after `marker` in `text`, e.g. `ApiQuery<` → `ListQuery`.
fn ident_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let at = text.find(marker)? + marker.len();
    let rest = &text[at..];
    Some(&rest[..rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len())])
}

/// The attributes and the `name: Type` lines of `struct name { … }` (or the variants of
/// `enum name { … }`) in `source`.
fn item_body(source: &str, keyword: &str, name: &str) -> (Vec<String>, Vec<(String, String)>) {
    let needle = format!("{keyword} {name} {{");
    let at = source
        .find(&needle)
        .unwrap_or_else(|| panic!("no `{needle}` in the source"));
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let attributes = source[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .take_while(|line| line.starts_with("#[") || line.starts_with("///"))
        .filter(|line| line.starts_with("#["))
        .map(str::to_owned)
        .collect();
    let body = inside(&source[at + needle.len()..], '{', '}');
    let members = body
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//") && !line.starts_with("#["))
        .map(|line| {
            let line = line
                .strip_prefix("pub ")
                .unwrap_or(line)
                .trim_end_matches(',');
            match line.split_once(':') {
                Some((field, rust_type)) => (field.trim().to_owned(), rust_type.trim().to_owned()),
                None => (line.trim().to_owned(), String::new()),
            }
        })
        .collect();
    (attributes, members)
}

fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (index, c) in camel.chars().enumerate() {
        if c.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The JSON types serde accepts for a field of `rust_type` (for the types request structs use).
fn json_types(rust_type: &str) -> BTreeSet<&'static str> {
    let (inner, optional) = match rust_type
        .strip_prefix("Option<")
        .and_then(|t| t.strip_suffix('>'))
    {
        Some(inner) => (inner, true),
        None => (rust_type, false),
    };
    let head = &inner[..inner.find(|c: char| !is_ident(c)).unwrap_or(inner.len())];
    let mut types: BTreeSet<&str> = match head {
        "String" | "ClientSecret" | "ConnectionStatus" => ["string"].into(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => ["integer"].into(),
        "bool" => ["boolean"].into(),
        "Vec" | "BTreeSet" => ["array"].into(),
        "BTreeMap" | "HashMap" => ["object"].into(),
        "ScopesInput" => ["string", "array"].into(),
        other => panic!("openapi_check does not know how serde reads {other}; teach json_types"),
    };
    if optional {
        types.insert("null");
    }
    types
}

fn integer_max(rust_type: &str) -> Option<u64> {
    let inner = rust_type
        .strip_prefix("Option<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(rust_type);
    match inner {
        "u8" => Some(u8::MAX.into()),
        "u16" => Some(u16::MAX.into()),
        "u32" => Some(u32::MAX.into()),
        "u64" => Some(u64::MAX),
        _ => None,
    }
}

fn schema_types(schema: &Value) -> BTreeSet<&str> {
    match &schema["type"] {
        Value::String(t) => [t.as_str()].into(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => BTreeSet::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the description.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// (a) the document; (b) its routes are the code's routes; (c) path parameters.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_description_is_openapi_3_1_of_this_version() {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(spec["info"]["title"], "Keyport");
}

#[test]
fn the_route_reader_reads_chained_method_routers() {
    let source = r#"
        Router::new()
            .route("/a", get(list_a))
            .route(
                "/a/{id}",
                get(read_a)
                    .patch(change_a)
                    .delete(delete_a),
            )
            .route("/b", post(make_b).get(list_b));
        let x = parts.extensions.get::<Thing>();
        let y = budget(3);
    "#;
    let read: Vec<(String, String, String)> = declared_routes(source)
        .into_iter()
        .map(|d| (d.method, d.path, d.handler))
        .collect();
    let expected = [
        ("DELETE", "/a/{id}", "delete_a"),
        ("GET", "/a", "list_a"),
        ("GET", "/a/{id}", "read_a"),
        ("GET", "/b", "list_b"),
        ("PATCH", "/a/{id}", "change_a"),
        ("POST", "/b", "make_b"),
    ]
    .map(|(m, p, h)| (m.to_owned(), p.to_owned(), h.to_owned()));
    assert_eq!(read, expected);
    assert_eq!(unread_routing_forms(source), Vec::<&str>::new());
    assert_eq!(
        unread_routing_forms("Router::new().route(\"/x\", any(h)).nest(\"/y\", r)"),
        vec![".nest(", "any"]
    );
}

#[test]
fn the_described_routes_are_exactly_the_served_routes() {
    assert_eq!(
        unread_routing_forms(ROUTES_RS),
        Vec::<&str>::new(),
        "routes.rs declares routes in a form this check does not read"
    );
    let code = routes_in_code();
    assert!(code.len() >= 13, "routes.rs parsed into only {code:?}");
    let mut described = routes_in_spec(&spec());
    assert!(
        described.remove(&("GET".to_owned(), LOCAL_ONLY.to_owned())),
        "the local server's GET {LOCAL_ONLY} is described"
    );
    let missing: Vec<_> = code.difference(&described).collect();
    let extra: Vec<_> = described.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not described: {missing:?}; described but not served: {extra:?}"
    );
}

#[test]
fn a_route_missing_from_the_description_is_caught() {
    let mut spec = spec();
    spec["paths"]["/connections/{id}"]
        .as_object_mut()
        .unwrap()
        .remove("patch");
    let mut described = routes_in_spec(&spec);
    described.remove(&("GET".to_owned(), LOCAL_ONLY.to_owned()));
    assert_ne!(described, routes_in_code());
}

#[test]
fn path_parameters_use_the_routers_syntax_and_are_all_declared() {
    let spec = spec();
    for (method, path, op) in operations(&spec) {
        for segment in path.split('/') {
            assert!(
                !segment.starts_with(':') && !segment.starts_with('*'),
                "{path}: axum 0.8 and OpenAPI both write parameters as {{name}}"
            );
        }
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let declared = parameters(&spec, &path, op);
        let in_path: BTreeSet<String> = declared
            .iter()
            .filter(|((location, _), _)| location == "path")
            .map(|((_, name), parameter)| {
                assert_eq!(parameter["required"], true, "{method} {path}: {name}");
                name.clone()
            })
            .collect();
        assert_eq!(in_template, in_path, "{method} {path}");
    }
}

#[test]
fn the_connection_id_pattern_is_the_codes_rule() {
    let spec = spec();
    let parameter = &spec["components"]["parameters"]["ConnectionId"];
    assert_eq!(parameter["name"], "id");
    let schema = &parameter["schema"];
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
    // Every id in a response body carries the same rule.
    for (name, field) in [
        ("Connection", "id"),
        ("UsableConnection", "id"),
        ("Token", "connection_id"),
    ] {
        assert_eq!(
            schema_named(&spec, name)["properties"][field]["pattern"],
            schema["pattern"],
            "{name}.{field}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What each handler extracts and returns shows in its operation.
// ---------------------------------------------------------------------------------------------

/// The response schema a handler's `Json<T>` is described by.
fn schema_for_rust_type(rust_type: &str) -> &str {
    match rust_type {
        "TokenView" => "Token",
        other => other,
    }
}

#[test]
fn each_operation_matches_its_handlers_extractors_and_answer() {
    check_operations(&spec(), ROUTES_RS);
}

/// Each route of `routes_rs` against its operation in `spec`; panics at the first mismatch.
fn check_operations(spec: &Value, routes_rs: &str) {
    for Declared {
        method,
        path,
        handler: name,
    } in declared_routes(routes_rs)
    {
        let what = format!("{method} {path} ({name})");
        let op = operation(spec, &method, &path);
        let (signature, body) = handler(routes_rs, &name);
        let (arguments, answer) = signature.split_once("->").unwrap_or((&signature, ""));
        let responses = op["responses"].as_object().expect("responses");
        let declares = |status: &str| responses.contains_key(status);

        // The caller: authenticated operations carry the global bearer requirement and a 401.
        let authenticated = arguments.contains("Caller(");
        let public = op.get("security") == Some(&json!([]));
        assert_eq!(authenticated, !public, "{what}: security");
        assert_eq!(authenticated, declares("401"), "{what}: 401");

        // The connection id in the path: a malformed one is a 400.
        let takes_id = arguments.contains("ConnectionPath(");
        assert_eq!(takes_id, path.contains("{id}"), "{what}: ConnectionPath");
        if takes_id {
            let id = &parameters(spec, &path, op)[&("path".to_owned(), "id".to_owned())];
            assert_eq!(
                id["schema"], spec["components"]["parameters"]["ConnectionId"]["schema"],
                "{what}"
            );
            assert!(declares("400"), "{what}: 400 for a malformed id");
        }

        // The query: exactly the struct's fields, of its types; the struct refuses others.
        let query: BTreeMap<String, &Value> = parameters(spec, &path, op)
            .into_iter()
            .filter(|((location, _), _)| location == "query")
            .map(|((_, name), parameter)| (name, parameter))
            .collect();
        match ident_after(arguments, "ApiQuery<") {
            Some(query_struct) => {
                let (attributes, fields) = item_body(routes_rs, "struct", query_struct);
                assert!(
                    attributes.iter().any(|a| a.contains("deny_unknown_fields")),
                    "{what}: {query_struct} refuses unknown parameters"
                );
                let names: BTreeSet<&String> = fields.iter().map(|(f, _)| f).collect();
                assert_eq!(names, query.keys().collect(), "{what}: query parameters");
                for (field, rust_type) in &fields {
                    let parameter = query[field];
                    assert_eq!(
                        parameter["required"],
                        !rust_type.starts_with("Option<"),
                        "{what}: {field}"
                    );
                    let schema = deref(spec, &parameter["schema"]);
                    let mut expected = json_types(rust_type);
                    expected.remove("null");
                    assert_eq!(schema_types(schema), expected, "{what}: {field}'s type");
                    if let Some(max) = integer_max(rust_type) {
                        assert_eq!(schema["minimum"], 0, "{what}: {field}");
                        let described = schema["maximum"].as_u64().expect("a maximum");
                        assert!(described <= max, "{what}: {field} at most {max}");
                    }
                }
                assert!(declares("400"), "{what}: 400 for a bad query");
            }
            None if arguments.contains("RawQuery") => {}
            None => assert!(query.is_empty(), "{what}: takes no query"),
        }

        // The body: a required JSON object of exactly the struct's fields.
        match ident_after(arguments, "ApiJson<") {
            Some(body_struct) => {
                let request = &op["requestBody"];
                assert_eq!(request["required"], true, "{what}");
                let media = request["content"].as_object().expect("content");
                assert_eq!(
                    media.keys().collect::<Vec<_>>(),
                    ["application/json"],
                    "{what}"
                );
                let schema = deref(spec, &media["application/json"]["schema"]);
                let source = if routes_rs.contains(&format!("struct {body_struct} {{")) {
                    routes_rs
                } else {
                    CONNECTION_RS
                };
                assert_request_schema(&what, schema, source, body_struct);
                for status in ["400", "413", "415"] {
                    assert!(declares(status), "{what}: {status} for a bad body");
                }
            }
            None => {
                assert!(op.get("requestBody").is_none(), "{what}: reads no body");
                assert!(
                    !declares("413") && !declares("415"),
                    "{what}: reads no body"
                );
            }
        }

        // The answer.
        if let Some(rust_type) = ident_after(answer, "Json<") {
            let status = if body.contains("StatusCode::CREATED") {
                "201"
            } else {
                "200"
            };
            let media = &responses
                .get(status)
                .unwrap_or_else(|| panic!("{what}: no {status}"))["content"];
            assert_eq!(
                media["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{}", schema_for_rust_type(rust_type)),
                "{what}: {status} is a {rust_type}"
            );
        } else if answer.contains("StatusCode") {
            assert!(body.contains("StatusCode::NO_CONTENT"), "{what}");
            assert!(
                responses["204"].get("content").is_none(),
                "{what}: 204 has no body"
            );
        } else if body.contains("StatusCode::ACCEPTED") {
            // Done (204, no body) or going on in the background (202 and what was done).
            assert!(body.contains("StatusCode::NO_CONTENT"), "{what}");
            assert!(responses["204"].get("content").is_none(), "{what}");
            let rust_type = ident_after(&body, "Json(").expect("the 202 body");
            assert_eq!(
                responses["202"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{}", schema_for_rust_type(rust_type)),
                "{what}: 202 is a {rust_type}"
            );
        } else {
            assert_eq!(
                answer.trim(),
                "Response",
                "{what}: an answer this check does not read"
            );
            assert!(
                responses["200"]["content"]["text/html"].is_object(),
                "{what}: a page"
            );
        }
        // Every declared success is the one the handler gives (or the callback's redirect).
        let successes: Vec<&String> = responses.keys().filter(|s| s.starts_with('2')).collect();
        let expected = if body.contains("StatusCode::ACCEPTED") {
            2
        } else {
            1
        };
        assert_eq!(successes.len(), expected, "{what}: its success statuses");
    }
}

#[test]
fn drift_in_the_code_is_caught() {
    let spec = spec();
    let mutate = |from: &str, to: &str| -> String {
        assert!(
            ROUTES_RS.contains(from),
            "routes.rs no longer has {from:?}; update this test"
        );
        ROUTES_RS.replacen(from, to, 1)
    };
    let drifts = [
        // A route removed, and a route moved.
        mutate(".delete(delete_connection)", ""),
        mutate("\"/connections/{id}/test\"", "\"/connections/{id}/check\""),
        // A query parameter added.
        mutate(
            "cursor: Option<String>,",
            "cursor: Option<String>,\n    offset: Option<u32>,",
        ),
        // Another answer.
        mutate("Json<ConnectionCheck>", "Json<ConnectionList>"),
        // A route that no longer asks who is calling.
        mutate("Caller(_): Caller", ""),
    ];
    for drifted in drifts {
        let routes_differ = declared_routes(&drifted)
            .into_iter()
            .map(|d| (d.method, d.path))
            .collect::<BTreeSet<_>>()
            != routes_in_code();
        let caught = routes_differ
            || std::panic::catch_unwind(|| check_operations(&spec, &drifted)).is_err();
        assert!(caught, "a drift went unnoticed");
    }
}

/// The request schema accepts exactly the struct's fields, with serde's types (null included
/// for an `Option`), and refuses others as the struct does.
fn assert_request_schema(what: &str, schema: &Value, source: &str, name: &str) {
    let (attributes, fields) = item_body(source, "struct", name);
    assert!(
        attributes.iter().any(|a| a.contains("deny_unknown_fields")),
        "{what}: {name} refuses unknown fields"
    );
    assert_eq!(schema["type"], "object", "{what}");
    assert_eq!(
        schema["additionalProperties"], false,
        "{what}: {name} refuses unknown fields"
    );
    let properties = schema["properties"].as_object().expect("properties");
    let names: BTreeSet<&String> = fields.iter().map(|(f, _)| f).collect();
    assert_eq!(
        names,
        properties.keys().collect(),
        "{what}: {name}'s fields"
    );
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (field, rust_type) in &fields {
        let mut expected = json_types(rust_type);
        if required.contains(field.as_str()) {
            expected.remove("null");
        }
        assert_eq!(
            schema_types(&properties[field]),
            expected,
            "{what}: {name}.{field}"
        );
        assert_eq!(
            properties[field].get("writeOnly") == Some(&json!(true)),
            rust_type.contains("ClientSecret"),
            "{what}: {name}.{field} is write-only exactly when it is a secret"
        );
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
    let samples = |schema: &Value| -> Vec<Value> {
        let mut values = Vec::new();
        if let Some(options) = schema["enum"].as_array() {
            values.extend(options.iter().cloned());
        }
        for t in schema_types(schema) {
            values.push(match t {
                "null" => Value::Null,
                "string" if schema.get("enum").is_some() => continue,
                "string" => json!("x"),
                "integer" => json!(1),
                "boolean" => json!(true),
                "array" => json!(["x"]),
                "object" => json!({"k": "v"}),
                other => panic!("{other}"),
            });
        }
        values
    };
    for (field, schema) in update["properties"].as_object().unwrap() {
        for value in samples(schema) {
            let body = json!({ field.as_str(): value });
            assert!(
                serde_json::from_value::<ConnectionInput>(body.clone()).is_ok(),
                "{body} is described but refused"
            );
        }
    }
    assert!(serde_json::from_value::<ConnectionInput>(json!({"colour": "red"})).is_err());
}

#[test]
fn enumerations_are_the_codes_variants() {
    fn wire<T: serde::Serialize>(values: &[T]) -> BTreeSet<String> {
        values
            .iter()
            .map(|v| {
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
    /// The variants of `enum name` in `source`, as `rename_all = "snake_case"` writes them;
    /// each must read back as `T`.
    fn variants<T: serde::de::DeserializeOwned>(source: &str, name: &str) -> BTreeSet<String> {
        let (attributes, members) = item_body(source, "enum", name);
        assert!(
            attributes
                .iter()
                .any(|a| a.contains("rename_all = \"snake_case\""))
        );
        let found: BTreeSet<String> = members.iter().map(|(v, _)| snake_case(v)).collect();
        for value in &found {
            serde_json::from_value::<T>(json!(value)).expect("a variant");
        }
        found
    }
    let grants = wire(&GrantType::ALL);
    let auths = wire(&ClientAuthMethod::ALL);
    let statuses = variants::<crate::domain::ConnectionStatus>(CONNECTION_RS, "ConnectionStatus");
    let tokens = variants::<TokenStatus>(TOKEN_RS, "TokenStatus");
    let kinds = variants::<crate::domain::PlaceholderKind>(PROVIDER_RS, "PlaceholderKind");
    assert!(tokens.contains("needs_reauthorization") && kinds.contains("one_of"));
    let spec = spec();
    for (at, expected) in [
        ("ConnectionInput/properties/grant_type", &grants),
        ("ConnectionCreate/properties/grant_type", &grants),
        ("Connection/properties/grant_type", &grants),
        ("Provider/properties/grant_types/items", &grants),
        ("UsableConnection/properties/grant_type", &grants),
        ("ConnectionInput/properties/client_auth", &auths),
        ("ConnectionCreate/properties/client_auth", &auths),
        ("Connection/properties/client_auth", &auths),
        ("Provider/properties/client_auth", &auths),
        ("ConnectionInput/properties/status", &statuses),
        ("ConnectionCreate/properties/status", &statuses),
        ("Connection/properties/status", &statuses),
        ("UsableConnection/properties/shared_token", &tokens),
        ("UsableConnection/properties/user_token", &tokens),
        ("Placeholder/properties/kind", &kinds),
    ] {
        let described: BTreeSet<String> = spec
            .pointer(&format!("/components/schemas/{at}/enum"))
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("no enum at {at}"))
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        assert_eq!(&described, expected, "{at}");
    }
}

// ---------------------------------------------------------------------------------------------
// (d) references and schemas.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_reference_resolves_and_every_component_is_used() {
    let spec = spec();
    let mut references = Vec::new();
    each_ref(&spec, &mut references);
    assert!(references.len() > 20);
    for reference in &references {
        resolve(&spec, reference);
    }
    let used: BTreeSet<&str> = references.iter().copied().collect();
    for kind in ["schemas", "responses", "parameters", "headers"] {
        for name in spec["components"][kind].as_object().unwrap().keys() {
            let reference = format!("#/components/{kind}/{name}");
            assert!(
                used.contains(reference.as_str()),
                "{reference} is never used"
            );
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// (e) real serializations validate against the schemas.
// ---------------------------------------------------------------------------------------------

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

#[test]
fn serialized_connections_and_providers_match_their_schemas() {
    let spec = spec();
    let connection = serde_json::to_value(connection("Acme")).unwrap();
    assert_valid(&spec, "Connection", &connection);
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
    let mut drifted = serde_json::to_value(connection("Acme")).unwrap();
    drifted["surprise"] = json!(1);
    drifted.as_object_mut().unwrap().remove("token_url");
    drifted["created_at"] = json!("yesterday");
    drifted["id"] = json!("con_XYZ");
    let found = problems(&spec, schema_named(&spec, "Connection"), &drifted);
    assert_eq!(found.len(), 4, "{found:?}");
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
    };
    assert_valid(
        &spec,
        "MyConnections",
        &json!({"connections": [serde_json::to_value(&usable).unwrap()]}),
    );
}

// ---------------------------------------------------------------------------------------------
// (e) the real router's answers conform to the operations they come from.
// ---------------------------------------------------------------------------------------------

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

struct Harness {
    app: Router,
    keyport: Arc<Keyport>,
    spec: Value,
    /// `(METHOD, template, status)` of every answer checked.
    seen: BTreeSet<(String, String, u16)>,
    _data: tempfile::TempDir,
}

struct Answer {
    status: u16,
    body: Value,
    text: String,
}

impl Harness {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let backends = crate::config::embedded_backends(data.path()).unwrap();
        let mut settings = KeyportSettings::new(UrlPolicy::Production);
        settings
            .redirect_allow_list
            .insert("app.example.com".into());
        let http = crate::adapters::outbound::OutboundHttp::new(
            crate::adapters::outbound::OutboundSettings::new(settings.url_policy),
        )
        .unwrap();
        let oauth = crate::oauth::OAuthClient::new(
            http,
            crate::oauth::OAuthSettings {
                callback_url: "https://keyport.example.com/oauth/callback"
                    .parse()
                    .unwrap(),
                allow_password_grant: false,
            },
        );
        let keyport = Arc::new(Keyport::new(
            backends.store,
            backends.secrets,
            backends.cipher,
            oauth,
            settings,
        ));
        let app = super::router(keyport.clone(), Arc::new(NamedCallers), &Function::ALL);
        Self {
            app,
            keyport,
            spec: spec(),
            seen: BTreeSet::new(),
            _data: data,
        }
    }

    /// Runs one line of a scenario, `METHOD uri caller [body] => status`, and checks the answer
    /// against the operation it reaches. The caller is a name `NamedCallers` knows, another
    /// name (a token that does not verify) or `-` (none); the body is JSON text, or `plain` (a
    /// body that is not declared as JSON) or `huge` (one over the size limit).
    async fn run(&mut self, line: &str) -> Answer {
        let (request, status) = line.rsplit_once(" => ").expect("`… => status`");
        let mut parts = request.splitn(4, ' ');
        let (method, uri) = (parts.next().unwrap(), parts.next().expect("a URI"));
        let caller = parts.next().expect("a caller, or -");
        let mut builder = Request::builder().method(method).uri(uri);
        if caller != "-" {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {caller}"));
        }
        let body = match parts.next() {
            None => Body::empty(),
            Some("plain") => {
                builder = builder.header(header::CONTENT_TYPE, "text/plain");
                Body::from("{}")
            }
            Some("huge") => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                let padding = "x".repeat(MAX_BODY_BYTES);
                Body::from(format!("{{\"description\": \"{padding}\"}}"))
            }
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_owned())
            }
        };
        let template = self.template(uri);
        let response = self
            .app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let answer = self.conforms(method, &template, response).await;
        assert_eq!(answer.status.to_string(), status, "{line}: {}", answer.text);
        self.seen
            .insert((method.to_owned(), template, answer.status));
        answer
    }

    /// The described path `uri` reaches.
    fn template(&self, uri: &str) -> String {
        let path = uri.split('?').next().unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        let matching: Vec<&String> = self.spec["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|template| {
                let pattern: Vec<&str> = template.split('/').collect();
                pattern.len() == segments.len()
                    && pattern.iter().zip(&segments).all(|(p, s)| {
                        p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty())
                    })
            })
            .collect();
        assert_eq!(matching.len(), 1, "{uri} reaches {matching:?}");
        matching[0].clone()
    }

    async fn conforms(&self, method: &str, template: &str, response: Response) -> Answer {
        let spec = &self.spec;
        let what = format!("{method} {template}");
        let status = response.status().as_u16();
        let op = operation(spec, method, template);
        let declared = deref(
            spec,
            op["responses"]
                .get(status.to_string())
                .unwrap_or_else(|| panic!("{what} answered {status}, which is not described")),
        );
        for (name, header_spec) in declared["headers"].as_object().into_iter().flatten() {
            let header_spec = deref(spec, header_spec);
            let value = response.headers().get(name.as_str());
            if header_spec["required"] == true {
                assert!(value.is_some(), "{what} {status}: no {name} header");
            }
            if let Some(value) = value {
                let text = value.to_str().unwrap();
                let parsed: Value = serde_json::from_str(text)
                    .ok()
                    .filter(Value::is_number)
                    .unwrap_or_else(|| json!(text));
                let found = problems(spec, &header_spec["schema"], &parsed);
                assert!(found.is_empty(), "{what} {status}: {name}: {found:?}");
            }
        }
        // Headers the API sets on purpose are described where they are set.
        for name in [
            header::LOCATION,
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
        ] {
            if response.headers().contains_key(&name) {
                let described = declared["headers"]
                    .as_object()
                    .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name.as_str())));
                assert!(
                    described,
                    "{what} {status}: the {name} header is not described"
                );
            }
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let Some(content) = declared.get("content").and_then(Value::as_object) else {
            assert!(
                text.is_empty(),
                "{what} {status}: a body where none is described"
            );
            return Answer {
                status,
                body: Value::Null,
                text,
            };
        };
        let media_type = content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("{what} {status}: no Content-Type"))
            .trim()
            .to_owned();
        let media = content
            .get(&media_type)
            .unwrap_or_else(|| panic!("{what} {status}: {media_type} is not described"));
        let body = if media_type == "application/json" {
            serde_json::from_str(&text).unwrap()
        } else {
            json!(text)
        };
        let found = problems(spec, &media["schema"], &body);
        assert!(
            found.is_empty(),
            "{what} {status}: {body}\n{}",
            found.join("\n")
        );
        Answer { status, body, text }
    }
}

fn create_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "the CRM",
        "grant_type": "authorization_code_pkce",
        "client_id": "keyport",
        "client_secret": "s3cret",
        "authorization_url": "https://login.acme.example/authorize",
        "token_url": "https://login.acme.example/token",
        "issuer": "https://login.acme.example",
        "scopes": ["openid", "api"],
        "invited_roles": ["bots"],
        "token_response_extras": ["instance_url"],
        "username": null
    })
}

/// A shared token, stored as a completed authorization would store it.
async fn seed_token(keyport: &Keyport, id: &str) {
    let key = TokenKey {
        connection_id: ConnectionId::parse(id).unwrap(),
        owner: Owner::Shared,
    };
    let mut extra = serde_json::Map::new();
    extra.insert("instance_url".into(), json!("https://acme.example.com"));
    let secrets = TokenSecrets {
        access_token: secrecy::SecretString::from("access-token"),
        refresh_token: None,
        id_token: None,
        extra,
    };
    let now = Utc::now();
    let record = StoredToken {
        connection_id: key.connection_id.clone(),
        owner: Owner::Shared,
        status: TokenStatus::Valid,
        token_type: "Bearer".into(),
        scope: Some("openid api".into()),
        expires_at: Some(now + chrono::Duration::hours(1)),
        refresh_due_at: None,
        has_refresh_token: false,
        last_error: None,
        lease: None,
        issued_for: None,
        provider_asked_at: None,
        created_at: now,
        updated_at: now,
        sealed: keyport.cipher.seal_token(&key, &secrets).await.unwrap(),
        version: 0,
    };
    keyport
        .store
        .put_token(&record, Expect::Absent)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_routers_answers_are_described() {
    let mut h = Harness::new();
    let acme = create_body("Acme CRM").to_string();
    let created = h
        .run(&format!("POST /connections admin {acme} => 201"))
        .await;
    assert_eq!(created.body["version"], 1);
    let other = create_body("Other").to_string();
    let other = h
        .run(&format!("POST /connections admin {other} => 201"))
        .await;
    let page = h.run("GET /connections?limit=1 admin => 200").await;
    let cursor = page.body["next_cursor"].as_str().expect("a second page");
    let last = h
        .run(&format!(
            "GET /connections?limit=1&cursor={cursor} admin => 200"
        ))
        .await;
    assert_eq!(last.body["next_cursor"], Value::Null);
    let none = ConnectionId::generate();
    let vars = [
        ("$acme", acme.clone()),
        ("$clash", create_body("ACME crm").to_string()),
        ("$conn", created.body["id"].as_str().unwrap().to_owned()),
        ("$other", other.body["id"].as_str().unwrap().to_owned()),
        ("$none", none.as_str().to_owned()),
    ];
    let fill = |line: &str| {
        vars.iter().fold(line.to_owned(), |line, (name, value)| {
            line.replace(name, value)
        })
    };
    let before_tokens = [
        "GET /providers bot => 200",
        "GET /providers - => 401",
        "GET /providers forged => 401",
        // Creating.
        "POST /connections admin $clash => 409",
        "POST /connections bot $acme => 403",
        "POST /connections - $acme => 401",
        r#"POST /connections admin {"name": "X", "colour": "red"} => 400"#,
        r#"POST /connections admin {"name": "X", "grant_type": "client_credentials"} => 400"#,
        r#"POST /connections admin {"name": "X", "grant_type": "implicit", "client_id": "c"} => 400"#,
        r#"POST /connections admin {"name": => 400"#,
        "POST /connections admin [1, 2] => 400",
        "POST /connections admin plain => 415",
        "POST /connections admin huge => 413",
        // Listing.
        "GET /connections admin => 200",
        "GET /connections?colour=red admin => 400",
        "GET /connections?limit=-1 admin => 400",
        "GET /connections?cursor=bogus admin => 400",
        "GET /connections bot => 403",
        "GET /connections - => 401",
        // One connection.
        "GET /connections/$conn admin => 200",
        "GET /connections/$none admin => 404",
        "GET /connections/con_nope admin => 400",
        "GET /connections/$conn bot => 403",
        "GET /connections/$conn - => 401",
        r#"PATCH /connections/$conn admin {"description": "changed", "version": 1} => 200"#,
        r#"PATCH /connections/$conn admin {"description": "again", "version": 1} => 409"#,
        r#"PATCH /connections/$conn admin {"name": "Other"} => 409"#,
        r#"PATCH /connections/$conn admin {"token_url": "http://login.acme.example/t"} => 400"#,
        r#"PATCH /connections/$conn admin {"scopes": "a,,b"} => 400"#,
        r#"PATCH /connections/$conn admin {"secret": "x"} => 400"#,
        "PATCH /connections/$none admin {} => 404",
        "PATCH /connections/$conn bot {} => 403",
        "PATCH /connections/$conn admin plain => 415",
        "PATCH /connections/$conn admin huge => 413",
        "PATCH /connections/$conn - plain => 401",
        // Testing asks the provider; only the refusals before that are offline.
        "POST /connections/$none/test admin => 404",
        "POST /connections/x/test admin => 400",
        "POST /connections/$conn/test bot => 403",
        "POST /connections/$conn/test - => 401",
        // Authorizing.
        r#"POST /connections/$conn/authorize bot {"owner": "shared"} => 403"#,
        r#"POST /connections/$conn/authorize stranger {"owner": "user"} => 403"#,
        r#"POST /connections/$conn/authorize admin {"owner": "everyone"} => 400"#,
        r#"POST /connections/$conn/authorize admin {"redirect_after": "https://evil.example/"} => 400"#,
        r#"POST /connections/$conn/authorize admin {"colour": "red"} => 400"#,
        "POST /connections/$none/authorize admin {} => 404",
        "POST /connections/con_/authorize admin {} => 400",
        "POST /connections/$conn/authorize admin plain => 415",
        "POST /connections/$conn/authorize admin huge => 413",
        "POST /connections/$conn/authorize - => 401",
        // The callback, refusing before any provider is asked.
        "GET /oauth/callback - => 400",
        "GET /oauth/callback?code=abc - => 400",
        "GET /oauth/callback?state=not-a-state&code=abc - => 400",
        // The confirmation, with values no callback handed out.
        r#"POST /oauth/complete bot {"completion": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} => 400"#,
        r#"POST /oauth/complete bot {"completion": "short"} => 400"#,
        r#"POST /oauth/complete bot {"completion": "AAAA", "extra": 1} => 400"#,
        "POST /oauth/complete - => 401",
        // Tokens, before there is one.
        "GET /connections/$conn/token bot => 409",
        "GET /connections/$conn/token?owner=user bot => 409",
        "GET /connections/$conn/token?owner=anyone bot => 400",
        "GET /connections/$conn/token?min_valid_seconds=86401 bot => 400",
        "GET /connections/$conn/token?min_valid_seconds=-1 bot => 400",
        "GET /connections/$conn/token?colour=red bot => 400",
        "GET /connections/$conn/token stranger => 403",
        "GET /connections/$none/token bot => 404",
        "GET /connections/con_1/token bot => 400",
        "GET /connections/$conn/token - => 401",
        "POST /connections/$conn/token/refresh bot => 409",
        "POST /connections/$conn/token/refresh?owner=x bot => 400",
        "POST /connections/$conn/token/refresh?min_valid_seconds=1 bot => 400",
        "POST /connections/$conn/token/refresh stranger => 403",
        "POST /connections/$none/token/refresh bot => 404",
        "POST /connections/$conn/token/refresh - => 401",
    ];
    for line in before_tokens {
        h.run(&fill(line)).await;
    }

    // Three authorizations: one the provider refuses, one answered by another issuer, and one
    // whose connection is gone by the time the browser comes back.
    let mut states = Vec::new();
    for body in [
        r#"{}"#,
        r#"{"owner": null, "redirect_after": "https://app.example.com/done"}"#,
    ] {
        let line = fill(&format!(
            "POST /connections/$conn/authorize admin {body} => 200"
        ));
        states.push(
            h.run(&line).await.body["state"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let line = fill(r#"POST /connections/$conn/authorize bot {"owner": "user"} => 200"#);
    states.push(
        h.run(&line).await.body["state"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let (denied, elsewhere, orphan) = (&states[0], &states[1], &states[2]);
    h.run(&format!(
        "GET /oauth/callback?state={denied}&error=access_denied - => 400"
    ))
    .await;
    h.run(&format!(
        "GET /oauth/callback?state={denied}&code=abc - => 400"
    ))
    .await;
    let evil = "https%3A%2F%2Fevil.example";
    h.run(&format!(
        "GET /oauth/callback?state={elsewhere}&code=abc&iss={evil} - => 400"
    ))
    .await;

    // A stored token.
    seed_token(&h.keyport, &vars[2].1).await;
    let token = fill("GET /connections/$conn/token?owner=shared&min_valid_seconds=60 bot => 200");
    let token = h.run(&token).await;
    assert_eq!(
        token.body["extra"]["instance_url"],
        "https://acme.example.com"
    );
    let mine = h.run("GET /me/connections bot => 200").await;
    let usable = mine.body["connections"].as_array().unwrap();
    assert_eq!(usable.len(), 2);
    assert!(usable.iter().any(|c| c["shared_token"] == "valid"));
    let theirs = h.run("GET /me/connections stranger => 200").await;
    assert_eq!(theirs.body["connections"], json!([]));
    let after_tokens = [
        "GET /connections/$conn/token admin => 200",
        "GET /me/connections - => 401",
        // Disconnecting: the connection names no revocation endpoint, so nothing leaves.
        "DELETE /connections/$conn/token?owner=bogus bot => 400",
        "DELETE /connections/$conn/token?min_valid_seconds=1 bot => 400",
        "DELETE /connections/$conn/token stranger => 403",
        "DELETE /connections/$conn/token - => 401",
        // The shared token is the administrators' to end, however invited the caller.
        "DELETE /connections/$conn/token bot => 403",
        "DELETE /connections/$conn/token admin => 200",
        "DELETE /connections/$conn/token admin => 404",
        "DELETE /connections/$conn/token?owner=user bot => 404",
        // The trail of all of the above.
        "GET /connections/$conn/audit?limit=2 admin => 200",
        "GET /connections/$conn/audit?cursor=bogus admin => 400",
        "GET /connections/$conn/audit?colour=red admin => 400",
        "GET /connections/$conn/audit bot => 403",
        "GET /connections/$conn/audit - => 401",
        // Deleting.
        "DELETE /connections/$conn?version=1 admin => 409",
        "DELETE /connections/$conn?colour=red admin => 400",
        "DELETE /connections/$conn?version=x admin => 400",
        "DELETE /connections/$conn bot => 403",
        "DELETE /connections/$conn - => 401",
        "DELETE /connections/$conn?version=2 admin => 204",
        "DELETE /connections/$conn admin => 404",
        "DELETE /connections/$other admin => 204",
    ];
    for line in after_tokens {
        h.run(&fill(line)).await;
    }
    h.run(&format!(
        "GET /oauth/callback?state={orphan}&code=abc - => 404"
    ))
    .await;

    // Every operation was reached, and every kind of answer the API gives offline was seen.
    let reached: BTreeSet<(String, String)> = h
        .seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(reached, routes_in_code());
    let statuses: BTreeSet<u16> = h.seen.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(
        statuses,
        [200, 201, 204, 400, 401, 403, 404, 409, 413, 415].into()
    );
}

#[tokio::test]
async fn the_callbacks_pages_are_described() {
    let harness = Harness::new();
    let done = |redirect_after: Option<&str>| crate::service::AuthorizationAwaitingConfirmation {
        connection_id: ConnectionId::generate(),
        owner: Owner::User(Subject::parse("alice").unwrap()),
        completion: crate::domain::StateToken::generate(),
        expires_at: chrono::Utc::now(),
        redirect_after: redirect_after.map(str::to_owned),
    };
    let callback = "/oauth/callback";
    let held = super::page::awaiting_confirmation(&done(None));
    let held = harness.conforms("GET", callback, held).await;
    assert_eq!(held.status, 200);
    assert!(held.text.contains("Almost connected"));
    let redirected =
        super::page::awaiting_confirmation(&done(Some("https://app.example.com/done?x=1")));
    let redirected = harness.conforms("GET", callback, redirected).await;
    assert_eq!(redirected.status, 303);
    for (error, status) in [
        (
            crate::oauth::OAuthError::InvalidGrant { description: None },
            409,
        ),
        (
            crate::oauth::OAuthError::BadResponse("nonsense".into()),
            502,
        ),
        (crate::oauth::OAuthError::Timeout, 503),
    ] {
        let error = ApiError::Service(crate::service::ServiceError::Provider(error));
        let page = harness
            .conforms("GET", callback, super::page::failed(&error))
            .await;
        assert_eq!(page.status, status);
        assert!(page.text.contains("Authorization failed"));
    }
}

#[test]
fn the_description_describes_itself() {
    let spec = spec();
    let op = operation(&spec, "GET", LOCAL_ONLY);
    assert_eq!(op["security"], json!([]));
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(problems(&spec, schema, &spec).is_empty());
}
