//! Token responses as real providers send them, and what Keyport keeps of one.
//!
//! Providers bend RFC 6749 §5.1: `expires_in` missing (Salesforce), as a string (older
//! Microsoft endpoints), or zero; `token_type` in any case or absent; `scope` narrower than
//! requested or absent; extra fields worth keeping (`instance_url`, `ext_expires_in`,
//! `id_token`). This type reads them all leniently; the `oauth2` crate's requests use it
//! through its `TokenResponse` trait.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::BasicTokenType;
use oauth2::{AccessToken, RefreshToken, Scope, TokenResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::TokenSecrets;

#[derive(Deserialize, Serialize)]
pub struct ProviderTokenResponse {
    access_token: AccessToken,
    #[serde(
        default = "bearer",
        deserialize_with = "lenient_token_type",
        serialize_with = "token_type_name"
    )]
    token_type: BasicTokenType,
    #[serde(
        default,
        deserialize_with = "lenient_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<RefreshToken>,
    #[serde(
        default,
        deserialize_with = "lenient_scope",
        skip_serializing_if = "Option::is_none"
    )]
    scope: Option<String>,
    #[serde(default, skip_serializing)]
    id_token: Option<SecretId>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// An id token, kept secret from the moment it is parsed.
struct SecretId(SecretString);

impl<'de> Deserialize<'de> for SecretId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| SecretId(SecretString::from(s)))
    }
}

impl fmt::Debug for ProviderTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderTokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

fn lenient_token_type<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BasicTokenType, D::Error> {
    let name = Option::<String>::deserialize(deserializer)?;
    Ok(
        match name.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("bearer") => BasicTokenType::Bearer,
            Some("mac") => BasicTokenType::Mac,
            Some(_) => BasicTokenType::Extension(name.unwrap_or_default()),
        },
    )
}

fn token_type_name<S: Serializer>(
    token_type: &BasicTokenType,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(token_type.as_ref())
}

/// A number, a numeric string, or null. Fractions are truncated; negative values and garbage
/// are read as "not stated" rather than failing a grant the provider did issue.
fn lenient_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| *f >= 0.0)
            .map(|f| f as u64),
        _ => None,
    })
}

/// A space-separated string, or a list (some providers send an array).
fn lenient_scope<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    })
}

impl TokenResponse for ProviderTokenResponse {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.filter(|s| *s > 0).map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// Keyport keeps the granted scope as the provider wrote it; see [`TokenGrant::scope`].
    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

/// A token set as Keyport keeps it, from one successful token response.
#[derive(Debug)]
pub struct TokenGrant {
    pub secrets: TokenSecrets,
    pub token_type: String,
    /// `None` when the provider did not say (or said zero): the token is used until rejected.
    pub expires_at: Option<DateTime<Utc>>,
    /// What the provider granted; when it says nothing, what was requested (RFC 6749 §5.1).
    pub scope: Option<String>,
}

impl TokenGrant {
    pub fn from_response(
        response: ProviderTokenResponse,
        requested_scope: Option<&str>,
        received_at: DateTime<Utc>,
    ) -> Self {
        let expires_at = response
            .expires_in()
            .and_then(|lifetime| chrono::Duration::from_std(lifetime).ok())
            .and_then(|lifetime| received_at.checked_add_signed(lifetime));
        let scope = response
            .scope
            .filter(|s| !s.trim().is_empty())
            .or_else(|| requested_scope.filter(|s| !s.is_empty()).map(str::to_owned));
        TokenGrant {
            secrets: TokenSecrets {
                access_token: SecretString::from(response.access_token.into_secret()),
                refresh_token: response
                    .refresh_token
                    .map(|t| SecretString::from(t.into_secret())),
                id_token: response.id_token.map(|t| t.0),
                extra: response.extra,
            },
            token_type: response.token_type.as_ref().to_owned(),
            expires_at,
            scope,
        }
    }

    /// A refresh response without a refresh token means "keep using the one you have".
    pub fn keep_refresh_token_from(&mut self, previous: &TokenSecrets) {
        if self.secrets.refresh_token.is_none() {
            self.secrets.refresh_token = previous
                .refresh_token
                .as_ref()
                .map(|t| SecretString::from(t.expose_secret().to_owned()));
        }
    }

    /// Values that arrive once (with the callback) and must outlive every refresh: `names`
    /// the refresh answer does not carry are taken from the token it replaces.
    pub fn keep_extras_from(&mut self, previous: &TokenSecrets, names: &[String]) {
        for name in names {
            if !self.secrets.extra.contains_key(name)
                && let Some(value) = previous.extra.get(name)
            {
                self.secrets.extra.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(json: serde_json::Value, requested: Option<&str>) -> TokenGrant {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        TokenGrant::from_response(serde_json::from_value(json).unwrap(), requested, now)
    }

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc)
                + chrono::Duration::seconds(seconds),
        )
    }

