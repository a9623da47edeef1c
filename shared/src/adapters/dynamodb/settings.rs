//! The installation's settings in the table: one item each, `SETTINGS` / `<name>`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::codec::{Item, attr, string};
use super::{DynamoStore, unavailable};
use crate::ports::{SettingsStore, StoreError, StoredSetting};

const PARTITION: &str = "SETTINGS";
const UPDATED_AT: &str = "updated_at";

fn setting_key(name: &str) -> Item {
    HashMap::from([
        (attr::PK.to_owned(), string(PARTITION)),
        (attr::SK.to_owned(), string(name)),
    ])
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(StoreError::Corrupt("setting", format!("it has no {name}"))),
    }
}

#[async_trait]
impl SettingsStore for DynamoStore {
    async fn get_setting(&self, name: &str) -> Result<Option<StoredSetting>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(setting_key(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let updated_at = DateTime::parse_from_rfc3339(text(&item, UPDATED_AT)?)
            .map_err(|_| StoreError::Corrupt("setting", "its time is not a time".into()))?
            .with_timezone(&Utc);
        Ok(Some(StoredSetting {
            doc: text(&item, attr::DOC)?.to_owned(),
            updated_at,
        }))
    }

    async fn put_setting(&self, name: &str, setting: &StoredSetting) -> Result<(), StoreError> {
        let mut item = setting_key(name);
        item.extend([
            (attr::DOC.to_owned(), string(&setting.doc)),
            (
                UPDATED_AT.to_owned(),
                string(setting.updated_at.to_rfc3339()),
            ),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_setting(&self, name: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(setting_key(name)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
