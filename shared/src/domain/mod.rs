//! Keyport's domain: values that are valid by construction and the rules over them.

mod audit;
mod connection;
mod endpoint;
mod grant;
mod health;
mod ids;
mod lifetime;
mod notification;
mod outbound_proxy;
mod pending;
mod principal;
mod provider;
mod provider_defaults;
mod scopes;
mod secret;
mod token;
mod transfer;
mod usage;
mod validation;

pub use audit::{AuditAction, AuditEvent, REFRESHER_ACTOR};
pub use connection::{
    Connection, ConnectionInput, ConnectionName, ConnectionStatus, ProviderKey, SubmittedSecrets,
};
pub use endpoint::{EndpointUrl, UrlPolicy, is_non_public};
pub use grant::{ClientAuthMethod, GrantType};
pub use health::{
    EXPIRING_SOON, SharedTokenHealth, TokenHealth, TokenHealthStatus, UserTokenCounts,
};
pub use ids::{ApplicationId, ConnectionId, Owner, Role, Subject};
pub use lifetime::{GrantFacts, GrantSchedule, LifetimeMargins};
pub use notification::{
    DeliveryStatus, EventData, EventType, Notification, WebhookInput, WebhookSecret,
    WebhookSubscription,
};
pub use outbound_proxy::{OutboundProxy, OutboundProxyInput};
pub use pending::{AwaitedGrant, PendingAuthorization, StateToken};
pub use principal::{ApiScope, Invitee, Principal};
pub use provider::{
    GrantLifetime, Placeholder, PlaceholderKind, Provider, ProviderProtocol, RefreshTokenRotation,
    RequestEncoding,
};
pub use scopes::{Scopes, ScopesInput};
pub use secret::{ClientSecret, PkceVerifier, TokenSecrets, is_token_like_field};
pub use token::{Lease, StoredToken, TokenFailure, TokenStatus};
pub use transfer::{
    ConnectionDefinition, ConnectionsDocument, EXPORT_FORMAT, ImportAction, ImportOutcome,
    ImportStep, ImportSummary, state_in_full,
};
pub use usage::{CallerKind, TokenFetch, token_fingerprint};
pub use validation::ValidationError;
