//! The `scale` section (issue 14): the AWS shape driven on moto by the real scheduler, worker
//! and store code over at least 100,000 tokens, against a provider that answers after 200 ms
//! and rotates refresh tokens with reuse detection; every AWS request counted by operation,
//! partition key and item size (`traffic.rs`), and the figures — index hot spots, write units,
//! KMS and Secrets Manager calls, worker throughput, lost grants, cost — computed from those
//! counts. A second run holds the same workload to AWS's limits, once on today's sharded index
//! and once on the old single `DUE` partition.

pub mod cost;
pub mod fleet;
pub mod provider;
pub mod table;
pub mod traffic;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyport_shared::adapters::records::due_shard_of;
use keyport_shared::domain::{ConnectionId, TokenStatus};
use keyport_shared::service::{Keyport, OwnerRequest};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use fleet::{Installation, Invocations};
use keyport_tests::moto::Moto;
use provider::Provider;
use traffic::{Shape, Traffic};

use crate::common;

/// The provider's answer time.
pub const LATENCY: Duration = Duration::from_millis(200);
/// Connections the tokens are spread over (user tokens, as most of the target load is).
pub const CONNECTIONS: usize = 200;
/// The template's defaults: RefreshWorkers and RefreshWorkerConcurrency.
pub const TEMPLATE_WORKERS: usize = 16;
pub const TEMPLATE_CONCURRENCY: usize = 64;
/// Due shards written (KEYPORT_DUE_SHARDS' default).
pub const SHARDS: u32 = 16;

/// One run of the fleet.
#[derive(Debug, Clone, Copy)]
pub struct RunPlan {
    pub name: &'static str,
    pub tokens: u32,
    /// The tokens come due evenly over this long from the start.
    pub spread: Duration,
    pub shape: Shape,
    pub throttle: bool,
    pub workers: usize,
    pub concurrency: usize,
}

