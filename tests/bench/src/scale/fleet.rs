//! The simulated installation: one table, key, secret prefix and SQS queue on moto, and the
//! processes that share them — each a Keyport of its own (its own clients, data-key cache,
//! sealing key and credential cache), as separate Lambda instances are. The scheduler runs the
//! refresher's scheduled handler on the template's schedule; the workers play SQS's event
//! source mapping (receive one message, invoke the worker's handler with the invocation's
//! deadline, delete what it did not report failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use chrono::{DateTime, Utc};
use keyport_shared::adapters::aws::{KmsDataKeys, SecretsManagerStore, SqsWorkQueue};
use keyport_shared::adapters::dynamodb::{DynamoStore, create_table};
use keyport_shared::adapters::outbound::{OutboundHttp, OutboundSettings};
use keyport_shared::config::Backends;
use keyport_shared::crypto::{EnvelopeCipher, KeyCacheLimits, SealingLimits};
use keyport_shared::domain::{ConnectionId, Owner, Subject, TokenSecrets};
use keyport_shared::oauth::{OAuthClient, OAuthSettings};
use keyport_shared::ports::TokenKey;
use keyport_shared::service::Keyport;
use secrecy::SecretString;
use serde_json::json;

use super::provider::{Provider, refresh_token};
use super::traffic::{Shape, Traffic};
use crate::common;

/// The template's refresh worker: its timeout (seconds) and memory.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(120);
pub const WORKER_MEMORY_GB: f64 = 0.25;
/// The template's schedule, `rate(1 minute)`.
pub const SCHEDULE: Duration = Duration::from_secs(60);

/// What one installation on moto is made of.
pub struct Installation {
    pub sdk: SdkConfig,
    pub table: String,
    pub key_id: String,
    pub prefix: String,
    pub queue_url: String,
}

impl Installation {
    pub async fn create(sdk: SdkConfig) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let table = format!("keyport-scale-{unique}");
        create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
            .await
            .expect("the table");
        let key_id = aws_sdk_kms::Client::new(&sdk)
            .create_key()
            .send()
            .await
            .expect("CreateKey")
            .key_metadata
            .expect("key metadata")
            .key_id;
        let queue_url = aws_sdk_sqs::Client::new(&sdk)
            .create_queue()
            .queue_name(format!("keyport-scale-{unique}"))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "720",
            )
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("a queue URL");
        Self {
            sdk,
            table,
            key_id,
            prefix: format!("keyport-scale/{unique}/"),
            queue_url,
        }
    }

    /// One process: a Keyport over this installation, its clients counted by `traffic` as
    /// process `id`. The old shape seals every value with a data key of its own and reads the
    /// client secret for every refresh, as Keyport did before the change.
    pub fn process(&self, traffic: Option<&Arc<Traffic>>, id: usize, shape: Shape) -> Arc<Keyport> {
        Arc::new(self.keyport(traffic, id, shape))
    }

    /// A process that hands work to the refresh workers through this installation's queue, as
    /// the template's refresher and workers do.
    fn queueing_process(&self, traffic: &Arc<Traffic>, id: usize, shape: Shape) -> Arc<Keyport> {
        let queue = SqsWorkQueue::new(self.sqs(Some(traffic), id), &self.queue_url);
        Arc::new(
            self.keyport(Some(traffic), id, shape)
                .with_work_queue(Arc::new(queue)),
        )
    }

    fn keyport(&self, traffic: Option<&Arc<Traffic>>, id: usize, shape: Shape) -> Keyport {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&self.sdk);
        let mut kms = aws_sdk_kms::config::Builder::from(&self.sdk);
        let mut secrets = aws_sdk_secretsmanager::config::Builder::from(&self.sdk);
        if let Some(traffic) = traffic {
            dynamodb.push_interceptor(SharedInterceptor::new(traffic.interceptor(id)));
            kms.push_interceptor(SharedInterceptor::new(traffic.interceptor(id)));
            secrets.push_interceptor(SharedInterceptor::new(traffic.interceptor(id)));
        }
        let old = shape == Shape::SingleDuePartition;
        let sealing = if old {
            SealingLimits {
                max_messages: 1,
                ..SealingLimits::default()
            }
        } else {
            SealingLimits::default()
        };
        let keys = Arc::new(KmsDataKeys::new(
            aws_sdk_kms::Client::from_conf(kms.build()),
            &self.key_id,
        ));
        let backends = Backends {
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
                &self.table,
            )),
            secrets: Arc::new(
                SecretsManagerStore::new(
                    aws_sdk_secretsmanager::Client::from_conf(secrets.build()),
                    &self.prefix,
                )
                .with_immediate_deletion(),
            ),
            cipher: Arc::new(EnvelopeCipher::with_sealing_limits(
                keys,
                KeyCacheLimits::default(),
                sealing,
            )),
        };
        let common = common::common_settings();
        let mut settings = common.keyport_settings().expect("the settings");
        if old {
            settings.credential_cache.max_age = Duration::ZERO;
        }
        let mut outbound = OutboundSettings::new(settings.url_policy);
        outbound.timeout = Duration::from_secs(common.provider_timeout_seconds);
        let oauth = OAuthClient::new(
            OutboundHttp::new(outbound).expect("the outbound client"),
            OAuthSettings {
                callback_url: "http://127.0.0.1:8080/oauth/callback"
                    .parse()
                    .expect("a URL"),
                allow_password_grant: false,
            },
        );
        Keyport::new(
            backends.store,
            backends.secrets,
            backends.cipher,
            oauth,
            settings,
        )
    }

    fn sqs(&self, traffic: Option<&Arc<Traffic>>, id: usize) -> aws_sdk_sqs::Client {
        let mut sqs = aws_sdk_sqs::config::Builder::from(&self.sdk);
        if let Some(traffic) = traffic {
            sqs.push_interceptor(SharedInterceptor::new(traffic.interceptor(id)));
        }
        aws_sdk_sqs::Client::from_conf(sqs.build())
    }
}

