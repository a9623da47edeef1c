//! The `keyport` command, built inside the test package so that integration tests can start
//! it as a separate process (`CARGO_BIN_EXE_keyport-process`): the same code as the real one.

use clap::Parser;
use keyport_local::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyport_local::exit_code(keyport_local::run(Cli::parse()).await)
}
