//! A provider's departures from RFC 6749 at its token endpoint, applied from the catalog's
//! `[provider.protocol]` data around the `oauth2` crate's requests: the crate builds every
//! request and reads every answer; these functions only translate between it and the provider.
//! Pure functions over requests and answers, so each quirk is tested here without a network.

use std::sync::OnceLock;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use url::form_urlencoded;

use crate::catalog::{Catalog, RESERVED_CALLBACK_PARAMS};
use crate::domain::{
    Connection, ProviderProtocol, RequestEncoding, ValidationError, is_token_like_field,
};

const JSON: &str = "application/json";
/// The token fields of a token answer: lifted together from a nested user token, so a bot
/// token's refresh token or lifetime never pairs with the person's access token.
const TOKEN_FIELDS: &[&str] = &[
    "access_token",
    "refresh_token",
    "expires_in",
    "scope",
    "token_type",
];
/// Callback values are identifiers (a realm id, a shop's host name), not documents.
const MAX_CALLBACK_VALUE: usize = 255;

/// The protocol of a connection's provider: the catalog's, or RFC 6749's for a provider the
/// catalog does not know (custom connections).
pub(crate) fn protocol_of(connection: &Connection) -> &'static ProviderProtocol {
    static RFC: OnceLock<ProviderProtocol> = OnceLock::new();
    Catalog::builtin()
        .get(connection.provider.as_str())
        .map(|provider| &provider.protocol)
        .unwrap_or_else(|| RFC.get_or_init(ProviderProtocol::default))
}

/// A token-endpoint request as the provider wants it: JSON always asked for, and the body
/// re-encoded as a JSON object of strings where the provider takes JSON. Headers the crate set
/// for client authentication stay as they are.
pub(crate) fn adapt_request(
    mut request: oauth2::HttpRequest,
    protocol: &ProviderProtocol,
) -> oauth2::HttpRequest {
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(JSON));
    if protocol.token_request_body == RequestEncoding::Json && !is_json(request.headers()) {
        let body = Value::Object(form_to_object(request.body()));
        *request.body_mut() = body.to_string().into_bytes();
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    }
    request
}

/// A token-endpoint answer as the crate reads it: a form-encoded answer as JSON, a failure
/// inside a 200 answer as the 400 error RFC 6749 §5.2 describes, and for a person's grant the
/// person's token lifted out of the object that nests it.
pub(crate) fn adapt_response(
    response: oauth2::HttpResponse,
    protocol: &ProviderProtocol,
    interactive: bool,
) -> oauth2::HttpResponse {
    let (mut parts, mut body) = response.into_parts();
    if protocol.form_encoded_responses
        && !body.is_empty()
        && !looks_like_json(&parts.headers, &body)
    {
        body = Value::Object(form_to_object(&body))
            .to_string()
            .into_bytes();
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    }
    if parts.status == StatusCode::OK
        && looks_like_json(&parts.headers, &body)
        && let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body)
    {
        if let Some(error) = failure_in(&fields, protocol) {
            parts.status = StatusCode::BAD_REQUEST;
            body = Value::Object(error).to_string().into_bytes();
        } else if interactive
            && let Some(nesting) = &protocol.user_token_field
            && lift_user_token(&mut fields, nesting)
        {
            body = Value::Object(fields).to_string().into_bytes();
        }
    }
    if parts.status.is_client_error() && !protocol.error_codes.is_empty() {
        body = with_rfc_error_code(body, protocol);
    }
    http::Response::from_parts(parts, body)
}

/// An error answer whose `error` is one of the provider's own codes, with the RFC 6749 code
/// the catalog says it means.
fn with_rfc_error_code(body: Vec<u8>, protocol: &ProviderProtocol) -> Vec<u8> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let Some(rfc_code) = fields
        .get("error")
        .and_then(Value::as_str)
        .and_then(|code| protocol.error_codes.get(code))
    else {
        return body;
    };
    fields.insert("error".into(), Value::String(rfc_code.clone()));
    Value::Object(fields).to_string().into_bytes()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct.starts_with(JSON) || ct.split(';').next().is_some_and(|m| m.ends_with("+json"))
        })
}

/// JSON by its content type, or, without one, by its first character.
fn looks_like_json(headers: &HeaderMap, body: &[u8]) -> bool {
    match headers.get(CONTENT_TYPE) {
        Some(_) => is_json(headers),
        None => body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
    }
}

