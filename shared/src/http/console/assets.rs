//! The console's page and its script and style sheet, shipped inside the binary (no front-end
//! build step), every response with a strict Content-Security-Policy: scripts and styles from
//! the console itself only, no inline script, no framing.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// What every console response may load. `connect-src 'self'`: the pages talk only to Keyport;
/// `form-action 'self'`, `frame-ancestors 'none'`, `base-uri 'none'` against the usual tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const INDEX: &str = include_str!("assets/index.html");

/// The files under `/console/assets/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
];

/// The headers every console response carries.
pub fn secure_page_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    // A completion value travels in the console's URL: it must not leak to another site.
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
}

fn with_headers(mut response: Response) -> Response {
    secure_page_headers(response.headers_mut());
    response
}

/// Every console page is the same document; its script shows the screen the path names.
pub async fn index() -> Response {
    with_headers(Html(INDEX).into_response())
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => with_headers(
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                *body,
            )
                .into_response(),
        ),
        None => problem_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "The console has no such file.",
        ),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page that says what went wrong (sign-in links, the identity provider's answers), in the
/// console's look, with a way back.
pub fn problem_page(status: StatusCode, title: &str, why: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Keyport</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body><main class=\"narrow\"><h1>{title}</h1><p class=\"problem\" role=\"alert\">{why}</p>\
         <p><a href=\"/console/\">Back to the console</a></p></main></body></html>",
        title = escape(title),
        why = escape(why),
    );
    with_headers((status, Html(html)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_inline() {
        assert!(!INDEX.contains("<script>"), "no inline script");
        assert!(!INDEX.contains(" style="), "no inline style");
        assert!(
            !INDEX.contains(" onclick=") && !INDEX.contains(" onload="),
            "no inline handlers"
        );
        assert!(INDEX.contains("/console/assets/console.js"));
    }

    #[test]
    fn the_console_names_every_event_type_the_server_sends() {
        let script = include_str!("assets/console.js");
        for event_type in crate::domain::EventType::ALL {
            assert!(
                script.contains(&format!("\"{}\":", event_type.as_str())),
                "console.js has no words for {event_type}"
            );
        }
    }

    #[test]
    fn a_problem_page_escapes_what_it_says() {
        let response = problem_page(StatusCode::BAD_REQUEST, "<b>", "a & b");
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }
}
