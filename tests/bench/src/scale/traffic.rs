//! The simulation's view of AWS: an SDK interceptor on every client of every simulated process
//! that counts each request by operation, partition key and item size, derives the due-index
//! writes DynamoDB makes for it (for the current index and, modelled, for the old single `DUE`
//! partition), and — when asked to — answers as AWS does once a partition's writes or the
//! KMS / Secrets Manager calls exceed AWS's limits: with `ProvisionedThroughputExceededException`
//! or `ThrottlingException`, without the request reaching moto.
//!
//! moto enforces no limit, and this machine is about a hundred times slower than the target
//! load, so the limits are scaled by the simulation's own refresh rate: a partition is over its
//! limit when what it takes per refresh, at the target's 2,800 refreshes per second, would
//! exceed what AWS allows it per second. That keeps each partition's share of the work — the
//! thing the shape decides — and judges it against AWS's real figures.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use keyport_shared::crypto::KeyCacheLimits;
use serde_json::{Value, json};

/// AWS's limits the throttling run holds the simulation to.
pub mod limits {
    /// Write units per second one DynamoDB partition takes (DynamoDB developer guide,
    /// "Best practices for designing and using partition keys effectively").
    pub const PARTITION_WCU_PER_SECOND: f64 = 1_000.0;
    /// The shared KMS quota for symmetric cryptographic operations named by the issue
    /// (AWS KMS developer guide, "Request quotas": 5,500–100,000 by Region; 10,000 is common).
    pub const KMS_CALLS_PER_SECOND: f64 = 10_000.0;
    /// Secrets Manager's GetSecretValue quota (Secrets Manager user guide, "Quotas").
    pub const SECRETS_CALLS_PER_SECOND: f64 = 10_000.0;
    /// The target load's sustained refresh rate.
    pub const TARGET_REFRESHES_PER_SECOND: f64 = 2_800.0;
    /// What a quiet second may write to any partition whatever the refresh rate (connection
    /// reads, the scheduler's own writes): without it the first write of a run is "over".
    pub const SLACK_UNITS: f64 = 20.0;
}

/// Which due index the throttling model holds writes against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The sharded keys-only `due` index: a token's entry moves only when its due time does.
    Sharded,
    /// Before it: every token item in `gsi1` partition `DUE`, which projected the document, so
    /// every write of a token (lease and grant alike) wrote the index, a due-time change twice.
    SingleDuePartition,
}

/// One token or record item as the simulation last saw it written.
#[derive(Debug, Clone)]
struct Shadow {
    size: usize,
    due_partition: Option<String>,
    due_sort: Option<String>,
}

/// What one DynamoDB write does to one item.
#[derive(Debug, Clone)]
struct ItemWrite {
    pk: String,
    sk: String,
    /// The new item (a put), or `None` (a delete; an update keeps the size it had).
    item: Option<HashMap<String, AttributeValue>>,
    is_update: bool,
    /// Transactions cost twice (DynamoDB: "two underlying writes per item").
    transactional: bool,
}

/// What an operation is about, found before it is serialized and kept for its attempts.
#[derive(Debug, Clone)]
struct Plan {
    operation: String,
    /// KMS Decrypt: a digest of the wrapped key; Secrets Manager: the secret.
    subject: Option<String>,
    writes: Vec<ItemWrite>,
    consistent_read: bool,
    transactional_read: bool,
}

impl Storable for Plan {
    type Storer = StoreReplace<Self>;
}

/// Whether the current attempt was answered by the throttle instead of moto.
#[derive(Debug, Clone, Copy)]
struct Throttled(bool);

impl Storable for Throttled {
    type Storer = StoreReplace<Self>;
}

/// One second of the throttling model.
#[derive(Debug, Default)]
struct Bucket {
    second: u64,
    refreshes_at_start: u64,
    partition_units: HashMap<String, f64>,
    kms_calls: f64,
    secrets_calls: f64,
}

#[derive(Debug, Default)]
struct State {
    operations: BTreeMap<String, u64>,
    throttled: BTreeMap<String, u64>,
    base_write_units: BTreeMap<String, f64>,
    index_writes: BTreeMap<String, u64>,
    old_index_writes: u64,
    read_units: f64,
    written_item_bytes: Vec<usize>,
    kms_by_process: BTreeMap<usize, u64>,
    data_keys_by_process: BTreeMap<usize, u64>,
    decrypts: HashMap<(usize, u64), u64>,
    /// When each process last decrypted each data key, and how many of its Decrypts came
    /// while the key it had paid for was still inside the key cache's age: those are the
    /// Decrypts a process paid twice. One after the age ran out is the cache's bound on how
    /// long a revoked KMS grant keeps working, as the Encryption SDK's hierarchical keyring's
    /// cache limit is.
    last_decrypt: HashMap<(usize, u64), std::time::Instant>,
    decrypts_repeated_within_cache_age: u64,
    secret_reads: HashMap<(usize, String), u64>,
    shadow: HashMap<(String, String), Shadow>,
    buckets: VecDeque<Bucket>,
}

