//! `docs/design.md` and the description agree: its Routes table lists exactly the described
//! routes, and the fields its Wire shapes section names are the schemas' properties, both ways.

use std::collections::BTreeSet;

use serde_json::Value;

use super::readme::routes_in;
use super::{operations, spec};

const DESIGN: &str = include_str!("../../../../../docs/design.md");

fn section(name: &str) -> &'static str {
    DESIGN
        .split("\n## ")
        .find(|s| s.starts_with(&format!("{name}\n")))
        .unwrap_or_else(|| panic!("docs/design.md has a {name} section"))
}

#[test]
fn the_design_lists_exactly_the_described_routes() {
    let spec = spec();
    let mut listed = BTreeSet::new();
    for row in section("Routes").lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row[1..].split(" | ").next().unwrap();
        listed.extend(routes_in(first_cell).into_keys());
    }
    let described: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert_eq!(listed, described, "docs/design.md's Routes table");
}

/// The properties of the component schema `name`.
fn properties(spec: &Value, name: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} has properties"))
        .keys()
        .cloned()
        .collect()
}

/// The `` `snake_case` `` spans of a text.
fn field_names(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            !span.is_empty()
                && span
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

/// The `"name"` keys of the first `{"…", …}` after `label` in the Wire shapes section.
fn quoted_keys(wire: &str, label: &str) -> BTreeSet<String> {
    let at = wire.find(label).unwrap_or_else(|| panic!("{label:?}"));
    let after = &wire[at + label.len()..];
    let open = after.find('{').unwrap();
    let close = open + after[open..].find('}').unwrap();
    after[open + 1..close]
        .split(',')
        .filter_map(|part| part.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

/// Every key of a JSON example by dotted path, and those whose value is null.
fn key_paths(value: &Value, prefix: &str, into: &mut BTreeSet<String>, nulls: &mut Vec<String>) {
    if let Value::Object(fields) = value {
        for (name, field) in fields {
            let path = format!("{prefix}{name}");
            if field.is_null() {
                nulls.push(format!("{path}."));
            }
            key_paths(field, &format!("{path}."), into, nulls);
            into.insert(path);
        }
    }
}

/// Every property of a schema, by dotted path, following `$ref`s (and `oneOf` nullables).
fn schema_paths(spec: &Value, schema: &Value, prefix: &str, into: &mut BTreeSet<String>) {
    let resolve = |s: &Value| -> Value {
        let mut s = s.clone();
        if let Some(Value::Array(options)) = s.get("oneOf")
            && let Some(object) = options.iter().find(|o| o.get("$ref").is_some())
        {
            s = object.clone();
        }
        match s.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                spec["components"]["schemas"][name].clone()
            }
            None => s,
        }
    };
    let schema = resolve(schema);
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (name, property) in props {
            let path = format!("{prefix}{name}");
            schema_paths(spec, property, &format!("{path}."), into);
            into.insert(path);
        }
    }
}

#[test]
fn the_design_names_exactly_the_described_fields() {
    let spec = spec();
    let wire = section("Wire shapes");

    // Connections: the paragraph names every field of a request or a response.
    let connection_paragraph = wire.split("\n\n").nth(1).unwrap();
    assert!(connection_paragraph.starts_with("Connection (request and response"));
    let mut named = field_names(connection_paragraph);
    named.insert("token_health".into());
    let described: BTreeSet<String> = properties(&spec, "Connection")
        .union(&properties(&spec, "ConnectionCreate"))
        .cloned()
        .collect();
    assert_eq!(
        named, described,
        "the Connection fields docs/design.md names"
    );

    // The token health example has exactly the described shape.
    let example = wire
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the token_health example");
    let example: Value = serde_json::from_str(&format!("{{{example}}}"))
        .unwrap_or_else(|e| panic!("the token_health example is JSON: {e}"));
    let (mut shown, mut nulls) = (BTreeSet::new(), Vec::new());
    key_paths(&example["token_health"], "", &mut shown, &mut nulls);
    let mut described = BTreeSet::new();
    schema_paths(
        &spec,
        &spec["components"]["schemas"]["TokenHealth"],
        "",
        &mut described,
    );
    // What an example shows as null has no fields to show.
    described.retain(|path| !nulls.iter().any(|null| path.starts_with(null.as_str())));
    assert_eq!(shown, described, "the token_health example");

    for (label, schema) in [
        ("Authorize: `", "AuthorizeRequest"),
        ("\"redirect_after\"?}` →", "AuthorizeResponse"),
        ("`POST /oauth/complete\n", "CompletionBody"),
        ("{\"completion\"}` →", "AuthorizationCompleted"),
        ("Token: `", "Token"),
        ("`202 ", "DeletionInProgress"),
        ("each user token `", "UserTokenSummary"),
    ] {
        assert_eq!(
            quoted_keys(wire, label),
            properties(&spec, schema),
            "docs/design.md's {schema} after {label:?}"
        );
    }
}
