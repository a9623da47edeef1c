//! Endpoint discovery for `custom` connections: OpenID Connect Discovery 1.0 and RFC 8414
//! authorization server metadata, from an issuer URL. Both documents are read, since a server
//! may publish an endpoint (revocation, typically) in one only; the OpenID one wins where both
//! name an endpoint. Each must name the same issuer (both specifications require it), or
//! discovery is refused.

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
    /// RFC 9207: the server puts `iss` in every authorization response.
    pub iss_parameter_supported: bool,
    /// Where the issuer publishes its signing keys (OpenID Connect): ID tokens verify with them.
    pub jwks_url: Option<EndpointUrl>,
    /// The `response_type` values the server supports (empty when it does not say).
    pub response_types: Vec<String>,
}

impl DiscoveredEndpoints {
    /// Fills what this document left out from `other`, a second document of the same issuer.
    fn completed_by(mut self, other: DiscoveredEndpoints) -> Self {
        self.authorization_url = self.authorization_url.or(other.authorization_url);
        self.revocation_url = self.revocation_url.or(other.revocation_url);
        if self.token_endpoint_auth_methods.is_empty() {
            self.token_endpoint_auth_methods = other.token_endpoint_auth_methods;
        }
        if self.code_challenge_methods.is_empty() {
            self.code_challenge_methods = other.code_challenge_methods;
        }
        self.iss_parameter_supported |= other.iss_parameter_supported;
        self.jwks_url = self.jwks_url.or(other.jwks_url);
        if self.response_types.is_empty() {
            self.response_types = other.response_types;
        }
        self
    }
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
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    jwks_uri: Option<String>,
    #[serde(default)]
    response_types_supported: Vec<String>,
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
    let mut found: Option<DiscoveredEndpoints> = None;
    let mut last_error = None;
    for location in metadata_urls(issuer) {
        let url = EndpointUrl::parse("issuer", &location, http.policy())
            .map_err(|e| OAuthError::Refused(e.message))?;
        match http.get_json(&url).await {
            // A document that is there but wrong (another issuer, a bad endpoint) refuses
            // the whole discovery: it is not a document that is merely missing.
            Ok(document) => {
                let endpoints = endpoints_from(document, issuer, http)?;
                found = Some(match found {
                    Some(first) => first.completed_by(endpoints),
                    None => endpoints,
                });
            }
            Err(error) => last_error = Some(OAuthError::from(error)),
        }
    }
    found.ok_or_else(|| {
        last_error.unwrap_or_else(|| OAuthError::BadResponse("no discovery document".into()))
    })
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
        iss_parameter_supported: metadata.authorization_response_iss_parameter_supported,
        jwks_url: parse("jwks_uri", metadata.jwks_uri)?,
        response_types: metadata.response_types_supported,
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

    /// An authorization server whose OpenID document names no revocation endpoint but whose
    /// RFC 8414 document does, served on loopback.
    #[tokio::test]
    async fn both_documents_are_read_and_merged() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (openid, rfc8414) = (
            serde_json::json!({
                "issuer": base, "token_endpoint": format!("{base}/token"),
                "authorization_endpoint": format!("{base}/authorize"),
            }),
            serde_json::json!({
                "issuer": base, "token_endpoint": format!("{base}/other-token"),
                "revocation_endpoint": format!("{base}/revoke"),
                "authorization_response_iss_parameter_supported": true,
            }),
        );
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(openid) }),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || async move { axum::Json(rfc8414) }),
            );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = OutboundHttp::new(OutboundSettings::new(UrlPolicy::LocalDevelopment)).unwrap();
        let issuer = EndpointUrl::parse("issuer", &base, UrlPolicy::LocalDevelopment).unwrap();
        let found = discover(&http, &issuer).await.unwrap();
        server.abort();
        assert_eq!(
            found.token_url.as_str(),
            format!("{base}/token"),
            "OpenID's wins"
        );
        assert_eq!(
            found.revocation_url.map(|u| u.as_str().to_owned()),
            Some(format!("{base}/revoke")),
            "the revocation endpoint only RFC 8414 names"
        );
        assert!(found.iss_parameter_supported);
    }
}
