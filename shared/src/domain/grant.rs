//! How a connection obtains tokens and how it authenticates to the token endpoint.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::validation::ValidationError;

/// The grant an administrator configures for a connection. Refresh is not listed: it is how
/// Keyport keeps a granted token alive, not a way to obtain one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    AuthorizationCodePkce,
    /// OpenID Connect's hybrid flow (`response_type=code id_token`, answered by form post):
    /// the ID token beside the code is verified, and binds the code by its `c_hash`, before the
    /// code is exchanged. With PKCE (S256) too.
    AuthorizationCodeHybrid,
    ClientCredentials,
    /// Resource-owner password: legacy, forbidden by RFC 9700 §2.4; off unless an
    /// installation enables it.
    Password,
}

impl GrantType {
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::AuthorizationCodePkce,
        GrantType::AuthorizationCodeHybrid,
        GrantType::ClientCredentials,
        GrantType::Password,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::AuthorizationCodePkce => "authorization_code_pkce",
            GrantType::AuthorizationCodeHybrid => "authorization_code_hybrid",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
        }
    }

    /// Whether a person must visit the provider to grant access.
    pub fn is_interactive(self) -> bool {
        matches!(
            self,
            GrantType::AuthorizationCode
                | GrantType::AuthorizationCodePkce
                | GrantType::AuthorizationCodeHybrid
        )
    }

    /// Whether the authorization request carries a PKCE (S256) challenge.
    pub fn uses_pkce(self) -> bool {
        matches!(
            self,
            GrantType::AuthorizationCodePkce | GrantType::AuthorizationCodeHybrid
        )
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantType {
    type Err = ValidationError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|grant| grant.as_str() == value)
            .ok_or_else(|| {
                ValidationError::new(
                    "grant_type",
                    format!(
                        "unknown grant type; expected one of {}",
                        Self::ALL.map(GrantType::as_str).join(", ")
                    ),
                )
            })
    }
}

/// How Keyport proves the client's identity at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523: a JWT signed with a private key the administrator supplies.
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub const ALL: [ClientAuthMethod; 3] = [
        ClientAuthMethod::ClientSecretBasic,
        ClientAuthMethod::ClientSecretPost,
        ClientAuthMethod::PrivateKeyJwt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

impl fmt::Display for ClientAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClientAuthMethod {
    type Err = ValidationError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str() == value)
            .ok_or_else(|| {
                ValidationError::new(
                    "client_auth",
                    format!(
                        "unknown client authentication method; expected one of {}",
                        Self::ALL.map(ClientAuthMethod::as_str).join(", ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_parse_from_their_wire_names() {
        for grant in GrantType::ALL {
            assert_eq!(grant.as_str().parse::<GrantType>().unwrap(), grant);
        }
    }

    #[test]
    fn unknown_grant_type_names_the_field() {
        let err = "implicit".parse::<GrantType>().unwrap_err();
        assert_eq!(err.field, "grant_type");
        assert!(err.message.contains("authorization_code_pkce"));
    }

    #[test]
    fn unknown_client_auth_names_the_field() {
        let err = "tls_client_auth".parse::<ClientAuthMethod>().unwrap_err();
        assert_eq!(err.field, "client_auth");
    }
}
