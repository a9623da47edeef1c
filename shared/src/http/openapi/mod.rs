//! The OpenAPI 3.1 description, generated from the code: each function's route table gives its
//! operations (the handlers' `#[utoipa::path]`), the wire types give their schemas
//! (`ToSchema`), and this module adds what belongs to the API as a whole: its info, the bearer
//! scheme, the responses operations share, and the local server's route that serves it.
//!
//! Only with the `openapi` feature, which the local server enables and the Lambda functions do
//! not: their bootstraps link none of this.

pub mod pages;
pub mod refusals;
pub mod wire;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    Components, InfoBuilder, OpenApi, OpenApiBuilder, RefOr, Server, ServerBuilder,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Function;
use crate::service::Keyport;

/// The tag of the operations only the local server serves.
const LOCAL: &str = "local";

/// The description of every function's routes and of the local server's own.
pub fn document() -> OpenApi {
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Keyport")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "OAuth connection broker: administrators configure and authorize \
                     connections to SaaS applications; bots and users read a token that is \
                     valid right now. Every error is JSON {\"error\", \"message\", \
                     \"field\"?}; times are RFC 3339 UTC.",
                ))
                .build(),
        )
        .servers(Some([local_server()]))
        .build();
    let mut tags = Vec::new();
    for function in Function::ALL {
        api.merge(tagged(function.routes().into_openapi(), function.name()));
        tags.push(
            TagBuilder::new()
                .name(function.name())
                .description(Some(format!(
                    "Served by the {} Lambda function (and the local server).",
                    function.name()
                )))
                .build(),
        );
    }
    api.merge(tagged(local_routes().into_openapi(), LOCAL));
    tags.push(
        TagBuilder::new()
            .name(LOCAL)
            .description(Some("Served by the local server only."))
            .build(),
    );
    api.tags = Some(tags);
    let components = api.components.get_or_insert_with(Components::new);
    components.security_schemes.insert(
        "bearer".into(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "On AWS verified by API Gateway's JWT authorizer; locally by the server \
                     (keyport dev-token prints one).",
                ))
                .build(),
        )),
    );
    refusals::register(components);
    pages::register(components);
    close_objects(components);
    unwrap_doc_lines(&mut api);
    api
}

/// [`document`] as pretty-printed JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .expect("the description serializes")
    })
}

/// The local server's own routes (`GET /openapi.json`, `/health`, `/ready`), refusing other
/// methods in Keyport's error shape as the functions' routes do.
pub fn routes<S: Clone + Send + Sync + 'static>(keyport: Arc<Keyport>) -> Router<S> {
    local_routes()
        .split_for_parts()
        .0
        .method_not_allowed_fallback(super::routes::method_not_allowed)
        .with_state(keyport)
}

fn local_routes() -> OpenApiRouter<Arc<Keyport>> {
    OpenApiRouter::new()
        .routes(routes!(description))
        .routes(routes!(health))
        .routes(routes!(ready))
}

fn local_server() -> Server {
    ServerBuilder::new()
        .url("http://127.0.0.1:8080")
        .description(Some("The local server (keyport serve)."))
        .build()
}

/// This description (the local server).
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1.", body = wire::Document))
)]
async fn description() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

/// Liveness: the server answers. Unauthenticated, and it tells nothing but that.
#[utoipa::path(
    get, path = "/health", operation_id = "health",
    responses((status = 200, description = "The server is up.", body = wire::Health))
)]
async fn health() -> impl IntoResponse {
    axum::Json(wire::Health {
        status: wire::HealthStatus::Ok,
    })
}

/// Readiness: the store answers a read and the key service a data key (the result is reused
/// for a few seconds). Unauthenticated; it tells which of the two failed, nothing more.
#[utoipa::path(
    get, path = "/ready", operation_id = "ready",
    responses(
        (status = 200, description = "Ready to serve.", body = wire::Ready),
        (status = 503, description = "The store or the key service does not answer.", body = wire::Ready,
            headers(("Retry-After" = u32, description = "Seconds until the next check."))),
    )
)]
async fn ready(State(keyport): State<Arc<Keyport>>) -> impl IntoResponse {
    let readiness = keyport.readiness().await;
    let body = axum::Json(wire::Ready {
        status: if readiness.is_ready() {
            wire::ReadyStatus::Ready
        } else {
            wire::ReadyStatus::NotReady
        },
        checks: wire::ReadyChecks {
            store: readiness.store.into(),
            keys: readiness.keys.into(),
        },
    });
    if readiness.is_ready() {
        (axum::http::StatusCode::OK, body).into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            body,
        )
            .into_response()
    }
}

/// The methods `item` describes, as HTTP writes them.
pub(crate) fn methods(item: &PathItem) -> Vec<&'static str> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|_| method))
    .collect()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// `api` with each operation tagged with who serves it.
fn tagged(mut api: OpenApi, tag: &str) -> OpenApi {
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            operation.tags = Some(vec![tag.to_owned()]);
        }
    }
    api
}

/// Doc comments wrap at 100 columns; their line breaks are not the text's. A blank line (a
/// paragraph) stays.
fn unwrap(text: &mut String) {
    *text = text
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n");
}

/// [`unwrap`] over what doc comments become: operations' summaries and descriptions, their
/// parameters', and the component schemas' and their properties'.
fn unwrap_doc_lines(api: &mut OpenApi) {
    fn unwrap_schema(schema: &mut RefOr<Schema>) {
        match schema {
            RefOr::T(Schema::Object(object)) => {
                object.description.as_mut().map(unwrap);
                object.properties.values_mut().for_each(unwrap_schema);
                // A map keyed by an enum describes its keys with the enum's own schema.
                if let Some(keys) = object.property_names.take() {
                    let mut keys = RefOr::T(*keys);
                    unwrap_schema(&mut keys);
                    if let RefOr::T(keys) = keys {
                        object.property_names = Some(Box::new(keys));
                    }
                }
            }
            RefOr::T(Schema::Array(array)) => {
                array.description.as_mut().map(unwrap);
            }
            RefOr::T(Schema::OneOf(one_of)) => {
                one_of.description.as_mut().map(unwrap);
            }
            _ => {}
        }
    }
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            operation.summary.as_mut().map(unwrap);
            operation.description.as_mut().map(unwrap);
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter {
                    parameter.description.as_mut().map(unwrap);
                }
            }
        }
    }
    if let Some(components) = &mut api.components {
        components.schemas.values_mut().for_each(unwrap_schema);
    }
}

/// Every object schema with named properties refuses others. For a request that is what serde
/// does (`deny_unknown_fields`, which the derive already describes); for a response it is a
/// promise that Keyport writes no field its description does not name, which the tests hold it
/// to by validating real answers.
fn close_objects(components: &mut Components) {
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::Object(object)) = schema
            && !object.properties.is_empty()
            && object.additional_properties.is_none()
        {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}
