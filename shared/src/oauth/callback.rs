//! The query string of `GET /oauth/callback`, or the form `POST /oauth/callback` receives
//! (OpenID Connect's form post response mode): a code and state, or an error, and perhaps `iss`
//! and (the hybrid flow) an ID token.

use secrecy::SecretString;
use url::form_urlencoded;

use crate::domain::{StateToken, ValidationError};

const MAX_PARAM_LEN: usize = 4096;
/// An ID token is a JWS with the provider's claims: larger than any other parameter.
const MAX_ID_TOKEN_LEN: usize = 16 * 1024;

pub enum CallbackOutcome {
    /// The provider granted access: exchange `code`.
    Code(String),
    /// The provider (or the person) refused: `error` and its description, for the record.
    Error {
        error: String,
        description: Option<String>,
    },
}

/// An authorization code is a credential until it is exchanged: it never prints.
impl std::fmt::Debug for CallbackOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallbackOutcome::Code(_) => f.write_str("Code([REDACTED])"),
            CallbackOutcome::Error { error, description } => f
                .debug_struct("Error")
                .field("error", error)
                .field("description", description)
                .finish(),
        }
    }
}

#[derive(Debug)]
pub struct CallbackParams {
    pub state: StateToken,
    pub outcome: CallbackOutcome,
    /// RFC 9207 issuer identification, when the provider sends it.
    pub iss: Option<String>,
    /// The hybrid flow's front-channel ID token, when the provider sends one.
    pub id_token: Option<SecretString>,
}

impl CallbackParams {
    /// Parses the raw query. Each parameter at most once (RFC 6749 §3.1); a `state` in the
    /// shape Keyport issues; a `code` or an `error`, not both.
    pub fn parse(query: &str) -> Result<Self, ValidationError> {
        let mut state = None;
        let mut code = None;
        let mut error = None;
        let mut description = None;
        let mut iss = None;
        let mut id_token = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "error_description" => &mut description,
                "iss" => &mut iss,
                "id_token" => &mut id_token,
                _ => continue,
            };
            let limit = if name == "id_token" {
                MAX_ID_TOKEN_LEN
            } else {
                MAX_PARAM_LEN
            };
            if slot.is_some() {
                return Err(ValidationError::new(
                    name.into_owned(),
                    "appears more than once",
                ));
            }
            if value.len() > limit || value.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    name.into_owned(),
                    "is too long or not printable",
                ));
            }
            *slot = Some(value.into_owned());
        }
        let state =
            StateToken::parse(&state.ok_or_else(|| ValidationError::new("state", "is required"))?)?;
        let outcome = match (code, error) {
            (Some(code), None) if !code.is_empty() => CallbackOutcome::Code(code),
            (None, Some(error)) if !error.is_empty() => CallbackOutcome::Error {
                error,
                description: description.map(|d| d.chars().take(300).collect()),
            },
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    "code",
                    "and error cannot both be present",
                ));
            }
            _ => return Err(ValidationError::new("code", "is required")),
        };
        Ok(Self {
            state,
            outcome,
            iss,
            id_token: id_token.filter(|t| !t.is_empty()).map(SecretString::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> String {
        StateToken::generate().expose_secret().to_owned()
    }

    #[test]
    fn a_code_callback_parses() {
        let s = state();
        let params = CallbackParams::parse(&format!(
            "code=abc%2Fdef&state={s}&iss=https%3A%2F%2Fidp.example"
        ))
        .unwrap();
        assert!(matches!(params.outcome, CallbackOutcome::Code(ref c) if c == "abc/def"));
        assert_eq!(params.iss.as_deref(), Some("https://idp.example"));
        assert_eq!(params.state.expose_secret(), s);
    }

    #[test]
    fn a_form_post_carries_the_id_token_which_never_prints() {
        let s = state();
        let params =
            CallbackParams::parse(&format!("code=c&id_token=eyJ.eyJ.sig&state={s}")).unwrap();
        assert!(matches!(params.outcome, CallbackOutcome::Code(ref c) if c == "c"));
        let id_token = params.id_token.as_ref().expect("the ID token");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(id_token),
            "eyJ.eyJ.sig"
        );
        assert!(!format!("{params:?}").contains("eyJ.eyJ.sig"));
        let twice = format!("code=c&id_token=a&id_token=b&state={s}");
        assert_eq!(CallbackParams::parse(&twice).unwrap_err().field, "id_token");
    }

    #[test]
    fn an_error_callback_parses() {
        let params = CallbackParams::parse(&format!(
            "error=access_denied&error_description=User+said+no&state={}",
            state()
        ))
        .unwrap();
        match params.outcome {
            CallbackOutcome::Error { error, description } => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.as_deref(), Some("User said no"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_callbacks_name_the_problem() {
        let s = state();
        let cases = [
            ("code=a".to_owned(), "state"),
            (format!("state={s}"), "code"),
            (format!("code=a&code=b&state={s}"), "code"),
            (format!("code=a&state={s}&state={s}"), "state"),
            ("code=a&state=forged".to_owned(), "state"),
            (format!("code=a&error=x&state={s}"), "code"),
        ];
        for (query, field) in cases {
            assert_eq!(
                CallbackParams::parse(&query).unwrap_err().field,
                field,
                "{query}"
            );
        }
    }

    #[test]
    fn the_code_never_prints() {
        let outcome = CallbackOutcome::Code("sekrit-code".into());
        assert!(!format!("{outcome:?}").contains("sekrit-code"));
    }
}
