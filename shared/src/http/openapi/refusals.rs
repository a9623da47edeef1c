//! The refusals operations share: one response per way Keyport refuses, each carrying the error
//! body (the one `ApiError` writes), the error code it always has where it has one, and the
//! header it always sends. An operation names the ones it answers with, e.g.
//! `(status = 404, response = NotFound)`; a test checks each is named under its own status.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::http::error::ErrorBody;

macro_rules! maybe {
    () => {
        None
    };
    ($value:literal) => {
        Some($value)
    };
}

/// `Name: status, "description" [code "error code"] [header "Header-Name"];` for each refusal.
macro_rules! refusals {
    ($($name:ident: $status:literal, $description:literal
        $(, code $code:literal)? $(, header $header:literal)?;)*) => {
        $(
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let response = refusal($description, maybe!($($code)?), maybe!($($header)?));
                    (stringify!($name), response.into())
                }
            }
        )*

        /// Each refusal's name and status.
        #[cfg(test)]
        pub(crate) const STATUSES: &[(&str, u16)] = &[$((stringify!($name), $status)),*];

        fn responses() -> Vec<(&'static str, RefOr<Response>)> {
            vec![$(<$name as utoipa::ToResponse>::response()),*]
        }
    };
}

refusals! {
    BadRequest: 400,
        "The request is malformed or invalid (body, query, path or a field's value); `field` names the field when there is one.";
    Unauthenticated: 401, "No bearer token, or one that does not verify.",
        code "unauthenticated", header "WWW-Authenticate";
    Forbidden: 403, "The caller's roles do not allow this.", code "forbidden";
    NotFound: 404, "No such connection (or token).", code "not_found";
    Conflict: 409,
        "A conflicting state: the name is taken, a stale version, a token not authorized yet or needing authorization again, or a disabled connection.";
    PayloadTooLarge: 413, "The body is larger than 64 KiB.", code "payload_too_large";
    UnsupportedMediaType: 415, "The body is not declared as JSON.",
        code "unsupported_media_type";
    BadGateway: 502, "The provider refused Keyport's client or answered nonsense.";
    Unavailable: 503,
        "The provider, storage or secret store is unavailable, or another refresh is running; try again after Retry-After.",
        header "Retry-After";
}

fn refusal(description: &str, code: Option<&str>, header: Option<&str>) -> Response {
    let body = Ref::from_schema_name(ErrorBody::name());
    let schema: RefOr<_> = match code {
        None => body.into(),
        Some(code) => AllOfBuilder::new()
            .item(body)
            .item(
                ObjectBuilder::new().property(
                    "error",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([code])),
                ),
            )
            .into(),
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(schema)).build(),
    );
    if let Some(name) = header {
        response = response.header_ref(name, Ref::new(format!("#/components/headers/{name}")));
    }
    response.build()
}

/// A header Keyport always sends where it is described. utoipa's `Header` has no `required`
/// (OpenAPI's Header Object does); its flattened extensions carry it.
pub(crate) fn required_header(description: Option<&str>, schema: ObjectBuilder) -> Header {
    let mut header = HeaderBuilder::new()
        .schema(Some(schema))
        .description(description)
        .build();
    header.extensions = Some(Extensions::from_iter([("required", true)]));
    header
}

/// The refusals, the headers they send and the error body, into `components`.
pub(crate) fn register(components: &mut Components) {
    for (name, response) in responses() {
        components.responses.insert(name.into(), response);
    }
    components.headers.insert(
        "WWW-Authenticate".into(),
        RefOr::T(required_header(
            Some("Always `Bearer`."),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["Bearer"])),
        )),
    );
    components.headers.insert(
        "Retry-After".into(),
        RefOr::T(required_header(
            Some("Seconds to wait before trying again."),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )),
    );
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
}
