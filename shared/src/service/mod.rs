//! The use cases, one module each, over the ports. Every Lambda function and the local server
//! call these; none of them knows which back-end it runs on.

mod access;
mod audit;
mod authorization;
mod backoff;
mod connections;
mod credential_cache;
pub mod deadline;
mod deletion;
mod due_listing;
mod error;
mod health;
mod me;
mod notifications;
mod outbound_proxy;
mod readiness;
mod refresher;
mod token_reset;
mod tokens;
mod transfer;
mod usage;
mod user_tokens;
mod work;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

pub use access::{AccessRules, OwnerRequest, TokenAccess, Via};
pub use authorization::{
    AuthorizationAwaitingConfirmation, AuthorizationCompleted, AuthorizationStarted,
};
pub use backoff::Backoff;
pub use connections::ConnectionCheck;
pub use credential_cache::CredentialCacheLimits;
pub use deletion::{Deletion, DeletionSweep, DeletionWork};
pub use error::ServiceError;
pub use health::{AdministeredConnection, HEALTH_TOKEN_LIMIT};
pub use me::UsableConnection;
pub use notifications::{DeliveryReport, default_retry_schedule};
pub use readiness::Readiness;
pub use refresher::RefreshReport;
pub use token_reset::{PreviousToken, TokenReset};
pub use tokens::TokenView;
pub use user_tokens::UserTokenSummary;
pub use work::{DueSpan, RefreshWork, ShardWindow, WINDOWED_SPAN, scheduled_work};

use crate::catalog::Catalog;
use crate::crypto::EnvelopeCipher;
use crate::domain::Connection;
use crate::domain::{ApplicationId, Role, UrlPolicy};
use crate::oauth::{ClientCredentials, OAuthClient, OAuthError};
use crate::ports::{EventBus, SecretRef, SecretStore, Store, WorkQueue};

/// Installation settings the use cases need.
#[derive(Debug, Clone)]
pub struct KeyportSettings {
    pub url_policy: UrlPolicy,
    pub admin_roles: BTreeSet<Role>,
    /// Applications that are administrators (`KEYPORT_ADMIN_APPLICATIONS`).
    pub admin_applications: BTreeSet<ApplicationId>,
    /// How long a started authorization stays usable.
    pub pending_lifetime: Duration,
    /// A token read refreshes in line when the token expires sooner than this, unless the
    /// caller asks for another margin.
    pub default_min_valid: Duration,
    /// The refresher picks a token up this long before it expires.
    pub refresh_lead: Duration,
    /// The refresher keeps an idle grant alive this long before its provider's documented
    /// inactivity window closes (at most half the window).
    pub idle_refresh_margin: Duration,
    /// A grant is reported as ending (its status, and once in the audit trail) this long
    /// before its provider's documented absolute end (at most half the grant's lifetime).
    pub grant_end_warning: Duration,
    /// Into how many spans a scheduled run splits the last minute of due times, one message
    /// each (and one for what came due before it), so that several workers share a run's work.
    pub refresh_windows: u32,
    /// How long one refresh may hold a token before another instance may take over.
    pub lease_duration: Duration,
    /// How long the write of a new grant is retried while the store is unavailable, and how
    /// much of a lease is kept for it: no refresh starts at the provider unless its timeout
    /// and this still fit in the lease.
    pub grant_write_budget: Duration,
    /// Callers (reads asking for more validity than the provider grants, forced refreshes)
    /// make Keyport ask the provider for a token at most once per this interval while the
    /// token is still valid.
    pub on_demand_refresh_interval: Duration,
    /// How many tokens a connection delete revokes before it answers, without a work queue;
    /// the refresher revokes the rest. With one, a delete revokes none itself.
    pub delete_in_line_tokens: u32,
    /// A caller's fetch record on a connection is written at most once per this interval.
    pub fetch_record_interval: Duration,
    /// How long a webhook delivery that failed waits before each retry; after the last, the
    /// notification is given up.
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long a deleted connection's record outlives its last token: longer than any
    /// request that loaded the connection before the delete may still take to write one.
    pub retired_grace: Duration,
    /// Hosts a callback may redirect the browser to afterwards.
    pub redirect_allow_list: BTreeSet<String>,
    pub allow_password_grant: bool,
    pub backoff: Backoff,
    /// How long, and for how many connections, a process keeps client credentials it read
    /// from the secret store.
    pub credential_cache: CredentialCacheLimits,
}

