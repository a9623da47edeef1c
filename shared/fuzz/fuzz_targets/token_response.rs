//! A provider's token endpoint answer (the body), through the path Keyport's code exchange,
//! client-credentials, password and refresh requests take: the `oauth2` crate's response
//! handling with Keyport's `ProviderTokenResponse`, then `TokenGrant::from_response` for a
//! grant, or `OAuthError`'s mapping for a refusal. Each body is read as a 200 and as a 400.
//!
//! Beyond "no panic": a grant re-serialises and re-parses to the same grant, and seals and
//! unseals to the same secrets; what `Debug` and `Display` print does not depend on the token
//! values, the id token or the provider's extra fields (all secret).
#![no_main]

use chrono::{DateTime, Utc};
use keyport_shared::adapters::outbound::OutboundError;
use keyport_shared::domain::TokenSecrets;
use keyport_shared::oauth::{OAuthError, ProviderTokenResponse, TokenGrant};
use libfuzzer_sys::fuzz_target;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{AuthorizationCode, Client, ClientId, HttpRequest, HttpResponse, TokenUrl};
use oauth2::{EndpointNotSet, StandardRevocableToken};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

/// The fields of a token response that are secret: never printed, never in an error.
const SECRET_FIELDS: [&str; 3] = ["access_token", "refresh_token", "id_token"];
/// The fields Keyport reads as metadata or shows from a refusal; every other field of a grant
/// is a (sealed) extra.
const PUBLIC_FIELDS: [&str; 6] = [
    "token_type",
    "expires_in",
    "scope",
    "error",
    "error_description",
    "error_uri",
];
const REQUESTED_SCOPE: &str = "openid offline_access api:read";

fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

/// The provider answers `status` with `body`; what Keyport's client reads of it.
fn respond(status: u16, body: &[u8]) -> Result<ProviderTokenResponse, OAuthError> {
    // The same type parameters as Keyport's `ProviderClient`, with only the token URL set.
    let client: Client<
        BasicErrorResponse,
        ProviderTokenResponse,
        BasicTokenIntrospectionResponse,
        StandardRevocableToken,
        BasicRevocationErrorResponse,
        EndpointNotSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointNotSet,
        _,
    > = Client::new(ClientId::new("keyport".into()))
        .set_token_uri(TokenUrl::new("https://idp.example.com/token".into()).expect("a URL"));
    let provider = |_request: HttpRequest| -> Result<HttpResponse, OutboundError> {
        Ok(http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json;charset=UTF-8")
            .body(body.to_vec())
            .expect("a response"))
    };
    Ok(client
        .exchange_code(AuthorizationCode::new("code".into()))
        .request(&provider)?)
}

fn grant(response: ProviderTokenResponse) -> TokenGrant {
    TokenGrant::from_response(response, Some(REQUESTED_SCOPE), received_at())
}

fn answer(status: u16, body: &[u8]) -> Result<TokenGrant, OAuthError> {
    respond(status, body).map(grant)
}

fn same_secrets(a: &TokenSecrets, b: &TokenSecrets, with_id_token: bool) -> bool {
    let id = |s: &TokenSecrets| s.id_token.as_ref().map(|t| t.expose_secret().to_owned());
    a.access_token.expose_secret() == b.access_token.expose_secret()
        && a.refresh_token.as_ref().map(|t| t.expose_secret())
            == b.refresh_token.as_ref().map(|t| t.expose_secret())
        && (!with_id_token || id(a) == id(b))
        // Exactly: serde_json's float_roundtrip keeps a number beyond an integer's range (read
        // as the nearest f64) the same through every write and read.
        && a.extra == b.extra
}

fn same_grant(a: &TokenGrant, b: &TokenGrant, with_id_token: bool) -> bool {
    same_secrets(&a.secrets, &b.secrets, with_id_token)
        && a.token_type == b.token_type
        && a.expires_at == b.expires_at
        && a.scope == b.scope
}

fn check_grant(grant: &TokenGrant) {
    if let Some(expires_at) = grant.expires_at {
        assert!(expires_at > received_at(), "an expiry in the past");
    }
    assert!(!grant.token_type.is_empty(), "an empty token type");
    // Sealed and unsealed: the same secrets.
    let unsealed = TokenSecrets::from_plaintext(&grant.secrets.to_plaintext())
        .expect("sealed secrets read back");
    assert!(
        same_secrets(&grant.secrets, &unsealed, true),
        "the seal changed the secrets"
    );
}

/// The body with every secret value replaced: what is printed must not change.
fn redacted(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Object(fields) = &mut value {
        for (name, field) in fields.iter_mut() {
            let secret = SECRET_FIELDS.contains(&name.as_str());
            if (secret && field.is_string()) || (!secret && !PUBLIC_FIELDS.contains(&name.as_str()))
            {
                *field = Value::String(format!("REDACTED-{name}"));
            }
        }
    }
    value
}

fn printed(result: &Result<TokenGrant, OAuthError>) -> String {
    match result {
        Ok(grant) => format!("{grant:?}"),
        Err(error) => format!("{error} {error:?}"),
    }
}

fuzz_target!(|body: &[u8]| {
    for status in [200, 400] {
        let result = respond(status, body).map(|response| {
            // Re-serialised and read again: the same grant, less the id token (which is never
            // serialised).
            let again = serde_json::to_vec(&response).expect("a response serialises");
            let first = grant(response);
            let reparsed = answer(status, &again).expect("a re-serialised response parses");
            assert!(
                same_grant(&first, &reparsed, false),
                "the grant changed when re-read"
            );
            first
        });
        match &result {
            Ok(grant) => check_grant(grant),
            Err(error) => {
                if matches!(
                    error,
                    OAuthError::InvalidGrant { .. }
                        | OAuthError::InvalidClient { .. }
                        | OAuthError::InvalidScope { .. }
                        | OAuthError::Rejected { .. }
                ) {
                    let text = error.to_string();
                    assert!(!text.chars().any(char::is_control), "unprintable: {text:?}");
                }
            }
        }
        // The same body with its secret values replaced prints the same.
        let Ok(value) = Value::deserialize(&mut serde_json::Deserializer::from_slice(body)) else {
            continue;
        };
        let plain = answer(status, &serde_json::to_vec(&value).expect("JSON"));
        let hidden = answer(
            status,
            &serde_json::to_vec(&redacted(&value)).expect("JSON"),
        );
        assert_eq!(
            printed(&plain),
            printed(&hidden),
            "a secret value changed what is printed"
        );
        if let (Ok(grant), Ok(plain)) = (&result, &plain) {
            assert!(
                same_grant(grant, plain, true),
                "re-serialising the body changed the grant"
            );
        }
    }
});
