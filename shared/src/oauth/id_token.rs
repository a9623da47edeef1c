//! The ID token of OpenID Connect's hybrid flow, which arrives in the front channel beside the
//! code (OpenID Connect Core §3.3.2.12). Unlike an ID token from the token endpoint it crossed
//! the browser, so it is verified in full before the code is spent: its signature against the
//! issuer's published keys, `iss`, `aud`, `azp`, its times, the `nonce` of this authorization,
//! and `c_hash`, which ties it to this very code (a code injected from another authorization
//! fails here, before it reaches the token endpoint).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};

use super::discovery::discover;
use super::error::OAuthError;
use crate::adapters::outbound::OutboundHttp;
use crate::crypto::constant_time_eq;
use crate::domain::EndpointUrl;
use crate::http::identity::{JwksKeys, JwksSettings};

type Claims = serde_json::Map<String, serde_json::Value>;

/// Who a verified front-channel ID token names: the token endpoint's ID token must name the
/// same (OpenID Connect Core §3.3.3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenSubject {
    pub issuer: String,
    pub subject: String,
}

/// Why the front-channel ID token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// The token itself fails a check: the messages are safe to show and name the check.
    #[error("the ID token was refused: {0}")]
    Rejected(&'static str),
    /// The issuer's keys could not be had: the provider's trouble, not the token's.
    #[error(transparent)]
    Keys(#[from] OAuthError),
}

/// What the ID token must match: this connection's issuer and client, this authorization's
/// nonce and code.
pub struct Expected<'a> {
    pub issuer: &'a EndpointUrl,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub code: &'a str,
}

/// `c_hash` (and `at_hash`) for `alg`: base64url of the left half of the hash the JWS
/// algorithm uses (OpenID Connect Core §3.3.2.11). EdDSA signs with Ed25519 here, whose hash is
/// SHA-512. `None` for algorithms an ID token is never accepted with.
pub fn left_half_hash(alg: Algorithm, value: &str) -> Option<String> {
    use aws_lc_rs::digest;
    let hash = match alg {
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => &digest::SHA256,
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => &digest::SHA384,
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => &digest::SHA512,
        // HMAC (a secret the client holds too), and whatever a later version adds.
        _ => return None,
    };
    let digest = digest::digest(hash, value.as_bytes());
    let bytes = digest.as_ref();
    Some(URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2]))
}

/// Verifies the front-channel ID token of a hybrid-flow answer; the issuer's keys are found
/// by its discovery document (`jwks_uri`).
pub async fn verify_front_channel(
    http: &OutboundHttp,
    id_token: &SecretString,
    expected: &Expected<'_>,
) -> Result<IdTokenSubject, IdTokenError> {
    let token = id_token.expose_secret();
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Rejected("not a JWS"))?;
    // A provider's ID token is signed with its private key; a shared-secret MAC would be a key
    // the client holds too (and `none` does not even parse).
    if left_half_hash(header.alg, "").is_none() {
        return Err(IdTokenError::Rejected("its algorithm is not accepted"));
    }
    let jwks_url = discover(http, expected.issuer)
        .await?
        .jwks_url
        .ok_or_else(|| {
            OAuthError::BadResponse("the issuer's discovery document has no jwks_uri".into())
        })?;
    let keys = JwksKeys::fetch(jwks_url, http.clone(), JwksSettings::default())
        .await
        .map_err(|e| OAuthError::BadResponse(format!("the issuer's keys: {e}")))?;
    let jwk = keys.find(header.kid.as_deref()).await.map_err(|_| {
        IdTokenError::Rejected("it is signed with a key the issuer does not publish")
    })?;
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|_| IdTokenError::Rejected("the issuer's key cannot verify it"))?;
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation(header.alg, expected))
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            IdTokenError::Rejected(match e.kind() {
                ErrorKind::InvalidSignature => "its signature does not verify",
                ErrorKind::ExpiredSignature => "it has expired",
                ErrorKind::ImmatureSignature => "it is not valid yet",
                ErrorKind::InvalidAudience => "it is for another client",
                ErrorKind::MissingRequiredClaim(_) => "it lacks a required claim",
                _ => "it is not a valid ID token",
            })
        })?
        .claims;
    check_claims(header.alg, &claims, expected)
}

fn validation(alg: Algorithm, expected: &Expected<'_>) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 30;
    validation
}

