//! Who is calling. On AWS the API Gateway JWT authorizer has verified the token and hands its
//! claims to the function in the request context; locally the server verifies bearer JWTs
//! itself (issuer, audience, expiry, not-before, signature) against a JWKS URL or the
//! development signing key. Both paths turn claims into a [`Principal`] by the same rule.

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

use crate::adapters::embedded::{read_or_create_secret, read_secret};
use crate::adapters::outbound::{OutboundError, OutboundHttp};
use crate::domain::{ApiScope, ApplicationId, EndpointUrl, Principal, Role, Subject};

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
///
/// A token whose `client_id` claim names its own subject is an application's (client
/// credentials: Cognito's access tokens carry both, a person's names the person in `sub`).
/// The Keyport scopes come from `scope` (RFC 9068, space-separated) or `scp` (a list); a token
/// carrying none of Keyport's is a sign-in token and limits nothing by scope.
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
    let roles = list_claim(claims, roles_claim)?
        .iter()
        .filter_map(|r| Role::parse(r).ok())
        .collect::<Vec<_>>();
    let client_id = claims.get("client_id").and_then(|c| c.as_str());
    let mut principal = match client_id {
        Some(client_id) if client_id == subject.as_str() => {
            let id = ApplicationId::parse(client_id)
                .map_err(|_| "the token's client_id is not valid".to_owned())?;
            let mut app = Principal::application(id, subject);
            app.roles = roles.into_iter().collect();
            app
        }
        _ => Principal::new(subject, roles),
    };
    let mut scopes = match claims.get("scope") {
        Some(serde_json::Value::String(text)) => {
            text.split_whitespace().map(str::to_owned).collect()
        }
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(_) => return Err("the scope claim is not a string".to_owned()),
    };
    scopes.extend(list_claim(claims, "scp")?);
    if scopes.iter().any(|s| ApiScope::is_keyport_scope(s)) {
        principal = principal.with_scopes(scopes.iter().filter_map(|s| ApiScope::parse(s)));
    }
    Ok(principal)
}

/// A claim holding a list: a JSON array, or a string API Gateway or the issuer flattened.
fn list_claim(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Vec<String>, String> {
    Ok(match claims.get(name) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(text)) => split_roles(text),
        Some(_) => return Err(format!("the {name} claim is neither a list nor a string")),
    })
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
    /// An identity provider's JWKS, kept fresh by [`JwksKeys`].
    Jwks(Box<JwksKeys>),
}

/// How the JWKS is kept fresh.
#[derive(Clone, Copy, Debug)]
pub struct JwksSettings {
    /// A fetched set is used this long before it is fetched again: it bounds how long a key
    /// the identity provider has removed (rotated out, or compromised) still verifies tokens.
    pub refresh_interval: Duration,
    /// The least time between two fetches, whatever asks for them (unknown key ids, a refresh
    /// that failed), so made-up key ids cannot make Keyport hammer the identity provider.
    pub min_fetch_interval: Duration,
    /// A set that could not be refreshed is no longer trusted at this age: an unreachable
    /// JWKS must not keep a removed key trusted for ever.
    pub max_age: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(10 * 60),
            min_fetch_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(60 * 60),
        }
    }
}

/// Why no key verifies a token. The messages are safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch the JWKS: {0}")]
    Fetch(#[from] OutboundError),
    #[error("the JWKS document is not a key set")]
    NotAKeySet,
    #[error("the bearer token is signed with an unknown key")]
    UnknownKey,
    #[error("the identity provider's keys could not be refreshed")]
    Expired,
}

/// Where the JWKS cache reads the time: tests move it by hand instead of sleeping.
trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// One fetched key set and when it was fetched.
struct FetchedSet {
    keys: JwkSet,
    at: Instant,
}

impl FetchedSet {
    fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        match kid {
            Some(kid) => self.keys.find(kid).cloned(),
            None => self.keys.keys.first().cloned(),
        }
    }
}

