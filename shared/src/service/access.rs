//! The access rules of DESIGN.md, in one place: administrators (any configured administrator
//! role, the `manage_connections` permission) manage connections and hold shared tokens; a
//! token is read only by a role or application invited to its connection; a user's own token
//! only by that user; and every right only as far as the caller's token's Keyport scopes allow.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::error::ServiceError;
use crate::domain::{ApiScope, ApplicationId, Connection, Owner, Principal, Role, ValidationError};

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

/// Which rule let a caller at a token, for the audit line of each token handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An administrator role (administrators hold shared tokens).
    AdminRole(Role),
    /// An application named in `KEYPORT_ADMIN_APPLICATIONS`.
    AdminApplication,
    /// A role the connection invites.
    InvitedRole(Role),
    /// The calling application, which the connection invites by client id.
    InvitedApplication,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::AdminRole(role) => write!(f, "admin_role:{role}"),
            Via::AdminApplication => f.write_str("admin_application"),
            Via::InvitedRole(role) => write!(f, "invited_role:{role}"),
            Via::InvitedApplication => f.write_str("invited_application"),
        }
    }
}

/// A token a caller may use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAccess {
    pub owner: Owner,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub struct AccessRules {
    pub admin_roles: BTreeSet<Role>,
    /// Applications (client ids) that are administrators, as a role's members would be.
    pub admin_applications: BTreeSet<ApplicationId>,
}

impl AccessRules {
    /// Whether the caller is an administrator by who it is (a role, or an application named
    /// as one), whatever its token's scopes.
    fn is_administrator(&self, principal: &Principal) -> bool {
        principal.has_any_role(&self.admin_roles)
            || principal
                .application
                .as_ref()
                .is_some_and(|app| self.admin_applications.contains(app))
    }

    /// Whether the caller may manage connections: an administrator whose token allows it.
    pub fn is_admin(&self, principal: &Principal) -> bool {
        self.is_administrator(principal) && principal.allows(ApiScope::ConnectionsManage)
    }

    pub fn require_admin(&self, principal: &Principal) -> Result<(), ServiceError> {
        require_scope(principal, ApiScope::ConnectionsManage)?;
        if self.is_administrator(principal) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(
                "managing connections needs an administrator role".into(),
            ))
        }
    }

    /// Audit trails and token usage: administrators whose token allows reading them.
    pub fn require_audit_reader(&self, principal: &Principal) -> Result<(), ServiceError> {
        require_scope(principal, ApiScope::AuditRead)?;
        if self.is_administrator(principal) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(
                "reading the audit trail needs an administrator role".into(),
            ))
        }
    }

    /// Whether the caller may read tokens at all, and every shared token: an administrator
    /// whose token allows reading tokens.
    pub fn holds_shared_tokens(&self, principal: &Principal) -> bool {
        self.is_administrator(principal) && principal.allows(ApiScope::TokensRead)
    }

    /// Who may start an authorization: administrators for the shared token, an invited role
    /// or application for one's own.
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
                require_scope(principal, ApiScope::TokensRead)?;
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

    /// Who may read, refresh or disconnect a token: an invited role or application; for the
    /// shared token an administrator too (they hold it); in every case only with a token that
    /// allows reading tokens. A user's token is only ever its own subject's: the owner is
    /// derived from the caller, never taken from the request.
    pub fn token_owner(
        &self,
        principal: &Principal,
        connection: &Connection,
        request: OwnerRequest,
    ) -> Result<TokenAccess, ServiceError> {
        require_scope(principal, ApiScope::TokensRead)?;
        let via = match self.administrator_via(principal) {
            Some(via) if request == OwnerRequest::Shared => via,
            _ => self.require_invited(principal, connection)?,
        };
        Ok(TokenAccess {
            owner: self.requested_owner(principal, request),
            via,
        })
    }

    /// What makes the caller an administrator, if anything does.
    fn administrator_via(&self, principal: &Principal) -> Option<Via> {
        if let Some(role) = principal.roles.intersection(&self.admin_roles).next() {
            return Some(Via::AdminRole(role.clone()));
        }
        principal
            .application
            .as_ref()
            .filter(|app| self.admin_applications.contains(*app))
            .map(|_| Via::AdminApplication)
    }

    /// Disconnecting ends a token for everyone who reads it, so the shared token's is an
    /// administrator's action (DESIGN.md). A user's own token is its subject's to end, which
    /// `token_owner` already holds to.
    pub fn may_disconnect(&self, principal: &Principal, owner: &Owner) -> Result<(), ServiceError> {
        match owner {
            Owner::Shared if !self.is_admin(principal) => Err(ServiceError::Forbidden(
                "disconnecting the shared token needs an administrator role and the keyport/connections.manage scope".into(),
            )),
            _ => Ok(()),
        }
    }

    fn require_invited(
        &self,
        principal: &Principal,
        connection: &Connection,
    ) -> Result<Via, ServiceError> {
        if let Some(role) = principal
            .roles
            .intersection(&connection.invited_roles)
            .next()
        {
            Ok(Via::InvitedRole(role.clone()))
        } else if connection.is_invited(principal) {
            Ok(Via::InvitedApplication)
        } else if principal.is_application() {
            Err(ServiceError::Forbidden(
                "this application is not invited to this connection".into(),
            ))
        } else {
            Err(ServiceError::Forbidden(
                "none of your roles is invited to this connection".into(),
            ))
        }
    }
}

