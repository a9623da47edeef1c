//! The short HTML page the callback shows a person: connected, or what failed. A redirect to
//! the caller-supplied page happens only for a URL that passed the allow-list when the
//! authorization started.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;
use crate::domain::ConnectionId;
use crate::service::AuthorizationAwaitingConfirmation;

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
    render_with_code(status, title, body, None)
}

/// A page with a value to copy (`code`) in its own element after the text.
fn render_with_code(status: StatusCode, title: &str, body: &str, code: Option<&str>) -> Response {
    let code = code
        .map(|code| {
            format!(
                "<p><code id=\"keyport-completion\">{}</code></p>",
                escape(code)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{body}</p>{code}</body></html>",
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

/// The grant is held for the principal who started the authorization: the browser goes on to
/// the allowed page with the completion value, or the person is shown it, to confirm as
/// themselves (`POST /oauth/complete`).
pub fn awaiting_confirmation(done: &AuthorizationAwaitingConfirmation) -> Response {
    let completion = done.completion.expose_secret();
    if let Some(target) = &done.redirect_after
        && let Ok(mut url) = url::Url::parse(target)
    {
        url.query_pairs_mut()
            .append_pair("keyport_status", "awaiting_confirmation")
            .append_pair("connection_id", done.connection_id.as_str())
            .append_pair("keyport_completion", completion);
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url.to_string()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::REFERRER_POLICY, "no-referrer".to_owned()),
            ],
        )
            .into_response();
    }
    render_with_code(
        StatusCode::OK,
        "Almost connected",
        &format!(
            "The provider granted access for the {} token of connection {}. Keyport places it only when whoever started this authorization confirms it as themselves, before {}: POST /oauth/complete with {{\"completion\": \"<the value below>\"}} and their own bearer token. If you did not start it, close this page: the grant expires unused.",
            done.owner,
            done.connection_id,
            done.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Some(completion),
    )
}

/// The provider refused the authorization (most often: the person declined): back to the
/// allowed page it was started from, to say so there. Nothing is held, so nothing to confirm.
/// `None` when that page's address does not parse (the failure page is shown instead).
pub fn declined(
    target: &str,
    connection_id: &ConnectionId,
    error: &str,
    description: Option<&str>,
) -> Option<Response> {
    let mut url = url::Url::parse(target).ok()?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("keyport_status", "denied")
            .append_pair("connection_id", connection_id.as_str())
            .append_pair("error", error);
        if let Some(description) = description {
            query.append_pair("error_description", description);
        }
    }
    Some(
        (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url.to_string()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::REFERRER_POLICY, "no-referrer".to_owned()),
            ],
        )
            .into_response(),
    )
}

/// A page that tells a person one thing, with the same headers as the callback's (no-store,
/// nothing loaded, no referrer): for Keyport's own clients' loopback pages too.
pub fn notice(status: StatusCode, title: &str, body: &str) -> Response {
    render(status, title, body)
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
    fn a_declined_authorization_goes_back_with_the_providers_refusal_and_nothing_to_confirm() {
        let id = ConnectionId::generate();
        let back = declined(
            "http://127.0.0.1:8080/console/complete?then=%2Fconsole%2Fme",
            &id,
            "access_denied",
            Some("The user said no"),
        )
        .expect("an address that parses");
        assert_eq!(back.status(), StatusCode::SEE_OTHER);
        assert_eq!(back.headers()[header::CACHE_CONTROL], "no-store");
        let location = url::Url::parse(
            back.headers()[header::LOCATION]
                .to_str()
                .expect("a header value"),
        )
        .expect("a URL");
        assert_eq!(location.path(), "/console/complete");
        let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(query["then"], "/console/me");
        assert_eq!(query["keyport_status"], "denied");
        assert_eq!(query["connection_id"], id.as_str());
        assert_eq!(query["error"], "access_denied");
        assert_eq!(query["error_description"], "The user said no");
        assert!(!query.contains_key("keyport_completion"));
        assert!(declined("not a URL", &id, "access_denied", None).is_none());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