    #[test]
    fn expires_in_as_number_string_zero_or_missing() {
        assert_eq!(grant(serde_json::json!({"access_token": "a", "token_type": "Bearer", "expires_in": 3600}), None).expires_at, at(3600));
        assert_eq!(grant(serde_json::json!({"access_token": "a", "token_type": "Bearer", "expires_in": "3599"}), None).expires_at, at(3599));
        assert_eq!(
            grant(
                serde_json::json!({"access_token": "a", "token_type": "Bearer", "expires_in": 0}),
                None
            )
            .expires_at,
            None
        );
        assert_eq!(
            grant(
                serde_json::json!({"access_token": "a", "token_type": "Bearer"}),
                None
            )
            .expires_at,
            None
        );
        assert_eq!(
            grant(
                serde_json::json!({"access_token": "a", "expires_in": "soon"}),
                None
            )
            .expires_at,
            None
        );
        assert_eq!(
            grant(
                serde_json::json!({"access_token": "a", "expires_in": 12.7}),
                None
            )
            .expires_at,
            at(12)
        );
    }

    #[test]
    fn token_type_is_case_insensitive_and_defaults_to_bearer() {
        assert_eq!(
            grant(
                serde_json::json!({"access_token": "a", "token_type": "bearer"}),
                None
            )
            .token_type,
            "bearer"
        );
        assert_eq!(
            grant(serde_json::json!({"access_token": "a"}), None).token_type,
            "bearer"
        );
        assert_eq!(
            grant(
                serde_json::json!({"access_token": "a", "token_type": "N_A"}),
                None
            )
            .token_type,
            "N_A"
        );
    }

    #[test]
    fn granted_scope_wins_and_absent_scope_means_as_requested() {
        let narrower = grant(
            serde_json::json!({"access_token": "a", "scope": "api:read"}),
            Some("openid offline_access api:read api:write"),
        );
        assert_eq!(narrower.scope.as_deref(), Some("api:read"));
        let silent = grant(
            serde_json::json!({"access_token": "a"}),
            Some("openid api:read"),
        );
        assert_eq!(silent.scope.as_deref(), Some("openid api:read"));
        let listed = grant(
            serde_json::json!({"access_token": "a", "scope": ["a", "b"]}),
            None,
        );
        assert_eq!(listed.scope.as_deref(), Some("a b"));
    }

    #[test]
    fn extras_and_id_tokens_are_kept_sealed() {
        let g = grant(
            serde_json::json!({
                "access_token": "a", "token_type": "Bearer", "id_token": "eyJ.id.token",
                "instance_url": "https://acme.my.salesforce.com", "ext_expires_in": 7200, "signature": "sig"
            }),
            None,
        );
        assert_eq!(
            g.secrets.id_token.as_ref().unwrap().expose_secret(),
            "eyJ.id.token"
        );
        assert_eq!(
            g.secrets.extra["instance_url"],
            "https://acme.my.salesforce.com"
        );
        assert_eq!(g.secrets.extra["ext_expires_in"], 7200);
        assert!(!g.secrets.extra.contains_key("id_token"));
        assert!(!g.secrets.extra.contains_key("access_token"));
    }

    #[test]
    fn a_refresh_without_a_refresh_token_keeps_the_old_one() {
        let previous = grant(
            serde_json::json!({"access_token": "a", "refresh_token": "old"}),
            None,
        )
        .secrets;
        let mut refreshed = grant(serde_json::json!({"access_token": "b"}), None);
        refreshed.keep_refresh_token_from(&previous);
        assert_eq!(
            refreshed.secrets.refresh_token.unwrap().expose_secret(),
            "old"
        );

        let mut rotated = grant(
            serde_json::json!({"access_token": "c", "refresh_token": "new"}),
            None,
        );
        rotated.keep_refresh_token_from(&previous);
        assert_eq!(
            rotated.secrets.refresh_token.unwrap().expose_secret(),
            "new"
        );
    }

    #[test]
    fn callback_values_outlive_a_refresh_and_a_refresh_answer_wins() {
        let previous = grant(
            serde_json::json!({"access_token": "a", "realmId": "123", "shop": "old.example", "other": 1}),
            None,
        )
        .secrets;
        let mut refreshed = grant(
            serde_json::json!({"access_token": "b", "shop": "new.example"}),
            None,
        );
        refreshed.keep_extras_from(&previous, &["realmId".into(), "shop".into()]);
        assert_eq!(refreshed.secrets.extra["realmId"], "123");
        assert_eq!(refreshed.secrets.extra["shop"], "new.example");
        assert!(
            !refreshed.secrets.extra.contains_key("other"),
            "only the named values"
        );
    }

    #[test]
    fn responses_never_print_their_tokens() {
        let response: ProviderTokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "AT-SECRET", "refresh_token": "RT-SECRET", "id_token": "ID-SECRET", "signature": "SIG-SECRET"
        }))
        .unwrap();
        let printed = format!("{response:?}");
        for secret in ["AT-SECRET", "RT-SECRET", "ID-SECRET", "SIG-SECRET"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn a_response_without_an_access_token_is_refused() {
        assert!(
            serde_json::from_value::<ProviderTokenResponse>(
                serde_json::json!({"token_type": "Bearer"})
            )
            .is_err()
        );
    }
}
