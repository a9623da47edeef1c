//! Moving connections between installations: export (definitions; secrets and tokens only
//! encrypted to an age recipient) and import (a plan by name, then all of it or nothing).
//!
//! An import never goes around the rules a person's change obeys: every create and change runs
//! through [`Keyport::create_connection`] and [`Keyport::update_connection`], so a change of
//! where a connection sends its credentials needs the secret in the same document and ends the
//! connection's tokens, exactly as `PATCH /connections/{id}` does.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Keyport, ServiceError};
use crate::domain::{
    AuditAction, ClientSecret, Connection, ConnectionDefinition, ConnectionId, ConnectionName,
    ConnectionsDocument, EXPORT_FORMAT, ImportAction, ImportOutcome, ImportStep, Principal,
    ValidationError, state_in_full,
};
use crate::ports::{PageRequest, SecretRef, TokenKey};

/// Fields of a connection that are its identity in one installation, not its definition.
const NOT_DEFINITION: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "version",
    "client_secret_set",
    "private_key_set",
    "password_set",
];

/// What one planned create or change needs to be applied (and undone).
enum Planned {
    Create(ConnectionDefinition),
    Change {
        current: Box<Connection>,
        definition: ConnectionDefinition,
    },
}

/// How to undo one applied step when a later one fails.
enum Undo {
    Delete(ConnectionId),
    Restore {
        previous: Box<Connection>,
        secrets: StoredSecrets,
    },
}

#[derive(Default)]
struct StoredSecrets {
    client_secret: Option<ClientSecret>,
    private_key: Option<ClientSecret>,
    password: Option<ClientSecret>,
}

impl Keyport {
    /// Every connection's definition, by name. With a recipient, the secrets and tokens too,
    /// encrypted to it (never in the clear), and each connection's audit trail says so.
    pub async fn export_connections(
        &self,
        principal: &Principal,
        recipient: Option<&str>,
    ) -> Result<ConnectionsDocument, ServiceError> {
        self.access.require_admin(principal)?;
        // Parsed before anything is read, so a bad recipient reads and records nothing.
        let recipient = recipient.map(parse_recipient).transpose()?;
        let connections = self.all_connections().await?;
        let mut document = ConnectionsDocument {
            keyport_export: EXPORT_FORMAT,
            connections: connections.iter().map(ConnectionDefinition::from).collect(),
            sealed: None,
        };
        if let Some(recipient) = recipient {
            let mut secrets = Map::new();
            for connection in &connections {
                secrets.insert(
                    connection.name.as_str().to_owned(),
                    self.secrets_of(connection).await?,
                );
            }
            let plaintext = Zeroizing::new(
                serde_json::to_vec(
                    &json!({ "keyport_secrets": EXPORT_FORMAT, "connections": secrets }),
                )
                .expect("JSON values serialize"),
            );
            drop(secrets);
            document.sealed = Some(seal(recipient.as_ref(), &plaintext)?);
            for connection in &connections {
                self.audit(
                    &connection.id,
                    AuditAction::SecretsExported,
                    principal.subject.as_str(),
                    None,
                    Some("encrypted to an age recipient"),
                )
                .await;
            }
        }
        Ok(document)
    }

