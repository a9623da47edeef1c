//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9): a short-lived
//! JWT signed with the administrator's private key, sent as `client_assertion`.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde::Serialize;

use super::error::OAuthError;
use crate::crypto::random_bytes;
use crate::domain::ClientSecret;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const LIFETIME_SECONDS: i64 = 60;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

/// Signs an assertion for `client_id` addressed to `audience` (the token endpoint URL).
/// The key is PEM: RSA (signed RS256) or EC P-256 (ES256).
pub fn client_assertion(
    private_key: &ClientSecret,
    client_id: &str,
    audience: &str,
    now: DateTime<Utc>,
) -> Result<SecretString, OAuthError> {
    let pem = private_key.expose_secret().as_bytes();
    let (algorithm, key) = match EncodingKey::from_rsa_pem(pem) {
        Ok(key) => (Algorithm::RS256, key),
        Err(_) => match EncodingKey::from_ec_pem(pem) {
            Ok(key) => (Algorithm::ES256, key),
            Err(_) => {
                return Err(OAuthError::Configuration(
                    "the private key is not an RSA or EC P-256 key in PEM form".into(),
                ));
            }
        },
    };
    let jti: String = random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti,
        iat: now.timestamp(),
        exp: now.timestamp() + LIFETIME_SECONDS,
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)
        .map(SecretString::from)
        .map_err(|e| OAuthError::Configuration(format!("cannot sign the client assertion: {e}")))
}

/// The two form parameters that authenticate a `private_key_jwt` client at `audience`.
pub fn assertion_params(
    private_key: Option<&ClientSecret>,
    client_id: &str,
    audience: &str,
) -> Result<[(&'static str, SecretString); 2], OAuthError> {
    let key = private_key.ok_or_else(|| {
        OAuthError::Configuration("no private key is stored for this connection".into())
    })?;
    let assertion = client_assertion(key, client_id, audience, Utc::now())?;
    Ok([
        ("client_assertion_type", SecretString::from(ASSERTION_TYPE)),
        ("client_assertion", assertion),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use secrecy::ExposeSecret;

    // A throwaway P-256 key for tests only.
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJwRU+OWY6u3rcQ2x
GsDj5JfA+iKMwiiFPRfoTqUEzkqhRANCAAR9/5qcjDdrFZZYT1mMYXndGe3sSiyN
ksje36EM6AJFTse3HBO+cZnRay7fp1JvQvWtfgzXDt3Bwfb+ev46BwBO
-----END PRIVATE KEY-----";

    #[test]
    fn assertions_carry_the_rfc_7523_claims() {
        let now = Utc::now();
        let jwt = client_assertion(
            &ClientSecret::new(EC_KEY),
            "client-1",
            "https://idp.example/token",
            now,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://idp.example/token");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            LIFETIME_SECONDS
        );
        let other = client_assertion(
            &ClientSecret::new(EC_KEY),
            "client-1",
            "https://idp.example/token",
            now,
        )
        .unwrap();
        assert_ne!(
            jwt.expose_secret(),
            other.expose_secret(),
            "each assertion has its own jti"
        );
    }

    #[test]
    fn a_key_that_is_not_pem_is_a_configuration_error() {
        let err = client_assertion(
            &ClientSecret::new("not a key"),
            "c",
            "https://x",
            Utc::now(),
        )
        .unwrap_err();
        assert!(matches!(err, OAuthError::Configuration(_)));
        assert!(!err.to_string().contains("not a key"));
    }
}
