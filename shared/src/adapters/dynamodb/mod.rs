//! The DynamoDB back-end of the connection, token and pending-authorization stores: one table,
//! two indexes (`gsi1` for listings, the sharded `due` for refreshes), every update guarded by
//! a condition on the `version` attribute. `codec` lays out
//! the items; `table` creates the table they live in.

mod codec;
mod console;
mod settings;
pub mod table;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, KeysAndAttributes, Put,
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, Utc};

use self::codec::{Item, attr};
use crate::adapters::records;
use crate::domain::{
    AuditEvent, Connection, ConnectionId, Invitee, PendingAuthorization, StateToken, StoredToken,
    TokenFetch, WebhookSubscription,
};
use crate::ports::{
    AuditLog, ConnectionStore, DueWindow, Expect, NotificationStore, OutboxEntry, Page,
    PageRequest, PendingAuthorizationStore, Retired, StoreError, StoredWebhook, TokenKey,
    TokenStore,
};

pub use self::codec::DEFAULT_DUE_SHARDS;
pub use self::table::create_table;

/// DynamoDB's code for a transaction item whose condition did not hold.
const CONDITION_FAILED: &str = "ConditionalCheckFailed";
/// How many times a batch is sent while DynamoDB leaves part of it unprocessed (throttling).
const BATCH_ATTEMPTS: u32 = 8;

/// The stores on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Seen the invitations marker: it is never removed, so one sighting per process does.
    invitations_indexed: Arc<AtomicBool>,
    /// How many shards token writes spread the due index over. It may grow (readers then look
    /// in every shard entries can be in) but must never shrink while entries exist: those in
    /// the shards dropped would be found by no reader until their token is written again.
    due_shards: u32,
}

/// A condition expression with the names and values it uses. Attributes are always referred to
/// through `#placeholders`, so none of them can collide with a reserved word.
struct Condition {
    expression: &'static str,
    names: HashMap<String, String>,
    values: Option<HashMap<String, AttributeValue>>,
    /// Whether a failure should bring back the item as it was, to tell "gone" from "changed".
    return_old: bool,
}

impl Condition {
    /// The item must not exist yet.
    fn absent() -> Self {
        Self {
            expression: "attribute_not_exists(#pk)",
            names: names(&[attr::PK]),
            values: None,
            return_old: false,
        }
    }

    /// The item must exist at exactly `expected`.
    fn at_version(expected: u64) -> Self {
        Self {
            expression: "attribute_exists(#pk) AND #version = :expected",
            names: names(&[attr::PK, attr::VERSION]),
            values: Some(HashMap::from([(
                ":expected".to_owned(),
                codec::number(expected),
            )])),
            return_old: true,
        }
    }

    /// A name reservation the connection `id` may take or drop: free, or already its own; never
    /// another connection's. Accepting a missing reservation on release lets a rename or delete
    /// repair a table where it went missing instead of failing forever.
    fn reservation_free_or_held_by(id: &ConnectionId) -> Self {
        Self {
            expression: "attribute_not_exists(#pk) OR #connection_id = :id",
            names: names(&[attr::PK, attr::CONNECTION_ID]),
            values: Some(HashMap::from([(
                ":id".to_owned(),
                codec::string(id.as_str()),
            )])),
            return_old: false,
        }
    }

    /// A connection item that is retired, or gone: what a purge may remove.
    fn retired_or_absent() -> Self {
        Self {
            expression: "attribute_not_exists(#pk) OR #gsi1pk = :retired",
            names: names(&[attr::PK, attr::GSI1PK]),
            values: Some(HashMap::from([(
                ":retired".to_owned(),
                codec::string(codec::RETIRED_PARTITION),
            )])),
            return_old: false,
        }
    }

    fn return_values(&self) -> Option<ReturnValuesOnConditionCheckFailure> {
        self.return_old
            .then_some(ReturnValuesOnConditionCheckFailure::AllOld)
    }
}

