//! A connection: an administrator's configured use of a provider.
//!
//! Requests arrive as [`ConnectionInput`] (every field optional, unknown fields refused) and
//! become a [`Connection`] only through [`Connection::create`] or [`Connection::apply`], which
//! share one validation path. Secrets in the input are handed back separately and never become
//! part of the connection.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::endpoint::{EndpointUrl, UrlPolicy};
use super::grant::{ClientAuthMethod, GrantType};
use super::ids::{ApplicationId, ConnectionId, Role};
use super::principal::{Invitee, Principal};
use super::scopes::{Scopes, ScopesInput};
use super::secret::ClientSecret;
use super::validation::{ValidationError, plain_text};

/// How many roles and applications together one connection may invite. A change of invitations
/// is one DynamoDB transaction with the connection (an invitation item per invitee added or
/// removed), and a transaction takes at most 100 items.
pub const MAX_INVITED_ROLES: usize = 40;

/// Parameters Keyport sets itself; a connection may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "redirect_uri",
    "response_type",
    "state",
    "nonce",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "grant_type",
    "refresh_token",
    "scope",
    "username",
    "password",
];

/// A connection's display name; unique among connections regardless of letter case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, min_length = 1, max_length = 100, example = "Acme CRM")
)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionName(String);

impl ConnectionName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let name = plain_text("name", value, 100)?;
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        {
            return Err(ValidationError::new(
                "name",
                "may hold only letters, digits, spaces, '-', '_' and '.'",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that enforces uniqueness: two names differing only in case collide.
    pub fn uniqueness_key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ConnectionName {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ConnectionName> for String {
    fn from(name: ConnectionName) -> Self {
        name.0
    }
}

/// A catalog key (`salesforce`, `google-workspace`, …) or `custom`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, pattern = "^[a-z0-9-]{1,64}$", example = "custom")
)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderKey(String);

impl ProviderKey {
    pub const CUSTOM: &'static str = "custom";

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                "provider",
                "must be a catalog key (lowercase letters, digits, '-') or \"custom\"",
            ))
        }
    }

    pub fn custom() -> Self {
        Self(Self::CUSTOM.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProviderKey {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ProviderKey> for String {
    fn from(key: ProviderKey) -> Self {
        key.0
    }
}

/// A disabled connection hands out, refreshes and authorizes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    #[default]
    Active,
    Disabled,
}

/// A create or update request as it arrives. `client_secret` and `private_key` are accepted
/// here and nowhere else: they are write-only.
///
/// Its field comments and `schema` attributes are the API's description of each field; the
/// limits and patterns repeat what `Fields::validate` enforces, and a test holds the two
/// together.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        description = "A connection update: fields present replace the stored ones (an empty string clears an optional URL or text), then the whole connection is validated again. Unknown fields are refused; null is the same as absent.",
        example = json!({"description": "The CRM, production tenant", "scopes": ["openid", "api"], "invited_roles": ["bots"], "version": 3})
    )
)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    /// Unique among connections, whatever the letter case: letters, digits, spaces, '-', '_'
    /// and '.' (the pattern names the ASCII ones; other Unicode letters and digits are
    /// accepted too), not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            pattern = "^[A-Za-z0-9 ._-]*[A-Za-z0-9._-][A-Za-z0-9 ._-]*$"
        )
    )]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub description: Option<String>,
    /// A catalog key (see GET /providers) or `custom` (the default).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9-]{1,64}$"))]
    pub provider: Option<String>,
    /// Values for the provider's placeholders, e.g. `{"instance": "acme"}`.
    pub provider_params: Option<BTreeMap<String, String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<GrantType>))]
    pub grant_type: Option<String>,
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub client_id: Option<String>,
    /// Accepted, stored in the secret store, never returned (see `client_secret_set`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub client_secret: Option<ClientSecret>,
    /// PEM private key for `private_key_jwt`; never returned (see `private_key_set`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub private_key: Option<ClientSecret>,
    /// The resource owner's password, for the legacy password grant only; never returned
    /// (see `password_set`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub password: Option<ClientSecret>,
    /// The resource owner, for the password grant.
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub username: Option<String>,
    /// Defaults to the provider's method, else `client_secret_basic`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ClientAuthMethod>))]
    pub client_auth: Option<String>,
    pub authorization_url: Option<String>,
    /// Required unless the provider or discovery from `issuer` supplies it.
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    /// The issuer (RFC 8414 / OpenID): checked against a callback's `iss` (RFC 9207), and the
    /// base for discovery when a custom connection gives no endpoints.
    pub issuer: Option<String>,
    /// Whether a callback without `iss` is refused (RFC 9207 §2.4): set by discovery when the
    /// authorization server advertises `authorization_response_iss_parameter_supported`;
    /// needs an issuer.
    pub callback_iss_required: Option<bool>,
    /// A comma-separated string or a list.
    pub scopes: Option<ScopesInput>,
    /// How scopes are joined on the wire; a space unless the provider wants otherwise.
    #[cfg_attr(feature = "openapi", schema(max_length = 3))]
    pub scope_separator: Option<String>,
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub audience: Option<String>,
    /// RFC 8707 resource indicator: an absolute URI without a fragment.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub resource: Option<String>,
    /// Extra authorization request parameters; Keyport's own (`state`, `redirect_uri`, ...)
    /// are refused.
    pub authorization_params: Option<BTreeMap<String, String>>,
    /// Extra token request parameters; Keyport's own are refused.
    pub token_params: Option<BTreeMap<String, String>>,
    /// Roles whose members may use the connection's tokens.
    pub invited_roles: Option<Vec<String>>,
    /// Applications (client ids at the identity provider) that may use the connection's
    /// tokens.
    pub invited_applications: Option<Vec<String>>,
    /// Fields of the provider's token response handed to callers under `extra` (for a catalog
    /// provider, the catalog's list when this is empty); every other field stays sealed, and
    /// token-like fields are never handed out at any depth.
    #[cfg_attr(
        feature = "openapi",
        schema(max_items = 32, pattern = "^[A-Za-z0-9_.-]{1,64}$")
    )]
    pub token_response_extras: Option<Vec<String>>,
    pub status: Option<ConnectionStatus>,
    /// On update: the version last read; a stale one is a 409. Refused on create.
    pub version: Option<u64>,
}

