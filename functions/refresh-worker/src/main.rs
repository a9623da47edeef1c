//! The refresh worker: fed by the refresher through SQS, it refreshes one due shard a message.

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_refresh_worker().await
}