    /// Plans an import by name; unless `dry_run`, and only when nothing conflicts, applies all
    /// of it. A failure half-way undoes what was applied (see [`Self::undo`]).
    pub async fn import_connections(
        &self,
        principal: &Principal,
        document: ConnectionsDocument,
        dry_run: bool,
    ) -> Result<ImportOutcome, ServiceError> {
        self.access.require_admin(principal)?;
        if document.keyport_export != EXPORT_FORMAT {
            return Err(ValidationError::new(
                "keyport_export",
                format!("must be {EXPORT_FORMAT}, the only format this Keyport reads"),
            )
            .into());
        }
        if document.sealed.is_some() {
            return Err(ValidationError::new(
                "sealed",
                "is encrypted: decrypt it where the age identity is (keyport import --identity FILE) and send the secrets in the connections",
            )
            .into());
        }
        let existing: BTreeMap<String, Connection> = self
            .all_connections()
            .await?
            .into_iter()
            .map(|c| (c.name.uniqueness_key(), c))
            .collect();
        let mut seen = BTreeSet::new();
        let mut steps = Vec::new();
        let mut planned = Vec::new();
        for definition in document.connections {
            let name = definition.name.clone();
            let key = match ConnectionName::parse(&name) {
                Ok(parsed) => parsed.uniqueness_key(),
                Err(error) => {
                    steps.push(conflict(&name, error.to_string()));
                    continue;
                }
            };
            if !seen.insert(key.clone()) {
                steps.push(conflict(
                    &name,
                    "the document names this connection more than once (names are unique whatever the letter case)".into(),
                ));
                continue;
            }
            match self.plan_one(definition, existing.get(&key)).await? {
                (step, Some(work)) => {
                    steps.push(step);
                    planned.push(work);
                }
                (step, None) => steps.push(step),
            }
        }
        let mut outcome = ImportOutcome::new(dry_run, steps);
        if dry_run || outcome.has_conflicts() {
            return Ok(outcome);
        }
        let mut done = Vec::new();
        for work in planned {
            if let Err(error) = self.apply_one(principal, work, &mut done).await {
                let undone = self.undo(principal, done).await;
                return Err(match undone {
                    Ok(()) => ServiceError::Conflict(format!(
                        "the import stopped at a connection ({error}); what it had applied was undone, nothing changed"
                    )),
                    Err(undo_error) => ServiceError::Conflict(format!(
                        "the import stopped at a connection ({error}) and undoing what it had applied failed too ({undo_error}); compare the connections with the document"
                    )),
                });
            }
        }
        outcome.applied = true;
        Ok(outcome)
    }

    /// One definition's step, and the work it needs when it is a create or a change.
    async fn plan_one(
        &self,
        definition: ConnectionDefinition,
        current: Option<&Connection>,
    ) -> Result<(ImportStep, Option<Planned>), ServiceError> {
        let name = definition.name.clone();
        let mut input = definition.to_input();
        if let Err(error) = self.resolve_provider(&mut input).await {
            return Ok((conflict(&name, error.to_string()), None));
        }
        state_in_full(&mut input);
        let now = Utc::now();
        let Some(current) = current else {
            let created = Connection::create(input, now, self.settings.url_policy)
                .map_err(ServiceError::from)
                .and_then(|(c, _)| self.check_grant_allowed(&c).map(|()| c));
            return Ok(match created {
                Err(error) => (conflict(&name, error.to_string()), None),
                Ok(_) => (
                    step(&name, ImportAction::Create, Vec::new()),
                    Some(Planned::Create(definition)),
                ),
            });
        };
        if let Some(provider) = &definition.provider
            && provider != current.provider.as_str()
        {
            return Ok((
                conflict(
                    &name,
                    format!(
                        "a connection of this name uses provider {}, not {provider}: delete or rename one of them first",
                        current.provider.as_str()
                    ),
                ),
                None,
            ));
        }
        let (candidate, secrets) = match current
            .apply(input, now, self.settings.url_policy)
            .map_err(ServiceError::from)
            .and_then(|applied| self.check_grant_allowed(&applied.0).map(|()| applied))
        {
            Ok(applied) => applied,
            Err(error) => return Ok((conflict(&name, error.to_string()), None)),
        };
        let mut fields = changed_fields(current, &candidate);
        for (field, given, stored) in [
            (
                "client_secret",
                secrets.client_secret,
                SecretRef::client_secret(&current.id),
            ),
            (
                "private_key",
                secrets.private_key,
                SecretRef::private_key(&current.id),
            ),
            (
                "password",
                secrets.password,
                SecretRef::password(&current.id),
            ),
        ] {
            if let Some(given) = given {
                let stored = self.secrets.get_secret(&stored).await?;
                if !stored.is_some_and(|stored| same_secret(&stored, &given)) {
                    fields.push(field.to_owned());
                }
            }
        }
        Ok(if fields.is_empty() {
            (step(&name, ImportAction::Unchanged, fields), None)
        } else {
            (
                step(&name, ImportAction::Change, fields),
                Some(Planned::Change {
                    current: Box::new(current.clone()),
                    definition,
                }),
            )
        })
    }

