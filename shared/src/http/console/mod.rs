//! The web console, served by Keyport itself under `/console`: pages for administrators and
//! for people with an invited role. A backend for frontend (the browser-based applications
//! BCP): people sign in here, their session lives on the server behind an HttpOnly cookie, and
//! the pages call the API through `/console/api` as the signed-in person. The pages never hold
//! a token: the console's API has no route that answers with one.

mod api;
mod assets;
pub mod oidc;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::Principal;
use crate::http::LocalJwtVerifier;
use crate::http::identity::principal_from_claims;
use crate::ports::ConsoleRecordKind;
use crate::service::Keyport;

pub use assets::CONTENT_SECURITY_POLICY;
pub use oidc::{OidcSignIn, OidcSignInSettings};
pub use session::{CSRF_HEADER, SessionAuthenticator, SessionCookie, SessionRecord, Sessions};

/// The audience of sign-in tickets: never an API bearer token's, so neither passes for the other.
pub const TICKET_AUDIENCE: &str = "keyport-console";
/// How long a printed sign-in link works (once).
pub const TICKET_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long a console session lasts; people sign in again after a working day.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// How people sign in to this console.
#[derive(Default)]
pub struct SignInMethods {
    /// One-time links signed with the local server's development key (`keyport` prints one at
    /// start-up, `keyport dev-login` more).
    pub tickets: Option<LocalJwtVerifier>,
    /// The identity provider, through OpenID Connect.
    pub oidc: Option<OidcSignIn>,
}

/// The console: Keyport's use cases, the sessions, and how people sign in.
pub struct Console {
    pub keyport: Arc<Keyport>,
    pub sessions: Sessions,
    pub sign_in: SignInMethods,
    /// Where browsers reach the console: `scheme://host[:port]`, no path.
    pub origin: String,
}

impl Console {
    /// A console at `origin` (the installation's own: its callback URL's).
    pub fn new(keyport: Arc<Keyport>, origin: &url::Url, sign_in: SignInMethods) -> Self {
        let origin = origin.origin().ascii_serialization();
        let secure = origin.starts_with("https://");
        let sessions = Sessions::new(
            keyport.store.clone(),
            SessionCookie::new(secure),
            SESSION_LIFETIME,
        );
        Self {
            keyport,
            sessions,
            sign_in,
            origin,
        }
    }

    /// An absolute URL of the console's at `path` (which starts with `/console`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Signs `principal` in: the response that sets the session cookie and sends the browser on
    /// to `then` (a console path).
    async fn signed_in(
        &self,
        principal: &Principal,
        via: session::SignInMethod,
        then: &str,
    ) -> Response {
        match self.sessions.start(principal, via).await {
            Ok((id, _)) => {
                let mut response = Redirect::to(then).into_response();
                response.headers_mut().insert(
                    header::SET_COOKIE,
                    self.sessions.cookie.set(&id, self.sessions.lifetime),
                );
                assets::secure_page_headers(response.headers_mut());
                response
            }
            Err(_) => assets::problem_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                "Keyport could not start your session just now. Try the link again in a moment.",
            ),
        }
    }
}

/// Everything under `/console`: the pages and their assets, sign-in, and the console's API.
pub fn router(console: Arc<Console>) -> Router {
    let pages = Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(assets::index))
        .route("/console/{*page}", get(assets::index))
        .route("/console/assets/{file}", get(assets::asset))
        .route("/console/signin/ticket", get(sign_in_with_ticket))
        .route("/console/signin", get(oidc::start))
        .route("/console/signin/callback", get(oidc::finish))
        .with_state(console.clone());
    pages.merge(api::router(console))
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: Option<String>,
}

/// `GET /console/signin/ticket?ticket=…`: the one-time link. Works once, within its lifetime.
async fn sign_in_with_ticket(
    State(console): State<Arc<Console>>,
    Query(query): Query<TicketQuery>,
) -> Response {
    let refuse = |why: &str| {
        assets::problem_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link does not work",
            why,
        )
    };
    let Some(verifier) = &console.sign_in.tickets else {
        return refuse(
            "This Keyport signs people in through its identity provider, not with links.",
        );
    };
    let Some(ticket) = query.ticket.filter(|t| !t.is_empty()) else {
        return refuse("The link has no ticket. Copy the whole link keyport printed.");
    };
    let claims = match verifier.verify_claims(&ticket).await {
        Ok(claims) => claims,
        Err(_) => {
            return refuse(
                "The link has expired or is not one this Keyport issued. Run `keyport dev-login` for a new one.",
            );
        }
    };
    let (Some(jti), Some(expires_at)) = (
        claims.get("jti").and_then(|v| v.as_str()),
        claims
            .get("exp")
            .and_then(|v| v.as_i64())
            .and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0)),
    ) else {
        return refuse("The link's ticket is not a sign-in ticket.");
    };
    let principal = match principal_from_claims(&claims, verifier.roles_claim()) {
        Ok(principal) => principal,
        Err(_) => return refuse("The link's ticket names no valid person."),
    };
    // Recording the ticket's use is what makes the link work once.
    match console
        .keyport
        .store
        .put_console_record(ConsoleRecordKind::UsedTicket, jti, "{}", expires_at)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                "This link was already used. Each link signs in once: run `keyport dev-login` for a new one.",
            );
        }
        Err(_) => {
            return assets::problem_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                "Keyport could not check the link just now. Try it again in a moment.",
            );
        }
    }
    console
        .signed_in(&principal, session::SignInMethod::Ticket, "/console/")
        .await
}

/// The session cookie of `headers`' request, cleared, for a response that ends it.
fn cleared_cookie(console: &Console, headers: &mut HeaderMap) {
    headers.insert(header::SET_COOKIE, console.sessions.cookie.clear());
}
