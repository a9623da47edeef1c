//! (1) The routes the description declares are exactly the routes served: each Lambda
//! function's router (built for that function alone, as its `main` has `run_http_function`
//! build it) serves its own operations and nothing else, and the local server's (every
//! function's routes and the description's own) serves all of them and nothing else.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use lambda_http::tower::ServiceExt;
use serde_json::{Value, json};

use super::{METHODS, NamedCallers, embedded_keyport, operations, spec};
use crate::domain::ConnectionId;
use crate::http::Function;

type Routes = BTreeSet<(String, String)>;

/// `(METHOD, path)` of the operations tagged `tag` (who serves them).
fn described(spec: &Value, tag: &str) -> Routes {
    operations(spec)
        .into_iter()
        .filter(|(_, _, operation)| operation["tags"] == json!([tag]))
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// What a router answers `method path` with: `None` when no route serves it (its fallbacks'
/// `no such route` or `this route does not serve that method`), else the status.
async fn serves(router: &Router, method: &str, path: &str) -> Option<u16> {
    let uri = path.replace("{id}", ConnectionId::generate().as_str());
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    let fallback = serde_json::from_slice::<Value>(&body)
        .ok()
        .is_some_and(|body| {
            body["error"] == "not_found" && body["message"] == "no such route"
                || body["error"] == "method_not_allowed"
        });
    (!fallback).then_some(status)
}

#[test]
fn every_operation_is_one_functions_or_the_local_servers() {
    let spec = spec();
    let mut tags: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
    tags.push(super::super::LOCAL);
    let mut all = Routes::new();
    for tag in tags {
        let routes = described(&spec, tag);
        assert!(!routes.is_empty(), "{tag} describes no route");
        assert!(all.is_disjoint(&routes), "{tag} describes another's route");
        all.extend(routes);
    }
    let everything: Routes = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert_eq!(all, everything, "an operation without its function's tag");
    assert!(everything.len() >= 16, "{everything:?}");
    assert_eq!(
        described(&spec, super::super::LOCAL),
        [
            ("GET".to_owned(), "/health".to_owned()),
            ("GET".to_owned(), "/openapi.json".to_owned()),
            ("GET".to_owned(), "/ready".to_owned())
        ]
        .into()
    );
}

#[tokio::test]
async fn each_functions_router_serves_exactly_its_described_routes() {
    let spec = spec();
    let (keyport, _data) = embedded_keyport();
    let everything: Routes = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for function in Function::ALL {
        let router = crate::http::router(keyport.clone(), Arc::new(NamedCallers), &[function]);
        let own = described(&spec, function.name());
        for (method, path) in &everything {
            let served = serves(&router, method, path).await;
            assert_eq!(
                served.is_some(),
                own.contains(&(method.clone(), path.clone())),
                "the {} function's router and {method} {path}: {served:?}",
                function.name()
            );
        }
    }
}

#[tokio::test]
async fn the_local_server_serves_exactly_the_described_routes() {
    let spec = spec();
    let (keyport, _data) = embedded_keyport();
    // As keyport-local's `app` assembles it.
    let router = super::super::routes(keyport.clone()).merge(crate::http::router(
        keyport,
        Arc::new(NamedCallers),
        &Function::ALL,
    ));
    let everything: Routes = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let paths: BTreeSet<&String> = everything.iter().map(|(_, path)| path).collect();
    for path in paths {
        // HEAD is left out: axum answers it for every GET route, as HTTP asks of a server.
        for method in METHODS.iter().filter(|m| **m != "head") {
            let method = method.to_uppercase();
            let served = serves(&router, &method, path).await;
            assert_eq!(
                served.is_some(),
                everything.contains(&(method.clone(), path.clone())),
                "{method} {path}: {served:?}"
            );
        }
    }
    for path in ["/", "/connections/{id}/secret", "/openapi.yaml", "/me"] {
        assert_eq!(serves(&router, "GET", path).await, None, "{path}");
    }
}

#[test]
#[should_panic(expected = "the route table says patch /connections/{id}")]
fn a_table_entry_whose_handler_describes_another_method_is_refused() {
    // A handler whose `#[utoipa::path]` says GET, routed as PATCH by its table.
    let item = utoipa::openapi::PathItem::new(
        utoipa::openapi::HttpMethod::Get,
        utoipa::openapi::path::OperationBuilder::new().build(),
    );
    let paths = utoipa::openapi::path::PathsBuilder::new()
        .path("/connections/{id}", item)
        .build();
    let _ = crate::http::routes::checked::<()>(
        "patch",
        "/connections/{id}",
        (Vec::new(), paths, axum::routing::MethodRouter::new()),
    );
}
