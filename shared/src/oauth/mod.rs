//! OAuth 2.0 with providers: authorization URLs, callbacks, every grant, refresh, revocation,
//! discovery, and the errors providers answer with.

mod assertion;
mod callback;
#[cfg(test)]
mod catalog_urls;
mod client;
mod discovery;
mod error;
mod id_token;
mod quirks;
mod response;
mod revocation;

pub use callback::{CallbackOutcome, CallbackParams};
pub use client::{AuthorizationStart, ClientCredentials, OAuthClient, OAuthSettings};
pub use discovery::{DiscoveredEndpoints, discover};
pub use error::OAuthError;
pub use id_token::{
    Expected as ExpectedIdToken, IdTokenError, IdTokenSubject, left_half_hash, unverified_subject,
    verify_front_channel,
};
pub(crate) use quirks::{callback_values, protocol_of};
pub use response::{ProviderTokenResponse, TokenGrant};