/// Secrets that came with a request, to be stored by the secret store, never in the connection.
#[derive(Debug, Default)]
pub struct SubmittedSecrets {
    pub client_secret: Option<ClientSecret>,
    pub private_key: Option<ClientSecret>,
    pub password: Option<ClientSecret>,
}

/// A connection as Keyport returns it: secrets never appear, only whether each is set.
// The `serde(default)`s are for reading older stored connections; every field is always
// written, hence `schema(required)` on the optional ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({
        "id": "con_3f2c8e4a9b1d4c7e8f0a1b2c3d4e5f60",
        "name": "Acme CRM",
        "description": "The CRM, production tenant",
        "provider": "custom",
        "provider_params": {},
        "grant_type": "authorization_code_pkce",
        "client_id": "keyport",
        "client_auth": "client_secret_basic",
        "authorization_url": "https://login.acme.example/authorize",
        "token_url": "https://login.acme.example/token",
        "revocation_url": null,
        "issuer": "https://login.acme.example",
        "callback_iss_required": false,
        "scopes": ["openid", "api"],
        "scope_separator": " ",
        "username": null,
        "audience": null,
        "resource": null,
        "authorization_params": {},
        "token_params": {},
        "invited_roles": ["bots"],
        "invited_applications": ["6f1tq0b2kq4m8v3s9d7c5e1a0b"],
        "token_response_extras": ["instance_url"],
        "status": "active",
        "client_secret_set": true,
        "private_key_set": false,
        "password_set": false,
        "created_at": "2026-01-05T09:30:00Z",
        "updated_at": "2026-01-05T09:30:00Z",
        "version": 1
    }))
)]
pub struct Connection {
    pub id: ConnectionId,
    pub name: ConnectionName,
    pub description: String,
    pub provider: ProviderKey,
    pub provider_params: BTreeMap<String, String>,
    pub grant_type: GrantType,
    pub client_id: String,
    pub client_auth: ClientAuthMethod,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub authorization_url: Option<EndpointUrl>,
    pub token_url: EndpointUrl,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub revocation_url: Option<EndpointUrl>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub issuer: Option<EndpointUrl>,
    /// RFC 9207: a callback without `iss` is refused. Set by discovery when the authorization
    /// server advertises `authorization_response_iss_parameter_supported`; needs an issuer.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub callback_iss_required: bool,
    pub scopes: Scopes,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 3))]
    pub scope_separator: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub username: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub audience: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub resource: Option<String>,
    pub authorization_params: BTreeMap<String, String>,
    pub token_params: BTreeMap<String, String>,
    pub invited_roles: BTreeSet<Role>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub invited_applications: BTreeSet<ApplicationId>,
    /// Fields of the provider's token response handed to callers under `extra`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub token_response_extras: Vec<String>,
    pub status: ConnectionStatus,
    pub client_secret_set: bool,
    pub private_key_set: bool,
    pub password_set: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Starts at 1; each change adds one. Send it back to change or delete only what you read.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
}

