//! A provider: the template of endpoints and quirks for one SaaS application. The built-in
//! catalog is data; this is its shape and the rule that fills its placeholders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::grant::{ClientAuthMethod, GrantType};
use super::validation::ValidationError;

/// Where a placeholder's value lands decides what characters it may hold: a host label must
/// not be able to change which host Keyport talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlaceholderKind {
    /// One DNS label: letters, digits and hyphens.
    HostLabel,
    /// One URL path segment: letters, digits, `-`, `.` and `_`.
    PathSegment,
    /// One of `allowed_values` exactly: for values that span several host labels (a region's
    /// domain), where a character rule could not keep the host in the provider's hands.
    OneOf,
}

/// A `{name}` in a provider's URL templates, filled from a connection's `provider_params`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Placeholder {
    pub name: String,
    pub kind: PlaceholderKind,
    pub description: String,
    pub example: String,
    /// The values a `one_of` placeholder accepts.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub allowed_values: Vec<String>,
}

/// How a provider's token endpoint departs from RFC 6749, as data the OAuth layer reads
/// (`[provider.protocol]` in the catalog). Every field's default is the RFC's behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderProtocol {
    /// How token-endpoint requests are encoded (Notion and Atlassian document JSON).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub token_request_body: RequestEncoding,
    /// The token endpoint answers form-encoded unless asked for JSON (GitHub): Keyport asks
    /// for JSON and still reads a form-encoded answer.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub form_encoded_responses: bool,
    /// A field of a 200 answer that is `false` when the request failed (Slack's `ok`); the
    /// answer's `error` then names the failure.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub success_field: Option<String>,
    /// The object of the token answer that holds the person's token for user grants (Slack's
    /// `authed_user`); its fields are read as the token response.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub user_token_field: Option<String>,
    /// Callback query parameters kept with the token under `extra` (QuickBooks' `realmId`,
    /// Shopify's `shop`): the API calls that follow need them.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub callback_params: Vec<String>,
    /// A refresh request names the grant's scope again (Microsoft's v2 endpoint documents it;
    /// resource-specific tokens need it).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub refresh_sends_scope: bool,
    /// What happens to a refresh token when it is used.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub refresh_token_rotation: RefreshTokenRotation,
    /// The provider's own error codes read as the RFC 6749 §5.2 code they mean (GitHub's
    /// `bad_verification_code` is `invalid_grant`), so a dead grant is known as one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub error_codes: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestEncoding {
    #[default]
    Form,
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefreshTokenRotation {
    /// Not documented either way.
    #[default]
    Unknown,
    /// The same refresh token serves every refresh.
    Reused,
    /// Each refresh answers a new refresh token; the old one stops working.
    Rotates,
    /// As `rotates`, and presenting a used one revokes the whole grant (Atlassian, Zoom, Xero,
    /// Box): a lost refresh answer or a double refresh costs the person a new authorization.
    RotatesReuseRevokes,
}

/// The documented lifetimes of a provider's grants, in days. Keyport refreshes an idle grant
/// before its inactivity window closes and reports one nearing its absolute end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantLifetime {
    /// The access token's documented lifetime, in seconds (what the provider says by default;
    /// a token response's `expires_in` wins).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub access_token_seconds: Option<u64>,
    /// A refresh token unused for this many days dies.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub refresh_token_idle_days: Option<u32>,
    /// A grant dies this many days after the person authorized it, however it is used.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub refresh_token_absolute_days: Option<u32>,
}

/// A catalog provider: the endpoints and quirks of one SaaS application.
// Here and in `Placeholder`, the `serde(default)`s are for reading the catalog; every field is
// always written, hence `schema(required)` on those and on the optional ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provider {
    pub key: String,
    pub display_name: String,
    /// A URL template; `{name}` placeholders are filled from `provider_params`.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub authorization_url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub token_url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub revocation_url: Option<String>,
    /// The issuer identifier (RFC 8414), checked against a callback's `iss` (RFC 9207).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub issuer: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub default_scopes: Vec<String>,
    #[serde(default = "default_separator")]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub scope_separator: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub authorization_params: BTreeMap<String, String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub token_params: BTreeMap<String, String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub client_auth: ClientAuthMethod,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub pkce: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub placeholders: Vec<Placeholder>,
    /// Token-response fields worth keeping (e.g. Salesforce `instance_url`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub token_response_extras: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub quirks: Vec<String>,
    /// Scopes requested by default for one grant type instead of `default_scopes` (Microsoft's
    /// client credentials take only `<resource>/.default`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub default_scopes_by_grant: BTreeMap<GrantType, Vec<String>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub protocol: ProviderProtocol,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub lifetime: GrantLifetime,
    /// The provider's documentation this entry was checked against.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub docs_url: Option<String>,
    /// Every further page the entry's facts were read from.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub docs_checked: Vec<String>,
    /// What the documentation did not confirm (the entry says so rather than guess).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub docs_unverified: Vec<String>,
}

