//! API Gateway routes each request to the function the description says serves it: the HTTP
//! API events of each function in `infra/template.yaml` are exactly the operations the
//! description tags with that function, and the routes without the JWT authorizer exactly the
//! operations that take no bearer token. The console (not in the API's description) gets
//! `/console` and every method its pages and API use under it, none behind the JWT authorizer:
//! its session cookie is its credential.

use std::collections::{BTreeMap, BTreeSet};

use keyport_shared::http::{Function, openapi};
use keyport_tests::workspace_root;
use serde_json::Value;
use yaml_rust2::YamlLoader;

type Routes = BTreeSet<(String, String)>;

/// Each function's `(METHOD, path)` events by its name (its `CodeUri` folder), and the routes
/// that skip the authorizer.
fn template_routes() -> (BTreeMap<String, Routes>, Routes) {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml"))
        .expect("the template");
    let docs = YamlLoader::load_from_str(&text).expect("the template is YAML");
    let mut by_function = BTreeMap::new();
    let mut public = Routes::new();
    for (_, resource) in docs[0]["Resources"].as_hash().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let properties = &resource["Properties"];
        let name = properties["CodeUri"]
            .as_str()
            .and_then(|uri| uri.strip_prefix("../functions/"))
            .expect("a function folder")
            .to_owned();
        let mut routes = Routes::new();
        for (_, event) in properties["Events"].as_hash().into_iter().flatten() {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let event = &event["Properties"];
            let route = (
                event["Method"].as_str().expect("a method").to_owned(),
                event["Path"].as_str().expect("a path").to_owned(),
            );
            if event["Auth"]["Authorizer"].as_str() == Some("NONE") {
                public.insert(route.clone());
            }
            routes.insert(route);
        }
        by_function.insert(name, routes);
    }
    (by_function, public)
}

#[test]
fn each_functions_api_routes_are_its_described_operations() {
    let spec: Value = serde_json::from_str(openapi::json()).unwrap();
    let mut described: BTreeMap<String, Routes> = BTreeMap::new();
    let mut public = Routes::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let tag = operation["tags"][0].as_str().expect("a tag").to_owned();
            let route = (method.to_uppercase(), path.clone());
            if operation.get("security").is_none() && tag != "local" {
                public.insert(route.clone());
            }
            described.entry(tag).or_default().insert(route);
        }
    }
    let (template, template_public) = template_routes();
    for function in Function::ALL {
        assert_eq!(
            template.get(function.name()),
            described.get(function.name()),
            "the {} function's routes",
            function.name()
        );
    }
    // The refresher answers its schedule and the refresh worker its queue: no route.
    assert_eq!(template.get("refresher"), Some(&Routes::new()));
    assert_eq!(template.get("refresh-worker"), Some(&Routes::new()));
    let console: Routes = [
        ("GET", "/console"),
        ("GET", "/console/{proxy+}"),
        ("POST", "/console/{proxy+}"),
        ("PATCH", "/console/{proxy+}"),
        ("DELETE", "/console/{proxy+}"),
    ]
    .into_iter()
    .map(|(method, path)| (method.to_owned(), path.to_owned()))
    .collect();
    assert_eq!(template.get("console"), Some(&console));
    // Every method of the console's API has its route. The console serves the API's routes
    // but the installation's settings (`/settings/...`, set through the API only).
    let api_methods: BTreeSet<String> = described
        .iter()
        .filter(|(tag, _)| tag.as_str() != "local")
        .flat_map(|(_, routes)| routes.iter())
        .filter(|(_, path)| !path.starts_with("/settings/"))
        .map(|(method, _)| method.clone())
        .collect();
    for method in api_methods {
        assert!(
            console.contains(&(method.clone(), "/console/{proxy+}".to_owned())),
            "the console's API takes {method} under /console/api"
        );
    }
    assert_eq!(template.len(), Function::ALL.len() + 3);
    let (console_public, api_public): (Routes, Routes) = template_public
        .into_iter()
        .partition(|(_, path)| path.starts_with("/console"));
    assert_eq!(
        console_public, console,
        "no console route has the JWT authorizer"
    );
    assert_eq!(api_public, public);
}

/// The scopes API Gateway's JWT authorizer asks of each route (a token must carry at least one
/// of them) are the scopes the description's security requirements name for the operation, plus
/// `openid`, which people's access tokens carry; a route described without scopes has none.
/// Keyport itself then holds each caller to its roles intersected with its Keyport scopes.
#[test]
fn each_routes_authorizer_scopes_are_its_described_scopes() {
    let spec: Value = serde_json::from_str(openapi::json()).unwrap();
    let mut described = BTreeMap::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(requirements) = operation["security"].as_array() else {
                continue;
            };
            let mut scopes: BTreeSet<String> = requirements
                .iter()
                .flat_map(|r| r["bearer"].as_array().cloned().unwrap_or_default())
                .map(|s| s.as_str().expect("a scope").to_owned())
                .collect();
            for scope in &scopes {
                assert!(
                    keyport_shared::domain::ApiScope::parse(scope).is_some(),
                    "{method} {path}: {scope} is not one of Keyport's scopes"
                );
            }
            if !scopes.is_empty() {
                scopes.insert("openid".to_owned());
            }
            described.insert((method.to_uppercase(), path.clone()), scopes);
        }
    }
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let mut template = BTreeMap::new();
    for (_, resource) in docs[0]["Resources"].as_hash().expect("Resources") {
        for (_, event) in resource["Properties"]["Events"]
            .as_hash()
            .into_iter()
            .flatten()
        {
            let event = &event["Properties"];
            if event["Auth"]["Authorizer"].as_str() == Some("NONE") || event["Path"].is_badvalue() {
                continue;
            }
            let route = (
                event["Method"].as_str().unwrap_or_default().to_owned(),
                event["Path"].as_str().unwrap_or_default().to_owned(),
            );
            let scopes: BTreeSet<String> = event["Auth"]["AuthorizationScopes"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|s| s.as_str().expect("a scope").to_owned())
                .collect();
            template.insert(route, scopes);
        }
    }
    assert_eq!(template, described);
    // Not vacuous: every scope Keyport declares guards some route.
    let used: BTreeSet<&String> = template.values().flatten().collect();
    for scope in keyport_shared::domain::ApiScope::ALL {
        assert!(
            used.iter().any(|s| s.as_str() == scope.as_str()),
            "{}",
            scope.as_str()
        );
    }
}
