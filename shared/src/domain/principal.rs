//! The caller: a person or an application, its roles, and the Keyport scopes its token carries.
//!
//! A caller's rights are what its roles (or, for an application, its invitations and the
//! administrator list) allow, intersected with its token's Keyport scopes when it carries any:
//! an application acting for a user with a narrower scope can never do more than that user.

use std::collections::BTreeSet;

use super::ids::{ApplicationId, Role, Subject};

/// The OAuth scopes of Keyport's own API, as an identity provider's resource server declares
/// them (Cognito: resource server `keyport`, scopes `tokens.read`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiScope {
    /// Read, refresh and disconnect tokens; authorize one's own.
    TokensRead,
    /// Create, change, test and delete connections; authorize and disconnect shared tokens;
    /// manage people's tokens.
    ConnectionsManage,
    /// Read connections' audit trails and token usage.
    AuditRead,
}

impl ApiScope {
    /// The resource server's identifier: every scope Keyport declares starts with it.
    pub const PREFIX: &'static str = "keyport/";
    pub const ALL: [ApiScope; 3] = [
        ApiScope::TokensRead,
        ApiScope::ConnectionsManage,
        ApiScope::AuditRead,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ApiScope::TokensRead => "keyport/tokens.read",
            ApiScope::ConnectionsManage => "keyport/connections.manage",
            ApiScope::AuditRead => "keyport/audit.read",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }

    /// Whether a scope string belongs to Keyport's resource server (known to this version or
    /// not: an unknown one grants nothing, but still marks the token as scoped).
    pub fn is_keyport_scope(text: &str) -> bool {
        text.starts_with(Self::PREFIX)
    }
}

/// Who a connection can invite: a role's members, or one application.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invitee {
    Role(Role),
    Application(ApplicationId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub subject: Subject,
    pub roles: BTreeSet<Role>,
    /// Set when the caller is an application (client credentials), not a person.
    pub application: Option<ApplicationId>,
    /// The Keyport scopes the caller's token carries; `None` when it carries none of them.
    pub scopes: Option<BTreeSet<ApiScope>>,
}

impl Principal {
    /// A person (or a bot signed in as one) whose token carries no Keyport scope.
    pub fn new(subject: Subject, roles: impl IntoIterator<Item = Role>) -> Self {
        Self {
            subject,
            roles: roles.into_iter().collect(),
            application: None,
            scopes: None,
        }
    }

    /// An application: its client id is its subject too, so its own tokens and audit lines
    /// name it.
    pub fn application(id: ApplicationId, subject: Subject) -> Self {
        Self {
            subject,
            roles: BTreeSet::new(),
            application: Some(id),
            scopes: None,
        }
    }

    /// The same caller limited to `scopes`.
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = ApiScope>) -> Self {
        self.scopes = Some(scopes.into_iter().collect());
        self
    }

    pub fn is_application(&self) -> bool {
        self.application.is_some()
    }

    /// Whether the token lets its caller use `scope`'s part of the API at all (its roles and
    /// invitations decide the rest). A person's token without Keyport scopes is a sign-in token
    /// and limits nothing; an application has only what its scopes grant.
    pub fn allows(&self, scope: ApiScope) -> bool {
        match &self.scopes {
            Some(scopes) => scopes.contains(&scope),
            None => self.application.is_none(),
        }
    }

    pub fn has_any_role<'a>(&self, roles: impl IntoIterator<Item = &'a Role>) -> bool {
        roles.into_iter().any(|role| self.roles.contains(role))
    }

    /// Everything a connection may have invited that this caller is: its roles, and itself
    /// when it is an application.
    pub fn invitees(&self) -> impl Iterator<Item = Invitee> + '_ {
        self.roles
            .iter()
            .cloned()
            .map(Invitee::Role)
            .chain(self.application.clone().map(Invitee::Application))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(scopes: &[ApiScope]) -> Principal {
        let id = ApplicationId::parse("reporting").unwrap();
        Principal::application(id, Subject::parse("reporting").unwrap())
            .with_scopes(scopes.iter().copied())
    }

    #[test]
    fn role_membership() {
        let p = Principal::new(
            Subject::parse("bot-1").unwrap(),
            [Role::parse("bots").unwrap()],
        );
        assert!(p.has_any_role(&[Role::parse("admins").unwrap(), Role::parse("bots").unwrap()]));
        assert!(!p.has_any_role(&[Role::parse("admins").unwrap()]));
    }

    #[test]
    fn a_person_without_keyport_scopes_is_not_limited_by_them() {
        let person = Principal::new(Subject::parse("alice").unwrap(), []);
        assert!(ApiScope::ALL.into_iter().all(|s| person.allows(s)));
        let limited = person.with_scopes([ApiScope::TokensRead]);
        assert!(limited.allows(ApiScope::TokensRead));
        assert!(!limited.allows(ApiScope::ConnectionsManage));
        assert!(!limited.allows(ApiScope::AuditRead));
    }

    #[test]
    fn an_application_has_only_what_its_scopes_grant() {
        let unscoped = Principal::application(
            ApplicationId::parse("reporting").unwrap(),
            Subject::parse("reporting").unwrap(),
        );
        assert!(ApiScope::ALL.into_iter().all(|s| !unscoped.allows(s)));
        assert!(app(&[]).invitees().eq([Invitee::Application(
            ApplicationId::parse("reporting").unwrap()
        )]));
        let reader = app(&[ApiScope::TokensRead]);
        assert!(reader.allows(ApiScope::TokensRead));
        assert!(!reader.allows(ApiScope::ConnectionsManage));
    }

    #[test]
    fn scope_names_round_trip_and_only_keyports_count() {
        for scope in ApiScope::ALL {
            assert_eq!(ApiScope::parse(scope.as_str()), Some(scope));
            assert!(ApiScope::is_keyport_scope(scope.as_str()));
        }
        assert_eq!(ApiScope::parse("keyport/everything"), None);
        assert!(ApiScope::is_keyport_scope("keyport/everything"));
        assert!(!ApiScope::is_keyport_scope("openid"));
    }
}
