//! The callback's answers to a person's browser: a short HTML page, or a redirect to the
//! `redirect_after` page; never cached.

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr};

use super::refusals::required_header;

const CACHE_CONTROL: &str = "Cache-Control";

fn cache_control() -> Ref {
    Ref::new(format!("#/components/headers/{CACHE_CONTROL}"))
}

/// An HTML page answered with some status.
pub fn page(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .header_ref(CACHE_CONTROL, cache_control())
        .content(
            "text/html",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
        .build()
}

/// A 303 on to the page the authorization was started with.
pub fn redirect(description: &str) -> Response {
    let mut location = required_header(
        None,
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".into()))),
    );
    location.description = Some("The redirect_after URL, with the values added.".into());
    ResponseBuilder::new()
        .description(description)
        .header("Location", location)
        .header_ref(CACHE_CONTROL, cache_control())
        .build()
}

/// The header every page sends, into `components`.
pub(crate) fn register(components: &mut Components) {
    components.headers.insert(
        CACHE_CONTROL.into(),
        RefOr::T(required_header(
            Some("Pages carry a single-use value: never cached."),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["no-store"])),
        )),
    );
}
