//! The forward-proxy test peer: Debian's tinyproxy (`tinyproxy-bin`, installed by
//! `scripts/install-test-peers tinyproxy`), run in the foreground on a free loopback port with
//! Basic credentials and a log file of its own, one instance per test, stopped when the test
//! drops it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub const USERNAME: &str = "keyport";
pub const PASSWORD: &str = "pr0xy-Pass-7";

pub struct Tinyproxy {
    pub port: u16,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Starts tinyproxy, listening on and allowing 127.0.0.1 only, asking for
    /// [`USERNAME`]/[`PASSWORD`]; returns once it accepts connections.
    pub fn start() -> Tinyproxy {
        let program = which_tinyproxy().unwrap_or_else(|| {
            panic!("tinyproxy is not installed: run scripts/install-test-peers tinyproxy (the README's test command does)")
        });
        let dir = tempfile::tempdir().expect("temporary folder");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nBasicAuth {USERNAME} {PASSWORD}\n\
                 LogFile \"{}\"\nLogLevel Info\nTimeout 30\nMaxClients 50\n",
                log.display()
            ),
        )
        .expect("write the tinyproxy configuration");
        let child = Command::new(program)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tinyproxy: {e}"));
        let mut proxy = Tinyproxy {
            port,
            log,
            child,
            _dir: dir,
        };
        proxy.wait_until_accepting();
        proxy
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request line the proxy logged (`POST http://127.0.0.1:1234/token HTTP/1.1`), in
    /// order. tinyproxy logs a request as it reads it, before it forwards it.
    pub fn requests(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|line| line.split_once("Request (file descriptor ").map(|(_, r)| r))
            .filter_map(|rest| {
                rest.split_once("): ")
                    .map(|(_, request)| request.to_owned())
            })
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the line tinyproxy logs once its listening socket accepts connections (or its
    /// exit), polling its log file: a condition, not a guess at how long start-up takes.
    fn wait_until_accepting(&mut self) {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if self.log_text().contains("Accepting connections") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tinyproxy exited at start ({status}): {}", self.log_text());
            }
            assert!(
                Instant::now() < give_up,
                "tinyproxy did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn which_tinyproxy() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|dir| PathBuf::from(dir).join("tinyproxy"))
        .find(|path| path.is_file())
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
