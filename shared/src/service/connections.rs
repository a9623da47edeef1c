//! Administering connections: create, read, change, delete. Secrets go to the secret store
//! before the connection that refers to them is written, and never come back out.

use chrono::Utc;

use super::{Keyport, ServiceError};
use crate::domain::{
    AuditAction, Connection, ConnectionId, ConnectionInput, EndpointUrl, GrantType, Principal,
    ProviderKey, SubmittedSecrets, ValidationError,
};
use crate::oauth::{ClientCredentials, OAuthError, discover};
use crate::ports::{Page, PageRequest, SecretRef};

/// The outcome of `POST /connections/{id}/test`.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionCheck {
    pub ok: bool,
    pub message: String,
    /// The provider error's code when `ok` is false.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub error: Option<String>,
}

impl Keyport {
    pub async fn create_connection(
        &self,
        principal: &Principal,
        mut input: ConnectionInput,
    ) -> Result<Connection, ServiceError> {
        self.access.require_admin(principal)?;
        self.resolve_provider(&mut input).await?;
        let (connection, secrets) =
            Connection::create(input, Utc::now(), self.settings.url_policy)?;
        self.check_grant_allowed(&connection)?;
        self.store_secrets(&connection.id, secrets).await?;
        match self.store.create_connection(&connection).await {
            Ok(created) => {
                self.audit(
                    &created.id,
                    AuditAction::ConnectionCreated,
                    principal.subject.as_str(),
                    None,
                    None,
                )
                .await;
                let mut uninvited = created.clone();
                uninvited.invited_roles.clear();
                uninvited.invited_applications.clear();
                self.notify_connection_change(&uninvited, &created).await;
                Ok(created)
            }
            Err(error) => {
                self.delete_secrets(&connection.id).await;
                Err(error.into())
            }
        }
    }

    pub async fn get_connection(
        &self,
        principal: &Principal,
        id: &ConnectionId,
    ) -> Result<Connection, ServiceError> {
        let allowed = self.access.require_admin(principal);
        self.audit_denial(principal, id, allowed).await?;
        self.load_connection(id).await
    }

    pub async fn list_connections(
        &self,
        principal: &Principal,
        page: PageRequest,
    ) -> Result<Page<Connection>, ServiceError> {
        self.access.require_admin(principal)?;
        Ok(self.store.list_connections(page).await?)
    }

    pub async fn update_connection(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        input: ConnectionInput,
    ) -> Result<Connection, ServiceError> {
        let allowed = self.access.require_admin(principal);
        self.audit_denial(principal, id, allowed).await?;
        let current = self.load_connection(id).await?;
        let (changed, secrets) = current
            .apply(input, Utc::now(), self.settings.url_policy)
            .map_err(|e| {
                if e.field == "version" {
                    ServiceError::Conflict(e.to_string())
                } else {
                    ServiceError::Invalid(e)
                }
            })?;
        self.check_grant_allowed(&changed)?;
        let moved = current.destination_changes(&changed);
        if !moved.is_empty() {
            // Before anything points elsewhere: every grant is revoked where it was issued,
            // with the credentials it was issued to, and deleted. A refresh that races this
            // writes a token stamped with the old destination, which is never sent anywhere.
            let credentials = self.credentials(&current).await?;
            let reason = format!("ended: the connection's {} changed", moved.join(", "));
            self.end_tokens(&current, &credentials, principal, &reason)
                .await?;
        }
        self.store_secrets(&changed.id, secrets).await?;
        let updated = self.store.update_connection(&changed).await?;
        self.audit(
            &updated.id,
            AuditAction::ConnectionChanged,
            principal.subject.as_str(),
            None,
            None,
        )
        .await;
        self.notify_connection_change(&current, &updated).await;
        Ok(updated)
    }

    /// Revokes every token of `connection` at its provider with `credentials` and deletes it.
    async fn end_tokens(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        principal: &Principal,
        reason: &str,
    ) -> Result<(), ServiceError> {
        for token in self.store.list_tokens(&connection.id).await? {
            self.end_token(
                connection,
                credentials,
                token,
                principal.subject.as_str(),
                reason,
            )
            .await?;
        }
        Ok(())
    }