impl Connection {
    /// Validates a create request. The connection starts at version 0: the store assigns 1.
    pub fn create(
        input: ConnectionInput,
        now: DateTime<Utc>,
        policy: UrlPolicy,
    ) -> Result<(Connection, SubmittedSecrets), ValidationError> {
        if input.version.is_some() {
            return Err(ValidationError::new(
                "version",
                "is set by Keyport on create",
            ));
        }
        let secrets = SubmittedSecrets {
            client_secret: input.client_secret,
            private_key: input.private_key,
            password: input.password,
        };
        let fields = Fields {
            name: input.name,
            description: input.description,
            provider: input.provider,
            provider_params: input.provider_params,
            grant_type: input.grant_type,
            client_id: input.client_id,
            client_auth: input.client_auth,
            authorization_url: input.authorization_url,
            token_url: input.token_url,
            revocation_url: input.revocation_url,
            issuer: input.issuer,
            callback_iss_required: input.callback_iss_required,
            scopes: input.scopes,
            scope_separator: input.scope_separator,
            username: input.username,
            audience: input.audience,
            resource: input.resource,
            authorization_params: input.authorization_params,
            token_params: input.token_params,
            invited_roles: input.invited_roles,
            invited_applications: input.invited_applications,
            token_response_extras: input.token_response_extras,
            status: input.status,
        };
        let connection = fields.validate(
            Identity {
                id: ConnectionId::generate(),
                created_at: now,
                updated_at: now,
                version: 0,
                client_secret_set: secrets.client_secret.is_some(),
                private_key_set: secrets.private_key.is_some(),
                password_set: secrets.password.is_some(),
            },
            policy,
        )?;
        Ok((connection, secrets))
    }