/// An identity provider's JWKS, refetched when it is due and when an unknown key id appears.
/// One task fetches at a time and nobody waits for it: the others carry on with the set they
/// have (so while a due set is being refetched, a removed key can verify for as long as the
/// fetch takes, at most the outbound timeout).
pub struct JwksKeys {
    url: EndpointUrl,
    http: OutboundHttp,
    settings: JwksSettings,
    clock: Arc<dyn Clock>,
    /// Held only to copy or replace the `Arc`, never across an await.
    current: std::sync::RwLock<Arc<FetchedSet>>,
    /// When a fetch was last started. Held by the one task fetching; the others only
    /// `try_lock` it, so none of them queues behind a fetch.
    fetching: tokio::sync::Mutex<Instant>,
}

impl JwksKeys {
    /// Fetches the set once: a verifier that cannot get its keys should not start.
    pub async fn fetch(
        url: EndpointUrl,
        http: OutboundHttp,
        settings: JwksSettings,
    ) -> Result<Self, JwksError> {
        Self::fetch_with_clock(url, http, settings, Arc::new(SystemClock)).await
    }

    async fn fetch_with_clock(
        url: EndpointUrl,
        http: OutboundHttp,
        settings: JwksSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, JwksError> {
        let at = clock.now();
        let keys = fetch_jwks(&http, &url).await?;
        Ok(Self {
            url,
            http,
            settings,
            clock,
            current: std::sync::RwLock::new(Arc::new(FetchedSet { keys, at })),
            fetching: tokio::sync::Mutex::new(at),
        })
    }

    /// The key a token names (`kid`), or the first key when it names none.
    pub async fn find(&self, kid: Option<&str>) -> Result<Jwk, JwksError> {
        let set = self.usable_set().await?;
        if let Some(jwk) = set.find(kid) {
            return Ok(jwk);
        }
        // An unknown key id may be a key the provider has just added.
        let set = self.refetch().await;
        self.check_age(&set)?;
        set.find(kid).ok_or(JwksError::UnknownKey)
    }

    /// The current set, refetched first when it is due.
    async fn usable_set(&self) -> Result<Arc<FetchedSet>, JwksError> {
        let mut set = self.snapshot();
        if self.age(&set) >= self.settings.refresh_interval {
            set = self.refetch().await;
        }
        self.check_age(&set)?;
        Ok(set)
    }

    /// Fetches the set unless another task is fetching or the last fetch began too recently;
    /// either way answers the newest set there is.
    async fn refetch(&self) -> Arc<FetchedSet> {
        let Ok(mut started) = self.fetching.try_lock() else {
            return self.snapshot();
        };
        let now = self.clock.now();
        if now.saturating_duration_since(*started) < self.settings.min_fetch_interval {
            return self.snapshot();
        }
        *started = now;
        match fetch_jwks(&self.http, &self.url).await {
            Ok(keys) => self.replace(FetchedSet { keys, at: now }),
            Err(error) => tracing::warn!(%error, "JWKS refetch failed; keeping the current keys"),
        }
        self.snapshot()
    }

    fn check_age(&self, set: &FetchedSet) -> Result<(), JwksError> {
        if self.age(set) >= self.settings.max_age {
            return Err(JwksError::Expired);
        }
        Ok(())
    }

    fn age(&self, set: &FetchedSet) -> Duration {
        self.clock.now().saturating_duration_since(set.at)
    }

    // Nothing panics while the lock is held (it only guards an `Arc`), so a poisoned lock
    // still holds a whole value.
    fn snapshot(&self) -> Arc<FetchedSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, set: FetchedSet) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }
}

async fn fetch_jwks(http: &OutboundHttp, url: &EndpointUrl) -> Result<JwkSet, JwksError> {
    let document = http.get_json(url).await?;
    serde_json::from_value(document).map_err(|_| JwksError::NotAKeySet)
}

/// The local server's own bearer-token verification.
pub struct LocalJwtVerifier {
    keys: VerificationKeys,
    issuer: String,
    audience: String,
    roles_claim: String,
}

