//! Who is calling. On AWS the API Gateway JWT authorizer has verified the token and hands its
//! claims to the function in the request context; locally the server verifies bearer JWTs
//! itself (issuer, audience, expiry, signature) against a JWKS URL or the development signing
//! key. Both paths turn claims into a [`Principal`] by the same rule.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tokio::sync::RwLock;

use crate::adapters::embedded::read_or_create_secret;
use crate::adapters::outbound::OutboundHttp;
use crate::domain::{EndpointUrl, Principal, Role, Subject};

/// What the authentication middleware found, for the [`super::extract::Caller`] extractor:
/// a principal, or why there is none (a sentence safe to return).
#[derive(Clone, Debug)]
pub struct Authenticated(pub Result<Principal, String>);

#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, String>;
}

/// Runs the authenticator on every request and records the outcome; routes that need a caller
/// refuse with 401 through the extractor, the callback route simply does not ask.
pub async fn authenticate(
    State(authenticator): State<Arc<dyn Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let outcome = authenticator.authenticate(&parts).await;
    parts.extensions.insert(Authenticated(outcome));
    next.run(Request::from_parts(parts, body)).await
}

/// Turns verified claims into a principal: `sub` is the subject, `roles_claim` the roles.
pub fn principal_from_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    roles_claim: &str,
) -> Result<Principal, String> {
    let subject = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .ok_or_else(|| "the token has no subject".to_owned())
        .and_then(|s| {
            Subject::parse(s).map_err(|_| "the token's subject is not valid".to_owned())
        })?;
    let roles = match claims.get(roles_claim) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(text)) => split_roles(text),
        Some(_) => {
            return Err(format!(
                "the {roles_claim} claim is neither a list nor a string"
            ));
        }
    };
    let roles = roles
        .iter()
        .filter_map(|r| Role::parse(r).ok())
        .collect::<Vec<_>>();
    Ok(Principal::new(subject, roles))
}

/// API Gateway flattens list claims to `[a b c]`; other issuers send `a,b` or `a b`.
fn split_roles(text: &str) -> Vec<String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|r| r.trim_matches('"'))
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// On Lambda behind the HTTP API's JWT authorizer: the token was verified by API Gateway.
pub struct ApiGatewayAuthorizer {
    pub roles_claim: String,
}

#[async_trait]
impl Authenticator for ApiGatewayAuthorizer {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, String> {
        let claims = match parts.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(context)) => context
                .authorizer
                .as_ref()
                .and_then(|a| a.jwt.as_ref())
                .map(|jwt| &jwt.claims),
            _ => None,
        };
        let claims = claims
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "a bearer token is required".to_owned())?;
        let claims: serde_json::Map<String, serde_json::Value> = claims
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        principal_from_claims(&claims, &self.roles_claim)
    }
}

/// Where the local server gets its verification keys.
pub enum VerificationKeys {
    /// The development signing key (HS256), shared with `keyport dev-token`.
    Development(DecodingKey),
    /// An identity provider's JWKS, fetched at start and again when an unknown key id appears.
    Jwks {
        url: EndpointUrl,
        http: OutboundHttp,
        cache: RwLock<(JwkSet, Instant)>,
    },
}

/// The local server's own bearer-token verification.
pub struct LocalJwtVerifier {
    keys: VerificationKeys,
    issuer: String,
    audience: String,
    roles_claim: String,
}

const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

impl LocalJwtVerifier {
    pub fn development(
        key: &DevSigningKey,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Self {
        Self {
            keys: VerificationKeys::Development(DecodingKey::from_secret(&key.secret[..])),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            roles_claim: roles_claim.to_owned(),
        }
    }

    pub async fn jwks(
        url: EndpointUrl,
        http: OutboundHttp,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<Self, String> {
        let set = fetch_jwks(&http, &url).await?;
        Ok(Self {
            keys: VerificationKeys::Jwks {
                url,
                http,
                cache: RwLock::new((set, Instant::now())),
            },
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            roles_claim: roles_claim.to_owned(),
        })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        validation
    }

    async fn decoding_key(&self, token: &str) -> Result<(DecodingKey, Algorithm), String> {
        match &self.keys {
            VerificationKeys::Development(key) => Ok((key.clone(), Algorithm::HS256)),
            VerificationKeys::Jwks { url, http, cache } => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|_| "the bearer token is not a JWT".to_owned())?;
                if matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return Err("the bearer token's algorithm is not accepted".into());
                }
                let find = |set: &JwkSet| match &header.kid {
                    Some(kid) => set.find(kid).cloned(),
                    None => set.keys.first().cloned(),
                };
                let mut jwk = find(&cache.read().await.0);
                if jwk.is_none() {
                    let mut guard = cache.write().await;
                    if guard.1.elapsed() >= JWKS_REFETCH_INTERVAL
                        && let Ok(set) = fetch_jwks(http, url).await
                    {
                        *guard = (set, Instant::now());
                    }
                    jwk = find(&guard.0);
                }
                let jwk =
                    jwk.ok_or_else(|| "the bearer token is signed with an unknown key".to_owned())?;
                let key = DecodingKey::from_jwk(&jwk)
                    .map_err(|_| "the signing key cannot be used".to_owned())?;
                Ok((key, header.alg))
            }
        }
    }
}

