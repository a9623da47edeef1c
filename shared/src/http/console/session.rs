//! Console sessions: who signed in, kept server-side under the digest of a random id that only
//! the person's browser holds, in an HttpOnly cookie. Each session has its own CSRF token,
//! which every state-changing request must carry in a header a cross-site form cannot set.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use crate::crypto::{constant_time_eq, random_bytes};
use crate::domain::{Principal, Role, StateToken, Subject};
use crate::http::Authenticator;
use crate::ports::{ConsoleRecordKind, Store, StoreError};

/// The header a page script sends the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-keyport-csrf";

/// How a person signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    /// A one-time link printed by the local server (or `keyport dev-login`).
    Ticket,
    /// The identity provider, through OpenID Connect.
    Oidc,
}

/// What a session record holds. No credential of the person's: the identity provider's tokens
/// are used once, to learn who signed in, and never kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub subject: String,
    pub roles: Vec<String>,
    pub csrf_token: String,
    pub via: SignInMethod,
    pub signed_in_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl SessionRecord {
    pub fn principal(&self) -> Result<Principal, String> {
        let subject =
            Subject::parse(&self.subject).map_err(|_| "the session is not valid".to_owned())?;
        let roles = self.roles.iter().filter_map(|r| Role::parse(r).ok());
        Ok(Principal::new(subject, roles))
    }
}

/// The cookie a session travels in: `__Secure-` prefixed and `Secure` whenever the console is
/// reached over https, `HttpOnly` (no page script reads it), `SameSite=Lax` (sent on the
/// top-level navigation back from a provider's consent page, not on cross-site requests).
#[derive(Debug, Clone)]
pub struct SessionCookie {
    secure: bool,
}

impl SessionCookie {
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    pub fn name(&self) -> &'static str {
        if self.secure {
            "__Secure-keyport_console"
        } else {
            "keyport_console"
        }
    }

    fn build(&self, value: String, max_age: cookie::time::Duration) -> HeaderValue {
        let cookie = Cookie::build((self.name(), value))
            .path("/console")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(max_age)
            .build();
        HeaderValue::from_str(&cookie.to_string()).expect("a cookie is a header value")
    }

    /// The `Set-Cookie` value that gives the browser `session`.
    pub fn set(&self, session: &StateToken, lifetime: std::time::Duration) -> HeaderValue {
        let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        self.build(
            session.expose_secret().to_owned(),
            cookie::time::Duration::seconds(seconds),
        )
    }

    /// The `Set-Cookie` value that removes it.
    pub fn clear(&self) -> HeaderValue {
        self.build(String::new(), cookie::time::Duration::ZERO)
    }

    /// The session id the request's cookies carry, if it has the shape Keyport issues.
    pub fn read(&self, headers: &HeaderMap) -> Option<StateToken> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|cookie| cookie.name() == self.name())
            .and_then(|cookie| StateToken::parse(cookie.value()).ok())
    }
}