/// `count` connections to `provider`, created through the service.
pub async fn connections(
    keyport: &Keyport,
    provider: &Provider,
    count: usize,
) -> Vec<ConnectionId> {
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(
            common::create_connection(
                keyport,
                json!({
                    "name": format!("scale-{i:04}"), "provider": "custom",
                    "grant_type": "authorization_code",
                    "client_id": "keyport-scale", "client_secret": "scale-client-secret",
                    "authorization_url": format!("http://{}/authorize", provider.addr),
                    "token_url": provider.token_url(), "scopes": "api:read",
                    "invited_roles": ["bots"],
                }),
            )
            .await,
        );
    }
    // A new installation's first scheduled run indexes its connections' invitations while it
    // holds only connections; done here, before any token is written, because moto copies the
    // whole table for every transaction: indexing a table of 100,000 tokens took moto's CPU for
    // minutes and its memory past the machine's 24 GB.
    keyport
        .store
        .index_invitations()
        .await
        .expect("the invitations indexed");
    ids
}

/// Grant `grant`'s token: a user token of connection `grant % connections`.
pub fn token_key(ids: &[ConnectionId], grant: u32) -> TokenKey {
    TokenKey {
        connection_id: ids[grant as usize % ids.len()].clone(),
        owner: Owner::User(Subject::parse(&format!("user-{grant:07}")).expect("a subject")),
    }
}

/// Writes the tokens of `grants` through the store port, sealed by `keyport`'s cipher, each due
/// at `due(grant)` and expiring the refresh lead after it, with sixteen writers.
pub async fn seed(
    keyport: &Arc<Keyport>,
    ids: &[ConnectionId],
    grants: Vec<u32>,
    due: impl Fn(u32) -> DateTime<Utc> + Send + Sync + 'static,
    late: Arc<AtomicU64>,
) {
    let lead = chrono::Duration::from_std(keyport.settings.refresh_lead).expect("a lead");
    let grants = Arc::new(grants);
    let next = Arc::new(AtomicU64::new(0));
    let due = Arc::new(due);
    let ids = Arc::new(ids.to_vec());
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (keyport, grants, next, due, ids, late) = (
            keyport.clone(),
            grants.clone(),
            next.clone(),
            due.clone(),
            ids.clone(),
            late.clone(),
        );
        writers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&grant) = grants.get(index) else {
                    break;
                };
                let key = token_key(&ids, grant);
                let secrets = TokenSecrets {
                    access_token: SecretString::from(format!(
                        "at-{grant:07}-0000-fedcba9876543210fedcba9876543210"
                    )),
                    refresh_token: Some(SecretString::from(refresh_token(grant, 0))),
                    id_token: None,
                    extra: serde_json::Map::new(),
                };
                let due_at = due(grant);
                if due_at < Utc::now() {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                common::store_due_token(&keyport, &key, &secrets, due_at, due_at + lead).await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer finishes");
    }
}