/// The checks past the signature and times: the issuer (the connection's, which the library
/// would compare byte for byte while a stored URL may carry a trailing slash), `azp`, `iat`,
/// the nonce and `c_hash`.
fn check_claims(
    alg: Algorithm,
    claims: &Claims,
    expected: &Expected<'_>,
) -> Result<IdTokenSubject, IdTokenError> {
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
    let issuer = text("iss").unwrap_or_default();
    if issuer.trim_end_matches('/') != expected.issuer.as_str().trim_end_matches('/') {
        return Err(IdTokenError::Rejected("it is from another issuer"));
    }
    let audiences = match claims.get("aud") {
        Some(serde_json::Value::Array(items)) => items.len(),
        _ => 1,
    };
    match text("azp") {
        Some(azp) if azp != expected.client_id => {
            return Err(IdTokenError::Rejected(
                "it was issued to another party (azp)",
            ));
        }
        None if audiences > 1 => {
            return Err(IdTokenError::Rejected(
                "it has several audiences and no authorized party (azp)",
            ));
        }
        _ => {}
    }
    if !claims.get("iat").is_some_and(serde_json::Value::is_number) {
        return Err(IdTokenError::Rejected("it lacks a required claim"));
    }
    let nonce = text("nonce").unwrap_or_default();
    if !constant_time_eq(nonce.as_bytes(), expected.nonce.as_bytes()) {
        return Err(IdTokenError::Rejected(
            "its nonce is not this authorization's",
        ));
    }
    // Required in the `code id_token` response (OpenID Connect Core §3.3.2.11).
    let c_hash = text("c_hash").unwrap_or_default();
    let computed = left_half_hash(alg, expected.code).unwrap_or_default();
    if c_hash.is_empty() || !constant_time_eq(c_hash.as_bytes(), computed.as_bytes()) {
        return Err(IdTokenError::Rejected(
            "its c_hash does not match the code it came with",
        ));
    }
    Ok(IdTokenSubject {
        issuer: issuer.to_owned(),
        subject: text("sub").unwrap_or_default().to_owned(),
    })
}

/// The issuer and subject of an ID token from the token endpoint, read without verifying its
/// signature: it came straight from the provider over TLS (OpenID Connect Core §3.1.3.7).
pub fn unverified_subject(id_token: &SecretString) -> Option<IdTokenSubject> {
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode(id_token.expose_secret())
        .ok()?
        .claims;
    Some(IdTokenSubject {
        issuer: claims.get("iss")?.as_str()?.to_owned(),
        subject: claims.get("sub")?.as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The left half of each SHA-2 digest of a fixed code, as RFC-style vectors: the halves
    /// are taken from the full digests computed here independently (hex), then encoded.
    #[test]
    fn c_hash_is_the_left_half_of_the_algorithms_hash() {
        let code = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk";
        let half = |hex: &str| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
        };
        // OpenID Connect Core's example (§A.4, RS256) for this code.
        assert_eq!(
            left_half_hash(Algorithm::RS256, code).as_deref(),
            Some("LDktKdoQak3Pk0cnXxCltA")
        );
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code.as_bytes());
        let sha384 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, code.as_bytes());
        let sha512 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, code.as_bytes());
        let hex = |d: &aws_lc_rs::digest::Digest| {
            d.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        for (alg, digest, length) in [
            (Algorithm::ES256, &sha256, 22),
            (Algorithm::PS256, &sha256, 22),
            (Algorithm::ES384, &sha384, 32),
            (Algorithm::RS384, &sha384, 32),
            (Algorithm::PS512, &sha512, 43),
            (Algorithm::RS512, &sha512, 43),
            (Algorithm::EdDSA, &sha512, 43),
        ] {
            let c_hash = left_half_hash(alg, code).unwrap();
            assert_eq!(c_hash, half(&hex(digest)), "{alg:?}");
            assert_eq!(c_hash.len(), length, "{alg:?}");
        }
        assert_ne!(
            left_half_hash(Algorithm::RS256, code),
            left_half_hash(Algorithm::RS256, "another code")
        );
        for mac in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert_eq!(left_half_hash(mac, code), None);
        }
    }

    fn claims(json: serde_json::Value) -> Claims {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn the_claims_must_be_this_authorizations() {
        let issuer = EndpointUrl::parse(
            "issuer",
            "https://idp.example",
            crate::domain::UrlPolicy::Production,
        )
        .unwrap();
        let expected = Expected {
            issuer: &issuer,
            client_id: "client",
            nonce: "n-0S6_WzA2Mj",
            code: "the-code",
        };
        let c_hash = left_half_hash(Algorithm::RS256, "the-code").unwrap();
        let good = serde_json::json!({
            "iss": "https://idp.example", "sub": "alice", "aud": "client", "iat": 1,
            "nonce": "n-0S6_WzA2Mj", "c_hash": c_hash,
        });
        assert_eq!(
            check_claims(Algorithm::RS256, &claims(good.clone()), &expected).unwrap(),
            IdTokenSubject {
                issuer: "https://idp.example".into(),
                subject: "alice".into()
            }
        );
        let with = |name: &str, value: serde_json::Value| {
            let mut json = good.clone();
            json[name] = value;
            claims(json)
        };
        for (bad, why) in [
            (with("iss", "https://evil.example".into()), "issuer"),
            (with("nonce", "another".into()), "nonce"),
            (with("c_hash", "AAAAAAAAAAAAAAAAAAAAAA".into()), "c_hash"),
            (with("c_hash", serde_json::Value::Null), "c_hash"),
            (with("azp", "someone-else".into()), "azp"),
            (with("aud", serde_json::json!(["client", "other"])), "azp"),
            (with("iat", serde_json::Value::Null), "claim"),
        ] {
            let error = check_claims(Algorithm::RS256, &bad, &expected).unwrap_err();
            assert!(error.to_string().contains(why), "{why}: {error}");
        }
        // The same c_hash under another algorithm's hash does not match.
        assert!(check_claims(Algorithm::RS384, &claims(good), &expected).is_err());
    }
}