fn default_separator() -> String {
    " ".to_owned()
}

impl Provider {
    /// Fills `{name}` placeholders in a URL template from the connection's `provider_params`.
    pub fn fill_template(
        &self,
        field: &str,
        template: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<String, ValidationError> {
        let mut filled = template.to_owned();
        for placeholder in &self.placeholders {
            let token = format!("{{{}}}", placeholder.name);
            if !filled.contains(&token) {
                continue;
            }
            let value = params.get(&placeholder.name).ok_or_else(|| {
                ValidationError::new(
                    format!("provider_params.{}", placeholder.name),
                    format!(
                        "is required by provider {} ({}, e.g. {})",
                        self.key, placeholder.description, placeholder.example
                    ),
                )
            })?;
            check_placeholder_value(placeholder, value)?;
            filled = filled.replace(&token, value);
        }
        if filled.contains('{') || filled.contains('}') {
            return Err(ValidationError::new(
                field,
                format!("provider {} left a placeholder unfilled", self.key),
            ));
        }
        Ok(filled)
    }
}

fn check_placeholder_value(placeholder: &Placeholder, value: &str) -> Result<(), ValidationError> {
    if placeholder.kind == PlaceholderKind::OneOf {
        return if placeholder
            .allowed_values
            .iter()
            .any(|allowed| allowed == value)
        {
            Ok(())
        } else {
            Err(ValidationError::new(
                format!("provider_params.{}", placeholder.name),
                format!("must be one of {}", placeholder.allowed_values.join(", ")),
            ))
        };
    }
    let allowed = |c: char| match placeholder.kind {
        PlaceholderKind::HostLabel => c.is_ascii_alphanumeric() || c == '-',
        PlaceholderKind::PathSegment => c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'),
        PlaceholderKind::OneOf => false,
    };
    let well_formed = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(allowed)
        && !value.starts_with(['-', '.'])
        && value != "..";
    if well_formed {
        Ok(())
    } else {
        Err(ValidationError::new(
            format!("provider_params.{}", placeholder.name),
            format!(
                "is not a valid {} (e.g. {})",
                placeholder.description, placeholder.example
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn salesforce_like() -> Provider {
        Provider {
            key: "example".into(),
            display_name: "Example".into(),
            authorization_url: Some("https://{instance}.example.com/{tenant}/authorize".into()),
            token_url: Some("https://{instance}.example.com/{tenant}/token".into()),
            revocation_url: None,
            issuer: None,
            default_scopes: vec![],
            scope_separator: " ".into(),
            authorization_params: BTreeMap::new(),
            token_params: BTreeMap::new(),
            client_auth: ClientAuthMethod::ClientSecretBasic,
            grant_types: vec![GrantType::AuthorizationCode],
            pkce: false,
            placeholders: vec![
                Placeholder {
                    name: "instance".into(),
                    kind: PlaceholderKind::HostLabel,
                    description: "instance name".into(),
                    example: "acme".into(),
                    allowed_values: vec![],
                },
                Placeholder {
                    name: "tenant".into(),
                    kind: PlaceholderKind::PathSegment,
                    description: "tenant id or domain".into(),
                    example: "contoso.onmicrosoft.com".into(),
                    allowed_values: vec![],
                },
            ],
            token_response_extras: vec![],
            quirks: vec![],
            default_scopes_by_grant: BTreeMap::new(),
            protocol: ProviderProtocol::default(),
            lifetime: GrantLifetime::default(),
            docs_url: None,
            docs_checked: vec![],
            docs_unverified: vec![],
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled() {
        let p = salesforce_like();
        let url = p
            .fill_template(
                "token_url",
                p.token_url.as_deref().unwrap(),
                &params(&[("instance", "acme"), ("tenant", "contoso.onmicrosoft.com")]),
            )
            .unwrap();
        assert_eq!(
            url,
            "https://acme.example.com/contoso.onmicrosoft.com/token"
        );
    }

    #[test]
    fn a_missing_placeholder_names_the_parameter() {
        let p = salesforce_like();
        let err = p
            .fill_template(
                "token_url",
                p.token_url.as_deref().unwrap(),
                &params(&[("tenant", "t")]),
            )
            .unwrap_err();
        assert_eq!(err.field, "provider_params.instance");
    }

    #[test]
    fn placeholder_values_cannot_redirect_the_host() {
        let p = salesforce_like();
        for evil in ["evil.com/", "a.b", "x@y", "", "-a"] {
            let result = p.fill_template(
                "token_url",
                p.token_url.as_deref().unwrap(),
                &params(&[("instance", evil), ("tenant", "t")]),
            );
            assert!(result.is_err(), "{evil}");
        }
        let result = p.fill_template(
            "token_url",
            p.token_url.as_deref().unwrap(),
            &params(&[("instance", "a"), ("tenant", "../x")]),
        );
        assert!(result.is_err());
    }
}
