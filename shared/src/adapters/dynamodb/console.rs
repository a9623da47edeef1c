//! The console's short-lived records in the table: one item each, `<KIND>#<key>`, removed by
//! the table's TTL once expired (and ignored from then on, since TTL deletion is eventual).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::codec::{Item, attr, number, string};
use super::{DynamoStore, unavailable};
use crate::ports::{ConsoleRecordKind, ConsoleStore, StoreError};

const ENTITY: &str = "console record";

fn record_key(kind: ConsoleRecordKind, key: &str) -> Item {
    let name = kind.storage_name();
    HashMap::from([
        (attr::PK.to_owned(), string(format!("{name}#{key}"))),
        (attr::SK.to_owned(), string(name)),
    ])
}

/// The record's document if it is still live at `now`.
fn live_doc(item: &Item, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
    let expires_at = match item.get(attr::TTL) {
        Some(AttributeValue::N(value)) => value
            .parse::<i64>()
            .map_err(|_| StoreError::Corrupt(ENTITY, "its ttl is not a time".into()))?,
        _ => return Err(StoreError::Corrupt(ENTITY, "it has no ttl".into())),
    };
    if expires_at <= now.timestamp() {
        return Ok(None);
    }
    match item.get(attr::DOC) {
        Some(AttributeValue::S(doc)) => Ok(Some(doc.clone())),
        _ => Err(StoreError::Corrupt(ENTITY, "it has no document".into())),
    }
}

#[async_trait]
impl ConsoleStore for DynamoStore {
    async fn put_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        doc: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = record_key(kind, key);
        item.extend([
            (attr::DOC.to_owned(), string(doc)),
            (attr::TTL.to_owned(), number(expires_at.timestamp())),
        ]);
        // A key whose record expired is free again, though TTL may not have removed it yet.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":now", number(Utc::now().timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn get_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(record_key(kind, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        match output.item {
            Some(item) => live_doc(&item, now),
            None => Ok(None),
        }
    }

    async fn take_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        // Deleting and reading in one call: of two concurrent takers only one gets the record.
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(record_key(kind, key)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        match output.attributes.filter(|item| !item.is_empty()) {
            Some(item) => live_doc(&item, now),
            None => Ok(None),
        }
    }
}