impl LocalJwtVerifier {
    pub fn development(
        key: &DevSigningKey,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Self {
        Self::with_keys(
            VerificationKeys::Development(DecodingKey::from_secret(&key.secret[..])),
            issuer,
            audience,
            roles_claim,
        )
    }

    /// Verifies against a JWKS URL with the default [`JwksSettings`].
    pub async fn jwks(
        url: EndpointUrl,
        http: OutboundHttp,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<Self, String> {
        let keys = JwksKeys::fetch(url, http, JwksSettings::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self::with_keys(
            VerificationKeys::Jwks(Box::new(keys)),
            issuer,
            audience,
            roles_claim,
        ))
    }

    pub fn with_keys(
        keys: VerificationKeys,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            roles_claim: roles_claim.to_owned(),
        }
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Off by default in jsonwebtoken: a token issued for later must not work now.
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation
    }

    async fn decoding_key(&self, token: &str) -> Result<(DecodingKey, Algorithm), String> {
        match &self.keys {
            VerificationKeys::Development(key) => Ok((key.clone(), Algorithm::HS256)),
            VerificationKeys::Jwks(keys) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|_| "the bearer token is not a JWT".to_owned())?;
                if matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return Err("the bearer token's algorithm is not accepted".into());
                }
                let jwk = keys
                    .find(header.kid.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                let key = DecodingKey::from_jwk(&jwk)
                    .map_err(|_| "the signing key cannot be used".to_owned())?;
                Ok((key, header.alg))
            }
        }
    }
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
        let claims = self.verify_claims(token).await?;
        principal_from_claims(&claims, &self.roles_claim)
    }
}

impl LocalJwtVerifier {
    /// The claims of `token` once its signature, issuer, audience and times verify (the
    /// console verifies its sign-in tickets and ID tokens this way too).
    pub async fn verify_claims(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
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
                ErrorKind::ImmatureSignature => "the bearer token is not valid yet",
                ErrorKind::InvalidAudience => "the bearer token is for another audience",
                ErrorKind::InvalidIssuer => "the bearer token is from another issuer",
                ErrorKind::InvalidSignature => "the bearer token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the bearer token lacks a required claim",
                _ => "the bearer token is not valid",
            }
            .to_owned()
        })?;
        Ok(data.claims)
    }

    /// The claim roles are read from.
    pub fn roles_claim(&self) -> &str {
        &self.roles_claim
    }
}

/// The local server's development signing key: HS256, 32 random bytes in an owner-only file.
pub struct DevSigningKey {
    secret: zeroize::Zeroizing<[u8; 32]>,
}

