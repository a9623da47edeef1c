//! The authorize function: `POST /connections/{id}/authorize` returns the URL to send a person to.

use keyport_shared::http::Function;

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_http_function(&[Function::Authorize]).await
}
