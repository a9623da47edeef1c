//! The refresher function: run by an EventBridge schedule, it refreshes tokens due soon.

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_refresher().await
}
