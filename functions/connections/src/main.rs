//! The connections function: `GET /providers`, connection CRUD and `POST /connections/{id}/test`.

use keyport_shared::http::Function;

#[tokio::main]
async fn main() -> Result<(), keyport_shared::lambda::Error> {
    keyport_shared::lambda::run_http_function(&[Function::Connections]).await
}
