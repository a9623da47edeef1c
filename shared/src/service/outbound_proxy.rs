//! The outbound-proxy setting: administrators set, read and remove the forward proxy every
//! request to a provider goes through. The password goes to the secret store (write-only, as
//! client secrets); the rest is a settings record. This process applies a change at once;
//! every other process reads the setting again within a minute ([`StoredProxySource`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::{Keyport, ServiceError};
use crate::adapters::outbound::{ProxySetting, ProxySource};
use crate::domain::{OutboundProxy, OutboundProxyInput, Principal};
use crate::ports::{SecretRef, SecretStore, Store, StoredSetting};

/// The setting's record name.
const SETTING: &str = "outbound-proxy";

/// The setting as stored: what is answered, and the generation of its password's secret.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredProxy {
    #[serde(flatten)]
    setting: OutboundProxy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_generation: Option<String>,
}

impl StoredProxy {
    fn password_ref(&self) -> Option<SecretRef> {
        self.password_generation
            .as_deref()
            .map(SecretRef::outbound_proxy_password)
    }
}

impl Keyport {
    /// The outbound-proxy setting, without its password (administrators).
    pub async fn outbound_proxy(
        &self,
        principal: &Principal,
    ) -> Result<OutboundProxy, ServiceError> {
        self.access.require_admin(principal)?;
        read_setting(self.store.as_ref())
            .await?
            .map(|stored| stored.setting)
            .ok_or(ServiceError::NotFound("outbound-proxy setting"))
    }

    /// Replaces the outbound-proxy setting (administrators); it applies to this process's next
    /// request, and to every other process's within a minute.
    pub async fn set_outbound_proxy(
        &self,
        principal: &Principal,
        input: OutboundProxyInput,
    ) -> Result<OutboundProxy, ServiceError> {
        self.access.require_admin(principal)?;
        let (setting, password) = input.validate(Utc::now())?;
        let previous = read_setting(self.store.as_ref()).await?;
        // The password first, under a name of its own: a record saying `password_set` never
        // points at a missing secret. The old one goes once the record no longer names it.
        let generation = match &password {
            Some(password) => {
                let generation = uuid::Uuid::new_v4().simple().to_string();
                self.secrets
                    .put_secret(&SecretRef::outbound_proxy_password(&generation), password)
                    .await?;
                Some(generation)
            }
            None => None,
        };
        let stored = StoredProxy {
            setting: setting.clone(),
            password_generation: generation,
        };
        let doc = serde_json::to_string(&stored).expect("the setting serializes");
        self.store
            .put_setting(
                SETTING,
                &StoredSetting {
                    doc,
                    updated_at: setting.updated_at,
                },
            )
            .await?;
        if let Some(old) = previous.as_ref().and_then(StoredProxy::password_ref) {
            self.secrets.delete_secret(&old).await?;
        }
        let applied = ProxySetting {
            url: setting.url.clone(),
            no_proxy: setting.no_proxy.clone(),
            username: setting.username.clone(),
            password: password.map(|p| p.expose_secret().to_owned().into()),
        };
        self.apply_proxy(Some((setting.updated_at, &applied)));
        tracing::info!(target: "audit", action = "outbound_proxy_set", actor = %principal.subject, password_set = setting.password_set, "the outbound-proxy setting was changed");
        Ok(setting)
    }

    /// Removes the outbound-proxy setting (administrators): requests go direct again, or
    /// through the environment's proxy. Removing a missing setting succeeds.
    pub async fn delete_outbound_proxy(&self, principal: &Principal) -> Result<(), ServiceError> {
        self.access.require_admin(principal)?;
        let previous = read_setting(self.store.as_ref()).await?;
        self.store.delete_setting(SETTING).await?;
        if let Some(old) = previous.as_ref().and_then(StoredProxy::password_ref) {
            self.secrets.delete_secret(&old).await?;
        }
        self.apply_proxy(None);
        tracing::info!(target: "audit", action = "outbound_proxy_deleted", actor = %principal.subject, "the outbound-proxy setting was removed");
        Ok(())
    }

    fn apply_proxy(&self, setting: Option<(chrono::DateTime<Utc>, &ProxySetting)>) {
        // Validated already: a URL reqwest refuses here is reported, and the next read retries.
        if let Err(error) = self.oauth.http().use_proxy_setting(setting) {
            tracing::warn!(%error, "the outbound-proxy setting could not be applied");
        }
    }
}

async fn read_setting(store: &dyn Store) -> Result<Option<StoredProxy>, ServiceError> {
    let Some(stored) = store.get_setting(SETTING).await? else {
        return Ok(None);
    };
    let mut setting: StoredProxy = serde_json::from_str(&stored.doc).map_err(|e| {
        ServiceError::Store(crate::ports::StoreError::Corrupt(
            "outbound-proxy setting",
            e.to_string(),
        ))
    })?;
    setting.setting.updated_at = stored.updated_at;
    Ok(Some(setting))
}

/// The outbound client's view of the setting: the record, and the password when one is set.
pub(crate) struct StoredProxySource {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
}

#[async_trait]
impl ProxySource for StoredProxySource {
    async fn current(&self) -> Result<Option<(chrono::DateTime<Utc>, ProxySetting)>, String> {
        let Some(stored) = read_setting(self.store.as_ref())
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let password = match stored.password_ref() {
            Some(secret) => self
                .secrets
                .get_secret(&secret)
                .await
                .map_err(|e| e.to_string())?
                .map(|p| p.expose_secret().to_owned().into()),
            None => None,
        };
        let setting = stored.setting;
        Ok(Some((
            setting.updated_at,
            ProxySetting {
                url: setting.url,
                no_proxy: setting.no_proxy,
                username: setting.username,
                password,
            },
        )))
    }
}