impl DevSigningKey {
    /// The key a server already made: a token signed with a new key would not verify there.
    pub fn load(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            return Err(format!(
                "no development signing key at {}: start the server first (it makes one in its data directory), or point --data-dir (or KEYPORT_DATA_DIR) at the running server's data directory",
                path.display()
            ));
        }
        Ok(Self {
            secret: read_secret(path, b"KPDEV1")?,
        })
    }

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

    /// A token the local server accepts carrying `extra` claims too (an application's
    /// `client_id`, a `scope`): `keyport dev-token --client-id --scopes`.
    #[allow(clippy::too_many_arguments)]
    pub fn mint_with_claims(
        &self,
        subject: &str,
        roles: &[String],
        extra: &serde_json::Map<String, serde_json::Value>,
        lifetime: Duration,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> Result<String, String> {
        let now = Utc::now().timestamp();
        let mut claims =
            self.claims_at(now, subject, roles, lifetime, issuer, audience, roles_claim);
        for (name, value) in extra {
            if claims.contains_key(name) {
                return Err(format!("the {name} claim is set by Keyport"));
            }
            claims.insert(name.clone(), value.clone());
        }
        self.sign(&claims)
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

    /// A one-time console sign-in link's ticket for `subject` with `roles`: a token for the
    /// console's own audience (never accepted as a bearer token, whose audience differs) with a
    /// unique id the console records when it is used.
    pub fn mint_sign_in_ticket(
        &self,
        subject: &str,
        roles: &[String],
        issuer: &str,
        roles_claim: &str,
    ) -> Result<String, String> {
        let now = Utc::now().timestamp();
        let mut claims = self.claims_at(
            now,
            subject,
            roles,
            crate::http::console::TICKET_LIFETIME,
            issuer,
            crate::http::console::TICKET_AUDIENCE,
            roles_claim,
        );
        let jti: [u8; 16] = crate::crypto::random_bytes();
        claims.insert(
            "jti".into(),
            jti.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into(),
        );
        self.sign(&claims)
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
        let claims = self.claims_at(now, subject, roles, lifetime, issuer, audience, roles_claim);
        self.sign(&claims)
    }

    #[allow(clippy::too_many_arguments)]
    fn claims_at(
        &self,
        now: i64,
        subject: &str,
        roles: &[String],
        lifetime: Duration,
        issuer: &str,
        audience: &str,
        roles_claim: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
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
        claims
    }

    fn sign(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Result<String, String> {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
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
    fn white_space_never_turns_one_identity_into_another() {
        for sub in [" alice", "alice ", "alice\t", "\u{a0}alice"] {
            assert!(
                principal_from_claims(&claims(serde_json::json!({"sub": sub})), "roles").is_err(),
                "{sub:?}"
            );
        }
        let principal = principal_from_claims(
            &claims(serde_json::json!({
                "sub": "mallory",
                "roles": ["keyport-admins ", " keyport-admins", "bots"]
            })),
            "roles",
        )
        .unwrap();
        let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
        assert_eq!(roles, ["bots"], "padded roles are dropped, not trimmed");
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

    #[test]
    fn an_application_is_a_token_naming_its_client_in_its_subject() {
        // Cognito's client-credentials access token: sub and client_id are the app client.
        let app = principal_from_claims(
            &claims(serde_json::json!({
                "sub": "6f1tq0b2kq", "client_id": "6f1tq0b2kq", "token_use": "access",
                "scope": "keyport/tokens.read keyport/audit.read",
            })),
            "cognito:groups",
        )
        .unwrap();
        assert_eq!(app.application.as_ref().unwrap().as_str(), "6f1tq0b2kq");
        assert_eq!(
            app.scopes,
            Some([ApiScope::TokensRead, ApiScope::AuditRead].into())
        );
        // A person's access token names the app client it was issued through, not itself.
        let person = principal_from_claims(
            &claims(serde_json::json!({
                "sub": "alice", "client_id": "6f1tq0b2kq", "username": "alice",
                "scope": "openid email", "cognito:groups": ["bots"],
            })),
            "cognito:groups",
        )
        .unwrap();
        assert!(person.application.is_none());
        assert_eq!(person.scopes, None, "no Keyport scope: a sign-in token");
        assert_eq!(person.roles.len(), 1);
    }

    #[test]
    fn scopes_come_as_a_string_a_list_or_a_flattened_list() {
        for (name, value) in [
            ("scope", serde_json::json!("openid keyport/tokens.read")),
            ("scp", serde_json::json!(["openid", "keyport/tokens.read"])),
            ("scp", serde_json::json!("[openid keyport/tokens.read]")),
        ] {
            let principal = principal_from_claims(
                &claims(serde_json::json!({"sub": "u", name: value})),
                "roles",
            )
            .unwrap();
            assert_eq!(
                principal.scopes,
                Some([ApiScope::TokensRead].into()),
                "{name}: {value}"
            );
        }
        // A Keyport scope this version does not know limits the token to nothing.
        let unknown = principal_from_claims(
            &claims(serde_json::json!({"sub": "u", "scope": "keyport/everything"})),
            "roles",
        )
        .unwrap();
        assert_eq!(unknown.scopes, Some(Default::default()));
        assert!(
            principal_from_claims(
                &claims(serde_json::json!({"sub": "u", "scope": ["keyport/tokens.read"]})),
                "roles"
            )
            .is_err(),
            "scope is a string (RFC 9068)"
        );
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

#[cfg(test)]
mod jwks_tests {
    use super::*;
    use crate::adapters::outbound::OutboundSettings;
    use crate::domain::UrlPolicy;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const ISSUER: &str = "https://idp.test";
    const AUDIENCE: &str = "keyport";

    /// A P-256 signing key and its public JWK.
    struct SigningKey {
        kid: String,
        encoding: EncodingKey,
        jwk: serde_json::Value,
    }

    fn signing_key(kid: &str) -> SigningKey {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        // The public key is the uncompressed point: 0x04 || x || y.
        let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
        SigningKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(der.as_ref()),
            jwk: serde_json::json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)
            }),
        }
    }

    fn token_with(key: &SigningKey, kid: &str, extra: serde_json::Value) -> String {
        let now = Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    }

    fn token(key: &SigningKey) -> String {
        token_with(key, &key.kid, serde_json::json!({}))
    }

    /// A loopback JWKS endpoint that counts its fetches and can hold an answer back.
    #[derive(Default)]
    struct JwksServer {
        keys: std::sync::Mutex<Vec<serde_json::Value>>,
        fetches: AtomicUsize,
        hold: AtomicBool,
        fail: AtomicBool,
        arrived: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    impl JwksServer {
        async fn start(keys: &[&SigningKey]) -> (Arc<Self>, EndpointUrl) {
            let server = Arc::new(Self::default());
            server.serve(keys);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap());
            let app = axum::Router::new()
                .route("/jwks", axum::routing::get(Self::answer))
                .with_state(server.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            let url = EndpointUrl::parse("jwks_url", &url, UrlPolicy::LocalDevelopment).unwrap();
            (server, url)
        }

        fn serve(&self, keys: &[&SigningKey]) {
            *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        async fn answer(
            State(server): State<Arc<Self>>,
        ) -> Result<axum::Json<serde_json::Value>, axum::http::StatusCode> {
            server.fetches.fetch_add(1, Ordering::SeqCst);
            if server.hold.load(Ordering::SeqCst) {
                server.arrived.notify_one();
                server.release.notified().await;
            }
            if server.fail.load(Ordering::SeqCst) {
                return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
            }
            let keys = server.keys.lock().unwrap().clone();
            Ok(axum::Json(serde_json::json!({ "keys": keys })))
        }
    }

    fn http() -> OutboundHttp {
        OutboundHttp::new(OutboundSettings::new(UrlPolicy::LocalDevelopment)).unwrap()
    }

    fn bearer(token: &str) -> Parts {
        axum::http::Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    /// The time as the test says it is.
    struct ManualClock(std::sync::Mutex<Instant>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(std::sync::Mutex::new(Instant::now())))
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    const REFRESH: Duration = Duration::from_secs(60);
    const MIN_FETCH: Duration = Duration::from_secs(30);
    const MAX_AGE: Duration = Duration::from_secs(300);
    const A_MOMENT: Duration = Duration::from_secs(1);

    async fn verifier(url: EndpointUrl, clock: Arc<ManualClock>) -> Arc<LocalJwtVerifier> {
        let settings = JwksSettings {
            refresh_interval: REFRESH,
            min_fetch_interval: MIN_FETCH,
            max_age: MAX_AGE,
        };
        let keys = JwksKeys::fetch_with_clock(url, http(), settings, clock)
            .await
            .unwrap();
        let keys = VerificationKeys::Jwks(Box::new(keys));
        Arc::new(LocalJwtVerifier::with_keys(keys, ISSUER, AUDIENCE, "roles"))
    }

    async fn verifies(verifier: &LocalJwtVerifier, token: &str) -> Result<Principal, String> {
        verifier.authenticate(&bearer(token)).await
    }

    #[tokio::test]
    async fn a_token_not_yet_valid_is_refused() {
        let key = signing_key("k1");
        let (_server, url) = JwksServer::start(&[&key]).await;
        let verifier = LocalJwtVerifier::jwks(url, http(), ISSUER, AUDIENCE, "roles")
            .await
            .unwrap();
        assert!(verifier.authenticate(&bearer(&token(&key))).await.is_ok());
        let later = Utc::now().timestamp() + 3600;
        let early = token_with(&key, "k1", serde_json::json!({"nbf": later}));
        let refused = verifier.authenticate(&bearer(&early)).await.unwrap_err();
        assert!(refused.contains("not valid yet"), "{refused}");
    }

    #[tokio::test]
    async fn a_removed_key_stops_verifying_once_the_set_is_due() {
        let (old, new) = (signing_key("k1"), signing_key("k2"));
        let (server, url) = JwksServer::start(&[&old]).await;
        let clock = ManualClock::new();
        let verifier = verifier(url, clock.clone()).await;
        server.serve(&[&new]);

        clock.advance(REFRESH - A_MOMENT);
        assert!(verifies(&verifier, &token(&old)).await.is_ok());
        assert_eq!(server.fetches(), 1, "not due yet");

        clock.advance(A_MOMENT);
        let refused = verifies(&verifier, &token(&old)).await.unwrap_err();
        assert!(refused.contains("unknown key"), "{refused}");
        assert!(verifies(&verifier, &token(&new)).await.is_ok());
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn a_new_key_is_fetched_when_a_token_names_it_at_most_every_min_interval() {
        let (old, new) = (signing_key("k1"), signing_key("k2"));
        let (server, url) = JwksServer::start(&[&old]).await;
        let clock = ManualClock::new();
        let verifier = verifier(url, clock.clone()).await;
        server.serve(&[&old, &new]);

        // Just after a fetch, an unknown key id does not fetch again.
        assert!(verifies(&verifier, &token(&new)).await.is_err());
        assert_eq!(server.fetches(), 1);
        clock.advance(MIN_FETCH);
        assert!(verifies(&verifier, &token(&new)).await.is_ok());
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_key_ids_cause_at_most_one_fetch() {
        let key = signing_key("k1");
        let (server, url) = JwksServer::start(&[&key]).await;
        let clock = ManualClock::new();
        let verifier = verifier(url, clock.clone()).await;
        clock.advance(MIN_FETCH);

        let burst = |round: usize| {
            let requests: Vec<_> = (0..50)
                .map(|i| {
                    let verifier = verifier.clone();
                    let kid = format!("unknown-{round}-{i}");
                    let token = token_with(&key, &kid, serde_json::json!({}));
                    tokio::spawn(async move { verifies(&verifier, &token).await })
                })
                .collect();
            async move {
                for request in requests {
                    assert!(request.await.unwrap().is_err());
                }
            }
        };
        burst(1).await;
        assert_eq!(server.fetches(), 2, "one fetch for the whole burst");
        burst(2).await;
        assert_eq!(server.fetches(), 2, "none until the interval has passed");
    }

    #[tokio::test]
    async fn requests_with_known_keys_do_not_wait_for_a_fetch() {
        let key = signing_key("k1");
        let (server, url) = JwksServer::start(&[&key]).await;
        let clock = ManualClock::new();
        let verifier = verifier(url, clock.clone()).await;
        clock.advance(MIN_FETCH);
        server.hold.store(true, Ordering::SeqCst);

        let unknown = token_with(&key, "unknown", serde_json::json!({}));
        let fetching = {
            let verifier = verifier.clone();
            tokio::spawn(async move { verifies(&verifier, &unknown).await })
        };
        server.arrived.notified().await;
        // A guard against hanging, not synchronisation: the fetch is held until released.
        let token = token(&key);
        let known = tokio::time::timeout(Duration::from_secs(5), verifies(&verifier, &token)).await;
        server.release.notify_one();
        assert!(known.expect("waited for the fetch").is_ok());
        assert!(fetching.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_due_refetch_does_not_hold_up_other_requests() {
        let key = signing_key("k1");
        let (server, url) = JwksServer::start(&[&key]).await;
        let clock = ManualClock::new();
        let verifier = verifier(url, clock.clone()).await;
        clock.advance(REFRESH);
        server.hold.store(true, Ordering::SeqCst);

        let refreshing = {
            let verifier = verifier.clone();
            let token = token(&key);
            tokio::spawn(async move { verifies(&verifier, &token).await })
        };
        server.arrived.notified().await;
        let token = token(&key);
        let other = tokio::time::timeout(Duration::from_secs(5), verifies(&verifier, &token)).await;
        server.release.notify_one();
        assert!(other.expect("waited for the fetch").is_ok());
        assert!(refreshing.await.unwrap().is_ok());
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn a_set_that_cannot_be_refreshed_expires() {
        let key = signing_key("k1");
        let (server, url) = JwksServer::start(&[&key]).await;
        let clock = ManualClock::new();
        let verifier = verifier(url, clock.clone()).await;
        server.fail.store(true, Ordering::SeqCst);

        clock.advance(REFRESH);
        assert!(
            verifies(&verifier, &token(&key)).await.is_ok(),
            "kept on failure"
        );
        assert!(verifies(&verifier, &token(&key)).await.is_ok());
        assert_eq!(server.fetches(), 2, "failed refetches are rate limited too");

        clock.advance(MAX_AGE - REFRESH);
        let refused = verifies(&verifier, &token(&key)).await.unwrap_err();
        assert!(refused.contains("could not be refreshed"), "{refused}");

        server.fail.store(false, Ordering::SeqCst);
        clock.advance(MIN_FETCH);
        assert!(verifies(&verifier, &token(&key)).await.is_ok(), "recovers");
    }
}
