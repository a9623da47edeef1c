//! The token function: token reads with in-line refresh, forced refresh, disconnect, and
//! `GET /me/connections`.

use keyport_shared::http::Function;

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_http_function(&[Function::Token]).await
}