/// Sessions in the store.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    pub cookie: SessionCookie,
    pub lifetime: std::time::Duration,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        cookie: SessionCookie,
        lifetime: std::time::Duration,
    ) -> Self {
        Self {
            store,
            cookie,
            lifetime,
        }
    }

    /// Starts a session for `principal`: its id (for the cookie) and its record.
    pub async fn start(
        &self,
        principal: &Principal,
        via: SignInMethod,
    ) -> Result<(StateToken, SessionRecord), StoreError> {
        let now = Utc::now();
        let record = SessionRecord {
            subject: principal.subject.as_str().to_owned(),
            roles: principal
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            csrf_token: hex(&random_bytes::<32>()),
            via,
            signed_in_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::hours(8)),
        };
        let doc = serde_json::to_string(&record).expect("a session record serializes");
        loop {
            let id = StateToken::generate();
            let stored = self
                .store
                .put_console_record(
                    ConsoleRecordKind::Session,
                    &id.lookup_key(),
                    &doc,
                    record.expires_at,
                )
                .await?;
            // 256 random bits do not collide; were they to, a new id is drawn.
            if stored {
                return Ok((id, record));
            }
        }
    }

    /// The live session `headers` carry.
    pub async fn find(&self, headers: &HeaderMap) -> Result<Option<SessionRecord>, StoreError> {
        let Some(id) = self.cookie.read(headers) else {
            return Ok(None);
        };
        let doc = self
            .store
            .get_console_record(ConsoleRecordKind::Session, &id.lookup_key(), Utc::now())
            .await?;
        Ok(doc.and_then(|doc| serde_json::from_str(&doc).ok()))
    }

    /// Ends the session `headers` carry, if any.
    pub async fn end(&self, headers: &HeaderMap) -> Result<(), StoreError> {
        if let Some(id) = self.cookie.read(headers) {
            self.store
                .take_console_record(ConsoleRecordKind::Session, &id.lookup_key(), Utc::now())
                .await?;
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a request may change something on behalf of `session`: it carries the session's
/// CSRF token, and the browser does not say it comes from another site.
pub fn csrf_allows(parts: &Parts, session: &SessionRecord, origin: &str) -> Result<(), String> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header_value = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header_value("sec-fetch-site")
        && site != "same-origin"
    {
        return Err("a console request must come from the console's own pages".into());
    }
    if let Some(sent_origin) = header_value("origin")
        && sent_origin != origin
    {
        return Err("a console request must come from the console's own pages".into());
    }
    match header_value(CSRF_HEADER) {
        Some(token) if constant_time_eq(token.as_bytes(), session.csrf_token.as_bytes()) => Ok(()),
        _ => Err(format!(
            "a console request that changes something must carry the session's {CSRF_HEADER} header"
        )),
    }
}

/// The console API's caller: the signed-in person, for state-changing requests only with the
/// session's CSRF token.
pub struct SessionAuthenticator {
    pub sessions: Sessions,
    /// The console's origin (`scheme://host[:port]`), as browsers send it in `Origin`.
    pub origin: String,
}

#[async_trait]
impl Authenticator for SessionAuthenticator {
    async fn authenticate(&self, parts: &Parts) -> Result<Principal, String> {
        let session = self
            .sessions
            .find(&parts.headers)
            .await
            .map_err(|_| "the console cannot check the session now; try again".to_owned())?
            .ok_or_else(|| "sign in to the console first".to_owned())?;
        csrf_allows(parts, &session, &self.origin)?;
        session.principal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri("/console/api/x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn session() -> SessionRecord {
        SessionRecord {
            subject: "ada".into(),
            roles: vec!["keyport-admins".into()],
            csrf_token: "c".repeat(64),
            via: SignInMethod::Ticket,
            signed_in_at: Utc::now(),
            expires_at: Utc::now(),
        }
    }

    const ORIGIN: &str = "http://127.0.0.1:8080";

    #[test]
    fn reads_need_no_csrf_token_but_changes_do() {
        let s = session();
        assert!(csrf_allows(&parts(Method::GET, &[]), &s, ORIGIN).is_ok());
        assert!(csrf_allows(&parts(Method::POST, &[]), &s, ORIGIN).is_err());
        let token = "c".repeat(64);
        assert!(csrf_allows(&parts(Method::POST, &[(CSRF_HEADER, &token)]), &s, ORIGIN).is_ok());
        assert!(csrf_allows(&parts(Method::DELETE, &[(CSRF_HEADER, "c")]), &s, ORIGIN).is_err());
    }

    #[test]
    fn a_cross_site_request_is_refused_even_with_the_token() {
        let s = session();
        let token = "c".repeat(64);
        for headers in [
            [
                (CSRF_HEADER, token.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            [
                (CSRF_HEADER, token.as_str()),
                ("origin", "https://evil.example"),
            ],
        ] {
            assert!(csrf_allows(&parts(Method::PATCH, &headers), &s, ORIGIN).is_err());
        }
        let same = [(CSRF_HEADER, token.as_str()), ("origin", ORIGIN)];
        assert!(csrf_allows(&parts(Method::PATCH, &same), &s, ORIGIN).is_ok());
    }

    #[test]
    fn the_cookie_is_http_only_lax_and_secure_over_https() {
        let id = StateToken::generate();
        let plain = SessionCookie::new(false).set(&id, std::time::Duration::from_secs(60));
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("keyport_console="), "{plain}");
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Lax"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"), "{plain}");
        let secure = SessionCookie::new(true).set(&id, std::time::Duration::from_secs(60));
        let secure = secure.to_str().unwrap();
        assert!(secure.starts_with("__Secure-keyport_console="), "{secure}");
        assert!(secure.contains("Secure"), "{secure}");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("other=1; keyport_console={}", id.expose_secret())
                .parse()
                .unwrap(),
        );
        let read = SessionCookie::new(false).read(&headers).unwrap();
        assert_eq!(read.lookup_key(), id.lookup_key());
    }
}