/// Every pair of a form body as a string field (the last of a repeated name wins; token
/// requests and answers repeat none).
fn form_to_object(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect()
}

/// The RFC 6749 error body for a 200 answer that reports a failure: the provider's success
/// field is `false` (Slack's `"ok": false`), or the answer holds an `error` and no access token
/// (GitHub answers a bad code that way). Only `error` and its description are carried over,
/// never the rest of the answer.
fn failure_in(
    fields: &Map<String, Value>,
    protocol: &ProviderProtocol,
) -> Option<Map<String, Value>> {
    let flagged = protocol
        .success_field
        .as_ref()
        .is_some_and(|field| fields.get(field) == Some(&Value::Bool(false)));
    let error = fields.get("error").and_then(Value::as_str);
    let unflagged_error = error.is_some() && !fields.contains_key("access_token");
    if !flagged && !unflagged_error {
        return None;
    }
    let mut body = Map::new();
    body.insert(
        "error".into(),
        Value::String(
            error
                .filter(|e| !e.is_empty())
                .unwrap_or("unspecified_error")
                .to_owned(),
        ),
    );
    if let Some(description) = fields.get("error_description").and_then(Value::as_str) {
        body.insert(
            "error_description".into(),
            Value::String(description.to_owned()),
        );
    }
    Some(body)
}

/// Moves the token fields of `fields[nesting]` to the top, replacing the top's own (an app's
/// token issued alongside). `false` when there is no nested access token to lift: a refresh
/// answer, or an authorization that gave the person no token.
fn lift_user_token(fields: &mut Map<String, Value>, nesting: &str) -> bool {
    let Some(Value::Object(nested)) = fields.get_mut(nesting) else {
        return false;
    };
    if !nested.contains_key("access_token") {
        return false;
    }
    let lifted: Vec<(String, Value)> = TOKEN_FIELDS
        .iter()
        .filter_map(|name| {
            nested
                .remove(*name)
                .map(|value| ((*name).to_owned(), value))
        })
        .collect();
    for name in TOKEN_FIELDS {
        fields.remove(*name);
    }
    fields.extend(lifted);
    true
}

/// The callback query's values the provider's protocol names (`callback_params`), to keep
/// with the token. A name that is absent is skipped; one that appears twice, or whose value is
/// empty, too long or more than a plain identifier, refuses the callback.
pub(crate) fn callback_values(
    query: &str,
    protocol: &ProviderProtocol,
) -> Result<Map<String, Value>, ValidationError> {
    let mut kept = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let declared = protocol.callback_params.iter().any(|p| *p == name);
        if !declared
            || RESERVED_CALLBACK_PARAMS.contains(&name.as_ref())
            || is_token_like_field(&name)
        {
            continue;
        }
        if kept.contains_key(name.as_ref()) {
            return Err(ValidationError::new(
                name.into_owned(),
                "appears more than once",
            ));
        }
        if !is_plain_value(&value) {
            return Err(ValidationError::new(
                name.into_owned(),
                format!(
                    "must be 1 to {MAX_CALLBACK_VALUE} printable ASCII characters without spaces, quotes or angle brackets"
                ),
            ));
        }
        kept.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    Ok(kept)
}

