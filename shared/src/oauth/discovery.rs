//! Endpoint discovery for `custom` connections: OpenID Connect Discovery 1.0, then RFC 8414
//! authorization server metadata, from an issuer URL. The document must name the same issuer
//! (both specifications require it), or it is refused.

use serde::Deserialize;

use super::error::OAuthError;
use crate::adapters::outbound::OutboundHttp;
use crate::domain::EndpointUrl;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredEndpoints {
    pub issuer: EndpointUrl,
    pub authorization_url: Option<EndpointUrl>,
    pub token_url: EndpointUrl,
    pub revocation_url: Option<EndpointUrl>,
    pub token_endpoint_auth_methods: Vec<String>,
    pub code_challenge_methods: Vec<String>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

/// The metadata locations for an issuer, in the order tried.
pub fn metadata_urls(issuer: &EndpointUrl) -> Vec<String> {
    let url = issuer.as_url();
    let base = url.as_str().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    vec![
        format!("{base}/.well-known/openid-configuration"),
        // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ]
}

pub async fn discover(
    http: &OutboundHttp,
    issuer: &EndpointUrl,
) -> Result<DiscoveredEndpoints, OAuthError> {
    let mut last_error = None;
    for location in metadata_urls(issuer) {
        let url = EndpointUrl::parse("issuer", &location, http.policy())
            .map_err(|e| OAuthError::Refused(e.message))?;
        match http.get_json(&url).await {
            Ok(document) => return endpoints_from(document, issuer, http),
            Err(error) => last_error = Some(OAuthError::from(error)),
        }
    }
    Err(last_error.unwrap_or_else(|| OAuthError::BadResponse("no discovery document".into())))
}

fn endpoints_from(
    document: serde_json::Value,
    issuer: &EndpointUrl,
    http: &OutboundHttp,
) -> Result<DiscoveredEndpoints, OAuthError> {
    let metadata: Metadata = serde_json::from_value(document)
        .map_err(|_| OAuthError::BadResponse("the discovery document lacks an issuer".into()))?;
    if metadata.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
        return Err(OAuthError::BadResponse(format!(
            "the discovery document names issuer {:?}, not the one asked for",
            metadata.issuer
        )));
    }
    let policy = http.policy();
    let parse = |field: &str, value: Option<String>| -> Result<Option<EndpointUrl>, OAuthError> {
        value
            .map(|v| {
                EndpointUrl::parse(field, &v, policy)
                    .map_err(|e| OAuthError::Refused(e.to_string()))
            })
            .transpose()
    };
    Ok(DiscoveredEndpoints {
        issuer: issuer.clone(),
        authorization_url: parse("authorization_endpoint", metadata.authorization_endpoint)?,
        token_url: parse("token_endpoint", metadata.token_endpoint)?.ok_or_else(|| {
            OAuthError::BadResponse("the discovery document has no token_endpoint".into())
        })?,
        revocation_url: parse("revocation_endpoint", metadata.revocation_endpoint)?,
        token_endpoint_auth_methods: metadata.token_endpoint_auth_methods_supported,
        code_challenge_methods: metadata.code_challenge_methods_supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::outbound::OutboundSettings;
    use crate::domain::UrlPolicy;

    fn http() -> OutboundHttp {
        OutboundHttp::new(OutboundSettings::new(UrlPolicy::Production)).unwrap()
    }

    fn issuer(url: &str) -> EndpointUrl {
        EndpointUrl::parse("issuer", url, UrlPolicy::Production).unwrap()
    }

    #[test]
    fn metadata_locations_follow_both_specifications() {
        assert_eq!(
            metadata_urls(&issuer("https://idp.example/tenant1")),
            [
                "https://idp.example/tenant1/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/tenant1"
            ]
        );
    }

    #[test]
    fn a_document_for_another_issuer_is_refused() {
        let document = serde_json::json!({"issuer": "https://evil.example", "token_endpoint": "https://evil.example/token"});
        assert!(endpoints_from(document, &issuer("https://idp.example"), &http()).is_err());
    }

    #[test]
    fn endpoints_are_validated_like_any_other() {
        let document = serde_json::json!({"issuer": "https://idp.example", "token_endpoint": "https://169.254.169.254/token"});
        assert!(matches!(
            endpoints_from(document, &issuer("https://idp.example"), &http()),
            Err(OAuthError::Refused(_))
        ));
        let document = serde_json::json!({
            "issuer": "https://idp.example/", "token_endpoint": "https://idp.example/token",
            "authorization_endpoint": "https://idp.example/auth", "code_challenge_methods_supported": ["S256"]
        });
        let found = endpoints_from(document, &issuer("https://idp.example"), &http()).unwrap();
        assert_eq!(found.token_url.as_str(), "https://idp.example/token");
        assert_eq!(found.code_challenge_methods, ["S256"]);
    }
}