const DAY_SECONDS: u64 = 24 * 60 * 60;

impl KeyportSettings {
    /// The margins a grant's schedule is computed with.
    pub fn lifetime_margins(&self) -> crate::domain::LifetimeMargins {
        let chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        crate::domain::LifetimeMargins {
            refresh_lead: chrono(self.refresh_lead),
            idle_margin: chrono(self.idle_refresh_margin),
            grant_end_warning: chrono(self.grant_end_warning),
        }
    }

    pub fn new(url_policy: UrlPolicy) -> Self {
        Self {
            url_policy,
            admin_roles: BTreeSet::from([Role::parse("keyport-admins").expect("a valid role")]),
            admin_applications: BTreeSet::new(),
            pending_lifetime: Duration::from_secs(10 * 60),
            default_min_valid: Duration::from_secs(60),
            refresh_lead: Duration::from_secs(5 * 60),
            idle_refresh_margin: Duration::from_secs(7 * DAY_SECONDS),
            grant_end_warning: Duration::from_secs(14 * DAY_SECONDS),
            refresh_windows: 15,
            lease_duration: Duration::from_secs(30),
            grant_write_budget: Duration::from_secs(10),
            on_demand_refresh_interval: Duration::from_secs(30),
            delete_in_line_tokens: 20,
            fetch_record_interval: Duration::from_secs(300),
            webhook_retry_schedule: notifications::default_retry_schedule(),
            retired_grace: Duration::from_secs(5 * 60),
            redirect_allow_list: BTreeSet::new(),
            allow_password_grant: false,
            backoff: Backoff::default(),
            credential_cache: CredentialCacheLimits::default(),
        }
    }
}

/// A disabled connection hands out, refreshes and authorizes nothing.
fn require_enabled(connection: &Connection) -> Result<(), ServiceError> {
    if connection.is_enabled() {
        Ok(())
    } else {
        Err(ServiceError::ConnectionDisabled)
    }
}

/// Everything a use case needs, built once per process.
pub struct Keyport {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub cipher: Arc<EnvelopeCipher>,
    pub oauth: OAuthClient,
    pub catalog: &'static Catalog,
    pub settings: KeyportSettings,
    pub access: AccessRules,
    /// Names this process as a lease holder.
    pub instance_id: String,
    /// The refresh workers' queue, where there are workers (AWS): bulk work such as ending a
    /// deleted connection's tokens goes there instead of running in a request or in the
    /// scheduled run. Without one, this process does that work itself.
    pub work_queue: Option<Arc<dyn WorkQueue>>,
    refresh_turns: tokens::RefreshTurns,
    readiness: readiness::ReadinessProbe,
    credential_cache: credential_cache::CredentialCache,
    fetch_throttle: usage::FetchThrottle,
    /// Where notifications go for operators' rules (EventBridge on AWS), when configured.
    pub event_bus: Option<Arc<dyn EventBus>>,
    notifications_waiting: tokio::sync::Notify,
    /// One delivery pass at a time in this process, so two never send the same entry.
    delivery_turn: tokio::sync::Mutex<()>,
}

