//! Secret values. Each wraps `secrecy`'s `SecretString`: `Debug` prints `[REDACTED]`, there is
//! no `Display`, the memory is zeroed on drop, and reading one takes an explicit
//! `expose_secret()` that is easy to find in review.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A connection's client secret or private key (PEM), as the administrator supplied it.
#[derive(Clone, Debug)]
pub struct ClientSecret(SecretString);

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl<'de> Deserialize<'de> for ClientSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// The PKCE code verifier (RFC 7636), kept server-side in the pending authorization.
/// Not `Clone`: it is used once, for the one code exchange.
#[derive(Debug)]
pub struct PkceVerifier(SecretString);

impl PkceVerifier {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The secret part of a token set: sealed as one envelope, never stored or logged in the clear.
pub struct TokenSecrets {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub id_token: Option<SecretString>,
    /// Provider extras kept with the token (e.g. Salesforce `instance_url`). Sealed too: some
    /// providers put credentials in them.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Whether a field name names a credential (`access_token`, `refresh_token`, `id_token`,
/// `*_token`, `*secret*`, `password`): such a field is never handed to a caller as an extra,
/// at any depth.
pub fn is_token_like_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "token"
        || name.ends_with("_token")
        || name.ends_with("-token")
        || name.contains("secret")
        || name.contains("password")
}

impl TokenSecrets {
    /// The extras a caller may see: only the `declared` fields, with every token-like field
    /// inside them (Slack's `authed_user.access_token`, say) removed.
    pub fn declared_extras(
        &self,
        declared: &[String],
    ) -> serde_json::Map<String, serde_json::Value> {
        declared
            .iter()
            .filter(|name| !is_token_like_field(name))
            .filter_map(|name| {
                let value = self.extra.get(name)?;
                Some((name.clone(), without_token_like_fields(value)))
            })
            .collect()
    }
}

fn without_token_like_fields(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(fields) => fields
            .iter()
            .filter(|(name, _)| !is_token_like_field(name))
            .map(|(name, inner)| (name.clone(), without_token_like_fields(inner)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(items) => items.iter().map(without_token_like_fields).collect(),
        other => other.clone(),
    }
}

/// The tokens print as `[REDACTED]`; of the extras, only their names.
impl std::fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSecrets")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The plaintext layout inside the envelope. Borrowing on the way in and owning on the way out
/// keeps the secrets in as few copies as possible.
#[derive(Serialize)]
struct SecretsOut<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    extra: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct SecretsIn {
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
    #[serde(default)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl TokenSecrets {
    /// Whether both hold the same refresh token (or neither holds one), compared in constant
    /// time.
    pub fn same_refresh_token(&self, other: &TokenSecrets) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.refresh_token, &other.refresh_token) {
            (Some(a), Some(b)) => bool::from(
                a.expose_secret()
                    .as_bytes()
                    .ct_eq(b.expose_secret().as_bytes()),
            ),
            (None, None) => true,
            _ => false,
        }
    }

    /// The plaintext to seal. Zeroed when dropped.
    pub fn to_plaintext(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let out = SecretsOut {
            access_token: self.access_token.expose_secret(),
            refresh_token: self.refresh_token.as_ref().map(|t| t.expose_secret()),
            id_token: self.id_token.as_ref().map(|t| t.expose_secret()),
            extra: &self.extra,
        };
        // Serializing borrowed strings and a JSON map cannot fail.
        zeroize::Zeroizing::new(serde_json::to_vec(&out).unwrap_or_default())
    }

