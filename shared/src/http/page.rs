//! The short HTML page the callback shows a person: connected, or what failed. A redirect to
//! the caller-supplied page happens only for a URL that passed the allow-list when the
//! authorization started.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;
use crate::service::AuthorizationCompleted;

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

fn render(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{body}</p></body></html>",
        title = escape(title),
        body = escape(body)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("a header value"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'".parse().expect("a header value"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        "no-referrer".parse().expect("a header value"),
    );
    response
}

pub fn connected(done: &AuthorizationCompleted) -> Response {
    if let Some(target) = &done.redirect_after
        && let Ok(mut url) = url::Url::parse(target)
    {
        url.query_pairs_mut()
            .append_pair("keyport_status", "connected")
            .append_pair("connection_id", done.connection_id.as_str());
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url.to_string()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response();
    }
    render(
        StatusCode::OK,
        "Connected",
        &format!(
            "Keyport now holds the {} token of connection {}. You can close this page.",
            done.owner, done.connection_id
        ),
    )
}

pub fn failed(error: &ApiError) -> Response {
    if error.status().is_server_error() {
        tracing::error!(code = error.code(), error = ?error, "the callback failed");
    }
    render(error.status(), "Authorization failed", &error.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