    async fn apply_one(
        &self,
        principal: &Principal,
        work: Planned,
        done: &mut Vec<Undo>,
    ) -> Result<(), ServiceError> {
        match work {
            Planned::Create(definition) => {
                let mut input = definition.to_input();
                self.resolve_provider(&mut input).await?;
                state_in_full(&mut input);
                let created = self.create_connection(principal, input).await?;
                done.push(Undo::Delete(created.id));
            }
            Planned::Change {
                current,
                definition,
            } => {
                let secrets = self.stored_secrets(&current.id).await?;
                let mut input = definition.to_input();
                self.resolve_provider(&mut input).await?;
                state_in_full(&mut input);
                // Only the version planned against: a change in between is a conflict.
                input.version = Some(current.version);
                self.update_connection(principal, &current.id, input)
                    .await?;
                done.push(Undo::Restore {
                    previous: current,
                    secrets,
                });
            }
        }
        Ok(())
    }

    /// Undoes applied steps, newest first: a created connection is deleted, a changed one gets
    /// its previous definition and secrets back. Tokens a change of destination ended stay
    /// ended (they were revoked at the provider).
    async fn undo(&self, principal: &Principal, done: Vec<Undo>) -> Result<(), ServiceError> {
        let mut first_error = None;
        for undo in done.into_iter().rev() {
            let result = match undo {
                Undo::Delete(id) => self.delete_connection(principal, &id, None).await.map(drop),
                Undo::Restore { previous, secrets } => {
                    let mut definition = ConnectionDefinition::from(previous.as_ref());
                    definition.client_secret = secrets.client_secret;
                    definition.private_key = secrets.private_key;
                    definition.password = secrets.password;
                    let mut input = definition.to_input();
                    state_in_full(&mut input);
                    self.update_connection(principal, &previous.id, input)
                        .await
                        .map(drop)
                }
            };
            if let Err(error) = result {
                tracing::error!(%error, "an import could not undo one of its steps");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn all_connections(&self) -> Result<Vec<Connection>, ServiceError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_connections(PageRequest {
                    limit: 1000,
                    cursor,
                })
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    async fn stored_secrets(&self, id: &ConnectionId) -> Result<StoredSecrets, ServiceError> {
        Ok(StoredSecrets {
            client_secret: self
                .secrets
                .get_secret(&SecretRef::client_secret(id))
                .await?,
            private_key: self.secrets.get_secret(&SecretRef::private_key(id)).await?,
            password: self.secrets.get_secret(&SecretRef::password(id)).await?,
        })
    }

    /// One connection's secrets and tokens, for the sealed part of an export.
    async fn secrets_of(&self, connection: &Connection) -> Result<Value, ServiceError> {
        let stored = self.stored_secrets(&connection.id).await?;
        let mut entry = Map::new();
        for (field, value) in [
            ("client_secret", stored.client_secret),
            ("private_key", stored.private_key),
            ("password", stored.password),
        ] {
            if let Some(value) = value {
                entry.insert(field.into(), json!(value.expose_secret()));
            }
        }
        let mut tokens = Vec::new();
        for token in self.store.list_tokens(&connection.id).await? {
            let key = TokenKey {
                connection_id: token.connection_id.clone(),
                owner: token.owner.clone(),
            };
            let secrets = self.cipher.open_token(&key, &token.sealed).await?;
            tokens.push(json!({
                "owner": token.owner.to_string(),
                "token_type": token.token_type,
                "scope": token.scope,
                "expires_at": token.expires_at,
                "access_token": secrets.access_token.expose_secret(),
                "refresh_token": secrets.refresh_token.as_ref().map(|t| t.expose_secret()),
                "id_token": secrets.id_token.as_ref().map(|t| t.expose_secret()),
            }));
        }
        entry.insert("tokens".into(), Value::Array(tokens));
        Ok(Value::Object(entry))
    }
}

fn step(name: &str, action: ImportAction, fields: Vec<String>) -> ImportStep {
    ImportStep {
        name: name.to_owned(),
        action,
        fields,
        reason: None,
    }
}

fn conflict(name: &str, reason: String) -> ImportStep {
    ImportStep {
        name: name.to_owned(),
        action: ImportAction::Conflict,
        fields: Vec::new(),
        reason: Some(reason),
    }
}

/// The definition fields whose values differ between two versions of a connection.
fn changed_fields(current: &Connection, next: &Connection) -> Vec<String> {
    let as_map = |c: &Connection| match serde_json::to_value(c) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let (a, b) = (as_map(current), as_map(next));
    b.iter()
        .filter(|(field, value)| {
            !NOT_DEFINITION.contains(&field.as_str()) && a.get(field.as_str()) != Some(value)
        })
        .map(|(field, _)| field.clone())
        .collect()
}

fn same_secret(a: &ClientSecret, b: &ClientSecret) -> bool {
    a.expose_secret()
        .as_bytes()
        .ct_eq(b.expose_secret().as_bytes())
        .into()
}

#[cfg(feature = "sealed-export")]
use sealing::{parse_recipient, seal};

/// Without the `sealed-export` feature (functions that never serve the export): no age.
#[cfg(not(feature = "sealed-export"))]
mod sealing_unavailable {
    use super::{ServiceError, ValidationError};

    pub(super) struct NoRecipient;

    impl AsRef<NoRecipient> for NoRecipient {
        fn as_ref(&self) -> &NoRecipient {
            self
        }
    }

    pub(super) fn parse_recipient(_: &str) -> Result<NoRecipient, ServiceError> {
        Err(ValidationError::new(
            "recipient",
            "this function cannot encrypt exports; the connections function serves them",
        )
        .into())
    }

    pub(super) fn seal(_: &NoRecipient, _: &[u8]) -> Result<String, ServiceError> {
        unreachable!("no recipient parses without the sealed-export feature")
    }
}
#[cfg(not(feature = "sealed-export"))]
use sealing_unavailable::{parse_recipient, seal};

#[cfg(feature = "sealed-export")]
mod sealing {
    use std::io::Write;
    use std::str::FromStr;

    use super::{ServiceError, ValidationError};

    /// An age recipient: `age1...` (X25519) or `age1pq1...` (post-quantum).
    // X25519 is deprecated in age 0.13 in favour of post-quantum keys, but it is what every age
    // before 1.3 makes and reads (Debian's 1.1.1 among them); both are accepted.
    #[allow(deprecated)]
    pub(super) fn parse_recipient(
        text: &str,
    ) -> Result<Box<dyn age::Recipient + Send>, ServiceError> {
        let text = text.trim();
        if let Ok(recipient) = age::x25519::Recipient::from_str(text) {
            return Ok(Box::new(recipient));
        }
        if let Ok(recipient) = age::pq::Recipient::from_str(text) {
            return Ok(Box::new(recipient));
        }
        Err(ValidationError::new(
            "recipient",
            "must be an age recipient (age1..., as `age-keygen -y KEYFILE` prints it)",
        )
        .into())
    }

    /// `plaintext` as an ASCII-armored age file for `recipient`.
    pub(super) fn seal(
        recipient: &(dyn age::Recipient + Send),
        plaintext: &[u8],
    ) -> Result<String, ServiceError> {
        use age::armor::{ArmoredWriter, Format};
        let failed = |e: &dyn std::fmt::Display| {
            ServiceError::Invalid(ValidationError::new(
                "recipient",
                format!("could not encrypt to it: {e}"),
            ))
        };
        let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as _))
            .map_err(|e| failed(&e))?;
        let mut armored = Vec::new();
        let mut writer = encryptor
            .wrap_output(
                ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor)
                    .map_err(|e| failed(&e))?,
            )
            .map_err(|e| failed(&e))?;
        writer.write_all(plaintext).map_err(|e| failed(&e))?;
        writer
            .finish()
            .and_then(|armor| armor.finish())
            .map_err(|e| failed(&e))?;
        Ok(String::from_utf8(armored).expect("ASCII armor is text"))
    }
}

#[cfg(all(test, feature = "sealed-export"))]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn a_sealed_export_opens_only_with_the_identity() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let sealed = seal(
            parse_recipient(&recipient).unwrap().as_ref(),
            b"{\"s\":\"value\"}",
        )
        .unwrap();
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!sealed.contains("value"));
        let opened = age::decrypt(&identity, sealed.as_bytes()).unwrap();
        assert_eq!(opened, b"{\"s\":\"value\"}");
        let other = age::x25519::Identity::generate();
        assert!(age::decrypt(&other, sealed.as_bytes()).is_err());
    }

    #[test]
    fn a_recipient_that_is_not_one_is_refused_by_field() {
        for bad in ["", "age1", "ssh-ed25519 AAAA", "AGE-SECRET-KEY-1QQQ"] {
            let Err(ServiceError::Invalid(error)) = parse_recipient(bad) else {
                panic!("{bad:?} was accepted");
            };
            assert_eq!(error.field, "recipient");
        }
    }
}
