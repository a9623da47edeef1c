//! Scopes: entered comma-separated (or as a list), sent with the provider's separator.

use serde::{Deserialize, Serialize};

use super::validation::ValidationError;

/// An ordered, duplicate-free list of scope tokens, each a valid RFC 6749 §3.3 `scope-token`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = BTreeSet<String>))]
#[serde(try_from = "ScopesInput", into = "Vec<String>")]
pub struct Scopes(Vec<String>);

/// What clients may send: `"a,b"` or `["a", "b"]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ScopesInput {
    Text(String),
    List(Vec<String>),
}

impl Scopes {
    /// Parses a comma-separated string. An entirely empty string is no scopes; a blank entry
    /// between commas is a mistake and is rejected.
    pub fn parse_comma_separated(text: &str) -> Result<Self, ValidationError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_list(text.split(','))
    }

    pub fn from_list<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ValidationError> {
        let mut scopes: Vec<String> = Vec::new();
        for (index, raw) in items.into_iter().enumerate() {
            let scope = raw.trim();
            if scope.is_empty() {
                return Err(ValidationError::new(
                    "scopes",
                    format!("entry {} is blank", index + 1),
                ));
            }
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(ValidationError::new(
                    "scopes",
                    format!(
                        "entry {} contains a character not allowed in a scope",
                        index + 1
                    ),
                ));
            }
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        Ok(Self(scopes))
    }

    /// Parses a scope string as a provider returns it (space separated, RFC 6749 §5.1).
    pub fn parse_granted(text: &str, separator: &str) -> Result<Self, ValidationError> {
        let separator = if separator.is_empty() { " " } else { separator };
        Self::from_list(text.split(separator).filter(|s| !s.trim().is_empty()))
    }

    pub fn join(&self, separator: &str) -> String {
        self.0.join(separator)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// This list followed by the entries of `more` not already present.
    pub fn union(&self, more: &Scopes) -> Scopes {
        let mut merged = self.0.clone();
        for scope in &more.0 {
            if !merged.contains(scope) {
                merged.push(scope.clone());
            }
        }
        Scopes(merged)
    }
}

impl TryFrom<ScopesInput> for Scopes {
    type Error = ValidationError;
    fn try_from(input: ScopesInput) -> Result<Self, Self::Error> {
        match input {
            ScopesInput::Text(text) => Self::parse_comma_separated(&text),
            ScopesInput::List(list) => Self::from_list(list.iter().map(String::as_str)),
        }
    }
}

impl From<Scopes> for Vec<String> {
    fn from(scopes: Scopes) -> Self {
        scopes.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_separated_scopes_are_trimmed_and_deduplicated() {
        let scopes = Scopes::parse_comma_separated(" openid, api:read ,openid").unwrap();
        assert_eq!(scopes.join(" "), "openid api:read");
    }

    #[test]
    fn blank_entries_are_rejected_with_the_field_named() {
        for bad in ["a,,b", "a, ,b", "a,"] {
            let err = Scopes::parse_comma_separated(bad).unwrap_err();
            assert_eq!(err.field, "scopes", "{bad}");
            assert!(err.message.contains("blank"), "{bad}");
        }
        let err = Scopes::from_list(["a", ""]).unwrap_err();
        assert_eq!(err.field, "scopes");
    }

    #[test]
    fn scopes_with_forbidden_characters_are_rejected() {
        assert!(Scopes::parse_comma_separated("a b").is_err());
        assert!(Scopes::parse_comma_separated("a\"b").is_err());
        assert!(Scopes::parse_comma_separated("a\\b").is_err());
    }

    #[test]
    fn scopes_accept_a_string_or_a_list_on_the_wire() {
        let from_text: Scopes = serde_json::from_str("\"a,b\"").unwrap();
        let from_list: Scopes = serde_json::from_str("[\"a\",\"b\"]").unwrap();
        assert_eq!(from_text, from_list);
        assert_eq!(serde_json::to_string(&from_text).unwrap(), "[\"a\",\"b\"]");
        assert!(serde_json::from_str::<Scopes>("[\"a\",\"\"]").is_err());
    }

    #[test]
    fn granted_scopes_use_the_provider_separator() {
        let granted = Scopes::parse_granted("a b  c", " ").unwrap();
        assert_eq!(granted.join(","), "a,b,c");
        let comma = Scopes::parse_granted("a,b", ",").unwrap();
        assert_eq!(comma.join(" "), "a b");
    }
}
