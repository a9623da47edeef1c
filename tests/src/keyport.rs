//! A Keyport assembled over a test back-end, talking to loopback peers in local development
//! mode, and the principals the tests act as.

use std::sync::Arc;

use keyport_shared::adapters::outbound::{OutboundHttp, OutboundSettings};
use keyport_shared::domain::{Connection, Principal, Role, Subject, UrlPolicy};
use keyport_shared::oauth::{OAuthClient, OAuthSettings};
use keyport_shared::ports::Store;
use keyport_shared::service::{
    AuthorizationCompleted, Keyport, KeyportSettings, OwnerRequest, ServiceError,
};

use crate::backends::Backend;
use crate::oidc::CALLBACK_URL;

pub fn keyport(backend: &Backend, configure: impl FnOnce(&mut KeyportSettings)) -> Keyport {
    keyport_over(backend.store.clone(), backend, configure)
}

/// [`keyport`] over `store` instead of the back-end's own (e.g. a second process's client of
/// the same table).
pub fn keyport_over(
    store: Arc<dyn Store>,
    backend: &Backend,
    configure: impl FnOnce(&mut KeyportSettings),
) -> Keyport {
    let mut settings = KeyportSettings::new(UrlPolicy::LocalDevelopment);
    // Flows refresh right after authorizing; the on-demand limit has tests of its own.
    settings.on_demand_refresh_interval = std::time::Duration::ZERO;
    configure(&mut settings);
    let http = OutboundHttp::new(OutboundSettings::new(settings.url_policy))
        .expect("outbound HTTP client");
    let oauth = OAuthClient::new(
        http,
        OAuthSettings {
            callback_url: CALLBACK_URL.parse().expect("a URL"),
            allow_password_grant: settings.allow_password_grant,
        },
    );
    Keyport::new(
        store,
        backend.secrets.clone(),
        Arc::new(backend.cipher()),
        oauth,
        settings,
    )
}

pub fn principal(subject: &str, roles: &[&str]) -> Principal {
    Principal::new(
        Subject::parse(subject).expect("a subject"),
        roles.iter().map(|r| Role::parse(r).expect("a role")),
    )
}

pub fn admin() -> Principal {
    principal("admin@example.com", &["keyport-admins"])
}

pub fn bot() -> Principal {
    principal("bot-1", &["bots"])
}

/// The callback (`query` is what the provider sent it), then the confirmation by `who`: the
/// two steps that place a grant in its owner's slot.
pub async fn finish_authorization(
    keyport: &Keyport,
    who: &Principal,
    query: &str,
) -> Result<AuthorizationCompleted, ServiceError> {
    let held = keyport.complete_authorization(query).await?;
    keyport
        .confirm_authorization(who, held.completion.expose_secret())
        .await
}

/// An authorization started by `who` and completed at the callback with a made-up code, which
/// a scripted provider exchanges for its next tokens.
pub async fn authorize_with_any_code(
    keyport: &Keyport,
    connection: &Connection,
    who: &Principal,
    owner: OwnerRequest,
) {
    let started = keyport
        .start_authorization(who, &connection.id, owner, None)
        .await
        .expect("started");
    finish_authorization(
        keyport,
        who,
        &format!("code=any-code&state={}", started.state),
    )
    .await
    .expect("completed");
}

/// The completion value on the callback's "Almost connected" page.
pub fn completion_on_page(html: &str) -> String {
    let start = html
        .find("<code id=\"keyport-completion\">")
        .unwrap_or_else(|| panic!("no completion value on the page: {html}"))
        + "<code id=\"keyport-completion\">".len();
    let end = start + html[start..].find("</code>").expect("the element ends");
    html[start..end].to_owned()
}

/// A custom connection to the oidc-provider peer (endpoints discovered from its issuer), an
/// authorization-code client with a reserved-character secret, with `settings` over those
/// defaults; named `<prefix>-<unique>`.
pub async fn peer_connection(
    keyport: &Keyport,
    peer: &crate::oidc::OidcPeer,
    prefix: &str,
    settings: serde_json::Value,
) -> keyport_shared::domain::Connection {
    let mut request = serde_json::json!({
        "name": format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        "provider": "custom",
        "issuer": peer.issuer,
        "client_id": "keyport-basic",
        "client_secret": crate::oidc::CLIENT_SECRET,
        "client_auth": "client_secret_basic",
        "grant_type": "authorization_code",
        "scopes": "openid,offline_access,api:read",
        "invited_roles": ["bots"],
    });
    for (field, value) in settings.as_object().expect("an object") {
        request[field] = value.clone();
    }
    let input = serde_json::from_value(request).expect("a connection request");
    keyport
        .create_connection(&admin(), input)
        .await
        .expect("the connection is created")
}
