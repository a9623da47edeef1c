//! Identifiers: connections, token owners, subjects, roles and applications.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::validation::{ValidationError, plain_text};

const CONNECTION_ID_PREFIX: &str = "con_";

/// A connection's id: `con_` followed by 32 lowercase hex digits of a random UUID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        value_type = String,
        pattern = "^con_[0-9a-f]{32}$",
        example = "con_3f2c8e4a9b1d4c7e8f0a1b2c3d4e5f60"
    )
)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId(String);

impl ConnectionId {
    /// A fresh id from the OS CSPRNG (uuid v4 uses `getrandom`).
    pub fn generate() -> Self {
        Self(format!(
            "{CONNECTION_ID_PREFIX}{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let hex = value
            .strip_prefix(CONNECTION_ID_PREFIX)
            .filter(|rest| rest.len() == 32)
            .filter(|rest| {
                rest.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        match hex {
            Some(_) => Ok(Self(value.to_owned())),
            None => Err(ValidationError::new(
                "id",
                "is not a connection id (expected con_ followed by 32 hex digits)",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ConnectionId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ConnectionId> for String {
    fn from(id: ConnectionId) -> Self {
        id.0
    }
}

fn refuse_surrounding_space(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim() != value {
        return Err(ValidationError::new(
            field,
            "must not begin or end with white space",
        ));
    }
    Ok(())
}

/// Who a principal is: the `sub` claim of its token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    /// Taken exactly as the token says: a subject with surrounding white space is refused,
    /// never trimmed into someone else's (`" alice"` is not `alice`).
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        refuse_surrounding_space("sub", value)?;
        plain_text("sub", value, 255).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subject {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> Self {
        s.0
    }
}

/// A role name as it appears in the caller's roles claim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, min_length = 1, max_length = 128, example = "bots")
)]
#[serde(try_from = "String", into = "String")]
pub struct Role(String);

impl Role {
    /// As the claim says: a role with white space (around it or inside) is refused, never
    /// trimmed into another role (`"keyport-admins "` is not `keyport-admins`).
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        refuse_surrounding_space("role", value)?;
        let text = plain_text("role", value, 128)?;
        if text.contains(',') || text.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(
                "role",
                "must not contain commas or spaces",
            ));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Role {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Role> for String {
    fn from(r: Role) -> Self {
        r.0
    }
}

/// An application (a machine caller with its own client credentials at the identity
/// provider), named by its client id there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, min_length = 1, max_length = 128, example = "6f1tq0b2kq4m8v3s9d7c5e1a0b")
)]
#[serde(try_from = "String", into = "String")]
pub struct ApplicationId(String);

impl ApplicationId {
    /// Exactly as the token's `client_id` says, with the same refusals as a role: an id is
    /// never trimmed or split into another one.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        refuse_surrounding_space("client_id", value)?;
        let text = plain_text("client_id", value, 128)?;
        if text.contains(',') || text.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(
                "client_id",
                "must not contain commas or spaces",
            ));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ApplicationId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ApplicationId> for String {
    fn from(a: ApplicationId) -> Self {
        a.0
    }
}

/// Whose token: the connection's one shared token, or one user's own.
/// Stored and shown as `shared` or `user:<subject>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Owner {
    Shared,
    User(Subject),
}

impl Owner {
    pub fn storage_key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Shared => f.write_str("shared"),
            Owner::User(subject) => write!(f, "user:{subject}"),
        }
    }
}

impl FromStr for Owner {
    type Err = ValidationError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "shared" {
            return Ok(Owner::Shared);
        }
        match value.strip_prefix("user:") {
            Some(subject) => Ok(Owner::User(Subject::parse(subject)?)),
            None => Err(ValidationError::new(
                "owner",
                "must be \"shared\" or \"user:<subject>\"",
            )),
        }
    }
}

impl TryFrom<String> for Owner {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Owner> for String {
    fn from(owner: Owner) -> Self {
        owner.to_string()
    }
}

// By hand: on the wire an owner is the string its `Display` writes, which the derive cannot see.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Owner {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^(shared|user:.+)$"))
            .description(Some("Whose token: `shared`, or `user:<subject>`."))
            .examples(["shared"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Owner {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_connection_ids_parse_and_differ() {
        let a = ConnectionId::generate();
        let b = ConnectionId::generate();
        assert_ne!(a, b);
        assert_eq!(ConnectionId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn malformed_connection_ids_are_rejected() {
        for bad in [
            "",
            "con_",
            "con_XYZ",
            "abc",
            "con_0123456789abcdef0123456789abcdeg",
            "../etc",
        ] {
            let err = ConnectionId::parse(bad).unwrap_err();
            assert_eq!(err.field, "id", "{bad}");
        }
    }

    #[test]
    fn owners_round_trip_through_their_storage_form() {
        let user = Owner::User(Subject::parse("alice@example.com").unwrap());
        assert_eq!(user.to_string(), "user:alice@example.com");
        assert_eq!("user:alice@example.com".parse::<Owner>().unwrap(), user);
        assert_eq!("shared".parse::<Owner>().unwrap(), Owner::Shared);
        assert!("user:".parse::<Owner>().is_err());
        assert!("admin".parse::<Owner>().is_err());
    }

    #[test]
    fn roles_reject_separators() {
        assert!(Role::parse("bots").is_ok());
        assert!(Role::parse("a,b").is_err());
        assert!(Role::parse(" ").is_err());
    }
}