/// The counts and the throttling model, shared by every simulated process.
pub struct Traffic {
    state: Mutex<State>,
    start: std::time::Instant,
    /// Refreshes the provider has answered: the rate the limits are scaled by.
    pub refreshes: Arc<AtomicU64>,
    throttle: Option<(Shape, String)>,
}

impl Traffic {
    /// Counts only; `throttle` (the index shape the limits are held against, and the loopback
    /// address of the answerer that plays AWS's throttling reply) turns the limits on.
    pub fn new(refreshes: Arc<AtomicU64>, throttle: Option<(Shape, String)>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            start: std::time::Instant::now(),
            refreshes,
            throttle,
        })
    }

    /// The interceptor for the clients of process `process`.
    pub fn interceptor(self: &Arc<Self>, process: usize) -> Counter {
        Counter {
            traffic: self.clone(),
            process,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn operation_count(&self, operation: &str) -> u64 {
        self.lock().operations.get(operation).copied().unwrap_or(0)
    }

    /// Everything counted, as the report's JSON.
    pub fn summary(&self) -> Value {
        let state = self.lock();
        let index_total: u64 = state.index_writes.values().sum();
        let hottest_index = state
            .index_writes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(k, n)| (k.clone(), *n));
        let base_total: f64 = state.base_write_units.values().sum();
        let hottest_base = state
            .base_write_units
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, n)| (k.clone(), *n));
        let mut sizes = state.written_item_bytes.clone();
        sizes.sort_unstable();
        let pick = |q: f64| {
            sizes
                .get(((sizes.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        json!({
            "operations": state.operations,
            "throttled": state.throttled,
            "index_writes_total": index_total,
            "index_partitions": state.index_writes.len(),
            "index_writes_by_partition": state.index_writes,
            "hottest_index_partition": hottest_index.as_ref().map(|(k, _)| k),
            "hottest_index_partition_writes": hottest_index.as_ref().map(|(_, n)| n),
            "hottest_index_share": hottest_index.map(|(_, n)| n as f64 / index_total.max(1) as f64),
            "old_shape_index_writes": state.old_index_writes,
            "base_write_units_total": base_total,
            "hottest_base_partition_share": hottest_base.map(|(_, n)| n / base_total.max(1.0)),
            "read_units_total": state.read_units,
            "written_item_bytes_median": pick(0.5),
            "written_item_bytes_max": pick(1.0),
            "kms_calls_by_process": state.kms_by_process,
            "data_keys_generated_per_process_max": state.data_keys_by_process.values().max(),
            "decrypts_of_one_data_key_per_process_max": state.decrypts.values().max(),
            "decrypts_repeated_within_cache_age": state.decrypts_repeated_within_cache_age,
            "key_cache_age_seconds": KeyCacheLimits::default().max_age.as_secs(),
            "secret_reads_of_one_connection_per_process_max": state.secret_reads.values().max(),
        })
    }

    fn second(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// The current bucket, and the previous one's start, after dropping older seconds.
    fn bucket<'a>(&self, state: &'a mut State) -> &'a mut Bucket {
        let second = self.second();
        if state.buckets.back().map(|b| b.second) != Some(second) {
            state.buckets.push_back(Bucket {
                second,
                refreshes_at_start: self.refreshes.load(Ordering::SeqCst),
                ..Bucket::default()
            });
        }
        while state.buckets.len() > 2 {
            state.buckets.pop_front();
        }
        state.buckets.back_mut().expect("a bucket")
    }

    /// The allowance of a limit of `per_second` over the trailing window, at this run's rate.
    fn allowance(&self, state: &State, per_second: f64) -> f64 {
        let start = state
            .buckets
            .front()
            .map(|b| b.refreshes_at_start)
            .unwrap_or(0);
        let refreshes = self.refreshes.load(Ordering::SeqCst).saturating_sub(start) as f64;
        per_second / limits::TARGET_REFRESHES_PER_SECOND * refreshes + limits::SLACK_UNITS
    }
}

/// The process that writes the simulation's starting data: what it writes is known to the
/// index accounting (so a later move of an entry is told from its creation), but neither
/// counted nor throttled.
pub const SEEDER: usize = 0;

/// The interceptor one process's clients carry.
#[derive(Clone)]
pub struct Counter {
    traffic: Arc<Traffic>,
    process: usize,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counter({})", self.process)
    }
}

