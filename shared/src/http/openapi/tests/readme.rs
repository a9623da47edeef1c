//! The README's Routes section and the description agree: every route the README lists is
//! described, every described route is listed, and the query parameters it shows are the
//! operation's.

use std::collections::{BTreeMap, BTreeSet};

use super::{operations, parameters, spec};

const README: &str = include_str!("../../../../../README.md");

/// The `METHOD[/METHOD…] /path[?query]` spans of a text, as `(METHOD, path) → query names`.
pub(super) fn routes_in(text: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut found = BTreeMap::new();
    for (index, span) in text.split('`').enumerate() {
        if index % 2 == 0 {
            continue;
        }
        let Some((methods, target)) = span.split_once(' ') else {
            continue;
        };
        let is_method = |m: &str| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase());
        if !methods.split('/').all(is_method) || !target.starts_with('/') {
            continue;
        }
        // A `|` inside a table cell is written `\|`.
        let target = target.replace("\\|", "|");
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let names: BTreeSet<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split('=').next().unwrap().to_owned())
            .collect();
        for method in methods.split('/') {
            found.insert((method.to_owned(), path.to_owned()), names.clone());
        }
    }
    found
}

/// The README's Routes section: its table, and the line about the description before it.
fn readme_routes() -> BTreeMap<(String, String), BTreeSet<String>> {
    let section = README
        .split("\n## ")
        .find(|s| s.starts_with("Routes\n"))
        .expect("a Routes section");
    let mut routes = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        // The first cell: up to the first `|` that is not written `\|`.
        let cell = row[1..]
            .char_indices()
            .find(|&(i, c)| c == '|' && !row[1..][..i].ends_with('\\'))
            .map_or(&row[1..], |(i, _)| &row[1..][..i]);
        routes.extend(routes_in(cell));
    }
    let served = README
        .lines()
        .find(|l| l.contains("serves the OpenAPI 3.1 description"))
        .expect("the line naming GET /openapi.json");
    routes.extend(routes_in(served));
    routes
}

#[test]
fn the_readme_lists_exactly_the_described_routes() {
    let spec = spec();
    let listed = readme_routes();
    let described: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let listed_routes: BTreeSet<(String, String)> = listed.keys().cloned().collect();
    let missing: Vec<_> = described.difference(&listed_routes).collect();
    let extra: Vec<_> = listed_routes.difference(&described).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "described but not in the README: {missing:?}; in the README but not described: {extra:?}"
    );
    for ((method, path), names) in &listed {
        let op = &spec["paths"][path][method.to_lowercase()];
        let query: BTreeSet<String> = parameters(&spec, path, op)
            .into_keys()
            .filter(|(location, _)| location == "query")
            .map(|(_, name)| name)
            .collect();
        assert!(
            names.is_subset(&query),
            "the README shows {method} {path} with {names:?}; it takes {query:?}"
        );
    }
}

#[test]
fn the_readme_reader_reads_a_row() {
    let routes = routes_in(
        r#"`POST/GET /connections`, `GET /a/{id}?owner=shared\|user&n=N` `{"owner"}` `not a route`"#,
    );
    let read: Vec<(&str, &str, Vec<&str>)> = routes
        .iter()
        .map(|((m, p), q)| {
            (
                m.as_str(),
                p.as_str(),
                q.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        read,
        [
            ("GET", "/a/{id}", vec!["n", "owner"]),
            ("GET", "/connections", vec![]),
            ("POST", "/connections", vec![]),
        ]
    );
}
