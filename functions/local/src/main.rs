//! `keyport`: the all-in-one local server, and the development token it accepts.

use clap::Parser;
use keyport_local::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyport_local::exit_code(keyport_local::run(Cli::parse()).await)
}