    /// Validates an update: fields present in `input` replace this connection's, then the whole
    /// result is checked as on create. The returned connection keeps this one's version; the
    /// store bumps it when the conditional write succeeds.
    pub fn apply(
        &self,
        input: ConnectionInput,
        now: DateTime<Utc>,
        policy: UrlPolicy,
    ) -> Result<(Connection, SubmittedSecrets), ValidationError> {
        if let Some(expected) = input.version
            && expected != self.version
        {
            return Err(ValidationError::new(
                "version",
                format!(
                    "is {expected} but the connection is at version {}",
                    self.version
                ),
            ));
        }
        let secrets = SubmittedSecrets {
            client_secret: input.client_secret,
            private_key: input.private_key,
            password: input.password,
        };
        let url = |u: &Option<EndpointUrl>| u.as_ref().map(|u| u.as_str().to_owned());
        let fields = Fields {
            name: Some(input.name.unwrap_or_else(|| self.name.as_str().to_owned())),
            description: Some(
                input
                    .description
                    .unwrap_or_else(|| self.description.clone()),
            ),
            provider: Some(
                input
                    .provider
                    .unwrap_or_else(|| self.provider.as_str().to_owned()),
            ),
            provider_params: Some(
                input
                    .provider_params
                    .unwrap_or_else(|| self.provider_params.clone()),
            ),
            grant_type: Some(
                input
                    .grant_type
                    .unwrap_or_else(|| self.grant_type.as_str().to_owned()),
            ),
            client_id: Some(input.client_id.unwrap_or_else(|| self.client_id.clone())),
            client_auth: Some(
                input
                    .client_auth
                    .unwrap_or_else(|| self.client_auth.as_str().to_owned()),
            ),
            authorization_url: input
                .authorization_url
                .or_else(|| url(&self.authorization_url)),
            token_url: Some(
                input
                    .token_url
                    .unwrap_or_else(|| self.token_url.as_str().to_owned()),
            ),
            revocation_url: input.revocation_url.or_else(|| url(&self.revocation_url)),
            issuer: input.issuer.or_else(|| url(&self.issuer)),
            callback_iss_required: Some(
                input
                    .callback_iss_required
                    .unwrap_or(self.callback_iss_required),
            ),
            scope_separator: Some(
                input
                    .scope_separator
                    .unwrap_or_else(|| self.scope_separator.clone()),
            ),
            username: input.username.or_else(|| self.username.clone()),
            scopes: Some(input.scopes.unwrap_or_else(|| {
                ScopesInput::List(self.scopes.iter().map(str::to_owned).collect())
            })),
            audience: input.audience.or_else(|| self.audience.clone()),
            resource: input.resource.or_else(|| self.resource.clone()),
            authorization_params: Some(
                input
                    .authorization_params
                    .unwrap_or_else(|| self.authorization_params.clone()),
            ),
            token_params: Some(
                input
                    .token_params
                    .unwrap_or_else(|| self.token_params.clone()),
            ),
            invited_roles: Some(input.invited_roles.unwrap_or_else(|| {
                self.invited_roles
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect()
            })),
            invited_applications: Some(input.invited_applications.unwrap_or_else(|| {
                self.invited_applications
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect()
            })),
            token_response_extras: Some(
                input
                    .token_response_extras
                    .unwrap_or_else(|| self.token_response_extras.clone()),
            ),
            status: Some(input.status.unwrap_or(self.status)),
        };
        let connection = fields.validate(
            Identity {
                id: self.id.clone(),
                created_at: self.created_at,
                updated_at: now,
                version: self.version,
                client_secret_set: self.client_secret_set || secrets.client_secret.is_some(),
                private_key_set: self.private_key_set || secrets.private_key.is_some(),
                password_set: self.password_set || secrets.password.is_some(),
            },
            policy,
        )?;
        let moved = self.destination_changes(&connection);
        if !moved.is_empty() {
            // A stored credential must never follow a connection to a new destination: whoever
            // moves it types the credential for the new one.
            let needed = match connection.client_auth {
                ClientAuthMethod::PrivateKeyJwt => ("private_key", secrets.private_key.is_some()),
                _ => ("client_secret", secrets.client_secret.is_some()),
            };
            let password = (
                "password",
                connection.grant_type != GrantType::Password || secrets.password.is_some(),
            );
            for (field, given) in [needed, password] {
                if !given {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "must be given again in the same request: changing {} moves where Keyport sends this connection's credentials and tokens",
                            moved.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok((connection, secrets))
    }

    /// The fields of this connection that differ from `next`'s in where credentials and
    /// tokens are sent: the provider and its parameters, the issuer, every endpoint, the
    /// client id and how the client authenticates.
    pub fn destination_changes(&self, next: &Connection) -> Vec<&'static str> {
        let (a, b) = (self.destination(), next.destination());
        [
            ("provider", a.provider != b.provider),
            ("provider_params", a.provider_params != b.provider_params),
            ("issuer", a.issuer != b.issuer),
            (
                "authorization_url",
                a.authorization_url != b.authorization_url,
            ),
            ("token_url", a.token_url != b.token_url),
            ("revocation_url", a.revocation_url != b.revocation_url),
            ("client_id", a.client_id != b.client_id),
            ("client_auth", a.client_auth != b.client_auth),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }

    /// A fingerprint of where this connection sends credentials and tokens (hex SHA-256 of
    /// those fields). Each stored token carries the one it was issued under, so a token is
    /// never sent anywhere but where it came from, whatever changes or races in between.
    pub fn destination_fingerprint(&self) -> String {
        let encoded = serde_json::to_vec(&self.destination()).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &encoded);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn destination(&self) -> Destination<'_> {
        Destination {
            provider: &self.provider,
            provider_params: &self.provider_params,
            issuer: self.issuer.as_ref(),
            authorization_url: self.authorization_url.as_ref(),
            token_url: &self.token_url,
            revocation_url: self.revocation_url.as_ref(),
            client_id: &self.client_id,
            client_auth: self.client_auth,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.status == ConnectionStatus::Active
    }

    /// Whether one of the caller's roles, or the calling application itself, is invited.
    pub fn is_invited(&self, principal: &Principal) -> bool {
        principal.has_any_role(&self.invited_roles)
            || principal
                .application
                .as_ref()
                .is_some_and(|app| self.invited_applications.contains(app))
    }

    /// Everyone this connection invites, for the invitation index.
    pub fn invitees(&self) -> BTreeSet<Invitee> {
        self.invited_roles
            .iter()
            .cloned()
            .map(Invitee::Role)
            .chain(
                self.invited_applications
                    .iter()
                    .cloned()
                    .map(Invitee::Application),
            )
            .collect()
    }
}

/// Where a connection's credentials and tokens go.
#[derive(Serialize, PartialEq)]
struct Destination<'a> {
    provider: &'a ProviderKey,
    provider_params: &'a BTreeMap<String, String>,
    issuer: Option<&'a EndpointUrl>,
    authorization_url: Option<&'a EndpointUrl>,
    token_url: &'a EndpointUrl,
    revocation_url: Option<&'a EndpointUrl>,
    client_id: &'a str,
    client_auth: ClientAuthMethod,
}

/// What identifies a connection across versions; not taken from requests.
struct Identity {
    id: ConnectionId,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u64,
    client_secret_set: bool,
    private_key_set: bool,
    password_set: bool,
}

/// The settable fields, merged and ready for validation.
struct Fields {
    name: Option<String>,
    description: Option<String>,
    provider: Option<String>,
    provider_params: Option<BTreeMap<String, String>>,
    grant_type: Option<String>,
    client_id: Option<String>,
    client_auth: Option<String>,
    authorization_url: Option<String>,
    token_url: Option<String>,
    revocation_url: Option<String>,
    issuer: Option<String>,
    callback_iss_required: Option<bool>,
    scopes: Option<ScopesInput>,
    scope_separator: Option<String>,
    username: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    authorization_params: Option<BTreeMap<String, String>>,
    token_params: Option<BTreeMap<String, String>>,
    invited_roles: Option<Vec<String>>,
    invited_applications: Option<Vec<String>>,
    token_response_extras: Option<Vec<String>>,
    status: Option<ConnectionStatus>,
}

/// The token-response fields a connection hands to callers: plain names, never one of the
/// tokens themselves.
fn token_response_extras(names: Option<Vec<String>>) -> Result<Vec<String>, ValidationError> {
    const FIELD: &str = "token_response_extras";
    let mut names = names.unwrap_or_default();
    if names.len() > 32 {
        return Err(ValidationError::new(FIELD, "names at most 32 fields"));
    }
    for name in &names {
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(ValidationError::new(
                FIELD,
                format!("{name:?} is not a field name (letters, digits, _ - . only)"),
            ));
        }
        if crate::domain::is_token_like_field(name) {
            return Err(ValidationError::new(
                FIELD,
                format!("{name:?} is a token: it is never handed out as an extra"),
            ));
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, ValidationError> {
    value.ok_or_else(|| ValidationError::new(field, "is required"))
}

fn optional_url(
    field: &str,
    value: Option<String>,
    policy: UrlPolicy,
) -> Result<Option<EndpointUrl>, ValidationError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| EndpointUrl::parse(field, &v, policy))
        .transpose()
}

fn extra_params(
    field: &str,
    params: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let params = params.unwrap_or_default();
    for (key, value) in &params {
        let name = format!("{field}.{key}");
        if key.is_empty()
            || key.len() > 64
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(ValidationError::new(name, "is not a valid parameter name"));
        }
        if RESERVED_PARAMS.contains(&key.as_str()) {
            return Err(ValidationError::new(
                name,
                "is set by Keyport and cannot be overridden",
            ));
        }
        if value.len() > 2048 || value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                name,
                "must be at most 2048 characters without control characters",
            ));
        }
    }
    Ok(params)
}