fn tokens_setting(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn measure() -> Value {
    let moto = Moto::get();
    let main_tokens = tokens_setting("KEYPORT_BENCH_SCALE_TOKENS", 100_000);
    let limited_tokens = tokens_setting("KEYPORT_BENCH_SCALE_LIMITED_TOKENS", 10_000);
    // Due times spread so the refreshes asked for per second stay within what moto on this
    // machine serves (50–90 refreshes a second, less while other work shares the two cores);
    // the lead absorbs short bursts, not a sustained excess.
    let main_rate = tokens_setting("KEYPORT_BENCH_SCALE_RATE", 60).max(1);
    let rate = |tokens: u32, per_second: u32| {
        let seconds = (u64::from(tokens) / u64::from(per_second)).max(60);
        (tokens, Duration::from_secs(seconds))
    };
    let (main_n, main_spread) = rate(main_tokens, main_rate);
    let (limited_n, limited_spread) = rate(limited_tokens, 80);
    let plans = [
        RunPlan {
            name: "sharded",
            tokens: main_n,
            spread: main_spread,
            shape: Shape::Sharded,
            throttle: false,
            workers: SHARDS as usize + 1,
            concurrency: 16,
        },
        RunPlan {
            name: "old_shape",
            tokens: limited_n,
            spread: limited_spread,
            shape: Shape::SingleDuePartition,
            throttle: false,
            workers: SHARDS as usize + 1,
            concurrency: 16,
        },
        RunPlan {
            name: "sharded_at_aws_limits",
            tokens: limited_n,
            spread: limited_spread,
            shape: Shape::Sharded,
            throttle: true,
            workers: SHARDS as usize + 1,
            concurrency: 16,
        },
        RunPlan {
            name: "old_shape_at_aws_limits",
            tokens: limited_n,
            spread: limited_spread,
            shape: Shape::SingleDuePartition,
            throttle: true,
            workers: SHARDS as usize + 1,
            concurrency: 16,
        },
    ];
    let mut runs = serde_json::Map::new();
    for plan in plans {
        println!(
            "   scale: {} ({} tokens over {} s) ...",
            plan.name,
            plan.tokens,
            plan.spread.as_secs()
        );
        runs.insert(plan.name.into(), run(moto, plan).await);
    }
    println!("   scale: one worker invocation ...");
    let throughput = worker_throughput(moto).await;
    let costs = cost::compare(&runs);
    json!({
        "what": "the fanned-out refresher (scheduler, SQS, workers) over moto, every AWS request counted by an SDK interceptor",
        "provider_latency_ms": LATENCY.as_millis() as u64,
        "connections": CONNECTIONS,
        "due_shards": SHARDS,
        "runs": runs,
        "worker_throughput": throughput,
        "cost": costs,
    })
}

/// Seeds, runs the fleet until every grant was refreshed (or the plan's time is out), then
/// checks every grant against the provider and reads a sample of tokens on a fresh process.
async fn run(moto: &Moto, plan: RunPlan) -> Value {
    let installation = Arc::new(Installation::create(moto.sdk_config()).await);
    let provider = Provider::start(LATENCY, plan.tokens).await;
    let answerer = if plan.throttle {
        Some((plan.shape, traffic::start_answerer().await))
    } else {
        None
    };
    let traffic = Traffic::new(provider.refreshes.clone(), answerer);
    let seeder = installation.process(Some(&traffic), traffic::SEEDER, plan.shape);
    let ids = fleet::connections(&seeder, &provider, CONNECTIONS).await;
    // The tokens are written first, due from a start far enough ahead that all are stored by
    // then (`seeded_after_due` counts any that were not), the fleet started once they are: a
    // fleet running during the writes starves the writer on this machine's emulator.
    let seed_estimate = chrono::Duration::seconds(i64::from(plan.tokens) / 150 + 10);
    let start = Utc::now() + seed_estimate;
    let spread_ms = plan.spread.as_millis() as i64;
    let n = i64::from(plan.tokens);
    let lead = chrono::Duration::from_std(seeder.settings.refresh_lead).expect("a lead");
    let due =
        move |grant: u32| start + chrono::Duration::milliseconds(spread_ms * i64::from(grant) / n);
    let expiry = move |grant: u32| due(grant) + lead;
    let seeding = Instant::now();
    let grants: Vec<u32> = (0..plan.tokens).collect();
    let late = Arc::new(std::sync::atomic::AtomicU64::new(0));
    fleet::seed(&seeder, &ids, grants, due, late.clone()).await;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    let invocations = Arc::new(Invocations::default());
    let began = Instant::now();
    let fleet = tokio::spawn(fleet::run_fleet(
        installation.clone(),
        traffic.clone(),
        plan.shape,
        plan.workers,
        plan.concurrency,
        stop.clone(),
        invocations.clone(),
    ));
    let ahead = (start - Utc::now()).to_std().unwrap_or_default();
    // Until the provider has refreshed every grant once, or the last token would have expired
    // a schedule period ago.
    let give_up = ahead + plan.spread + seeder.settings.refresh_lead + fleet::SCHEDULE;
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    loop {
        progress.tick().await;
        let refreshed = provider.refreshes.load(Ordering::SeqCst);
        if refreshed >= u64::from(plan.tokens) || began.elapsed() > give_up {
            break;
        }
        // A long run says how far it is, so one that falls behind is seen before it ends.
        ticks += 1;
        if ticks.is_multiple_of(60) {
            let should_be = plan.tokens as f64
                * ((Utc::now() - start).num_milliseconds() as f64 / spread_ms as f64)
                    .clamp(0.0, 1.0);
            println!(
                "     {} s: {refreshed} of {} refreshed ({} due by now)",
                began.elapsed().as_secs(),
                plan.tokens,
                should_be as u64
            );
        }
    }
    let run_seconds = began.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    fleet.await.expect("the fleet stops");

    // Every grant: refreshed before its token expired, and Keyport holding the refresh token
    // the provider last issued (else the grant is lost).
    let grants = provider.grants();
    let checker = installation.process(None, 99, plan.shape);
    let held = held_generations(&checker, &ids).await;
    let mut expired_first = 0u64;
    let mut never_refreshed = 0u64;
    let mut lost = 0u64;
    let mut needs_reauthorization = 0u64;
    for grant in 0..plan.tokens {
        let at_provider = &grants[&grant];
        match at_provider.first_refreshed_at {
            None => never_refreshed += 1,
            Some(at) if at > expiry(grant) => expired_first += 1,
            Some(_) => {}
        }
        match held.get(&grant) {
            Some((generation, status)) => {
                if *generation != at_provider.generation {
                    lost += 1;
                }
                if *status == TokenStatus::NeedsReauthorization {
                    needs_reauthorization += 1;
                }
            }
            None => lost += 1,
        }
    }
    let reads = reads(&installation, &ids, plan, provider.refreshes.clone()).await;
    let counts = traffic.summary();
    let refreshes = provider.refreshes.load(Ordering::SeqCst);
    let per_thousand = |calls: f64| calls * 1000.0 / refreshes.max(1) as f64;
    let op = |name: &str| traffic.operation_count(name) as f64;
    let kms_calls = op("KMS:GenerateDataKey") + op("KMS:Decrypt") + op("KMS:Encrypt");
    let index_total = counts["index_writes_total"].as_f64().unwrap_or(0.0);
    let old_index = counts["old_shape_index_writes"].as_f64().unwrap_or(0.0);
    let base_units = counts["base_write_units_total"].as_f64().unwrap_or(0.0);
    let index_units = match plan.shape {
        Shape::Sharded => index_total,
        Shape::SingleDuePartition => old_index,
    };
    let processes = plan.workers + 1;
    json!({
        "plan": {
            "tokens": plan.tokens, "spread_seconds": plan.spread.as_secs(),
            "shape": format!("{:?}", plan.shape), "throttled_at_aws_limits": plan.throttle,
            "workers": plan.workers, "worker_concurrency": plan.concurrency,
            "schedule_seconds": fleet::SCHEDULE.as_secs(),
        },
        "seed_seconds": round(seed_seconds, 1),
        "seeded_after_due": late.load(Ordering::SeqCst),
        "run_seconds": round(run_seconds, 1),
        "refreshes": refreshes,
        "refreshes_per_second": round(refreshes as f64 / run_seconds, 1),
        "provider_requests": provider.requests.load(Ordering::SeqCst),
        "refresh_tokens_presented_twice": provider.presented_twice(),
        "reuse_detected": provider.reuses.load(Ordering::SeqCst),
        "refreshed_after_expiry": expired_first,
        "never_refreshed": never_refreshed,
        "grants_lost": lost,
        "needs_reauthorization": needs_reauthorization,
        "hottest_index_share": counts["hottest_index_share"],
        "hottest_index_share_target_max": 1.2 / f64::from(SHARDS),
        "index_writes_per_refresh": round(index_total / refreshes.max(1) as f64, 3),
        "old_shape_index_writes_per_refresh": round(old_index / refreshes.max(1) as f64, 3),
        "write_units_per_refresh": round((base_units + index_units) / refreshes.max(1) as f64, 3),
        "kms_calls_per_1000_refreshes": round(per_thousand(kms_calls), 2),
        "kms_calls_per_process_max": counts["kms_calls_by_process"].as_object().and_then(|m| m.values().filter_map(Value::as_u64).max()),
        "processes": processes,
        "data_keys_generated_per_process_max": counts["data_keys_generated_per_process_max"],
        "decrypts_of_one_data_key_per_process_max": counts["decrypts_of_one_data_key_per_process_max"],
        "decrypts_repeated_within_cache_age": counts["decrypts_repeated_within_cache_age"],
        "key_cache_age_seconds": counts["key_cache_age_seconds"],
        "secret_reads_of_one_connection_per_process_max": counts["secret_reads_of_one_connection_per_process_max"],
        "cache_lifetimes_in_run": round(run_seconds / 300.0, 2),
        "secrets_manager_calls_per_1000_refreshes": round(per_thousand(op("Secrets Manager:GetSecretValue")), 2),
        "sqs_calls_per_1000_refreshes": round(per_thousand(op("SQS:SendMessageBatch") + op("SQS:ReceiveMessage") + op("SQS:DeleteMessage")), 2),
        "scheduler_invocations": invocations.scheduler.load(Ordering::Relaxed),
        "worker_invocations": invocations.worker.load(Ordering::Relaxed),
        "worker_seconds": invocations.worker_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        "failed_messages": invocations.failed_messages.load(Ordering::Relaxed),
        "traffic": counts,
        "reads": reads,
    })
}

/// The refresh-token generation and status Keyport holds for every grant.
async fn held_generations(
    checker: &Keyport,
    ids: &[ConnectionId],
) -> HashMap<u32, (u32, TokenStatus)> {
    let mut held = HashMap::new();
    for id in ids {
        for token in checker.store.list_tokens(id).await.expect("the tokens") {
            let key = keyport_shared::ports::TokenKey {
                connection_id: token.connection_id.clone(),
                owner: token.owner.clone(),
            };
            let secrets = checker
                .cipher
                .open_token(&key, &token.sealed)
                .await
                .expect("it opens");
            let Some((grant, generation)) = secrets
                .refresh_token
                .as_ref()
                .and_then(|t| parse_refresh_token(t.expose_secret()))
            else {
                continue;
            };
            held.insert(grant, (generation, token.status));
        }
    }
    held
}

fn parse_refresh_token(token: &str) -> Option<(u32, u32)> {
    let mut parts = token.strip_prefix("rt-")?.split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Warm token reads on a process that has not read these tokens since their last refresh
/// (the common case for hourly tokens read by many Lambda instances): requests per read.
async fn reads(
    installation: &Installation,
    ids: &[ConnectionId],
    plan: RunPlan,
    refreshes: Arc<std::sync::atomic::AtomicU64>,
) -> Value {
    let sample = plan.tokens.min(2_000);
    let traffic = Traffic::new(refreshes, None);
    let reader = installation.process(Some(&traffic), 100, plan.shape);
    let mut served = 0u64;
    for grant in 0..sample {
        let key = fleet::token_key(ids, grant);
        let principal = common::principal(&format!("user-{grant:07}"), &["bots"]);
        if reader
            .access_token(&principal, &key.connection_id, OwnerRequest::User, None)
            .await
            .is_ok()
        {
            served += 1;
        }
    }
    let counts = traffic.summary();
    let op = |name: &str| traffic.operation_count(name) as f64;
    let dynamodb: f64 = counts["operations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("DynamoDB:"))
                .filter_map(|(_, v)| v.as_f64())
                .sum()
        })
        .unwrap_or(0.0);
    let per = |x: f64| round(x / f64::from(sample.max(1)), 4);
    json!({
        "reads": sample,
        "served": served,
        "dynamodb_requests_per_read": per(dynamodb),
        "read_units_per_read": per(counts["read_units_total"].as_f64().unwrap_or(0.0)),
        "write_units_per_read": per(counts["base_write_units_total"].as_f64().unwrap_or(0.0)),
        "kms_calls_per_read": per(op("KMS:Decrypt") + op("KMS:GenerateDataKey")),
        "operations": counts["operations"],
    })
}

/// One worker invocation's refresh rate at 200 ms against its concurrency / latency: one
/// shard's due tokens, one message, at the template's concurrency and at a quarter of it.
async fn worker_throughput(moto: &Moto) -> Value {
    let mut out = Vec::new();
    for (concurrency, tokens) in [
        (4, 400u32),
        (TEMPLATE_CONCURRENCY / 4, 1_500),
        (TEMPLATE_CONCURRENCY, 3_000),
    ] {
        let installation = Installation::create(moto.sdk_config()).await;
        // Grants numbered so that the first `tokens` of them hash to shard 0.
        let provider_grants = tokens * SHARDS * 2;
        let provider = Provider::start(LATENCY, provider_grants).await;
        let seeding = Traffic::new(provider.refreshes.clone(), None);
        let keyport = installation.process(Some(&seeding), 0, Shape::Sharded);
        let ids = fleet::connections(&keyport, &provider, 20).await;
        let in_shard: Vec<u32> = (0..provider_grants)
            .filter(|grant| due_shard_of(&fleet::token_key(&ids, *grant), SHARDS) == 0)
            .take(tokens as usize)
            .collect();
        let due: DateTime<Utc> = Utc::now() - chrono::Duration::seconds(1);
        fleet::seed(&keyport, &ids, in_shard, move |_| due, Arc::default()).await;
        let counted = Traffic::new(provider.refreshes.clone(), None);
        let worker = installation.process(Some(&counted), 1, Shape::Sharded);
        // The message a scheduled run queues: everything due up to now, in every shard.
        let body = keyport_shared::service::RefreshWork::Span(keyport_shared::service::DueSpan {
            due_after: None,
            due_by: Utc::now(),
        })
        .body();
        let payload: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(json!({
            "Records": [{"messageId": "m-0", "receiptHandle": "r-0", "body": body,
                         "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}]
        }))
        .expect("an SQS event");
        let mut context = lambda_runtime::Context::default();
        context.deadline = (Utc::now()
            + chrono::Duration::from_std(fleet::WORKER_TIMEOUT).expect("a timeout"))
        .timestamp_millis() as u64;
        let before = provider.refreshes.load(Ordering::SeqCst);
        let started = Instant::now();
        let response = keyport_shared::lambda::handle_refresh_work(
            &worker,
            lambda_runtime::LambdaEvent::new(payload, context),
            concurrency,
        )
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let refreshed = provider.refreshes.load(Ordering::SeqCst) - before;
        let ideal = concurrency as f64 / LATENCY.as_secs_f64();
        let rate = refreshed as f64 / seconds;
        let dynamodb_requests: u64 = counted.summary()["operations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("DynamoDB:"))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0);
        let moto_seconds = moto_floor(&installation, dynamodb_requests, concurrency).await;
        let moto_rate = refreshed as f64 / moto_seconds;
        // A refresh cannot take less than the provider's latency plus its own requests, each
        // at least as slow as one GetItem alone on this machine's emulator.
        let sample = dynamodb_requests.min(1_000);
        let request_alone = moto_floor(&installation, sample, 1).await / sample.max(1) as f64;
        let requests_per_refresh = dynamodb_requests as f64 / refreshed.max(1) as f64;
        let serial_rate =
            concurrency as f64 / (LATENCY.as_secs_f64() + requests_per_refresh * request_alone);
        let bound = ideal.min(moto_rate).min(serial_rate);
        out.push(json!({
            "concurrency": concurrency,
            "due_tokens": tokens,
            "refreshed": refreshed,
            "failed_messages": response.batch_item_failures.len(),
            "seconds": round(seconds, 2),
            "refreshes_per_second": round(rate, 1),
            "concurrency_over_latency": ideal,
            "ratio": round(rate / ideal, 3),
            "dynamodb_requests": dynamodb_requests,
            "moto_seconds_for_the_same_requests": round(moto_seconds, 2),
            "moto_bound_refreshes_per_second": round(moto_rate, 1),
            "moto_request_alone_ms": round(request_alone * 1000.0, 2),
            "latency_plus_own_requests_bound_refreshes_per_second": round(serial_rate, 1),
            "ratio_to_the_lower_bound": round(rate / bound, 3),
            "target_ratio_min": 0.9,
            "workers_for_2800_per_second": (2_800.0 / rate).ceil(),
        }));
    }
    Value::Array(out)
}

/// moto's own time for `requests` DynamoDB requests at `concurrency` (GetItem of a token-sized
/// item, no provider, no Keyport): what this machine's emulator allows a worker at most.
async fn moto_floor(installation: &Installation, requests: u64, concurrency: usize) -> f64 {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = aws_sdk_dynamodb::Client::new(&installation.sdk);
    let key = |name: &str| AttributeValue::S(name.into());
    client
        .put_item()
        .table_name(&installation.table)
        .item("pk", key("FLOOR"))
        .item("sk", key("FLOOR"))
        .item("doc", AttributeValue::S("x".repeat(1200)))
        .send()
        .await
        .expect("the floor item");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, table) = (client.clone(), next.clone(), installation.table.clone());
        clients.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                client
                    .get_item()
                    .table_name(&table)
                    .key("pk", AttributeValue::S("FLOOR".into()))
                    .key("sk", AttributeValue::S("FLOOR".into()))
                    .send()
                    .await
                    .expect("GetItem");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("a floor client");
    }
    started.elapsed().as_secs_f64()
}

pub fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}
