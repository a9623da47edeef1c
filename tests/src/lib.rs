//! The integration tests' harness: starts the peers the tests talk to (moto's AWS emulator)
//! and builds each back-end against them.

pub mod backends;
pub mod console;
pub mod faulty_provider;
pub mod gate;
pub mod http_client;
pub mod keyport;
pub mod logs;
pub mod moto;
pub mod oidc;
pub mod process;
pub mod quirky_provider;
pub mod server;
pub mod tinyproxy;
pub mod webhook_receiver;

use std::path::PathBuf;

/// The workspace root, where `scripts/` and `target/peers/` live.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind a loopback port")
}
