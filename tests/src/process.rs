//! Keyport as a separate operating-system process (the real `keyport serve`), for the tests
//! that need several instances sharing one store, or one killed in the middle of its work.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::backends::Backend;

const LISTENING: &str = "Keyport is listening on ";

pub struct KeyportProcess {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl KeyportProcess {
    /// Starts `program serve` on a free loopback port over `backend`'s stores, in local
    /// development mode, with `extra_args`; returns once it listens.
    pub async fn start(program: &str, backend: &Backend, extra_args: &[&str]) -> KeyportProcess {
        let mut command = Command::new(program);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--local-development"])
            // Races refresh right after refreshing; the on-demand limit has tests of its own.
            .args(["--on-demand-refresh-seconds", "0"])
            .args(&backend.process_args)
            .args(extra_args)
            .envs(backend.process_env.iter().map(|(k, v)| (k, v)));
        Self::spawn(command).await
    }

    /// Starts `command` (a `keyport` that serves, set up as the caller likes) with its standard
    /// error piped; returns once it listens.
    pub async fn spawn(mut command: Command) -> KeyportProcess {
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let base = loop {
            match lines.next_line().await.expect("read keyport's stderr") {
                Some(line) => {
                    let found = line
                        .split_once(LISTENING)
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .map(str::to_owned);
                    stderr.lock().expect("log lines").push(line);
                    if let Some(base) = found {
                        break base;
                    }
                }
                None => panic!(
                    "keyport exited before listening: {:?}",
                    stderr.lock().expect("log lines")
                ),
            }
        };
        // Keep draining, so the process never blocks on a full pipe, and keep every line for
        // the leak checks.
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lines").push(line);
            }
        });
        KeyportProcess {
            base,
            child,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every line the process wrote to standard error so far (its JSON logs among them).
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("log lines").clone()
    }

    /// SIGKILL: the process stops where it stands, with no chance to clean up.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill keyport");
        self.child.wait().await.expect("reap keyport");
    }
}
