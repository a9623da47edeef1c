//! Data keys from AWS KMS: `GenerateDataKey` and `Decrypt` under one customer-managed key, with
//! the encryption context the envelope gives: a data key's purpose and epoch (or, for values
//! sealed in format version 1, the item itself). KMS refuses to decrypt under any other
//! context, and CloudTrail records the context with every call.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::ports::{DataKey, DataKeyProvider, KeyContext, KeyError};

pub struct KmsDataKeys {
    client: Client,
    key_id: String,
}

impl KmsDataKeys {
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

fn to_key(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError::Unavailable("KMS returned a data key of the wrong size".into()))?;
    Ok(Zeroizing::new(key))
}

#[async_trait]
impl DataKeyProvider for KmsDataKeys {
    async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
        let output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.as_map().clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| KeyError::Unavailable(DisplayErrorContext(&e).to_string()))?;
        let plaintext = output
            .plaintext
            .ok_or_else(|| KeyError::Unavailable("KMS returned no plaintext data key".into()))?;
        let wrapped = output
            .ciphertext_blob
            .ok_or_else(|| KeyError::Unavailable("KMS returned no wrapped data key".into()))?;
        let plaintext = Zeroizing::new(plaintext.into_inner());
        Ok(DataKey {
            plaintext: to_key(&plaintext)?,
            wrapped: wrapped.into_inner(),
        })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &KeyContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let output = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context.as_map().clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| match e.code() {
                // A wrong context, a foreign key or altered bytes all look the same to KMS.
                Some("InvalidCiphertextException") | Some("IncorrectKeyException") => {
                    KeyError::Integrity
                }
                _ => KeyError::Unavailable(DisplayErrorContext(&e).to_string()),
            })?;
        let plaintext = output
            .plaintext
            .ok_or_else(|| KeyError::Unavailable("KMS returned no plaintext".into()))?;
        let plaintext = Zeroizing::new(plaintext.into_inner());
        to_key(&plaintext)
    }
}
