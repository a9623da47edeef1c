//! The document as a whole: OpenAPI 3.1 of this version, every reference resolving and every
//! component used, and the rules every operation follows.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{each_ref, operation, operations, parameters, problems, resolve, spec};
use crate::http::openapi::refusals::STATUSES;

#[test]
fn the_description_is_openapi_3_1_of_this_version() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(spec["info"]["title"], "Keyport");
    // What the local server serves is what `keyport openapi` prints: one generation.
    assert_eq!(
        serde_json::to_value(super::super::document()).unwrap(),
        spec
    );
}

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
    for kind in ["schemas", "responses", "headers"] {
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
fn every_response_is_described_and_every_refusal_under_its_own_status() {
    let spec = spec();
    let statuses: BTreeMap<&str, u16> = STATUSES.iter().copied().collect();
    for (method, path, operation) in operations(&spec) {
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}");
        for (status, response) in responses {
            match response["$ref"].as_str() {
                Some(reference) => {
                    let name = reference
                        .strip_prefix("#/components/responses/")
                        .expect("a response component");
                    assert_eq!(
                        status,
                        &statuses[name].to_string(),
                        "{method} {path}: {name} is a {}",
                        statuses[name]
                    );
                }
                None => assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}: no description"
                ),
            }
        }
        // One success, or (work that may go on in the background) 204 done and 202 accepted.
        let successes: Vec<&str> = responses
            .keys()
            .map(String::as_str)
            .filter(|s| s.starts_with('2'))
            .collect();
        assert!(
            successes.len() == 1 || successes == ["202", "204"],
            "{method} {path}: success statuses {successes:?}"
        );
    }
    for (name, response) in spec["components"]["responses"].as_object().unwrap() {
        assert!(
            response["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{name}"
        );
    }
}

#[test]
fn operations_that_take_a_bearer_token_answer_401_and_only_they() {
    let spec = spec();
    let mut public = BTreeSet::new();
    for (method, path, operation) in operations(&spec) {
        // Bearer requirements only, each naming Keyport scopes (or none): alternatives.
        let authenticated = operation
            .get("security")
            .and_then(|s| s.as_array())
            .is_some_and(|requirements| {
                !requirements.is_empty()
                    && requirements.iter().all(|r| {
                        r.as_object().is_some_and(|r| r.len() == 1)
                            && r["bearer"].as_array().is_some_and(|scopes| {
                                scopes.iter().all(|s| {
                                    s.as_str()
                                        .and_then(crate::domain::ApiScope::parse)
                                        .is_some()
                                })
                            })
                    })
            });
        if !authenticated {
            assert!(operation.get("security").is_none(), "{method} {path}");
            public.insert(format!("{method} {path}"));
        }
        assert_eq!(
            authenticated,
            operation["responses"].get("401").is_some(),
            "{method} {path}"
        );
    }
    assert!(spec.get("security").is_none(), "no global requirement");
    assert_eq!(
        public,
        [
            "GET /health",
            "GET /oauth/callback",
            "GET /openapi.json",
            "GET /ready",
            "POST /oauth/callback"
        ]
        .map(str::to_owned)
        .into()
    );
    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"], &scheme["bearerFormat"]),
        (&json!("http"), &json!("bearer"), &json!("JWT"))
    );
}

#[test]
fn operations_that_read_a_body_or_parameters_answer_their_refusals() {
    let spec = spec();
    for (method, path, operation) in operations(&spec) {
        let declares = |status: &str| operation["responses"].get(status).is_some();
        match operation.get("requestBody") {
            Some(body) => {
                assert_eq!(body["required"], true, "{method} {path}");
                let media: Vec<&String> = body["content"].as_object().unwrap().keys().collect();
                // The provider's form post (OpenID Connect) is the one body not sent as JSON.
                let expected = if (method.as_str(), path.as_str()) == ("POST", "/oauth/callback") {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                };
                assert_eq!(media, [expected], "{method} {path}");
                for status in ["400", "413", "415"] {
                    assert!(declares(status), "{method} {path}: {status} for a bad body");
                }
            }
            None => assert!(
                !declares("413") && !declares("415"),
                "{method} {path} reads no body"
            ),
        }
        let declared = parameters(&spec, &path, operation);
        let in_path: BTreeSet<String> = declared
            .iter()
            .filter(|((location, _), _)| location == "path")
            .map(|((_, name), parameter)| {
                assert_eq!(parameter["required"], true, "{method} {path}: {name}");
                name.clone()
            })
            .collect();
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(in_template, in_path, "{method} {path}");
        // A malformed id or query is a 400, in Keyport's shape; the callback answers a page.
        if !declared.is_empty() && path != "/oauth/callback" {
            assert_eq!(
                operation["responses"]["400"]["$ref"], "#/components/responses/BadRequest",
                "{method} {path}"
            );
        }
    }
}

#[test]
fn the_description_describes_itself() {
    let spec = spec();
    let op = operation(&spec, "GET", "/openapi.json");
    assert!(op.get("security").is_none());
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(problems(&spec, schema, &spec).is_empty());
    assert!(!problems(&spec, schema, &json!({"openapi": "3.1.0"})).is_empty());
}

#[test]
fn descriptions_are_unwrapped_prose() {
    // Doc comments wrap at 100 columns; the description's text must not carry those breaks.
    fn each_description<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("description" | "summary", Value::String(text)) => found.push(text),
                        _ => each_description(child, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| each_description(v, found)),
            _ => {}
        }
    }
    let spec = spec();
    let mut found = Vec::new();
    each_description(&spec, &mut found);
    assert!(found.len() > 50);
    for text in found {
        assert!(!text.replace("\n\n", "").contains('\n'), "{text:?}");
    }
}