fn is_plain_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CALLBACK_VALUE
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"'`\\".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol(toml: &str) -> ProviderProtocol {
        toml::from_str(toml).expect("a protocol table")
    }

    fn form_request() -> oauth2::HttpRequest {
        http::Request::builder()
            .method("POST")
            .uri("https://provider.example/token")
            .header(ACCEPT, JSON)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("authorization", "Basic Y2xpZW50OnNlY3JldA==")
            .body(b"grant_type=authorization_code&code=a%2Fb&redirect_uri=https%3A%2F%2Fk.example%2Fcb".to_vec())
            .unwrap()
    }

    fn answer(status: u16, content_type: Option<&str>, body: &str) -> oauth2::HttpResponse {
        let mut builder = http::Response::builder().status(status);
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        builder.body(body.as_bytes().to_vec()).unwrap()
    }

    fn json_of(response: &oauth2::HttpResponse) -> Value {
        serde_json::from_slice(response.body()).expect("a JSON body")
    }

    #[test]
    fn rfc_providers_keep_their_form_requests() {
        let request = adapt_request(form_request(), &ProviderProtocol::default());
        assert_eq!(
            request.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(request.headers()[ACCEPT], JSON);
        assert_eq!(request.body(), form_request().body());
    }

    #[test]
    fn json_providers_get_the_same_parameters_as_a_json_object() {
        let request = adapt_request(form_request(), &protocol("token_request_body = \"json\""));
        assert_eq!(request.headers()[CONTENT_TYPE], JSON);
        assert_eq!(request.headers()[ACCEPT], JSON);
        assert_eq!(
            request.headers()["authorization"],
            "Basic Y2xpZW50OnNlY3JldA==",
            "client authentication stays where the crate put it"
        );
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "grant_type": "authorization_code",
                "code": "a/b",
                "redirect_uri": "https://k.example/cb",
            })
        );
    }

    #[test]
    fn form_encoded_answers_are_read_as_json_where_the_provider_sends_them() {
        let github = protocol("form_encoded_responses = true");
        let form = "access_token=gho_abc&token_type=bearer&scope=repo%2Cgist&expires_in=28800";
        let read = adapt_response(
            answer(
                200,
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                form,
            ),
            &github,
            true,
        );
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers()[CONTENT_TYPE], JSON);
        assert_eq!(
            json_of(&read),
            serde_json::json!({"access_token": "gho_abc", "token_type": "bearer", "scope": "repo,gist", "expires_in": "28800"})
        );
        // Asked for JSON, the provider answered JSON: nothing to translate.
        let json = r#"{"access_token":"gho_abc","token_type":"bearer"}"#;
        let read = adapt_response(answer(200, Some(JSON), json), &github, true);
        assert_eq!(read.body(), json.as_bytes());
        // Another provider's form answer is left for the crate to refuse.
        let read = adapt_response(
            answer(200, Some("application/x-www-form-urlencoded"), form),
            &ProviderProtocol::default(),
            true,
        );
        assert_eq!(read.body(), form.as_bytes());
    }

    #[test]
    fn an_error_inside_a_200_answer_becomes_an_rfc_error() {
        let slack = protocol("success_field = \"ok\"");
        let read = adapt_response(
            answer(
                200,
                Some(JSON),
                r#"{"ok":false,"error":"invalid_refresh_token","warning":"x","access_token":"leak?"}"#,
            ),
            &slack,
            true,
        );
        assert_eq!(read.status(), 400);
        assert_eq!(
            json_of(&read),
            serde_json::json!({"error": "invalid_refresh_token"}),
            "only the error is carried over"
        );
        let read = adapt_response(answer(200, Some(JSON), r#"{"ok":false}"#), &slack, true);
        assert_eq!(json_of(&read)["error"], "unspecified_error");
        let fine = r#"{"ok":true,"access_token":"xoxp-1"}"#;
        let read = adapt_response(answer(200, Some(JSON), fine), &slack, true);
        assert_eq!(
            (read.status().as_u16(), read.body().as_slice()),
            (200, fine.as_bytes())
        );

        // GitHub: a form-encoded error in a 200, without a success field.
        let github = protocol("form_encoded_responses = true");
        let read = adapt_response(
            answer(
                200,
                Some("application/x-www-form-urlencoded"),
                "error=bad_verification_code&error_description=The+code+is+wrong",
            ),
            &github,
            true,
        );
        assert_eq!(read.status(), 400);
        assert_eq!(
            json_of(&read),
            serde_json::json!({"error": "bad_verification_code", "error_description": "The code is wrong"})
        );
        // The crate maps it like any RFC error.
        let error: oauth2::basic::BasicErrorResponse = serde_json::from_slice(read.body()).unwrap();
        assert_eq!(error.error().as_ref(), "bad_verification_code");
    }

    #[test]
    fn the_persons_token_is_lifted_from_its_nesting_for_interactive_grants() {
        let slack = protocol("user_token_field = \"authed_user\"");
        let install = r#"{
            "ok": true, "access_token": "xoxb-bot", "token_type": "bot", "scope": "commands",
            "refresh_token": "xoxe-bot", "expires_in": 43200,
            "authed_user": {"id": "U1", "access_token": "xoxp-user", "token_type": "user",
                            "scope": "chat:write", "refresh_token": "xoxe-user", "expires_in": "43200"},
            "team": {"id": "T1"}
        }"#;
        let read = adapt_response(answer(200, Some(JSON), install), &slack, true);
        assert_eq!(
            json_of(&read),
            serde_json::json!({
                "ok": true, "access_token": "xoxp-user", "token_type": "user", "scope": "chat:write",
                "refresh_token": "xoxe-user", "expires_in": "43200",
                "authed_user": {"id": "U1"}, "team": {"id": "T1"}
            })
        );
        // Without a person's token (a bot-only install, or a refresh answer) nothing moves.
        let bot_only = r#"{"ok":true,"access_token":"xoxb-bot","authed_user":{"id":"U1"}}"#;
        let read = adapt_response(answer(200, Some(JSON), bot_only), &slack, true);
        assert_eq!(read.body(), bot_only.as_bytes());
        // Unattended grants have no person.
        let read = adapt_response(answer(200, Some(JSON), install), &slack, false);
        assert_eq!(json_of(&read)["access_token"], "xoxb-bot");
        // A bot token's refresh token never pairs with the person's access token.
        let partial = r#"{"access_token":"xoxb","refresh_token":"xoxe-bot","authed_user":{"access_token":"xoxp"}}"#;
        let read = adapt_response(answer(200, Some(JSON), partial), &slack, true);
        assert_eq!(
            json_of(&read),
            serde_json::json!({"access_token": "xoxp", "authed_user": {}})
        );
    }

    #[test]
    fn a_providers_own_error_codes_read_as_the_rfc_codes_they_mean() {
        let github = protocol(
            "form_encoded_responses = true\nerror_codes = { bad_verification_code = \"invalid_grant\" }",
        );
        let read = adapt_response(
            answer(
                200,
                Some("application/x-www-form-urlencoded"),
                "error=bad_verification_code&error_description=The+code+is+wrong",
            ),
            &github,
            true,
        );
        assert_eq!(read.status(), 400);
        assert_eq!(
            json_of(&read),
            serde_json::json!({"error": "invalid_grant", "error_description": "The code is wrong"})
        );
        let unlisted = adapt_response(
            answer(400, Some(JSON), r#"{"error":"redirect_uri_mismatch"}"#),
            &github,
            true,
        );
        assert_eq!(json_of(&unlisted)["error"], "redirect_uri_mismatch");
    }

    #[test]
    fn error_statuses_pass_through_untouched() {
        let slack = protocol("success_field = \"ok\"\nuser_token_field = \"authed_user\"");
        let body = r#"{"error":"invalid_grant"}"#;
        let read = adapt_response(answer(400, Some(JSON), body), &slack, true);
        assert_eq!(
            (read.status().as_u16(), read.body().as_slice()),
            (400, body.as_bytes())
        );
        // A form-encoded error status is still made readable for a form-answering provider.
        let github = protocol("form_encoded_responses = true");
        let read = adapt_response(
            answer(
                401,
                Some("application/x-www-form-urlencoded"),
                "error=invalid_client",
            ),
            &github,
            true,
        );
        assert_eq!(read.status(), 401);
        assert_eq!(
            json_of(&read),
            serde_json::json!({"error": "invalid_client"})
        );
    }

    #[test]
    fn declared_callback_values_are_kept_and_checked() {
        let quickbooks = protocol("callback_params = [\"realmId\", \"code\", \"shop\"]");
        let kept = callback_values(
            "code=c&state=s&realmId=4620816365213455&other=x",
            &quickbooks,
        )
        .unwrap();
        assert_eq!(
            Value::Object(kept),
            serde_json::json!({"realmId": "4620816365213455"}),
            "only declared names, never the code"
        );
        let kept = callback_values("shop=acme.myshopify.com&code=c", &quickbooks).unwrap();
        assert_eq!(kept["shop"], "acme.myshopify.com");
        assert!(
            callback_values("code=c", &quickbooks).unwrap().is_empty(),
            "an absent value is not an error"
        );
        for bad in [
            "realmId=1&realmId=2",
            "realmId=",
            "realmId=%3Cscript%3E",
            "realmId=a+b",
            "realmId=a%0Ab",
            "realmId=%22",
        ] {
            assert_eq!(
                callback_values(bad, &quickbooks).unwrap_err().field,
                "realmId",
                "{bad}"
            );
        }
        let long = format!("realmId={}", "1".repeat(MAX_CALLBACK_VALUE + 1));
        assert!(callback_values(&long, &quickbooks).is_err());
        let longest = format!("realmId={}", "1".repeat(MAX_CALLBACK_VALUE));
        assert!(callback_values(&longest, &quickbooks).is_ok());
        // Undeclared names are never looked at, however they look.
        assert!(
            callback_values("realmId=1&x=%3C%3E&x=2", &ProviderProtocol::default())
                .unwrap()
                .is_empty()
        );
    }
}
