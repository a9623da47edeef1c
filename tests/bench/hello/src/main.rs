//! The smallest `lambda_http` function: the baseline the bootstraps' start-up is measured
//! against (`keyport-bench`'s start-up section). Built with the same profile and target as
//! the functions.

use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_| async { Ok::<_, Error>("hello") })).await
}