fn optional_text(
    field: &str,
    value: Option<String>,
    max_len: usize,
) -> Result<Option<String>, ValidationError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| plain_text(field, &v, max_len))
        .transpose()
}

impl Fields {
    fn validate(
        self,
        identity: Identity,
        policy: UrlPolicy,
    ) -> Result<Connection, ValidationError> {
        let name = ConnectionName::parse(&required("name", self.name)?)?;
        let description = match self.description {
            Some(text) if !text.trim().is_empty() => plain_text("description", &text, 1000)?,
            _ => String::new(),
        };
        let provider = match self.provider {
            Some(key) => ProviderKey::parse(&key)?,
            None => ProviderKey::custom(),
        };
        let provider_params = self.provider_params.unwrap_or_default();
        for (key, value) in &provider_params {
            plain_text(&format!("provider_params.{key}"), value, 253)?;
        }
        let grant_type: GrantType = required("grant_type", self.grant_type)?.parse()?;
        let client_id = plain_text("client_id", &required("client_id", self.client_id)?, 512)?;
        let client_auth: ClientAuthMethod = match self.client_auth {
            Some(method) => method.parse()?,
            None => ClientAuthMethod::default(),
        };
        let authorization_url = optional_url("authorization_url", self.authorization_url, policy)?;
        let token_url =
            EndpointUrl::parse("token_url", &required("token_url", self.token_url)?, policy)?;
        let revocation_url = optional_url("revocation_url", self.revocation_url, policy)?;
        let issuer = optional_url("issuer", self.issuer, policy)?;
        let callback_iss_required = self.callback_iss_required.unwrap_or(false);
        if callback_iss_required && issuer.is_none() {
            return Err(ValidationError::new(
                "callback_iss_required",
                "needs an issuer to compare the callback's iss with",
            ));
        }
        let scope_separator = match self.scope_separator {
            Some(separator) if !separator.is_empty() => {
                if separator.len() > 3
                    || separator
                        .chars()
                        .any(|c| c.is_control() || c.is_alphanumeric())
                {
                    return Err(ValidationError::new(
                        "scope_separator",
                        "must be one to three punctuation or space characters",
                    ));
                }
                separator
            }
            _ => " ".to_owned(),
        };
        let username = optional_text("username", self.username, 256)?;
        if grant_type == GrantType::Password {
            if username.is_none() {
                return Err(ValidationError::new(
                    "username",
                    "is required for the password grant",
                ));
            }
            if !identity.password_set {
                return Err(ValidationError::new(
                    "password",
                    "is required for the password grant",
                ));
            }
        }
        if grant_type.is_interactive() && authorization_url.is_none() {
            return Err(ValidationError::new(
                "authorization_url",
                format!("is required for the {grant_type} grant"),
            ));
        }
        let scopes = match self.scopes {
            Some(input) => Scopes::try_from(input)?,
            None => Scopes::default(),
        };
        if grant_type == GrantType::AuthorizationCodeHybrid {
            // The front-channel ID token is what makes the hybrid flow worth having: it needs
            // `openid` to be issued, and the issuer's keys to be verified.
            if !scopes.contains("openid") {
                return Err(ValidationError::new(
                    "scopes",
                    format!("must include openid for the {grant_type} grant"),
                ));
            }
            if issuer.is_none() {
                return Err(ValidationError::new(
                    "issuer",
                    format!(
                        "is required for the {grant_type} grant: its ID token is verified with the issuer's published keys"
                    ),
                ));
            }
            // The answer must come by form post: in a query it could not carry the ID token,
            // and a fragment never reaches the server.
            if self
                .authorization_params
                .as_ref()
                .is_some_and(|params| params.contains_key("response_mode"))
            {
                return Err(ValidationError::new(
                    "authorization_params.response_mode",
                    format!("is always form_post for the {grant_type} grant"),
                ));
            }
        }
        let resource = optional_text("resource", self.resource, 2048)?;
        if let Some(resource) = &resource {
            // RFC 8707 §2: an absolute URI without a fragment.
            let parsed = url::Url::parse(resource)
                .map_err(|_| ValidationError::new("resource", "must be an absolute URI"))?;
            if parsed.fragment().is_some() {
                return Err(ValidationError::new(
                    "resource",
                    "must not contain a fragment",
                ));
            }
        }
        let invited_roles = self
            .invited_roles
            .unwrap_or_default()
            .iter()
            .map(|role| {
                Role::parse(role).map_err(|e| ValidationError::new("invited_roles", e.message))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if invited_roles.len() > MAX_INVITED_ROLES {
            return Err(ValidationError::new(
                "invited_roles",
                format!("at most {MAX_INVITED_ROLES} roles"),
            ));
        }
        let invited_applications = self
            .invited_applications
            .unwrap_or_default()
            .iter()
            .map(|app| {
                ApplicationId::parse(app)
                    .map_err(|e| ValidationError::new("invited_applications", e.message))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if invited_roles.len() + invited_applications.len() > MAX_INVITED_ROLES {
            return Err(ValidationError::new(
                "invited_applications",
                format!("at most {MAX_INVITED_ROLES} roles and applications together"),
            ));
        }
        let token_response_extras = token_response_extras(self.token_response_extras)?;
        let credential_present = match client_auth {
            ClientAuthMethod::PrivateKeyJwt => identity.private_key_set,
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
                identity.client_secret_set
            }
        };
        if !credential_present {
            let field = match client_auth {
                ClientAuthMethod::PrivateKeyJwt => "private_key",
                _ => "client_secret",
            };
            return Err(ValidationError::new(
                field,
                format!("is required for {client_auth}"),
            ));
        }
        Ok(Connection {
            id: identity.id,
            name,
            description,
            provider,
            provider_params,
            grant_type,
            client_id,
            client_auth,
            authorization_url,
            token_url,
            revocation_url,
            issuer,
            callback_iss_required,
            scopes,
            scope_separator,
            username,
            audience: optional_text("audience", self.audience, 2048)?,
            resource,
            authorization_params: extra_params("authorization_params", self.authorization_params)?,
            token_params: extra_params("token_params", self.token_params)?,
            invited_roles,
            invited_applications,
            token_response_extras,
            status: self.status.unwrap_or_default(),
            client_secret_set: identity.client_secret_set,
            private_key_set: identity.private_key_set,
            password_set: identity.password_set,
            created_at: identity.created_at,
            updated_at: identity.updated_at,
            version: identity.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> ConnectionInput {
        serde_json::from_value(json).unwrap()
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "name": "Acme CRM",
            "grant_type": "authorization_code_pkce",
            "client_id": "abc",
            "client_secret": "s3cret",
            "authorization_url": "https://login.acme.example/authorize",
            "token_url": "https://login.acme.example/token",
            "scopes": "openid, offline_access",
            "invited_roles": ["bots"]
        })
    }

    fn create(json: serde_json::Value) -> Result<Connection, ValidationError> {
        Connection::create(input(json), Utc::now(), UrlPolicy::Production).map(|(c, _)| c)
    }

    fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
        let mut json = valid();
        json[field] = value;
        json
    }

    #[test]
    fn a_valid_request_becomes_a_connection() {
        let (connection, secrets) =
            Connection::create(input(valid()), Utc::now(), UrlPolicy::Production).unwrap();
        assert_eq!(connection.grant_type, GrantType::AuthorizationCodePkce);
        assert_eq!(connection.scopes.join(" "), "openid offline_access");
        assert!(connection.client_secret_set);
        assert_eq!(secrets.client_secret.unwrap().expose_secret(), "s3cret");
        assert_eq!(connection.version, 0);
    }

    #[test]
    fn the_hybrid_grant_needs_openid_an_issuer_and_form_post() {
        let hybrid = |changes: serde_json::Value| {
            let mut json = with("grant_type", serde_json::json!("authorization_code_hybrid"));
            json["issuer"] = serde_json::json!("https://login.acme.example");
            for (field, value) in changes.as_object().unwrap() {
                json[field] = value.clone();
            }
            create(json)
        };
        let connection = hybrid(serde_json::json!({})).unwrap();
        assert_eq!(connection.grant_type, GrantType::AuthorizationCodeHybrid);
        assert!(connection.grant_type.is_interactive() && connection.grant_type.uses_pkce());
        for (changes, field) in [
            (
                serde_json::json!({"scopes": "api offline_access"}),
                "scopes",
            ),
            (serde_json::json!({"issuer": null}), "issuer"),
            (
                serde_json::json!({"authorization_params": {"response_mode": "fragment"}}),
                "authorization_params.response_mode",
            ),
        ] {
            let error = hybrid(changes.clone()).unwrap_err();
            assert_eq!(error.field, field, "{changes}: {error}");
        }
    }

    #[test]
    fn a_connection_invites_at_most_forty_roles() {
        let roles =
            |n: usize| serde_json::json!((0..n).map(|i| format!("role-{i}")).collect::<Vec<_>>());
        assert!(create(with("invited_roles", roles(MAX_INVITED_ROLES))).is_ok());
        let error = create(with("invited_roles", roles(MAX_INVITED_ROLES + 1))).unwrap_err();
        assert_eq!(error.field, "invited_roles");
        assert!(error.message.contains("at most 40"), "{}", error.message);
    }

    #[test]
    fn roles_and_applications_share_the_forty_invitations() {
        let names = |prefix: &str, n: usize| {
            serde_json::json!((0..n).map(|i| format!("{prefix}-{i}")).collect::<Vec<_>>())
        };
        let mut both = with("invited_roles", names("role", 30));
        both["invited_applications"] = names("app", 10);
        let connection = create(both.clone()).unwrap();
        assert_eq!(connection.invitees().len(), 40);
        both["invited_applications"] = names("app", 11);
        let error = create(both).unwrap_err();
        assert_eq!(error.field, "invited_applications");
        assert!(error.message.contains("at most 40"), "{}", error.message);
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases = [
            (
                "token_url",
                serde_json::json!("http://login.acme.example/token"),
            ),
            ("client_id", serde_json::json!("  ")),
            ("grant_type", serde_json::json!("implicit")),
            ("scopes", serde_json::json!("openid,,email")),
            ("scopes", serde_json::json!(["openid", " "])),
            ("name", serde_json::json!("")),
            ("name", serde_json::json!("bad/name")),
            ("client_auth", serde_json::json!("mtls")),
            (
                "authorization_url",
                serde_json::json!("https://169.254.169.254/x"),
            ),
            ("invited_roles", serde_json::json!(["a,b"])),
            ("invited_applications", serde_json::json!(["app one"])),
            ("provider", serde_json::json!("Not A Key")),
        ];
        for (field, value) in cases {
            let err = create(with(field, value.clone())).unwrap_err();
            assert_eq!(err.field, field, "{field} = {value}: {err}");
        }
    }

    #[test]
    fn reserved_parameters_cannot_be_overridden() {
        let err = create(with(
            "authorization_params",
            serde_json::json!({"redirect_uri": "https://evil"}),
        ))
        .unwrap_err();
        assert_eq!(err.field, "authorization_params.redirect_uri");
        assert!(
            create(with(
                "authorization_params",
                serde_json::json!({"prompt": "consent"})
            ))
            .is_ok()
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["name", "grant_type", "client_id", "token_url"] {
            let mut json = valid();
            json.as_object_mut().unwrap().remove(field);
            assert_eq!(create(json).unwrap_err().field, field);
        }
        let mut json = valid();
        json.as_object_mut().unwrap().remove("client_secret");
        assert_eq!(create(json).unwrap_err().field, "client_secret");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_json::from_value::<ConnectionInput>(with("colour", serde_json::json!("red")))
                .unwrap_err();
        assert!(err.to_string().contains("colour"));
    }

    #[test]
    fn an_update_merges_and_revalidates() {
        let mut current = create(valid()).unwrap();
        current.version = 3;
        let (updated, secrets) = current
            .apply(
                input(serde_json::json!({"description": "CRM", "version": 3})),
                Utc::now(),
                UrlPolicy::Production,
            )
            .unwrap();
        assert_eq!(updated.description, "CRM");
        assert_eq!(updated.name, current.name);
        assert_eq!(updated.id, current.id);
        assert!(
            updated.client_secret_set,
            "an update without a secret keeps the stored one"
        );
        assert!(secrets.client_secret.is_none());
        let err = current
            .apply(
                input(serde_json::json!({"token_url": "ftp://x"})),
                Utc::now(),
                UrlPolicy::Production,
            )
            .unwrap_err();
        assert_eq!(err.field, "token_url");
        let stale = current
            .apply(
                input(serde_json::json!({"version": 2})),
                Utc::now(),
                UrlPolicy::Production,
            )
            .unwrap_err();
        assert_eq!(stale.field, "version");
    }

    #[test]
    fn the_password_grant_needs_a_username_and_password() {
        let mut json = with("grant_type", serde_json::json!("password"));
        assert_eq!(create(json.clone()).unwrap_err().field, "username");
        json["username"] = serde_json::json!("svc-bot");
        assert_eq!(create(json.clone()).unwrap_err().field, "password");
        json["password"] = serde_json::json!("pw");
        let connection = create(json).unwrap();
        assert!(connection.password_set);
        assert_eq!(connection.username.as_deref(), Some("svc-bot"));
    }

    #[test]
    fn scope_separators_default_to_a_space_and_are_checked() {
        assert_eq!(create(valid()).unwrap().scope_separator, " ");
        assert_eq!(
            create(with("scope_separator", serde_json::json!(",")))
                .unwrap()
                .scope_separator,
            ","
        );
        assert_eq!(
            create(with("scope_separator", serde_json::json!("and")))
                .unwrap_err()
                .field,
            "scope_separator"
        );
    }

    #[test]
    fn names_collide_regardless_of_case() {
        assert_eq!(
            ConnectionName::parse("Acme").unwrap().uniqueness_key(),
            ConnectionName::parse("ACME").unwrap().uniqueness_key()
        );
    }

    #[test]
    fn declared_extras_are_plain_names_and_never_tokens() {
        let ok = create(with(
            "token_response_extras",
            serde_json::json!(["instance_url", "id", "id"]),
        ))
        .unwrap();
        assert_eq!(ok.token_response_extras, ["id", "instance_url"]);
        for bad in [
            serde_json::json!(["access_token"]),
            serde_json::json!(["authed_user", "refresh_token"]),
            serde_json::json!(["client_secret"]),
            serde_json::json!(["a b"]),
            serde_json::json!([""]),
        ] {
            assert_eq!(
                create(with("token_response_extras", bad.clone()))
                    .unwrap_err()
                    .field,
                "token_response_extras",
                "{bad}"
            );
        }
    }

    #[test]
    fn destination_changes_are_named_and_change_the_fingerprint() {
        let current = create(valid()).unwrap();
        let same = |json: serde_json::Value| {
            current
                .apply(input(json), Utc::now(), UrlPolicy::Production)
                .unwrap()
                .0
        };
        let described = same(serde_json::json!({"description": "other", "scopes": "x,y"}));
        assert!(current.destination_changes(&described).is_empty());
        assert_eq!(
            current.destination_fingerprint(),
            described.destination_fingerprint()
        );
        for (field, value) in [
            (
                "token_url",
                serde_json::json!("https://evil.example.net/token"),
            ),
            (
                "revocation_url",
                serde_json::json!("https://evil.example.net/revoke"),
            ),
            (
                "authorization_url",
                serde_json::json!("https://evil.example.net/authorize"),
            ),
            ("issuer", serde_json::json!("https://evil.example.net")),
            ("client_id", serde_json::json!("another-client")),
            ("client_auth", serde_json::json!("client_secret_post")),
            ("provider_params", serde_json::json!({"instance": "evil"})),
        ] {
            let refused = current
                .apply(
                    input(serde_json::json!({ field: value.clone() })),
                    Utc::now(),
                    UrlPolicy::Production,
                )
                .unwrap_err();
            assert_eq!(refused.field, "client_secret", "{field}");
            assert!(refused.message.contains(field), "{}", refused.message);
            let moved = same(serde_json::json!({ field: value, "client_secret": "typed-again" }));
            assert_eq!(current.destination_changes(&moved), [field], "{field}");
            assert_ne!(
                current.destination_fingerprint(),
                moved.destination_fingerprint(),
                "{field}"
            );
        }
    }

    #[test]
    fn responses_carry_no_secret() {
        let json = serde_json::to_string(&create(valid()).unwrap()).unwrap();
        assert!(!json.contains("s3cret"));
        assert!(json.contains("\"client_secret_set\":true"));
    }
}