/// What the fleet's Lambda invocations took.
#[derive(Debug, Default)]
pub struct Invocations {
    pub scheduler: AtomicU64,
    pub worker: AtomicU64,
    /// Worker invocation time, in milliseconds.
    pub worker_ms: AtomicU64,
    pub failed_messages: AtomicU64,
}

fn lambda_context(timeout: Duration) -> lambda_runtime::Context {
    let mut context = lambda_runtime::Context::default();
    context.deadline = (Utc::now() + chrono::Duration::from_std(timeout).expect("a timeout"))
        .timestamp_millis() as u64;
    context
}

/// The scheduler and `workers` workers, until `stop`.
pub async fn run_fleet(
    installation: Arc<Installation>,
    traffic: Arc<Traffic>,
    shape: Shape,
    workers: usize,
    concurrency: usize,
    stop: Arc<AtomicBool>,
    invocations: Arc<Invocations>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (installation, traffic, stop, invocations) = (
            installation.clone(),
            traffic.clone(),
            stop.clone(),
            invocations.clone(),
        );
        tasks.spawn(async move {
            let keyport = installation.queueing_process(&traffic, 1, shape);
            let mut schedule = tokio::time::interval(SCHEDULE);
            while !stop.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = schedule.tick() => {}
                    _ = wait_for(&stop) => break,
                }
                let payload: aws_lambda_events::eventbridge::EventBridgeEvent =
                    serde_json::from_value(json!({
                        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
                        "detail-type": "Scheduled Event", "source": "aws.events",
                        "account": "123456789012", "time": Utc::now().to_rfc3339(),
                        "region": "us-east-1", "resources": [], "detail": {}
                    }))
                    .expect("a scheduled event");
                let event = lambda_runtime::LambdaEvent::new(
                    payload,
                    lambda_context(Duration::from_secs(300)),
                );
                invocations.scheduler.fetch_add(1, Ordering::Relaxed);
                if let Err(error) =
                    keyport_shared::lambda::handle_scheduled_event(&keyport, event, concurrency)
                        .await
                {
                    tracing::warn!(%error, "a simulated scheduler run failed");
                }
            }
        });
    }
    for worker in 0..workers {
        let (installation, traffic, stop, invocations) = (
            installation.clone(),
            traffic.clone(),
            stop.clone(),
            invocations.clone(),
        );
        tasks.spawn(async move {
            let id = 2 + worker;
            let keyport = installation.queueing_process(&traffic, id, shape);
            let sqs = installation.sqs(Some(&traffic), id);
            while !stop.load(Ordering::SeqCst) {
                let received = match sqs
                    .receive_message()
                    .queue_url(&installation.queue_url)
                    .max_number_of_messages(1)
                    .wait_time_seconds(1)
                    .send()
                    .await
                {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "a simulated poll failed");
                        continue;
                    }
                };
                for message in received.messages() {
                    let payload: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(json!({
                        "Records": [{
                            "messageId": message.message_id(), "receiptHandle": message.receipt_handle(),
                            "body": message.body(), "attributes": {}, "messageAttributes": {},
                            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:keyport-refresh-work",
                            "awsRegion": "us-east-1"
                        }]
                    }))
                    .expect("an SQS event");
                    let event = lambda_runtime::LambdaEvent::new(payload, lambda_context(WORKER_TIMEOUT));
                    let started = Instant::now();
                    let response = keyport_shared::lambda::handle_refresh_work(&keyport, event, concurrency).await;
                    invocations.worker.fetch_add(1, Ordering::Relaxed);
                    invocations
                        .worker_ms
                        .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    if response.batch_item_failures.is_empty() {
                        let _ = sqs
                            .delete_message()
                            .queue_url(&installation.queue_url)
                            .receipt_handle(message.receipt_handle().unwrap_or_default())
                            .send()
                            .await;
                    } else {
                        invocations.failed_messages.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a fleet task ends");
    }
}

async fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
