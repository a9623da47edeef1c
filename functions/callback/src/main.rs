//! The callback function: `GET /oauth/callback` exchanges the code once and shows the outcome.

use keyport_shared::http::Function;

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_http_function(&[Function::Callback]).await
}
