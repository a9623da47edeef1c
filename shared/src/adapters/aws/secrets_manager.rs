//! Client secrets in AWS Secrets Manager, every one under one name prefix so that IAM policies
//! can scope access to `arn:…:secret:<prefix>*`.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::domain::ClientSecret;
use crate::ports::{InstallationSecret, SecretError, SecretRef, SecretStore};

pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    /// Days a deleted secret can still be restored; `None` deletes at once (tests only).
    recovery_window_days: Option<i64>,
    /// The KMS key new secrets are encrypted with: Keyport's own, so that reading one needs
    /// that key too (not the account's default `aws/secretsmanager` key, which any principal
    /// with secret access can use).
    kms_key_id: Option<String>,
}

impl SecretsManagerStore {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            recovery_window_days: Some(7),
            kms_key_id: None,
        }
    }

    /// Encrypts new secrets with `key_id` instead of the account's default key.
    pub fn with_kms_key(mut self, key_id: impl Into<String>) -> Self {
        self.kms_key_id = Some(key_id.into());
        self
    }

    /// Deletes without a recovery window; for tests that create and drop many secrets.
    pub fn with_immediate_deletion(mut self) -> Self {
        self.recovery_window_days = None;
        self
    }

    fn secret_id(&self, secret: &SecretRef) -> String {
        format!("{}{}", self.prefix, secret.name())
    }
}

fn unavailable<E: std::error::Error + 'static>(
    e: aws_sdk_secretsmanager::error::SdkError<E>,
) -> SecretError {
    SecretError::Unavailable(DisplayErrorContext(&e).to_string())
}

/// Secrets Manager answers "not found" for a missing secret and "invalid request" for one
/// scheduled for deletion; to Keyport both are absent.
fn is_absent(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ResourceNotFoundException") | Some("InvalidRequestException")
    )
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn put_secret(
        &self,
        secret: &SecretRef,
        value: &ClientSecret,
    ) -> Result<(), SecretError> {
        let id = self.secret_id(secret);
        let updated = self
            .client
            .put_secret_value()
            .secret_id(&id)
            .secret_string(value.expose_secret())
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                self.client
                    .create_secret()
                    .name(&id)
                    .description("Keyport connection credential")
                    .set_kms_key_id(self.kms_key_id.clone())
                    .secret_string(value.expose_secret())
                    .send()
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_secret(&self, secret: &SecretRef) -> Result<Option<ClientSecret>, SecretError> {
        match self
            .client
            .get_secret_value()
            .secret_id(self.secret_id(secret))
            .send()
            .await
        {
            Ok(output) => Ok(output.secret_string.map(ClientSecret::new)),
            Err(e) if is_absent(e.code()) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete_secret(&self, secret: &SecretRef) -> Result<(), SecretError> {
        let request = self
            .client
            .delete_secret()
            .secret_id(self.secret_id(secret));
        let request = match self.recovery_window_days {
            Some(days) => request.recovery_window_in_days(days),
            None => request.force_delete_without_recovery(true),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_absent(e.code()) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// One secret read whole, by its ARN or name: the console's client secret at the identity
/// provider, which the SAM template keeps in a secret of its own (outside the client secrets'
/// prefix, so no other function's policy reaches it).
pub struct SecretsManagerSecret {
    client: Client,
    id: String,
}

impl SecretsManagerSecret {
    pub fn new(client: Client, id: impl Into<String>) -> Self {
        Self {
            client,
            id: id.into(),
        }
    }
}

#[async_trait]
impl InstallationSecret for SecretsManagerSecret {
    async fn read(&self) -> Result<secrecy::SecretString, SecretError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.id)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .secret_string
            .filter(|value| !value.is_empty())
            .map(secrecy::SecretString::from)
            .ok_or_else(|| SecretError::Unavailable(format!("the secret {} is empty", self.id)))
    }
}
