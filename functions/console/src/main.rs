//! The console function: the web console's pages, its OpenID Connect sign-in and its API
//! (`/console` and everything under it), signed in by its own session cookie.

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_console_function().await
}