fn string_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(ToOwned::to_owned)
}

/// DynamoDB's item size: attribute names plus values (developer guide, "Item sizes and
/// formats").
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn key_of(key: &HashMap<String, AttributeValue>) -> (String, String) {
    (
        string_of(key, "pk").unwrap_or_default(),
        string_of(key, "sk").unwrap_or_default(),
    )
}

fn write(
    key: &HashMap<String, AttributeValue>,
    item: Option<HashMap<String, AttributeValue>>,
    is_update: bool,
    transactional: bool,
) -> ItemWrite {
    let (pk, sk) = key_of(key);
    ItemWrite {
        pk,
        sk,
        item,
        is_update,
        transactional,
    }
}

fn plan(
    metadata: &Metadata,
    input: &aws_smithy_runtime_api::client::interceptors::context::Input,
) -> Plan {
    use aws_sdk_dynamodb::operation as ddb;
    let mut plan = Plan {
        operation: format!("{}:{}", metadata.service(), metadata.name()),
        writes: Vec::new(),
        subject: None,
        consistent_read: false,
        transactional_read: false,
    };
    if let Some(put) = input.downcast_ref::<ddb::put_item::PutItemInput>() {
        let item = put.item().cloned().unwrap_or_default();
        plan.writes.push(write(&item, Some(item.clone()), false, false));
    } else if let Some(delete) = input.downcast_ref::<ddb::delete_item::DeleteItemInput>() {
        plan.writes.push(write(delete.key().unwrap_or(&HashMap::new()), None, false, false));
    } else if let Some(update) = input.downcast_ref::<ddb::update_item::UpdateItemInput>() {
        plan.writes.push(write(update.key().unwrap_or(&HashMap::new()), None, true, false));
    } else if let Some(batch) = input.downcast_ref::<ddb::batch_write_item::BatchWriteItemInput>() {
        for requests in batch.request_items().into_iter().flat_map(|m| m.values()) {
            for request in requests {
                if let Some(put) = request.put_request() {
                    plan.writes.push(write(put.item(), Some(put.item().clone()), false, false));
                } else if let Some(delete) = request.delete_request() {
                    plan.writes.push(write(delete.key(), None, false, false));
                }
            }
        }
    } else if let Some(transaction) = input.downcast_ref::<ddb::transact_write_items::TransactWriteItemsInput>() {
        for item in transaction.transact_items() {
            if let Some(put) = item.put() {
                plan.writes.push(write(put.item(), Some(put.item().clone()), false, true));
            } else if let Some(delete) = item.delete() {
                plan.writes.push(write(delete.key(), None, false, true));
            } else if let Some(update) = item.update() {
                plan.writes.push(write(update.key(), None, true, true));
            } else if let Some(check) = item.condition_check() {
                // A condition check costs a write of the item's size and changes nothing.
                plan.writes.push(write(check.key(), None, true, true));
            }
        }
    } else if let Some(decrypt) = input.downcast_ref::<aws_sdk_kms::operation::decrypt::DecryptInput>() {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        decrypt.ciphertext_blob().map(|b| b.as_ref()).hash(&mut hasher);
        plan.subject = Some(hasher.finish().to_string());
    } else if let Some(read) = input.downcast_ref::<aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueInput>() {
        plan.subject = read.secret_id().map(str::to_owned);
    } else if let Some(batch) = input.downcast_ref::<ddb::batch_get_item::BatchGetItemInput>() {
        plan.consistent_read = batch
            .request_items()
            .into_iter()
            .flat_map(|m| m.values())
            .any(|k| k.consistent_read().unwrap_or(false));
    } else if let Some(get) = input.downcast_ref::<ddb::get_item::GetItemInput>() {
        plan.consistent_read = get.consistent_read().unwrap_or(false);
    } else if let Some(query) = input.downcast_ref::<ddb::query::QueryInput>() {
        plan.consistent_read = query.consistent_read().unwrap_or(false);
    } else if input.downcast_ref::<ddb::transact_get_items::TransactGetItemsInput>().is_some() {
        plan.transactional_read = true;
    }
    plan
}

/// What a write costs and where its index entries go, given what the item was before.
struct Effects {
    base: Vec<(String, f64)>,
    index: Vec<String>,
    old_index: u64,
    sizes: Vec<usize>,
}

