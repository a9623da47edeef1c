//! Creates Keyport's DynamoDB table, for tests and local development. The SAM template in
//! `infra/` declares the same table; keep the two in step.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::codec::{DUE, GSI1, attr};
use super::unavailable;
use crate::ports::StoreError;

/// How long a new table (and its index) may take to become usable.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// The SDK's own waiter polls every 20 s at first, far too slow for tests; poll faster.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Creates the table `name`: key `pk`/`sk` (strings), on-demand billing, the index `gsi1` on
/// `gsi1pk`/`gsi1sk` carrying `doc` and `version`, the keys-only index `due` on
/// `due_shard`/`due_at`, and TTL on `ttl`. Returns once the table and its indexes are ACTIVE
/// and TTL is enabled. Fails if the table already exists.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let string_attribute = |attribute: &str| {
        AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(unavailable)
    };
    let key = |attribute: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(key_type)
            .build()
            .map_err(unavailable)
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(GSI1.name)
        .key_schema(key(GSI1.hash, KeyType::Hash)?)
        .key_schema(key(GSI1.range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes(attr::DOC)
                .non_key_attributes(attr::VERSION)
                .build(),
        )
        .build()
        .map_err(unavailable)?;
    let due = GlobalSecondaryIndex::builder()
        .index_name(DUE.name)
        .key_schema(key(DUE.hash, KeyType::Hash)?)
        .key_schema(key(DUE.range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(unavailable)?;
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(string_attribute(attr::PK)?)
        .attribute_definitions(string_attribute(attr::SK)?)
        .attribute_definitions(string_attribute(attr::GSI1PK)?)
        .attribute_definitions(string_attribute(attr::GSI1SK)?)
        .attribute_definitions(string_attribute(attr::DUE_SHARD)?)
        .attribute_definitions(string_attribute(attr::DUE_AT)?)
        .key_schema(key(attr::PK, KeyType::Hash)?)
        .key_schema(key(attr::SK, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .global_secondary_indexes(index)
        .global_secondary_indexes(due)
        .send()
        .await
        .map_err(unavailable)?;

    wait_until_active(client, name).await?;

    // TTL can only be set on an ACTIVE table.
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(attr::TTL)
        .enabled(true)
        .build()
        .map_err(unavailable)?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Polls until the table and every index on it are ACTIVE: an index still being built would
/// refuse the queries that listings and the refresher depend on.
async fn wait_until_active(client: &Client, name: &str) -> Result<(), StoreError> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let output = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(unavailable)?;
        let ready = output.table().is_some_and(|table| {
            table.table_status() == Some(&TableStatus::Active)
                && table
                    .global_secondary_indexes()
                    .iter()
                    .all(|index| index.index_status() == Some(&IndexStatus::Active))
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {name} did not become ACTIVE within {} s",
                ACTIVE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
