//! The Lambda entry points: each function's `main` calls one of these.
//!
//! Settings are read and checked before the runtime asks for its first event, so a missing or
//! malformed variable still fails the init phase. The clients (AWS SDK configuration, DynamoDB,
//! KMS, Secrets Manager, the outbound HTTPS client) and the router are built on the first event
//! instead, once per process ([`OnceCell`]); every later invocation reuses them, with the
//! data-key cache. Building them loads and parses the trust anchors of two TLS stacks, which
//! took most of a cold start: deferred, the process asks for its first event as soon as a bare
//! `lambda_http` function does (`scripts/bench`, item 5).
//!
//! The trade-off: Lambda runs the init phase with a CPU burst beyond the memory size's share
//! and limits it separately (10 s), while the first invocation runs at the configured share
//! (256 MB is a fraction of a vCPU), inside the invocation's timeout and billed as it. So the
//! first request of each new process pays the client construction (a few milliseconds of CPU,
//! more at that share) instead of the init phase; with SnapStart or provisioned concurrency, the
//! work would better be in the init phase. No warm invocation pays anything but an atomic load.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use clap::{Args, Parser};
use lambda_http::{RequestExt, Service};
use lambda_runtime::LambdaEvent;
use tokio::sync::OnceCell;
use url::Url;

use crate::adapters::aws::{CallRecorder, SecretsManagerSecret};
use crate::config::{self, AwsSettings, CommonSettings, ConsoleSignInSettings};
use crate::http::console::{self, Console, SignInMethods};
use crate::http::{self, ApiGatewayAuthorizer, Function};
use crate::service::{Keyport, RefreshReport, RefreshWork};

pub type Error = lambda_runtime::Error;

/// A Lambda function's settings: environment variables only.
#[derive(Parser, Debug)]
struct LambdaSettings {
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    aws: AwsSettings,
    /// How many tokens the refresher (or one worker) refreshes at once.
    #[arg(long, env = "KEYPORT_REFRESH_CONCURRENCY", default_value_t = 16)]
    refresh_concurrency: usize,
    /// The refresh workers' queue: the refresher hands it the due shards and the deleted
    /// connections, a connection delete its connection, a worker the rest of a deletion it
    /// could not finish. Without it the refresher does all of that itself.
    #[arg(long, env = "KEYPORT_REFRESH_QUEUE_URL")]
    refresh_queue_url: Option<String>,
    /// The EventBridge bus notifications go on (the refresher delivers them; the template sets
    /// it there).
    #[arg(long, env = "KEYPORT_EVENT_BUS")]
    event_bus: Option<String>,
    /// The console's sign-in (read by the console function only).
    #[command(flatten)]
    console: ConsoleFunctionSettings,
}

/// How the console function signs people in: OpenID Connect with the installation's identity
/// provider, nothing else (the one-time links are the local server's). The client secret is
/// read from Secrets Manager (`KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN`, the template's way: the
/// value is in no environment variable, where anyone allowed to read the function's
/// configuration would see it) or, failing that, taken from
/// `KEYPORT_CONSOLE_OIDC_CLIENT_SECRET`.
#[derive(Args, Debug, Clone, Default)]
pub struct ConsoleFunctionSettings {
    #[command(flatten)]
    pub sign_in: ConsoleSignInSettings,
    /// The Secrets Manager secret (ARN or name) that holds the console's client secret at the
    /// identity provider; read on the first sign-in of each process.
    #[arg(
        long = "console-oidc-client-secret-arn",
        env = "KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN"
    )]
    pub client_secret_arn: Option<String>,
}

impl ConsoleFunctionSettings {
    /// Whether the settings describe a usable sign-in: an issuer, a client id and one client
    /// secret.
    pub fn check(&self) -> Result<(), String> {
        let sign_in = &self.sign_in;
        if sign_in.console_oidc_issuer.is_none() || sign_in.console_oidc_client_id.is_none() {
            return Err("the console function needs KEYPORT_CONSOLE_OIDC_ISSUER and KEYPORT_CONSOLE_OIDC_CLIENT_ID: on AWS people sign in through the identity provider".into());
        }
        match (&self.client_secret_arn, &sign_in.console_oidc_client_secret) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err("the console function needs one of KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN and KEYPORT_CONSOLE_OIDC_CLIENT_SECRET".into()),
        }
    }

    /// The console as its function assembles it over `keyport`: at the origin of the callback
    /// URL, signing people in through the identity provider, the client secret read with
    /// `sdk`'s Secrets Manager client (with `recorder` attached when given) when an ARN is set.
    pub fn console(
        &self,
        keyport: Arc<Keyport>,
        common: &CommonSettings,
        callback_url: &Url,
        sdk: &aws_config::SdkConfig,
        recorder: Option<&CallRecorder>,
    ) -> Result<Arc<Console>, String> {
        self.check()?;
        let stored = self.client_secret_arn.as_ref().map(|arn| {
            let mut client = aws_sdk_secretsmanager::config::Builder::from(sdk);
            if let Some(recorder) = recorder {
                client.push_interceptor(
                    aws_smithy_runtime_api::client::interceptors::SharedInterceptor::new(
                        recorder.clone(),
                    ),
                );
            }
            Arc::new(SecretsManagerSecret::new(
                aws_sdk_secretsmanager::Client::from_conf(client.build()),
                arn,
            )) as Arc<dyn crate::ports::InstallationSecret>
        });
        let oidc = self
            .sign_in
            .oidc_with_secret(&keyport, common, callback_url, stored)?;
        let sign_in = SignInMethods {
            oidc,
            tickets: None,
        };
        Ok(Arc::new(Console::new(keyport, callback_url, sign_in)))
    }
}

