//! `keyport`: the all-in-one local server, and the development token it accepts.

use clap::Parser;
use keyport_local::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::DevToken(args)) => keyport_local::print_dev_token(&args),
        Some(Command::CreateTable(args)) => keyport_local::create_table(&args).await,
        Some(Command::Serve(args)) => keyport_local::serve_until_stopped(*args).await,
        None => keyport_local::serve_until_stopped(cli.serve).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keyport: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
