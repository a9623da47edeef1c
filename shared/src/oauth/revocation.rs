//! Token revocation (RFC 7009): one form POST to the revocation endpoint with the client's
//! usual authentication. Built here rather than through the `oauth2` crate, which refuses any
//! revocation endpoint that is not https — and the local development mode talks plain http to
//! a provider on the same machine. Production still only reaches https endpoints: the
//! outbound client enforces the URL policy on every request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use url::form_urlencoded;

use super::assertion::assertion_params;
use super::client::ClientCredentials;
use super::error::OAuthError;
use crate::domain::{ClientAuthMethod, Connection, EndpointUrl, TokenSecrets};

/// The revocation request for the grant behind `secrets`: its refresh token when there is one
/// (revoking it ends the grant, RFC 7009 §2.1), else its access token.
pub fn revocation_request(
    connection: &Connection,
    endpoint: &EndpointUrl,
    credentials: &ClientCredentials,
    secrets: &TokenSecrets,
) -> Result<oauth2::HttpRequest, OAuthError> {
    let (token, hint) = match &secrets.refresh_token {
        Some(refresh) => (refresh, "refresh_token"),
        None => (&secrets.access_token, "access_token"),
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token.expose_secret())
        .append_pair("token_type_hint", hint);
    let mut authorization: Option<SecretString> = None;
    match connection.client_auth {
        ClientAuthMethod::ClientSecretBasic => {
            let secret = client_secret(credentials)?;
            // RFC 6749 §2.3.1: each part form-URL-encoded before the Basic encoding.
            let encode =
                |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                encode(&connection.client_id),
                encode(secret.expose_secret())
            );
            authorization = Some(SecretString::from(format!(
                "Basic {}",
                STANDARD.encode(pair)
            )));
        }
        ClientAuthMethod::ClientSecretPost => {
            let secret = client_secret(credentials)?;
            form.append_pair("client_id", &connection.client_id)
                .append_pair("client_secret", secret.expose_secret());
        }
        ClientAuthMethod::PrivateKeyJwt => {
            form.append_pair("client_id", &connection.client_id);
            for (name, value) in assertion_params(
                credentials.private_key.as_ref(),
                &connection.client_id,
                connection.token_url.as_str(),
            )? {
                form.append_pair(name, value.expose_secret());
            }
        }
    }
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(endpoint.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    if let Some(value) = &authorization {
        request = request.header(http::header::AUTHORIZATION, value.expose_secret());
    }
    request
        .body(form.finish().into_bytes())
        .map_err(|e| OAuthError::Configuration(format!("cannot build the revocation request: {e}")))
}

fn client_secret(
    credentials: &ClientCredentials,
) -> Result<&crate::domain::ClientSecret, OAuthError> {
    credentials.client_secret.as_ref().ok_or_else(|| {
        OAuthError::Configuration("no client secret is stored for this connection".into())
    })
}

/// RFC 7009 §2.2: 200 means revoked (or already invalid); §2.2.1 errors come as JSON.
pub fn check_revocation_response(response: &oauth2::HttpResponse) -> Result<(), OAuthError> {
    if response.status().is_success() {
        return Ok(());
    }
    let error: Option<serde_json::Value> = serde_json::from_slice(response.body()).ok();
    let code = error
        .as_ref()
        .and_then(|e| e.get("error"))
        .and_then(|e| e.as_str())
        .unwrap_or("revocation_failed")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect::<String>();
    Err(match code.as_str() {
        "invalid_client" => OAuthError::InvalidClient { description: None },
        _ => OAuthError::Rejected {
            code,
            description: Some(format!("HTTP {}", response.status().as_u16())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientSecret, ConnectionInput, UrlPolicy};
    use chrono::Utc;

    fn connection(client_auth: &str) -> Connection {
        let input: ConnectionInput = serde_json::from_value(serde_json::json!({
            "name": "r", "grant_type": "client_credentials", "client_id": "my client",
            "client_secret": "x", "client_auth": client_auth, "token_url": "https://idp.example/token",
            "revocation_url": "https://idp.example/revoke"
        }))
        .unwrap();
        Connection::create(input, Utc::now(), UrlPolicy::Production)
            .unwrap()
            .0
    }

    fn secrets(refresh: Option<&str>) -> TokenSecrets {
        TokenSecrets {
            access_token: SecretString::from("at"),
            refresh_token: refresh.map(SecretString::from),
            id_token: None,
            extra: serde_json::Map::new(),
        }
    }

    fn credentials() -> ClientCredentials {
        ClientCredentials {
            client_secret: Some(ClientSecret::new("s3cr:t+/=%&x")),
            ..ClientCredentials::default()
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let connection = connection("client_secret_basic");
        let request = revocation_request(
            &connection,
            connection.revocation_url.as_ref().unwrap(),
            &credentials(),
            &secrets(Some("rt")),
        )
        .unwrap();
        let header = request.headers()[http::header::AUTHORIZATION]
            .to_str()
            .unwrap();
        let decoded = String::from_utf8(
            STANDARD
                .decode(header.strip_prefix("Basic ").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(decoded, "my+client:s3cr%3At%2B%2F%3D%25%26x");
        let body = String::from_utf8(request.body().clone()).unwrap();
        assert_eq!(body, "token=rt&token_type_hint=refresh_token");
    }

    #[test]
    fn post_credentials_go_in_the_body_and_the_access_token_is_revoked_without_a_refresh_token() {
        let connection = connection("client_secret_post");
        let request = revocation_request(
            &connection,
            connection.revocation_url.as_ref().unwrap(),
            &credentials(),
            &secrets(None),
        )
        .unwrap();
        assert!(request.headers().get(http::header::AUTHORIZATION).is_none());
        let body = String::from_utf8(request.body().clone()).unwrap();
        assert_eq!(
            body,
            "token=at&token_type_hint=access_token&client_id=my+client&client_secret=s3cr%3At%2B%2F%3D%25%26x"
        );
    }

    #[test]
    fn error_responses_are_typed() {
        let response = http::Response::builder()
            .status(401)
            .body(br#"{"error":"invalid_client"}"#.to_vec())
            .unwrap();
        assert!(matches!(
            check_revocation_response(&response),
            Err(OAuthError::InvalidClient { .. })
        ));
        let ok = http::Response::builder()
            .status(200)
            .body(Vec::new())
            .unwrap();
        assert!(check_revocation_response(&ok).is_ok());
    }
}