/// A function's checked settings: read at init.
struct Init {
    settings: LambdaSettings,
    callback_url: Url,
}

impl Init {
    /// Logging on, settings read and checked: everything but the clients.
    fn read() -> Result<Self, Error> {
        config::init_logging();
        let settings = LambdaSettings::try_parse_from(["keyport"])?;
        let callback_url = settings
            .common
            .callback_url
            .clone()
            .ok_or("KEYPORT_CALLBACK_URL is required")?;
        settings.common.keyport_settings()?;
        settings.aws.table_and_key()?;
        Ok(Self {
            settings,
            callback_url,
        })
    }

    /// The clients and use cases: on the first event, once per process.
    async fn keyport(&self) -> Result<Arc<Keyport>, Error> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        self.keyport_over(&sdk)
    }

    /// [`Self::keyport`] over an AWS configuration already loaded.
    fn keyport_over(&self, sdk: &aws_config::SdkConfig) -> Result<Arc<Keyport>, Error> {
        let backends = config::aws_backends_with(&self.settings.aws, sdk, None)?;
        let mut keyport =
            config::keyport(backends, &self.settings.common, self.callback_url.clone())?;
        if let Some(url) = &self.settings.refresh_queue_url {
            keyport = keyport.with_work_queue(config::sqs_work_queue(url, sdk, None));
        }
        if let Some(bus) = &self.settings.event_bus {
            keyport = keyport.with_event_bus(config::event_bridge_bus(bus, sdk, None));
        }
        Ok(Arc::new(keyport))
    }
}

/// Serves `functions`' routes behind the API Gateway HTTP API.
pub async fn run_http_function(functions: &[Function]) -> Result<(), Error> {
    let init = Arc::new(Init::read()?);
    let functions = Arc::new(functions.to_vec());
    serve_router(init, move |init| {
        let functions = functions.clone();
        async move {
            let authenticator = Arc::new(ApiGatewayAuthorizer {
                roles_claim: init.settings.common.roles_claim.clone(),
            });
            Ok(http::router(
                init.keyport().await?,
                authenticator,
                &functions,
            ))
        }
    })
    .await
}

/// Serves the console (`/console` and everything under it) behind the API Gateway HTTP API,
/// without its JWT authorizer: the console's own session cookie says who is calling.
pub async fn run_console_function() -> Result<(), Error> {
    let init = Arc::new(Init::read()?);
    init.settings.console.check()?;
    serve_router(init, |init| async move {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let keyport = init.keyport_over(&sdk)?;
        let console = init.settings.console.console(
            keyport,
            &init.settings.common,
            &init.callback_url,
            &sdk,
            None,
        )?;
        Ok(console::router(console))
    })
    .await
}

/// Answers each API Gateway event with the router `build` makes on the first one (once per
/// process), within the invocation's deadline.
async fn serve_router<B, F>(init: Arc<Init>, build: B) -> Result<(), Error>
where
    B: Fn(Arc<Init>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<axum::Router, Error>> + Send,
{
    let build = Arc::new(build);
    let router = Arc::new(OnceCell::new());
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| {
            let (init, build, router) = (init.clone(), build.clone(), router.clone());
            async move {
                let router: &axum::Router = router.get_or_try_init(|| build(init.clone())).await?;
                // No provider call may start that the invocation could not wait for.
                let deadline = invocation_deadline(
                    request.lambda_context_ref().map(|context| context.deadline),
                );
                // A router is always ready; cloning one clones a reference.
                let answer = router.clone().call(request);
                Ok::<_, Error>(match deadline {
                    Some(deadline) => crate::service::deadline::within(deadline, answer).await?,
                    None => answer.await?,
                })
            }
        },
    ))
    .await
}

