//! The Lambda entry points: each function's `main` calls one of these. Clients and settings
//! are built once, at cold start; every invocation reuses them.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use clap::Parser;
use lambda_runtime::LambdaEvent;

use crate::config::{self, AwsSettings, CommonSettings};
use crate::http::{self, ApiGatewayAuthorizer, Function};
use crate::service::{Keyport, RefreshReport};

pub type Error = lambda_runtime::Error;

/// A Lambda function's settings: environment variables only.
#[derive(Parser, Debug)]
struct LambdaSettings {
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    aws: AwsSettings,
    /// How many tokens the refresher refreshes at once.
    #[arg(long, env = "KEYPORT_REFRESH_CONCURRENCY", default_value_t = 16)]
    refresh_concurrency: usize,
}

async fn cold_start() -> Result<(Arc<Keyport>, LambdaSettings), Error> {
    config::init_logging();
    let settings = LambdaSettings::try_parse_from(["keyport"])?;
    let callback_url = settings
        .common
        .callback_url
        .clone()
        .ok_or("KEYPORT_CALLBACK_URL is required")?;
    let backends = config::aws_backends(&settings.aws).await?;
    let keyport = Arc::new(config::keyport(backends, &settings.common, callback_url)?);
    Ok((keyport, settings))
}

/// Serves `functions`' routes behind the API Gateway HTTP API.
pub async fn run_http_function(functions: &[Function]) -> Result<(), Error> {
    let (keyport, settings) = cold_start().await?;
    let authenticator = Arc::new(ApiGatewayAuthorizer {
        roles_claim: settings.common.roles_claim.clone(),
    });
    lambda_http::run(http::router(keyport, authenticator, functions)).await
}

/// Serves the scheduled refresher.
pub async fn run_refresher() -> Result<(), Error> {
    let (keyport, settings) = cold_start().await?;
    let concurrency = settings.refresh_concurrency;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<EventBridgeEvent>| {
            let keyport = keyport.clone();
            async move { handle_scheduled_event(&keyport, event, concurrency).await }
        },
    ))
    .await
}

/// One scheduled run: refresh what is due and stop before the invocation's deadline.
pub async fn handle_scheduled_event(
    keyport: &Arc<Keyport>,
    event: LambdaEvent<EventBridgeEvent>,
    concurrency: usize,
) -> Result<RefreshReport, Error> {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let remaining = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    tracing::info!(detail_type = ?event.payload.detail_type, remaining_ms = remaining.as_millis() as u64, "scheduled refresh");
    Ok(keyport
        .refresh_due(tokio::time::Instant::now() + remaining, concurrency)
        .await?)
}