fn effects(state: &State, writes: &[ItemWrite]) -> Effects {
    let mut out = Effects {
        base: Vec::new(),
        index: Vec::new(),
        old_index: 0,
        sizes: Vec::new(),
    };
    for w in writes {
        let before = state.shadow.get(&(w.pk.clone(), w.sk.clone()));
        let new_size = w.item.as_ref().map(item_size);
        let size = new_size
            .unwrap_or(0)
            .max(before.map(|b| b.size).unwrap_or(0))
            .max(1);
        let mut units = size.div_ceil(1024) as f64;
        if w.transactional {
            units *= 2.0;
        }
        out.base.push((w.pk.clone(), units));
        if let Some(size) = new_size {
            out.sizes.push(size);
        }
        if w.is_update {
            continue;
        }
        let old_due = before.and_then(|b| b.due_partition.clone().zip(b.due_sort.clone()));
        let new_due = w
            .item
            .as_ref()
            .and_then(|item| string_of(item, "due_shard").zip(string_of(item, "due_at")));
        // The keys-only index is written when its keys change: a delete of the old entry and a
        // put of the new one.
        if old_due != new_due {
            if let Some((partition, _)) = &old_due {
                out.index.push(partition.clone());
            }
            if let Some((partition, _)) = &new_due {
                out.index.push(partition.clone());
            }
        }
        // The old index projected the document: every write of an item in it wrote it, and a
        // due-time change wrote it twice.
        let was_due = old_due.is_some();
        let is_due = new_due.is_some();
        out.old_index += match (was_due, is_due) {
            (false, false) => 0,
            (true, true) if old_due != new_due => 2,
            _ => 1,
        };
    }
    out
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "SimulationTraffic"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let metadata = cfg.load::<Metadata>().ok_or("no operation metadata")?;
        let plan = plan(metadata, context.input());
        cfg.interceptor_state().store_put(plan);
        Ok(())
    }

    // Once per attempt: a retried request is another request to AWS, and another chance to be
    // throttled.
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let plan = cfg.load::<Plan>().ok_or("no plan")?.clone();
        if self.process == SEEDER {
            cfg.interceptor_state().store_put(Throttled(false));
            return Ok(());
        }
        let traffic = &self.traffic;
        let mut state = traffic.lock();
        let effects = effects(&state, &plan.writes);
        let is_kms = plan.operation.starts_with("KMS:");
        let is_secret_read = plan.operation == "Secrets Manager:GetSecretValue";
        let mut throttle = false;
        if let Some((shape, _)) = &traffic.throttle {
            traffic.bucket(&mut state);
            let used = |state: &State, partition: &str| -> f64 {
                state
                    .buckets
                    .iter()
                    .map(|b| b.partition_units.get(partition).copied().unwrap_or(0.0))
                    .sum()
            };
            let partition_budget = traffic.allowance(&state, limits::PARTITION_WCU_PER_SECOND);
            let mut touched: Vec<(String, f64)> = effects.base.clone();
            match shape {
                Shape::Sharded => {
                    touched.extend(effects.index.iter().map(|p| (format!("index:{p}"), 1.0)))
                }
                Shape::SingleDuePartition if effects.old_index > 0 => {
                    touched.push(("index:DUE".into(), effects.old_index as f64))
                }
                Shape::SingleDuePartition => {}
            }
            throttle = touched
                .iter()
                .any(|(partition, units)| used(&state, partition) + units > partition_budget);
            if is_kms {
                let used: f64 = state.buckets.iter().map(|b| b.kms_calls).sum();
                throttle |= used + 1.0 > traffic.allowance(&state, limits::KMS_CALLS_PER_SECOND);
            }
            if is_secret_read {
                let used: f64 = state.buckets.iter().map(|b| b.secrets_calls).sum();
                throttle |=
                    used + 1.0 > traffic.allowance(&state, limits::SECRETS_CALLS_PER_SECOND);
            }
            if !throttle {
                let bucket = traffic.bucket(&mut state);
                for (partition, units) in &touched {
                    *bucket.partition_units.entry(partition.clone()).or_default() += units;
                }
                if is_kms {
                    bucket.kms_calls += 1.0;
                }
                if is_secret_read {
                    bucket.secrets_calls += 1.0;
                }
            }
        }
        cfg.interceptor_state().store_put(Throttled(throttle));
        if throttle {
            *state.throttled.entry(plan.operation.clone()).or_default() += 1;
            drop(state);
            let (_, answerer) = traffic.throttle.as_ref().expect("throttling is on");
            context
                .request_mut()
                .set_uri(answerer.as_str())
                .map_err(|e| format!("the answerer's address: {e}"))?;
            return Ok(());
        }
        *state.operations.entry(plan.operation.clone()).or_default() += 1;
        if is_kms {
            *state.kms_by_process.entry(self.process).or_default() += 1;
        }
        if plan.operation == "KMS:GenerateDataKey" {
            *state.data_keys_by_process.entry(self.process).or_default() += 1;
        }
        if let Some(subject) = &plan.subject {
            if plan.operation == "KMS:Decrypt" {
                let digest = subject.parse().unwrap_or(0);
                *state.decrypts.entry((self.process, digest)).or_default() += 1;
                let now = std::time::Instant::now();
                if let Some(last) = state.last_decrypt.insert((self.process, digest), now)
                    && now.duration_since(last) < KeyCacheLimits::default().max_age
                {
                    state.decrypts_repeated_within_cache_age += 1;
                }
            } else if is_secret_read {
                *state
                    .secret_reads
                    .entry((self.process, subject.clone()))
                    .or_default() += 1;
            }
        }
        for (partition, units) in &effects.base {
            *state.base_write_units.entry(partition.clone()).or_default() += units;
        }
        for partition in &effects.index {
            *state.index_writes.entry(partition.clone()).or_default() += 1;
        }
        state.old_index_writes += effects.old_index;
        state.written_item_bytes.extend(effects.sizes);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation as ddb;
        if cfg.load::<Throttled>().map(|t| t.0).unwrap_or(false) {
            return Ok(());
        }
        let Some(plan) = cfg.load::<Plan>().cloned() else {
            return Ok(());
        };
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        let mut state = self.traffic.lock();
        // A write that succeeded is what the items now are.
        if !plan.writes.is_empty() && context.response().status().is_success() {
            for w in &plan.writes {
                let key = (w.pk.clone(), w.sk.clone());
                match &w.item {
                    Some(item) => {
                        state.shadow.insert(
                            key,
                            Shadow {
                                size: item_size(item),
                                due_partition: string_of(item, "due_shard"),
                                due_sort: string_of(item, "due_at"),
                            },
                        );
                    }
                    None if !w.is_update => {
                        state.shadow.remove(&key);
                    }
                    None => {}
                }
            }
        }
        // Reads cost by what they returned: 4 KB units, half for an eventually consistent read,
        // twice for a transactional one (a query rounds its total, a get each item).
        let per_unit = if plan.transactional_read {
            2.0
        } else if plan.consistent_read {
            1.0
        } else {
            0.5
        };
        let units = |bytes: usize| bytes.max(1).div_ceil(4096) as f64 * per_unit;
        if let Some(get) = output.downcast_ref::<ddb::get_item::GetItemOutput>() {
            state.read_units += units(get.item().map(item_size).unwrap_or(1));
        } else if let Some(batch) = output.downcast_ref::<ddb::batch_get_item::BatchGetItemOutput>()
        {
            let total: f64 = batch
                .responses()
                .into_iter()
                .flat_map(|m| m.values())
                .flatten()
                .map(|item| units(item_size(item)))
                .sum();
            state.read_units += total;
        } else if let Some(query) = output.downcast_ref::<ddb::query::QueryOutput>() {
            state.read_units += units(query.items().iter().map(item_size).sum());
        } else if let Some(got) =
            output.downcast_ref::<ddb::transact_get_items::TransactGetItemsOutput>()
        {
            let total: f64 = got
                .responses()
                .iter()
                .map(|r| units(r.item().map(item_size).unwrap_or(1)))
                .sum();
            state.read_units += total;
        }
        Ok(())
    }
}

/// The loopback server that plays AWS's throttling answer, by the service the request was for
/// (its `X-Amz-Target`): DynamoDB's `ProvisionedThroughputExceededException`, KMS's and
/// Secrets Manager's `ThrottlingException`, all as HTTP 400 in the services' JSON protocol.
pub async fn start_answerer() -> String {
    use axum::http::{HeaderMap, StatusCode, header};
    async fn answer(
        headers: HeaderMap,
    ) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (content_type, kind) = if target.starts_with("DynamoDB_") {
            (
                "application/x-amz-json-1.0",
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            )
        } else {
            ("application/x-amz-json-1.1", "ThrottlingException")
        };
        let body = json!({"__type": kind, "message": "Rate exceeded (keyport-bench: the simulated AWS limit)"});
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, content_type)],
            body.to_string(),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the answerer");
    let addr = listener.local_addr().expect("its address");
    let app = axum::Router::new().fallback(answer);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the answerer serves")
    });
    format!("http://{addr}/")
}
