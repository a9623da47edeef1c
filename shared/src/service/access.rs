//! The access rules of DESIGN.md, in one place: administrators (any configured administrator
//! role, the `manage_connections` permission) manage connections and hold shared tokens; a
//! token is read only by a role invited to its connection; a user's own token only by that user.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::error::ServiceError;
use crate::domain::{Connection, Owner, Principal, Role, ValidationError};

/// Which token a caller asks for: the connection's shared one, or the caller's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(rename_all = "snake_case", default = "shared")
)]
pub enum OwnerRequest {
    Shared,
    User,
}

impl FromStr for OwnerRequest {
    type Err = ValidationError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "shared" => Ok(OwnerRequest::Shared),
            "user" => Ok(OwnerRequest::User),
            _ => Err(ValidationError::new(
                "owner",
                "must be \"shared\" or \"user\"",
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessRules {
    pub admin_roles: BTreeSet<Role>,
}

impl AccessRules {
    pub fn is_admin(&self, principal: &Principal) -> bool {
        principal.has_any_role(&self.admin_roles)
    }

    pub fn require_admin(&self, principal: &Principal) -> Result<(), ServiceError> {
        if self.is_admin(principal) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(
                "managing connections needs an administrator role".into(),
            ))
        }
    }

    /// Who may start an authorization: administrators for the shared token, an invited role
    /// for one's own.
    pub fn authorization_owner(
        &self,
        principal: &Principal,
        connection: &Connection,
        request: OwnerRequest,
    ) -> Result<Owner, ServiceError> {
        match request {
            OwnerRequest::Shared => {
                self.require_admin(principal)?;
                Ok(Owner::Shared)
            }
            OwnerRequest::User => {
                self.require_invited(principal, connection)?;
                Ok(Owner::User(principal.subject.clone()))
            }
        }
    }

    /// The token a request names, before any rule is checked: the shared one, or the caller's
    /// own (never another user's: the owner comes from the caller, not the request).
    pub fn requested_owner(&self, principal: &Principal, request: OwnerRequest) -> Owner {
        match request {
            OwnerRequest::Shared => Owner::Shared,
            OwnerRequest::User => Owner::User(principal.subject.clone()),
        }
    }

    /// Who may read, refresh or disconnect a token: an invited role; for the shared token an
    /// administrator too (they hold it). A user's token is only ever its own subject's: the
    /// owner is derived from the caller, never taken from the request.
    pub fn token_owner(
        &self,
        principal: &Principal,
        connection: &Connection,
        request: OwnerRequest,
    ) -> Result<Owner, ServiceError> {
        if request == OwnerRequest::User || !self.is_admin(principal) {
            self.require_invited(principal, connection)?;
        }
        Ok(self.requested_owner(principal, request))
    }

    /// Disconnecting ends a token for everyone who reads it, so the shared token's is an
    /// administrator's action (DESIGN.md). A user's own token is its subject's to end, which
    /// `token_owner` already holds to.
    pub fn may_disconnect(&self, principal: &Principal, owner: &Owner) -> Result<(), ServiceError> {
        match owner {
            Owner::Shared if !self.is_admin(principal) => Err(ServiceError::Forbidden(
                "disconnecting the shared token needs an administrator role".into(),
            )),
            _ => Ok(()),
        }
    }

    fn require_invited(
        &self,
        principal: &Principal,
        connection: &Connection,
    ) -> Result<(), ServiceError> {
        if connection.is_invited(&principal.roles) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(
                "none of your roles is invited to this connection".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Subject;

    fn rules() -> AccessRules {
        AccessRules {
            admin_roles: [Role::parse("keyport-admins").unwrap()].into(),
        }
    }

    fn principal(subject: &str, role: &str) -> Principal {
        Principal::new(
            Subject::parse(subject).unwrap(),
            [Role::parse(role).unwrap()],
        )
    }

    #[test]
    fn only_administrators_disconnect_the_shared_token() {
        let rules = rules();
        let admin = principal("admin", "keyport-admins");
        let bot = principal("bot-1", "bots");
        assert!(rules.may_disconnect(&admin, &Owner::Shared).is_ok());
        assert!(matches!(
            rules.may_disconnect(&bot, &Owner::Shared),
            Err(ServiceError::Forbidden(_))
        ));
        let own = Owner::User(bot.subject.clone());
        assert!(rules.may_disconnect(&bot, &own).is_ok());
    }
}
