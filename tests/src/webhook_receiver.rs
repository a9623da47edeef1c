//! The webhook receiver peer (`tests/peers/webhooks/receiver.py`): a loopback HTTP server that
//! verifies each delivery with the Standard Webhooks reference library, not Keyport's code,
//! and logs what it saw. It can be taken down (503) and brought back.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::workspace_root;

pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>/hooks`
    pub url: String,
    child: Child,
    folder: tempfile::TempDir,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let python = workspace_root().join("target/peers/webhooks-venv/bin/python");
        assert!(
            python.exists(),
            "the webhook receiver's verifier is not installed: run scripts/install-test-peers webhooks (the README's test command does)"
        );
        let folder = tempfile::tempdir().expect("a temporary folder");
        let mut child = Command::new(python)
            .arg(workspace_root().join("tests/peers/webhooks/receiver.py"))
            .env("WEBHOOK_LOG", folder.path().join("received.jsonl"))
            .env("WEBHOOK_SECRET_FILE", folder.path().join("secret"))
            .env("WEBHOOK_DOWN_FILE", folder.path().join("down"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("its standard output"))
            .read_line(&mut line)
            .expect("the receiver says its port");
        let port: u16 = line.trim().parse().expect("a port");
        WebhookReceiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            child,
            folder,
        }
    }

    /// The secret the receiver verifies with from now on.
    pub fn trust(&self, secret: &str) {
        std::fs::write(self.path("secret"), secret).expect("the secret file");
    }

    /// Down (503 to everything) or up.
    pub fn set_down(&self, down: bool) {
        if down {
            std::fs::write(self.path("down"), "").expect("the down flag");
        } else {
            let _ = std::fs::remove_file(self.path("down"));
        }
    }

    /// Every request so far, in order: `webhook_id`, `webhook_timestamp`, `signatures` (how
    /// many), `answer`, and for verified ones `verified` and `payload`.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