    pub fn from_plaintext(plaintext: &[u8]) -> Result<Self, serde_json::Error> {
        let parsed: SecretsIn = serde_json::from_slice(plaintext)?;
        Ok(Self {
            access_token: SecretString::from(parsed.access_token),
            refresh_token: parsed.refresh_token.map(SecretString::from),
            id_token: parsed.id_token.map(SecretString::from),
            extra: parsed.extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_contents() {
        let client_secret = ClientSecret::new("cs-VALUE-1");
        let verifier = PkceVerifier::new("pkce-VALUE-2");
        let tokens = TokenSecrets {
            access_token: SecretString::from("at-VALUE-3"),
            refresh_token: Some(SecretString::from("rt-VALUE-4")),
            id_token: Some(SecretString::from("id-VALUE-5")),
            extra: serde_json::Map::from_iter([("signature".into(), "sig-VALUE-6".into())]),
        };
        let printed = format!("{client_secret:?} {verifier:?} {tokens:?} {tokens:#?}");
        for value in [
            "cs-VALUE-1",
            "pkce-VALUE-2",
            "at-VALUE-3",
            "rt-VALUE-4",
            "id-VALUE-5",
            "sig-VALUE-6",
        ] {
            assert!(
                !printed.contains(value),
                "{value} leaked through Debug: {printed}"
            );
        }
        assert!(printed.contains("REDACTED"));
        assert!(printed.contains("signature"));
    }

    #[test]
    fn token_secrets_round_trip_through_plaintext() {
        let mut extra = serde_json::Map::new();
        extra.insert(
            "instance_url".into(),
            "https://acme.my.salesforce.com".into(),
        );
        let tokens = TokenSecrets {
            access_token: SecretString::from("at"),
            refresh_token: None,
            id_token: Some(SecretString::from("idt")),
            extra,
        };
        let back = TokenSecrets::from_plaintext(&tokens.to_plaintext()).unwrap();
        assert_eq!(back.access_token.expose_secret(), "at");
        assert!(back.refresh_token.is_none());
        assert_eq!(back.id_token.unwrap().expose_secret(), "idt");
        assert_eq!(back.extra["instance_url"], "https://acme.my.salesforce.com");
    }

    #[test]
    fn numeric_extras_survive_every_write_unchanged() {
        // A provider's integer beyond u64 is read as the nearest f64; serde_json's default
        // (fast, not correctly rounded) float parser moves 7.22e25 by one unit in the last place
        // on a write and read, so a stored grant drifted from what the provider sent. The
        // workspace enables `float_roundtrip` for that (the fuzz build had lacked it).
        let provider_body = r#"{"big": 72200000000000000000000005, "ratio": 0.30000000000000004}"#;
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(provider_body).unwrap();
        let mut tokens = TokenSecrets {
            access_token: SecretString::from("at"),
            refresh_token: None,
            id_token: None,
            extra: extra.clone(),
        };
        for _ in 0..3 {
            tokens = TokenSecrets::from_plaintext(&tokens.to_plaintext()).unwrap();
            assert_eq!(tokens.extra, extra);
        }
    }

    #[test]
    fn refresh_tokens_compare_by_value() {
        let with = |rt: Option<&str>| TokenSecrets {
            access_token: SecretString::from("at"),
            refresh_token: rt.map(SecretString::from),
            id_token: None,
            extra: serde_json::Map::new(),
        };
        assert!(with(Some("a")).same_refresh_token(&with(Some("a"))));
        assert!(!with(Some("a")).same_refresh_token(&with(Some("b"))));
        assert!(!with(Some("a")).same_refresh_token(&with(None)));
        assert!(with(None).same_refresh_token(&with(None)));
    }

    #[test]
    fn callers_see_only_declared_extras_and_never_a_token_inside_one() {
        let secrets = TokenSecrets {
            access_token: SecretString::from("at"),
            refresh_token: None,
            id_token: None,
            extra: serde_json::json!({
                "instance_url": "https://acme.my.salesforce.com",
                "authed_user": {"id": "U1", "access_token": "xoxp-user", "scope": "chat:write",
                                "nested": [{"refresh_token": "r", "kept": 1}]},
                "undeclared": "sealed",
                "webhook_secret": "s",
            })
            .as_object()
            .unwrap()
            .clone(),
        };
        let declared =
            ["instance_url", "authed_user", "webhook_secret", "missing"].map(str::to_owned);
        let shown = serde_json::Value::Object(secrets.declared_extras(&declared));
        assert_eq!(
            shown,
            serde_json::json!({
                "instance_url": "https://acme.my.salesforce.com",
                "authed_user": {"id": "U1", "scope": "chat:write", "nested": [{"kept": 1}]},
            })
        );
        for name in [
            "access_token",
            "refresh_token",
            "id_token",
            "token",
            "client_secret",
            "password",
        ] {
            assert!(is_token_like_field(name), "{name}");
        }
        for name in ["instance_url", "ext_expires_in", "id", "scope", "realmId"] {
            assert!(!is_token_like_field(name), "{name}");
        }
    }
}