/// Refuses a caller whose token's scopes leave out `scope`, whatever its roles.
fn require_scope(principal: &Principal, scope: ApiScope) -> Result<(), ServiceError> {
    if principal.allows(scope) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "this needs the {} scope, which your token does not carry",
            scope.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Subject;

    fn rules() -> AccessRules {
        AccessRules {
            admin_roles: [Role::parse("keyport-admins").unwrap()].into(),
            admin_applications: [ApplicationId::parse("ops-app").unwrap()].into(),
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

    fn connection_inviting(role: &str, app: &str) -> Connection {
        let input: crate::domain::ConnectionInput = serde_json::from_value(serde_json::json!({
            "name": "crm", "provider": "custom", "grant_type": "client_credentials",
            "client_id": "c", "client_secret": "s", "token_url": "https://login.example.com/token",
            "invited_roles": [role], "invited_applications": [app],
        }))
        .unwrap();
        Connection::create(
            input,
            chrono::Utc::now(),
            crate::domain::UrlPolicy::Production,
        )
        .unwrap()
        .0
    }

    fn application(id: &str, scopes: &[ApiScope]) -> Principal {
        Principal::application(
            ApplicationId::parse(id).unwrap(),
            Subject::parse(id).unwrap(),
        )
        .with_scopes(scopes.iter().copied())
    }

    #[test]
    fn a_scoped_token_never_does_more_than_its_roles() {
        let rules = rules();
        let crm = connection_inviting("bots", "reporting");
        let admin_reading =
            principal("admin", "keyport-admins").with_scopes([ApiScope::TokensRead]);
        assert!(
            rules
                .token_owner(&admin_reading, &crm, OwnerRequest::Shared)
                .is_ok_and(|access| access.via.to_string() == "admin_role:keyport-admins")
        );
        assert!(rules.require_admin(&admin_reading).is_err());
        assert!(rules.require_audit_reader(&admin_reading).is_err());
        assert!(
            rules
                .may_disconnect(&admin_reading, &Owner::Shared)
                .is_err()
        );
        // A scope adds nothing a role does not give.
        let bot_managing = principal("bot-1", "bots").with_scopes(ApiScope::ALL);
        assert!(rules.require_admin(&bot_managing).is_err());
        assert!(
            rules
                .token_owner(&bot_managing, &crm, OwnerRequest::Shared)
                .is_ok_and(|access| access.via.to_string() == "invited_role:bots")
        );
        let stranger = principal("eve", "strangers").with_scopes(ApiScope::ALL);
        assert!(
            rules
                .token_owner(&stranger, &crm, OwnerRequest::Shared)
                .is_err()
        );
    }

    #[test]
    fn applications_are_invited_by_client_id_and_limited_to_their_scopes() {
        let rules = rules();
        let crm = connection_inviting("bots", "reporting");
        let reader = application("reporting", &[ApiScope::TokensRead]);
        assert_eq!(
            rules
                .token_owner(&reader, &crm, OwnerRequest::Shared)
                .unwrap(),
            TokenAccess {
                owner: Owner::Shared,
                via: Via::InvitedApplication
            }
        );
        assert!(rules.require_admin(&reader).is_err());
        let without_scope = application("reporting", &[ApiScope::AuditRead]);
        assert!(
            rules
                .token_owner(&without_scope, &crm, OwnerRequest::Shared)
                .is_err()
        );
        let unscoped = application("reporting", &[]);
        assert!(
            rules
                .token_owner(&unscoped, &crm, OwnerRequest::Shared)
                .is_err()
        );
        let uninvited = application("billing", &[ApiScope::TokensRead]);
        assert!(
            rules
                .token_owner(&uninvited, &crm, OwnerRequest::Shared)
                .is_err()
        );
        // An application named after an invited role is not that role.
        let named_like_role = application("bots", ApiScope::ALL.as_slice());
        assert!(
            rules
                .token_owner(&named_like_role, &crm, OwnerRequest::Shared)
                .is_err()
        );
        // An administrator application manages only with the scope for it.
        let ops = application("ops-app", &[ApiScope::ConnectionsManage]);
        assert!(rules.require_admin(&ops).is_ok());
        assert!(rules.require_audit_reader(&ops).is_err());
        assert!(rules.token_owner(&ops, &crm, OwnerRequest::Shared).is_err());
        let auditor = application("ops-app", &[ApiScope::AuditRead]);
        assert!(rules.require_audit_reader(&auditor).is_ok());
        assert!(rules.require_admin(&auditor).is_err());
    }
}