impl Keyport {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretStore>,
        cipher: Arc<EnvelopeCipher>,
        oauth: OAuthClient,
        settings: KeyportSettings,
    ) -> Self {
        let instance_id = format!("keyport-{}", uuid::Uuid::new_v4().simple());
        oauth
            .http()
            .read_proxy_setting_from(Arc::new(outbound_proxy::StoredProxySource {
                store: store.clone(),
                secrets: secrets.clone(),
            }));
        Self {
            store,
            secrets,
            cipher,
            oauth,
            catalog: Catalog::builtin(),
            access: AccessRules {
                admin_roles: settings.admin_roles.clone(),
                admin_applications: settings.admin_applications.clone(),
            },
            credential_cache: credential_cache::CredentialCache::new(settings.credential_cache),
            settings,
            instance_id,
            work_queue: None,
            refresh_turns: tokens::RefreshTurns::default(),
            readiness: readiness::ReadinessProbe::default(),
            fetch_throttle: usage::FetchThrottle::default(),
            event_bus: None,
            notifications_waiting: tokio::sync::Notify::new(),
            delivery_turn: tokio::sync::Mutex::new(()),
        }
    }

    /// This Keyport handing bulk work to the workers through `queue`.
    /// This Keyport putting its notifications on `bus` too.
    pub fn with_event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.event_bus = Some(bus);
        self
    }

    pub fn with_work_queue(mut self, queue: Arc<dyn WorkQueue>) -> Self {
        self.work_queue = Some(queue);
        self
    }

    /// The secrets a request to this connection's provider may need: from the credential
    /// cache when this process read them for this version of the connection lately.
    async fn credentials(
        &self,
        connection: &Connection,
    ) -> Result<Arc<ClientCredentials>, ServiceError> {
        if let Some(credentials) = self.credential_cache.get(connection) {
            return Ok(credentials);
        }
        let gate = self.credential_cache.loading_gate(&connection.id);
        let _reading = gate.lock().await;
        // Read by whoever held the gate before.
        if let Some(credentials) = self.credential_cache.get(connection) {
            return Ok(credentials);
        }
        let credentials = Arc::new(self.read_credentials(connection).await?);
        self.credential_cache
            .insert(connection, credentials.clone());
        Ok(credentials)
    }

    /// Passes a provider's answer through; an `invalid_client` drops the connection's cached
    /// credentials, so a secret rotated meanwhile is read again by the next request.
    fn check_client<T>(
        &self,
        connection: &Connection,
        answer: Result<T, OAuthError>,
    ) -> Result<T, OAuthError> {
        if let Err(OAuthError::InvalidClient { .. }) = &answer {
            self.credential_cache.forget(&connection.id);
        }
        answer
    }

    async fn read_credentials(
        &self,
        connection: &Connection,
    ) -> Result<ClientCredentials, ServiceError> {
        let mut credentials = ClientCredentials::default();
        if connection.client_secret_set {
            credentials.client_secret = self
                .secrets
                .get_secret(&SecretRef::client_secret(&connection.id))
                .await?;
        }
        if connection.private_key_set {
            credentials.private_key = self
                .secrets
                .get_secret(&SecretRef::private_key(&connection.id))
                .await?;
        }
        if connection.password_set {
            credentials.password = self
                .secrets
                .get_secret(&SecretRef::password(&connection.id))
                .await?;
        }
        Ok(credentials)
    }
}

/// A Keyport over `backends` for unit tests, reaching providers as `settings` allow, with
/// `https://keyport.example.com/oauth/callback` as its callback.
#[cfg(test)]
pub(crate) fn keyport_for_tests(
    backends: crate::config::Backends,
    settings: KeyportSettings,
) -> Keyport {
    let http = crate::adapters::outbound::OutboundHttp::new(
        crate::adapters::outbound::OutboundSettings::new(settings.url_policy),
    )
    .expect("the outbound client");
    let oauth = OAuthClient::new(
        http,
        crate::oauth::OAuthSettings {
            callback_url: "https://keyport.example.com/oauth/callback"
                .parse()
                .expect("a URL"),
            allow_password_grant: false,
        },
    );
    Keyport::new(
        backends.store,
        backends.secrets,
        backends.cipher,
        oauth,
        settings,
    )
}
