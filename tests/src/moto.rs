//! moto's server mode, started once per test binary on a free loopback port and stopped when
//! the binary exits. Tests never share resources on it: each makes its own table, key and
//! secret prefix, so they run in parallel without resetting the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::{free_port, workspace_root};

pub struct Moto {
    pub endpoint: String,
    // Held open for the life of the process; closing it stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

impl Moto {
    /// The running server, started on first use. Panics with the reason if it cannot start:
    /// a missing emulator must fail the tests loudly, never skip them.
    pub fn get() -> &'static Moto {
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let root = workspace_root();
        let moto_server = root.join("target/peers/moto-venv/bin/moto_server");
        assert!(
            moto_server.exists(),
            "moto is not installed at {}: run scripts/install-test-peers (the README's test command does)",
            moto_server.display()
        );
        let port = free_port();
        let python = root.join("target/peers/moto-venv/bin/python");
        let mut child = Command::new(&python)
            .arg(root.join("tests/peers/supervise.py"))
            .arg(&python)
            // moto's server, its queries spared a sort of the whole table (see the script).
            .arg(root.join("tests/peers/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until_ready(port, &mut child);
        Moto {
            endpoint,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }

    /// An SDK configuration that talks only to this server, with static test credentials, so
    /// the SDK never probes the environment, a profile or the instance metadata address.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "keyport-tests",
            )))
            .endpoint_url(&self.endpoint)
            .build()
    }
}

/// Polls moto's own API until it answers, for at most a minute.
fn wait_until_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll moto_server") {
            panic!("moto_server exited during start-up with {status}");
        }
        if answers(port) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut status = String::new();
    let ok = BufReader::new(&mut stream).read_line(&mut status).is_ok() && status.contains(" 200 ");
    let _ = stream.read_to_end(&mut Vec::new());
    ok
}
