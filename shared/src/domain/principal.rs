//! The caller: a subject and its roles, from a verified token's claims.

use std::collections::BTreeSet;

use super::ids::{Role, Subject};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub subject: Subject,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    pub fn new(subject: Subject, roles: impl IntoIterator<Item = Role>) -> Self {
        Self {
            subject,
            roles: roles.into_iter().collect(),
        }
    }

    pub fn has_any_role<'a>(&self, roles: impl IntoIterator<Item = &'a Role>) -> bool {
        roles.into_iter().any(|role| self.roles.contains(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_membership() {
        let p = Principal::new(
            Subject::parse("bot-1").unwrap(),
            [Role::parse("bots").unwrap()],
        );
        assert!(p.has_any_role(&[Role::parse("admins").unwrap(), Role::parse("bots").unwrap()]));
        assert!(!p.has_any_role(&[Role::parse("admins").unwrap()]));
    }
}