async fn fetch_jwks(http: &OutboundHttp, url: &EndpointUrl) -> Result<JwkSet, String> {
    let document = http
        .get_json(url)
        .await
        .map_err(|e| format!("cannot fetch the JWKS: {e}"))?;
    serde_json::from_value(document).map_err(|_| "the JWKS document is not a key set".to_owned())
}

#[async_trait]
impl Authenticator for LocalJwtVerifier {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, String> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| "a bearer token is required".to_owned())?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "the Authorization header must be \"Bearer <token>\"".to_owned())?;
        let (key, algorithm) = self.decoding_key(token).await?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &self.validation(algorithm),
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => "the bearer token has expired",
                ErrorKind::InvalidAudience => "the bearer token is for another audience",
                ErrorKind::InvalidIssuer => "the bearer token is from another issuer",
                ErrorKind::InvalidSignature => "the bearer token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the bearer token lacks a required claim",
                _ => "the bearer token is not valid",
            }
            .to_owned()
        })?;
        principal_from_claims(&data.claims, &self.roles_claim)
    }
}

/// The local server's development signing key: HS256, 32 random bytes in an owner-only file.
pub struct DevSigningKey {
    secret: zeroize::Zeroizing<[u8; 32]>,
}

impl DevSigningKey {
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        Ok(Self {
            secret: read_or_create_secret(path, b"KPDEV1")?,
        })
    }

    /// A token the local server accepts, for `subject` with `roles`.
    pub fn mint(
        &self,
        subject: &str,
        roles: &[String],
        lifetime: Duration,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<String, String> {
        let now = Utc::now().timestamp();
        self.mint_at(now, subject, roles, lifetime, issuer, audience, roles_claim)
    }

    /// A token whose lifetime ended an hour ago; for tests of expiry.
    pub fn mint_expired(
        &self,
        subject: &str,
        roles: &[String],
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<String, String> {
        let two_hours_ago = Utc::now().timestamp() - 7200;
        self.mint_at(
            two_hours_ago,
            subject,
            roles,
            Duration::from_secs(3600),
            issuer,
            audience,
            roles_claim,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn mint_at(
        &self,
        now: i64,
        subject: &str,
        roles: &[String],
        lifetime: Duration,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<String, String> {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), issuer.into());
        claims.insert("aud".into(), audience.into());
        claims.insert("sub".into(), subject.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + lifetime.as_secs() as i64).into());
        claims.insert(
            roles_claim.into(),
            roles
                .iter()
                .map(|r| serde_json::Value::from(r.as_str()))
                .collect::<Vec<_>>()
                .into(),
        );
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret[..]),
        )
        .map_err(|e| format!("cannot sign the token: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn roles_come_as_lists_or_flattened_strings() {
        for value in [
            serde_json::json!(["admins", "bots"]),
            serde_json::json!("[admins bots]"),
            serde_json::json!("admins,bots"),
            serde_json::json!("admins bots"),
        ] {
            let principal = principal_from_claims(
                &claims(serde_json::json!({"sub": "u", "cognito:groups": value})),
                "cognito:groups",
            )
            .unwrap();
            let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
            assert_eq!(roles, ["admins", "bots"]);
        }
    }

    #[test]
    fn a_token_without_a_subject_is_refused() {
        assert!(
            principal_from_claims(
                &claims(serde_json::json!({"cognito:groups": []})),
                "cognito:groups"
            )
            .is_err()
        );
        let no_roles =
            principal_from_claims(&claims(serde_json::json!({"sub": "u"})), "cognito:groups")
                .unwrap();
        assert!(no_roles.roles.is_empty());
    }

    fn parts(token: Option<&str>) -> Parts {
        let mut builder = axum::http::Request::builder().uri("/providers");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn development_tokens_verify_and_tampered_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = DevSigningKey::load_or_create(&dir.path().join("dev.key")).unwrap();
        let verifier =
            LocalJwtVerifier::development(&key, "keyport-local", "keyport", "cognito:groups");
        let token = key
            .mint(
                "alice",
                &["bots".into()],
                Duration::from_secs(60),
                "keyport-local",
                "keyport",
                "cognito:groups",
            )
            .unwrap();
        let principal = verifier.authenticate(&parts(Some(&token))).await.unwrap();
        assert_eq!(principal.subject.as_str(), "alice");

        let wrong_audience = key
            .mint(
                "alice",
                &[],
                Duration::from_secs(60),
                "keyport-local",
                "other",
                "cognito:groups",
            )
            .unwrap();
        assert!(
            verifier
                .authenticate(&parts(Some(&wrong_audience)))
                .await
                .unwrap_err()
                .contains("audience")
        );
        let other_key = DevSigningKey::load_or_create(&dir.path().join("other.key")).unwrap();
        let forged = other_key
            .mint(
                "alice",
                &[],
                Duration::from_secs(60),
                "keyport-local",
                "keyport",
                "cognito:groups",
            )
            .unwrap();
        assert!(
            verifier
                .authenticate(&parts(Some(&forged)))
                .await
                .unwrap_err()
                .contains("signature")
        );
        assert!(verifier.authenticate(&parts(None)).await.is_err());
    }
}