/// Puts a condition on a request. The SDK's request builders share these method names but no
/// trait, hence a macro.
macro_rules! guarded {
    ($request:expr, $condition:expr) => {{
        let condition: Condition = $condition;
        $request
            .set_return_values_on_condition_check_failure(condition.return_values())
            .condition_expression(condition.expression)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(condition.values)
    }};
}

/// `#name` placeholders for attribute names.
fn names(attributes: &[&str]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|name| (format!("#{name}"), (*name).to_owned()))
        .collect()
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            invitations_indexed: Arc::new(AtomicBool::new(false)),
            due_shards: codec::DEFAULT_DUE_SHARDS,
        }
    }

    /// The same store spreading the due index over `due_shards` shards (at least 1).
    pub fn with_due_shards(mut self, due_shards: u32) -> Self {
        self.due_shards = due_shards.max(1);
        self
    }

    /// A strongly consistent read of one item.
    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item.filter(|item| !item.is_empty()))
    }

    /// Why a version condition failed: the item is gone, or it moved on. `old` is the item
    /// DynamoDB sent back with the failure; when it sent none, a fresh read decides, since not
    /// every DynamoDB implementation returns it.
    async fn version_failure(
        &self,
        old: Option<&Item>,
        key: Item,
        entity: &'static str,
    ) -> StoreError {
        if old.is_some_and(|item| !item.is_empty()) {
            return StoreError::Conflict(entity);
        }
        match self.get(key).await {
            Ok(Some(_)) => StoreError::Conflict(entity),
            Ok(None) => StoreError::NotFound(entity),
            Err(err) => err,
        }
    }

    fn put(&self, item: Item, condition: Condition) -> Result<Put, StoreError> {
        guarded!(
            Put::builder().table_name(&self.table).set_item(Some(item)),
            condition
        )
        .build()
        .map_err(unavailable)
    }

    fn delete(&self, key: Item, condition: Condition) -> Result<Delete, StoreError> {
        guarded!(
            Delete::builder().table_name(&self.table).set_key(Some(key)),
            condition
        )
        .build()
        .map_err(unavailable)
    }

    /// The invitation items to delete and put when a connection's invitees go from `old` to
    /// `new` (unconditional: they follow the connection item, whose condition guards the
    /// transaction).
    fn invitation_changes(
        &self,
        id: &ConnectionId,
        old: &BTreeSet<Invitee>,
        new: &BTreeSet<Invitee>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::new();
        for invitee in old.difference(new) {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(codec::invitation_key(invitee, id)))
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        for invitee in new.difference(old) {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(codec::invitation_item(invitee, id)))
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }

    /// Every item of partition `pk` (small partitions: one caller's invitations, one
    /// connection's fetch records), page after page.
    async fn whole_partition(&self, pk: String) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .set_expression_attribute_names(Some(names(&[attr::PK])))
                .expression_attribute_values(":pk", codec::string(pk.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(found),
            }
        }
    }

    /// Runs a transaction. When conditions failed, hands back DynamoDB's reason for each item,
    /// in request order; any other cancellation (conflicting transactions, throttling) is an
    /// outage worth retrying.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<CancellationReason>>, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else {
            return Ok(Ok(()));
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        {
            let reasons = cancelled.cancellation_reasons();
            if reasons
                .iter()
                .any(|reason| reason.code() == Some(CONDITION_FAILED))
            {
                return Ok(Err(reasons.to_vec()));
            }
        }
        Err(unavailable(err))
    }

    /// The stored item of a connection, provided it is still at `expected_version`.
    async fn connection_at(
        &self,
        id: &ConnectionId,
        expected_version: u64,
    ) -> Result<Item, StoreError> {
        let current = self
            .get(codec::connection_key(id))
            .await?
            .filter(|item| !codec::is_retired(item))
            .ok_or(StoreError::NotFound(codec::CONNECTION))?;
        if codec::version_of(&current, codec::CONNECTION)? != expected_version {
            return Err(StoreError::Conflict(codec::CONNECTION));
        }
        Ok(current)
    }

    /// One page of a partition of `index` (connections, due tokens) in sort-key order, only
    /// keys strictly below `upper_bound` if one is given, and strictly above `lower_bound` if
    /// one is given as well (neither bound is ever a key itself).
    async fn index_page(
        &self,
        index: codec::Index,
        partition: &str,
        (lower_bound, upper_bound): (Option<&str>, Option<&str>),
        keys_only: bool,
        page: &PageRequest,
    ) -> Result<Page<Item>, StoreError> {
        let start = page
            .cursor
            .as_deref()
            .map(|cursor| codec::decode_cursor(cursor, index, partition))
            .transpose()?;
        // A cursor at or past the bound (issued for a later `due_by`) has nothing after it, and
        // DynamoDB would refuse it as outside the key condition.
        if let (Some(start), Some(bound)) = (&start, upper_bound)
            && codec::cursor_sort_key(start, index).is_none_or(|sort_key| sort_key >= bound)
        {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let limit = page.effective_limit() as usize;
        // DynamoDB takes one condition on the sort key; BETWEEN is inclusive, which changes
        // nothing here since a bound is never a key.
        let lower_bound = lower_bound.filter(|_| upper_bound.is_some());
        let key_condition = match (lower_bound, upper_bound) {
            (Some(_), Some(_)) => format!(
                "#{} = :partition AND #{} BETWEEN :after AND :bound",
                index.hash, index.range
            ),
            (None, Some(_)) => {
                format!("#{} = :partition AND #{} < :bound", index.hash, index.range)
            }
            _ => format!("#{} = :partition", index.hash),
        };
        let mut attribute_names = names(&[index.hash]);
        if upper_bound.is_some() {
            attribute_names.extend(names(&[index.range]));
        }
        let mut values = HashMap::from([(":partition".to_owned(), codec::string(partition))]);
        if let Some(bound) = upper_bound {
            values.insert(":bound".to_owned(), codec::string(bound));
        }
        if let Some(after) = lower_bound {
            values.insert(":after".to_owned(), codec::string(after));
        }
        let projection = keys_only.then(|| {
            attribute_names.extend(names(&[attr::PK, attr::SK, index.hash, index.range]));
            format!("#pk, #sk, #{}, #{}", index.hash, index.range)
        });
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(Some(attribute_names))
            .set_expression_attribute_values(Some(values))
            .set_projection_expression(projection)
            .scan_index_forward(true)
            .set_exclusive_start_key(start)
            // One more than asked for tells whether another page exists without a second query.
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = output.items.unwrap_or_default();
        let more = items.len() > limit || output.last_evaluated_key.is_some_and(|k| !k.is_empty());
        items.truncate(limit);
        // Resuming after the last item returned is exactly what LastEvaluatedKey means; building
        // the cursor from that item keeps every cursor complete and in one shape.
        let next = match items.last() {
            Some(last) if more => Some(codec::encode_cursor(&codec::index_page_key(last, index))?),
            _ => None,
        };
        Ok(Page { items, next })
    }

    /// A connection's token items in owner order: all of them across result pages, or the
    /// first `limit` (one page).
    async fn token_items(
        &self,
        connection_id: &ConnectionId,
        limit: Option<u32>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .set_expression_attribute_names(Some(names(&[attr::PK, attr::SK])))
                .expression_attribute_values(
                    ":pk",
                    codec::string(codec::connection_partition(connection_id)),
                )
                .expression_attribute_values(":prefix", codec::string(codec::TOKEN_SK_PREFIX))
                .set_limit(limit.map(|limit| i32::try_from(limit.max(1)).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key.filter(|key| !key.is_empty()) {
                Some(key) if limit.is_none() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// The reason for the transaction item at `index`, if its condition failed.
fn condition_failed(reasons: &[CancellationReason], index: usize) -> Option<&CancellationReason> {
    reasons
        .get(index)
        .filter(|reason| reason.code() == Some(CONDITION_FAILED))
}

/// A connection's name reservation held by another connection: the table contradicts itself.
fn foreign_reservation() -> StoreError {
    StoreError::Corrupt(
        codec::CONNECTION,
        "its name reservation is held by another connection".into(),
    )
}

/// 50 ms, doubling per attempt, at most 3.2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(6))
}

/// Any failure of the SDK or the service, with its chain of causes. DynamoDB's messages name
/// attributes and types, never the values of an item.
fn unavailable(err: impl std::error::Error + 'static) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn create_connection(&self, connection: &Connection) -> Result<Connection, StoreError> {
        let name_key = connection.name.uniqueness_key();
        let mut items = vec![
            TransactWriteItem::builder()
                .put(self.put(codec::connection_item(connection, 1)?, Condition::absent())?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put(
                    codec::name_reservation_item(&name_key, &connection.id),
                    Condition::absent(),
                )?)
                .build(),
        ];
        items.extend(self.invitation_changes(
            &connection.id,
            &BTreeSet::new(),
            &connection.invitees(),
        )?);
        match self.transact(items).await? {
            Ok(()) => Ok(Connection {
                version: 1,
                ..connection.clone()
            }),
            Err(reasons) if condition_failed(&reasons, 0).is_some() => {
                Err(StoreError::AlreadyExists(codec::CONNECTION))
            }
            Err(_) => Err(StoreError::NameTaken(connection.name.to_string())),
        }
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.get(codec::connection_key(id))
            .await?
            .filter(|item| !codec::is_retired(item))
            .map(|item| codec::connection_from_item(&item))
            .transpose()
    }

    async fn list_connections(&self, page: PageRequest) -> Result<Page<Connection>, StoreError> {
        let page = self
            .index_page(
                codec::GSI1,
                codec::CONNECTIONS_PARTITION,
                (None, None),
                false,
                &page,
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(codec::connection_from_item)
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    async fn update_connection(&self, connection: &Connection) -> Result<Connection, StoreError> {
        let expected = connection.version;
        let next = codec::next_version(expected, codec::CONNECTION)?;
        // The old name reservation is only known from the stored item; the version condition
        // below guarantees it is still the one read here when the write lands.
        let current = self.connection_at(&connection.id, expected).await?;
        let old_name_key = codec::stored_name_key(&current)?;
        let new_name_key = connection.name.uniqueness_key();
        let old_invitees = codec::connection_from_item(&current)?.invitees();

        let mut items = vec![
            TransactWriteItem::builder()
                .put(self.put(
                    codec::connection_item(connection, next)?,
                    Condition::at_version(expected),
                )?)
                .build(),
        ];
        if old_name_key != new_name_key {
            let release = self.delete(
                codec::name_reservation_key(&old_name_key),
                Condition::reservation_free_or_held_by(&connection.id),
            )?;
            let take = self.put(
                codec::name_reservation_item(&new_name_key, &connection.id),
                Condition::reservation_free_or_held_by(&connection.id),
            )?;
            items.push(TransactWriteItem::builder().delete(release).build());
            items.push(TransactWriteItem::builder().put(take).build());
        }
        // After the name reservation's two items, whose positions the failure reasons name.
        items.extend(self.invitation_changes(
            &connection.id,
            &old_invitees,
            &connection.invitees(),
        )?);
        let Err(reasons) = self.transact(items).await? else {
            return Ok(Connection {
                version: next,
                ..connection.clone()
            });
        };
        Err(if let Some(reason) = condition_failed(&reasons, 0) {
            let key = codec::connection_key(&connection.id);
            self.version_failure(reason.item(), key, codec::CONNECTION)
                .await
        } else if condition_failed(&reasons, 2).is_some() {
            StoreError::NameTaken(connection.name.to_string())
        } else {
            foreign_reservation()
        })
    }

    async fn retire_connection(
        &self,
        id: &ConnectionId,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let current = self.connection_at(id, expected_version).await?;
        let name_key = codec::stored_name_key(&current)?;
        let retired = codec::retired_connection_item(
            &current,
            codec::next_version(expected_version, codec::CONNECTION)?,
            Utc::now(),
        )?;
        let retire = self.put(retired, Condition::at_version(expected_version))?;
        let release = self.delete(
            codec::name_reservation_key(&name_key),
            Condition::reservation_free_or_held_by(id),
        )?;
        let mut items = vec![
            TransactWriteItem::builder().put(retire).build(),
            TransactWriteItem::builder().delete(release).build(),
        ];
        let invitees = codec::connection_from_item(&current)?.invitees();
        items.extend(self.invitation_changes(id, &invitees, &BTreeSet::new())?);
        let Err(reasons) = self.transact(items).await? else {
            return Ok(());
        };
        Err(match condition_failed(&reasons, 0) {
            Some(reason) => {
                self.version_failure(reason.item(), codec::connection_key(id), codec::CONNECTION)
                    .await
            }
            None => foreign_reservation(),
        })
    }

    async fn invited_connections(
        &self,
        invitee: &Invitee,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        self.whole_partition(codec::invited_partition(invitee))
            .await?
            .iter()
            .map(codec::invited_connection)
            .collect()
    }

    async fn invitations_indexed(&self) -> Result<bool, StoreError> {
        // Once true it stays true: every later connection write keeps the index in step.
        if self.invitations_indexed.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let indexed = self.get(codec::invitations_marker_key()).await?.is_some();
        self.invitations_indexed.store(indexed, Ordering::Relaxed);
        Ok(indexed)
    }

    async fn index_invitations(&self) -> Result<u64, StoreError> {
        let mut indexed = 0;
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let listed = self.list_connections(page.clone()).await?;
            for connection in &listed.items {
                let invitees = connection.invitees();
                if invitees.is_empty() {
                    continue;
                }
                // Only while the connection is still what was read: a change racing this
                // writes its own invitation items, and a stale copy must not undo them.
                let mut items = vec![
                    TransactWriteItem::builder()
                        .condition_check(
                            guarded!(
                                ConditionCheck::builder()
                                    .table_name(&self.table)
                                    .set_key(Some(codec::connection_key(&connection.id))),
                                Condition::at_version(connection.version)
                            )
                            .build()
                            .map_err(unavailable)?,
                        )
                        .build(),
                ];
                items.extend(self.invitation_changes(
                    &connection.id,
                    &BTreeSet::new(),
                    &invitees,
                )?);
                // A connection that changed meanwhile indexed itself.
                self.transact(items).await?.ok();
                indexed += 1;
            }
            match listed.next {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(codec::invitations_marker_key()))
            .send()
            .await
            .map_err(unavailable)?;
        self.invitations_indexed.store(true, Ordering::Relaxed);
        Ok(indexed)
    }

    async fn retired_connections(&self, limit: u32) -> Result<Vec<Retired>, StoreError> {
        self.index_page(
            codec::GSI1,
            codec::RETIRED_PARTITION,
            (None, None),
            false,
            &PageRequest::first(limit),
        )
        .await?
        .items
        .iter()
        .map(codec::retired_from_item)
        .collect()
    }

    async fn retired_connection(&self, id: &ConnectionId) -> Result<Option<Retired>, StoreError> {
        self.get(codec::connection_key(id))
            .await?
            .filter(codec::is_retired)
            .map(|item| codec::retired_from_item(&item))
            .transpose()
    }

    async fn purge_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(codec::connection_key(id)));
        match guarded!(request, Condition::retired_or_absent())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => {
                    Err(StoreError::Conflict(codec::CONNECTION))
                }
                _ => Err(unavailable(err)),
            },
        }
    }
}

#[async_trait]
impl TokenStore for DynamoStore {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<StoredToken>, StoreError> {
        self.get(codec::token_key(key))
            .await?
            .map(|item| codec::token_from_item(&item))
            .transpose()
    }

    async fn get_connection_and_token(
        &self,
        key: &TokenKey,
    ) -> Result<(Option<Arc<Connection>>, Option<StoredToken>), StoreError> {
        let connection_key = codec::connection_key(&key.connection_id);
        let token_key = codec::token_key(key);
        let mut wanted = KeysAndAttributes::builder()
            .consistent_read(true)
            .keys(connection_key.clone())
            .keys(token_key.clone())
            .build()
            .map_err(unavailable)?;
        let mut found: Vec<Item> = Vec::with_capacity(2);
        // One request; another only for keys DynamoDB left unprocessed (throttling).
        for attempt in 0..BATCH_ATTEMPTS {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, wanted)
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(
                output
                    .responses
                    .and_then(|mut tables| tables.remove(&self.table))
                    .unwrap_or_default(),
            );
            match output
                .unprocessed_keys
                .and_then(|mut tables| tables.remove(&self.table))
                .filter(|left| !left.keys().is_empty())
            {
                Some(left) => {
                    wanted = left;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                None => {
                    let take = |wanted: &Item| {
                        found.iter().find(|item| {
                            item.get(attr::PK) == wanted.get(attr::PK)
                                && item.get(attr::SK) == wanted.get(attr::SK)
                        })
                    };
                    // No parsed-connection cache here: the network round trip dwarfs the parse.
                    let connection = take(&connection_key)
                        .filter(|item| !codec::is_retired(item))
                        .map(codec::connection_from_item)
                        .transpose()?
                        .map(Arc::new);
                    let token = take(&token_key).map(codec::token_from_item).transpose()?;
                    let token = token.filter(|_| connection.is_some());
                    return Ok((connection, token));
                }
            }
        }
        Err(StoreError::Unavailable(
            "DynamoDB left the read unprocessed".into(),
        ))
    }

    async fn put_token(
        &self,
        token: &StoredToken,
        expect: Expect,
    ) -> Result<StoredToken, StoreError> {
        let (condition, version) = match expect {
            Expect::Absent => (Condition::absent(), 1),
            Expect::Version(expected) => (
                Condition::at_version(expected),
                codec::next_version(expected, codec::TOKEN)?,
            ),
        };
        // The whole item every time, so the due keys come and go with `refresh_due_at`, and an
        // item written before the due index loses its legacy `gsi1` keys.
        let item = codec::token_item(token, version, self.due_shards)?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let result = guarded!(request, condition).send().await;
        let err = match result {
            Ok(_) => {
                return Ok(StoredToken {
                    version,
                    ..token.clone()
                });
            }
            Err(err) => err,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = err.as_service_error()
        else {
            return Err(unavailable(err));
        };
        Err(match expect {
            Expect::Absent => StoreError::AlreadyExists(codec::TOKEN),
            Expect::Version(_) => {
                let key = TokenKey {
                    connection_id: token.connection_id.clone(),
                    owner: token.owner.clone(),
                };
                self.version_failure(failed.item(), codec::token_key(&key), codec::TOKEN)
                    .await
            }
        })
    }

    async fn delete_token(&self, key: &TokenKey, expected_version: u64) -> Result<(), StoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(codec::token_key(key)));
        let result = guarded!(request, Condition::at_version(expected_version))
            .send()
            .await;
        let Err(err) = result else {
            return Ok(());
        };
        match err.as_service_error() {
            Some(DeleteItemError::ConditionalCheckFailedException(failed)) => Err(self
                .version_failure(failed.item(), codec::token_key(key), codec::TOKEN)
                .await),
            _ => Err(unavailable(err)),
        }
    }

    async fn list_tokens(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.token_items(connection_id, None)
            .await?
            .iter()
            .map(codec::token_from_item)
            .collect()
    }

    async fn first_tokens(
        &self,
        connection_id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.token_items(connection_id, Some(limit))
            .await?
            .iter()
            .map(codec::token_from_item)
            .collect()
    }

    async fn user_tokens(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<StoredToken>, StoreError> {
        let start = match &page.cursor {
            Some(cursor) => Some(codec::token_key(&TokenKey {
                connection_id: connection_id.clone(),
                owner: records::user_token_after(cursor)?,
            })),
            None => None,
        };
        let limit = page.effective_limit() as usize;
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .set_expression_attribute_names(Some(names(&[attr::PK, attr::SK])))
            .expression_attribute_values(
                ":pk",
                codec::string(codec::connection_partition(connection_id)),
            )
            .expression_attribute_values(
                ":prefix",
                codec::string(format!(
                    "{}{}",
                    codec::TOKEN_SK_PREFIX,
                    records::USER_OWNER_PREFIX
                )),
            )
            .set_exclusive_start_key(start)
            // One more than asked for tells whether another page exists without a second query.
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = output.items.unwrap_or_default();
        let more = items.len() > limit || output.last_evaluated_key.is_some_and(|k| !k.is_empty());
        items.truncate(limit);
        let tokens: Vec<StoredToken> = items
            .iter()
            .map(codec::token_from_item)
            .collect::<Result<_, _>>()?;
        let next = match tokens.last() {
            Some(last) if more => Some(records::user_token_cursor(&last.owner)),
            _ => None,
        };
        Ok(Page {
            items: tokens,
            next,
        })
    }

    /// The configured shards, and one more: the legacy `gsi1` partition, which items written
    /// before the due index stay in until their next write. Once it has emptied it costs one
    /// empty query per walk.
    fn due_shards(&self) -> u32 {
        self.due_shards + 1
    }

    async fn due_tokens_in_shard(
        &self,
        shard: u32,
        window: DueWindow,
        page: PageRequest,
    ) -> Result<Page<TokenKey>, StoreError> {
        let bound = codec::due_bound(window.by);
        let after = window.after.map(codec::due_bound);
        let (index, partition) = match shard.cmp(&self.due_shards) {
            std::cmp::Ordering::Less => (codec::DUE, codec::due_shard_partition(shard)),
            std::cmp::Ordering::Equal => (codec::GSI1, codec::LEGACY_DUE_PARTITION.to_owned()),
            std::cmp::Ordering::Greater => {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
        };
        let page = self
            .index_page(
                index,
                &partition,
                (after.as_deref(), Some(&bound)),
                true,
                &page,
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(codec::token_key_from_item)
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }
}

#[async_trait]
impl PendingAuthorizationStore for DynamoStore {
    async fn put_pending(
        &self,
        state: &StateToken,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError> {
        let item = codec::pending_item(state, pending)?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let result = guarded!(request, Condition::absent()).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    Err(StoreError::AlreadyExists(codec::PENDING))
                }
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn take_pending(
        &self,
        state: &StateToken,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        // Deleting and reading in one call is what makes a state single use: of two concurrent
        // callbacks only one gets the old item back.
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(codec::pending_key(state)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.attributes.filter(|item| !item.is_empty()) else {
            return Ok(None);
        };
        let pending = codec::pending_from_item(&item)?;
        Ok((!pending.is_expired_at(now)).then_some(pending))
    }

    async fn take_expired_unconfirmed(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PendingAuthorization>, StoreError> {
        let bound = codec::awaiting_bound(now);
        let page = self
            .index_page(
                codec::GSI1,
                codec::AWAITING_PARTITION,
                (None, Some(&bound)),
                true,
                &PageRequest::first(limit),
            )
            .await?;
        let mut taken = Vec::new();
        for entry in page.items {
            let key: codec::Item = [
                attr_key(&entry, codec::attr::PK),
                attr_key(&entry, codec::attr::SK),
            ]
            .into_iter()
            .flatten()
            .collect();
            // Deleting and reading in one call: of two sweepers only one gets the record.
            let output = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(item) = output.attributes.filter(|item| !item.is_empty()) {
                taken.push(codec::pending_from_item(&item)?);
            }
        }
        Ok(taken)
    }
}

/// One key attribute of an index entry, as a key pair.
fn attr_key(
    entry: &codec::Item,
    name: &str,
) -> Option<(String, aws_sdk_dynamodb::types::AttributeValue)> {
    entry
        .get(name)
        .map(|value| (name.to_owned(), value.clone()))
}

#[async_trait]
impl AuditLog for DynamoStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(codec::audit_item(event)?))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_audit(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let partition = codec::audit_partition(connection_id);
        // The cursor is the sort key of the last event returned; the next page starts after
        // it, going back in time.
        let start = page
            .cursor
            .as_deref()
            .map(records::decode_cursor::<String>)
            .transpose()?
            .map(|sort_key| {
                HashMap::from([
                    (attr::PK.to_owned(), codec::string(partition.clone())),
                    (attr::SK.to_owned(), codec::string(sort_key)),
                ])
            });
        let limit = page.effective_limit() as usize;
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .set_expression_attribute_names(Some(names(&[attr::PK])))
            .expression_attribute_values(":pk", codec::string(partition.clone()))
            .scan_index_forward(false)
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let mut found = output.items.unwrap_or_default();
        let more = found.len() > limit;
        found.truncate(limit);
        let next = match found.last() {
            Some(last) if more => Some(records::encode_cursor(&codec::audit_sort_key_of(last)?)),
            _ => None,
        };
        let items = found
            .iter()
            .map(codec::audit_from_item)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn record_fetch(
        &self,
        fetch: &TokenFetch,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(codec::fetch_item(fetch)?))
            .condition_expression("attribute_not_exists(#pk) OR #last_at_ms < :since")
            .set_expression_attribute_names(Some(names(&[attr::PK, attr::LAST_AT_MS])))
            .expression_attribute_values(":since", codec::number(unless_since.timestamp_millis()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn list_fetches(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<TokenFetch>, StoreError> {
        let mut found = self
            .whole_partition(codec::fetches_partition(connection_id))
            .await?
            .iter()
            .map(codec::fetch_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        found.sort_by_key(|f| std::cmp::Reverse(f.last_at));
        found.truncate(limit);
        Ok(found)
    }
}

#[async_trait]
impl NotificationStore for DynamoStore {
    async fn put_webhook(
        &self,
        webhook: &StoredWebhook,
        expect: Expect,
    ) -> Result<StoredWebhook, StoreError> {
        let mut stored = webhook.clone();
        let condition = match expect {
            Expect::Absent => {
                stored.subscription.version = 1;
                Condition::absent()
            }
            Expect::Version(version) => {
                stored.subscription.version = codec::next_version(version, codec::WEBHOOK)?;
                Condition::at_version(version)
            }
        };
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(codec::webhook_item(&stored)?));
        match guarded!(request, condition).send().await {
            Ok(_) => Ok(stored),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => Err(match expect {
                    Expect::Absent => StoreError::AlreadyExists(codec::WEBHOOK),
                    Expect::Version(_) => {
                        self.version_failure(
                            failed.item.as_ref(),
                            codec::webhook_key(&stored.subscription.id),
                            codec::WEBHOOK,
                        )
                        .await
                    }
                }),
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<StoredWebhook>, StoreError> {
        self.get(codec::webhook_key(id))
            .await?
            .map(|item| codec::webhook_from_item(&item))
            .transpose()
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookSubscription>, StoreError> {
        let mut found = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let listed = self
                .index_page(
                    codec::GSI1,
                    codec::WEBHOOKS_PARTITION,
                    (None, None),
                    false,
                    &page,
                )
                .await?;
            for item in &listed.items {
                found.push(codec::webhook_from_item(item)?.subscription);
            }
            match listed.next {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(found),
            }
        }
    }

    async fn delete_webhook(&self, id: &str, version: u64) -> Result<(), StoreError> {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(codec::webhook_key(id)));
        match guarded!(request, Condition::at_version(version))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(failed)) => Err(self
                    .version_failure(failed.item.as_ref(), codec::webhook_key(id), codec::WEBHOOK)
                    .await),
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn enqueue(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        // One put each: an outbox entry stands alone, and a few go in at a time.
        for entry in entries {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(codec::outbox_item(entry)?))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let bound = records::outbox_bound(now);
        let mut found = Vec::new();
        for shard in 0..codec::OUTBOX_SHARDS {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk < :bound")
                .set_expression_attribute_names(Some(names(&[attr::PK, attr::SK])))
                .expression_attribute_values(":pk", codec::string(codec::outbox_partition(shard)))
                .expression_attribute_values(":bound", codec::string(bound.clone()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                found.push(codec::outbox_from_item(item)?);
            }
        }
        found.sort_by_key(records::outbox_sort_key);
        found.truncate(limit);
        Ok(found)
    }

    async fn remove_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(codec::outbox_key(entry)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
