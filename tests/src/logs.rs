//! Captures every log line (all crates, every level) emitted on the current thread, so a test
//! can prove that no secret reached a log line. Use with a current-thread runtime: the async
//! work of the test, and the HTTP clients' tasks, then all log through the capture.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
pub struct CapturedLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

pub struct CaptureWriter {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter {
            buffer: self.buffer.clone(),
        }
    }
}

impl CapturedLogs {
    /// Starts capturing on this thread until the guard drops. JSON lines, as Keyport logs in
    /// production, with every span field.
    pub fn start() -> (DefaultGuard, CapturedLogs) {
        // tracing caches each call site's interest process-wide. Tests run in parallel, and a
        // call site first reached on a thread without a subscriber could be cached as "never"
        // and skipped on the capturing thread too. A global subscriber that takes every level
        // (and writes nowhere) keeps every call site live.
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let sink = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(std::io::sink)
                .finish();
            let _ = tracing::subscriber::set_global_default(sink);
        });
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .finish();
        (tracing::subscriber::set_default(subscriber), logs)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Fails the test if any of `secrets` appears in a captured line; also fails if nothing
    /// was captured at all, which would make the check meaningless.
    pub fn assert_free_of<'a>(&self, secrets: impl IntoIterator<Item = &'a str>) {
        let text = self.text();
        assert!(
            !text.is_empty(),
            "no log line was captured; the leak check would prove nothing"
        );
        // Whatever the values, these shapes mean a request body, a credential header or a token
        // response reached a log line.
        for marker in [
            "code_verifier=",
            "client_assertion=",
            "client_secret=",
            "refresh_token=",
            "&code=",
            "Basic ",
            "\"access_token\":\"",
            "\"refresh_token\":\"",
        ] {
            assert!(!text.contains(marker), "a log line contains {marker:?}");
        }
        for secret in secrets {
            if secret.len() < 6 {
                continue;
            }
            if let Some(line) = text.lines().find(|line| line.contains(secret)) {
                // Show where, not what: the test output is a log too.
                panic!(
                    "a secret reached the logs: {}",
                    line.replace(secret, "[THE SECRET]")
                );
            }
        }
    }
}