    /// Proves the connection works without changing anything stored: an unattended grant
    /// requests a token; an interactive one exchanges a made-up code, which a provider that
    /// accepts the client's credentials refuses with `invalid_grant` (and one that does not,
    /// with `invalid_client`).
    pub async fn test_connection(
        &self,
        principal: &Principal,
        id: &ConnectionId,
    ) -> Result<ConnectionCheck, ServiceError> {
        let allowed = self.access.require_admin(principal);
        self.audit_denial(principal, id, allowed).await?;
        let connection = self.load_connection(id).await?;
        let credentials = self.credentials(&connection).await?;
        let outcome = if connection.grant_type.is_interactive() {
            match self
                .oauth
                .exchange_code(&connection, &credentials, "keyport-connection-test", None)
                .await
            {
                Err(OAuthError::InvalidGrant { .. }) => Ok(()),
                Ok(_) => Err(OAuthError::BadResponse(
                    "the provider accepted a made-up authorization code".into(),
                )),
                Err(error) => Err(error),
            }
        } else {
            self.oauth
                .request_unattended(&connection, &credentials)
                .await
                .map(|_| ())
        };
        let outcome = self.check_client(&connection, outcome);
        Ok(match outcome {
            Ok(()) => ConnectionCheck {
                ok: true,
                message: "the provider accepted the client's credentials".into(),
                error: None,
            },
            Err(error) => ConnectionCheck {
                ok: false,
                message: error.to_string(),
                error: Some(error.code().to_owned()),
            },
        })
    }

    pub(super) async fn load_connection(
        &self,
        id: &ConnectionId,
    ) -> Result<Connection, ServiceError> {
        self.store
            .get_connection(id)
            .await?
            .ok_or(ServiceError::NotFound("connection"))
    }

    /// Fills a catalog provider's defaults, or a custom connection's endpoints by discovery.
    pub(super) async fn resolve_provider(
        &self,
        input: &mut ConnectionInput,
    ) -> Result<(), ServiceError> {
        let key = ProviderKey::parse(input.provider.as_deref().unwrap_or(ProviderKey::CUSTOM))?;
        if key.as_str() != ProviderKey::CUSTOM {
            let provider = self.catalog.get(key.as_str()).ok_or_else(|| {
                ValidationError::new("provider", "is not in the catalog (see GET /providers)")
            })?;
            provider.fill_defaults(input)?;
            return Ok(());
        }
        if input.token_url.is_none()
            && let Some(issuer) = &input.issuer
        {
            let issuer = EndpointUrl::parse("issuer", issuer, self.settings.url_policy)?;
            let found = discover(self.oauth.http(), &issuer).await.map_err(|e| {
                ServiceError::Invalid(ValidationError::new(
                    "issuer",
                    format!("discovery failed: {e}"),
                ))
            })?;
            let hybrid =
                input.grant_type.as_deref() == Some(GrantType::AuthorizationCodeHybrid.as_str());
            let has_hybrid = |types: &[String]| {
                types.iter().any(|t| {
                    let mut words: Vec<&str> = t.split_whitespace().collect();
                    words.sort_unstable();
                    words == ["code", "id_token"]
                })
            };
            if hybrid && !found.response_types.is_empty() && !has_hybrid(&found.response_types) {
                return Err(ValidationError::new(
                    "grant_type",
                    "the issuer does not offer the hybrid flow (its response_types_supported lacks \"code id_token\")",
                )
                .into());
            }
            input.token_url = Some(found.token_url.to_string());
            input.authorization_url = input
                .authorization_url
                .take()
                .or(found.authorization_url.map(String::from));
            input.revocation_url = input
                .revocation_url
                .take()
                .or(found.revocation_url.map(String::from));
            input.callback_iss_required = input
                .callback_iss_required
                .or(Some(found.iss_parameter_supported));
        }
        Ok(())
    }

    pub(super) fn check_grant_allowed(&self, connection: &Connection) -> Result<(), ServiceError> {
        if connection.grant_type == GrantType::Password && !self.settings.allow_password_grant {
            return Err(ValidationError::new(
                "grant_type",
                "the password grant is disabled on this installation (RFC 9700 §2.4 forbids it); an operator must enable it",
            )
            .into());
        }
        Ok(())
    }

    async fn store_secrets(
        &self,
        id: &ConnectionId,
        secrets: SubmittedSecrets,
    ) -> Result<(), ServiceError> {
        if let Some(secret) = secrets.client_secret {
            self.secrets
                .put_secret(&SecretRef::client_secret(id), &secret)
                .await?;
        }
        if let Some(key) = secrets.private_key {
            self.secrets
                .put_secret(&SecretRef::private_key(id), &key)
                .await?;
        }
        if let Some(password) = secrets.password {
            self.secrets
                .put_secret(&SecretRef::password(id), &password)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn delete_secrets(&self, id: &ConnectionId) {
        for secret in [
            SecretRef::client_secret(id),
            SecretRef::private_key(id),
            SecretRef::password(id),
        ] {
            if let Err(error) = self.secrets.delete_secret(&secret).await {
                tracing::warn!(connection_id = %id, %error, "a secret of a deleted connection could not be deleted");
            }
        }
    }
}