/// The invocation's deadline (epoch milliseconds, from the runtime) as an instant of this
/// process's clock.
fn invocation_deadline(deadline_ms: Option<u64>) -> Option<tokio::time::Instant> {
    let deadline_ms = deadline_ms.filter(|ms| *ms > 0)?;
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    Some(tokio::time::Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// Serves the scheduled refresher.
pub async fn run_refresher() -> Result<(), Error> {
    let init = Arc::new(Init::read()?);
    let keyport = Arc::new(OnceCell::new());
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<EventBridgeEvent>| {
            let (init, keyport) = (init.clone(), keyport.clone());
            async move {
                let keyport = keyport.get_or_try_init(|| init.keyport()).await?;
                handle_scheduled_event(keyport, event, init.settings.refresh_concurrency).await
            }
        },
    ))
    .await
}

/// One scheduled run: the upkeep, then the due tokens, handed to the workers through the
/// Keyport's work queue when it has one, or refreshed here; it stops before the invocation's
/// deadline.
pub async fn handle_scheduled_event(
    keyport: &Arc<Keyport>,
    event: LambdaEvent<EventBridgeEvent>,
    concurrency: usize,
) -> Result<RefreshReport, Error> {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let remaining = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    tracing::info!(detail_type = ?event.payload.detail_type, remaining_ms = remaining.as_millis() as u64, "scheduled refresh");
    let deadline = tokio::time::Instant::now() + remaining;
    let Some(queue) = keyport.work_queue.clone() else {
        return Ok(keyport.refresh_due(deadline, concurrency).await?);
    };
    let mut report = keyport.refresh_upkeep(deadline).await?;
    let work: Vec<String> = keyport
        .refresh_work(chrono::Utc::now())
        .iter()
        .map(RefreshWork::body)
        .collect();
    queue.send(&work).await?;
    report.work_queued = work.len() as u64;
    report.log();
    Ok(report)
}

/// Serves the refresh worker: SQS delivers the queue's messages, one span of due times or one
/// deleted connection each.
pub async fn run_refresh_worker() -> Result<(), Error> {
    let init = Arc::new(Init::read()?);
    let keyport = Arc::new(OnceCell::new());
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| {
            let (init, keyport) = (init.clone(), keyport.clone());
            async move {
                let keyport = keyport.get_or_try_init(|| init.keyport()).await?;
                Ok::<_, Error>(
                    handle_refresh_work(keyport, event, init.settings.refresh_concurrency).await,
                )
            }
        },
    ))
    .await
}

/// Does the work each message names, before the invocation's deadline: refreshes the tokens
/// due in a span (or, from earlier runs' messages, in one shard), or ends a deleted
/// connection's (queueing it again when the deadline leaves tokens). A message that is not
/// work, or whose work failed, is reported failed (SQS delivers it again, then to the
/// dead-letter queue); a span stopped by the deadline is done: the due index still holds what
/// was left, and the next scheduled run's backlog message covers it.
pub async fn handle_refresh_work(
    keyport: &Arc<Keyport>,
    event: LambdaEvent<SqsEvent>,
    concurrency: usize,
) -> SqsBatchResponse {
    let deadline = invocation_deadline(Some(event.context.deadline))
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
    let mut failures = Vec::new();
    for message in event.payload.records {
        let id = message.message_id.clone().unwrap_or_default();
        let work = message.body.as_deref().and_then(RefreshWork::parse);
        let outcome = match work {
            Some(RefreshWork::Span(span)) => keyport
                .refresh_span(span.window(), deadline, concurrency)
                .await
                .map(drop)
                .map_err(|error| error.code()),
            Some(RefreshWork::Shard(shard)) => keyport
                .refresh_shard(shard, None, deadline, concurrency)
                .await
                .map(drop)
                .map_err(|error| error.code()),
            Some(RefreshWork::Window(window)) => keyport
                .refresh_shard(window.shard, Some(window.window()), deadline, concurrency)
                .await
                .map(drop)
                .map_err(|error| error.code()),
            Some(RefreshWork::DeletedConnection(id)) => {
                crate::service::deadline::within(deadline, keyport.end_deleted_connection(&id))
                    .await
                    .map(|work| {
                        tracing::info!(target: "refresher", event = "deletion_work", connection_id = %id, tokens_revoked = work.tokens_revoked, purged = work.purged, continued = work.continued, "deleted connection worked on");
                    })
                    .map_err(|error| error.code())
            }
            None => Err("not_refresh_work"),
        };
        if let Err(code) = outcome {
            tracing::warn!(message_id = %id, code, "a refresh work message failed");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}
