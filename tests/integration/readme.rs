//! The README's worked example, run as it is written: the provider and Keyport started the way
//! its first two blocks say, then every later block (shell, Python, Node.js) in a shell, a
//! Python and a Node.js process, with the reader's `$BROWSER` played by
//! `tests/peers/browser.py`. Only the two ports differ: Keyport's comes in `KEYPORT_SERVER`
//! (the command line's default is the README's 8080) and the provider's replaces 9000 in the
//! text. A README edit that breaks a step breaks this test; a block added anywhere in the
//! README must say which check exercises it.

use std::path::Path;
use std::time::Duration;

use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use keyport_tests::process::KeyportProcess;
use keyport_tests::workspace_root;
use tokio::process::Command;

/// One fenced block of the README, under the `## ` section it sits in.
#[derive(Debug, Clone)]
struct Block {
    section: String,
    language: String,
    text: String,
}

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md")
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in readme.lines() {
        match &mut open {
            Some((language, lines)) => {
                if line.trim_end() == "```" {
                    blocks.push(Block {
                        section: section.clone(),
                        language: language.clone(),
                        text: lines.join("\n"),
                    });
                    open = None;
                } else {
                    lines.push(line);
                }
            }
            None => {
                if let Some(heading) = line.strip_prefix("## ") {
                    section = heading.trim().to_owned();
                } else if let Some(language) = line.strip_prefix("```") {
                    open = Some((language.trim().to_owned(), Vec::new()));
                }
            }
        }
    }
    assert!(
        open.is_none(),
        "a fenced block of the README is never closed"
    );
    blocks
}

const WORKED_EXAMPLE: &str = "A worked example";

/// The worked example's blocks: the provider's, Keyport's, then the ones a reader types.
struct WorkedExample {
    provider: String,
    keyport: String,
    shell: String,
    python: String,
    node: String,
}

fn worked_example() -> WorkedExample {
    let all: Vec<Block> = blocks(&readme())
        .into_iter()
        .filter(|b| b.section == WORKED_EXAMPLE)
        .collect();
    assert!(all.len() >= 5, "the worked example has its blocks: {all:?}");
    let of = |language: &str| -> Vec<&Block> {
        all[2..].iter().filter(|b| b.language == language).collect()
    };
    let one = |language: &str| {
        let found = of(language);
        assert_eq!(found.len(), 1, "one {language} block in the worked example");
        found[0].text.clone()
    };
    assert_eq!(
        all[2..]
            .iter()
            .filter(|b| !["sh", "python", "js"].contains(&b.language.as_str()))
            .count(),
        0,
        "every block after the first two is shell, Python or JavaScript, and run below"
    );
    WorkedExample {
        provider: all[0].text.clone(),
        keyport: all[1].text.clone(),
        shell: of("sh")
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        python: one("python"),
        node: one("js"),
    }
}

/// A folder laid out like the top of a clone as far as the example needs: `target/debug/keyport`
/// (the test build of the `keyport` command) and, once Keyport runs there, its `.keyport`.
fn clone_like_folder() -> tempfile::TempDir {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let bin = folder.path().join("target/debug");
    std::fs::create_dir_all(&bin).expect("target/debug");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keyport-process"), bin.join("keyport"))
        .expect("link the keyport command");
    folder
}

/// `program` with none of this process's Keyport settings (or browser) leaking in.
fn clean_command(program: impl AsRef<std::ffi::OsStr>, folder: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(folder).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("KEYPORT_") || name == "BROWSER" {
            command.env_remove(name);
        }
    }
    command
}

/// Keyport started the way the README's second block says (`cargo run -- <args>`), in
/// `folder`, on a free port instead of 8080.
async fn start_keyport(block: &str, folder: &Path) -> KeyportProcess {
    let args = block
        .lines()
        .find_map(|line| line.trim().strip_prefix("cargo run --"))
        .expect("the second block runs `cargo run -- ...`");
    let mut command = clean_command(folder.join("target/debug/keyport"), folder);
    command
        .args(args.split_whitespace())
        .args(["--listen", "127.0.0.1:0"]);
    KeyportProcess::spawn(command).await
}

struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `command` to its end, or fails the test if it never ends (a step waiting forever).
async fn run(mut command: Command, what: &str) -> Ran {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} never finished"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The reader's shell: the blocks as one script that stops at the first failing command.
fn shell(script: &str, folder: &Path, keyport: &KeyportProcess) -> Command {
    let mut command = clean_command("bash", folder);
    command
        .args(["-euo", "pipefail", "-c", script])
        .env("KEYPORT_SERVER", &keyport.base)
        .env("BROWSER", browser());
    command
}

fn browser() -> String {
    format!(
        "python3 {}",
        workspace_root().join("tests/peers/browser.py").display()
    )
}

fn peer_for(keyport: &KeyportProcess) -> OidcPeer {
    OidcPeer::start(PeerOptions {
        redirect_uri: Some(keyport.url("/oauth/callback")),
        ..PeerOptions::default()
    })
}

/// The README's provider address, 127.0.0.1:9000, replaced by the running peer's.
fn at_peer(text: &str, peer: &OidcPeer) -> String {
    assert!(text.contains("http://127.0.0.1:9000"), "{text}");
    text.replace("http://127.0.0.1:9000", peer.issuer.trim_end_matches('/'))
}

async fn bearer(folder: &Path, subject: &str, roles: &str) -> String {
    let mut command = clean_command(folder.join("target/debug/keyport"), folder);
    command.args(["dev-token", "--sub", subject, "--roles", roles]);
    let ran = run(command, "keyport dev-token").await;
    assert!(ran.success, "{}", ran.stderr);
    ran.stdout.trim().to_owned()
}

/// The shared token's answer, read by the test itself.
async fn shared_token(keyport: &KeyportProcess, bot: &str) -> serde_json::Value {
    let client = keyport_client::Client::new(&keyport.base, bot.to_owned().into()).unwrap();
    let id = client.find("demo").await.unwrap().id;
    reqwest::Client::new()
        .get(keyport.url(&format!("/connections/{id}/token")))
        .bearer_auth(bot)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_runs_as_written() {
    let example = worked_example();
    assert!(
        example
            .provider
            .contains("scripts/install-test-peers oidc\n"),
        "the example installs only oidc-provider: {}",
        example.provider
    );
    assert!(
        example.provider.contains(
            "PORT=9000 REDIRECT_URIS=http://127.0.0.1:8080/oauth/callback node server.mjs"
        ),
        "the provider starts as the harness starts it: {}",
        example.provider
    );
    let folder = clone_like_folder();
    let keyport = start_keyport(&example.keyport, folder.path()).await;
    let peer = peer_for(&keyport);

    let ran = run(
        shell(&at_peer(&example.shell, &peer), folder.path(), &keyport),
        "the worked example's shell blocks",
    )
    .await;
    assert!(
        ran.success,
        "a step failed\nstdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    for said in [
        "created connection demo (con_",
        "authorized demo: its shared token is stored",
        // The webhook subscription's answer, with its signing secret this once.
        "\"secret\":\"whsec_",
        "authorized demo: your own token is stored",
        // The export imported into the installation it came from, and the apply file twice.
        "plan: 0 to create, 0 to change, 1 unchanged, 0 in conflict",
        "applied: 1 to create, 0 to change, 0 unchanged, 0 in conflict",
        "plan: 0 to create, 0 to change, 1 unchanged, 0 in conflict\nnothing to change",
        "created connection demo-hybrid (con_",
        "authorized demo-hybrid: its shared token is stored",
        "bot-1 reads demo-hybrid's token",
    ] {
        assert!(ran.stdout.contains(said), "{said:?} in\n{}", ran.stdout);
    }
    // The administrator's listing shows the shared token just authorized.
    let listed = ran
        .stdout
        .lines()
        .find(|line| line.starts_with("demo "))
        .unwrap_or_else(|| panic!("demo listed in\n{}", ran.stdout));
    assert!(listed.contains("valid"), "{listed}");
    // The person's own token, as the last JSON printed (the hybrid block after it prints none).
    let json_start = ran.stdout.rfind("{\n").expect("the --json answer");
    let own: serde_json::Value = serde_json::Deserializer::from_str(&ran.stdout[json_start..])
        .into_iter()
        .next()
        .expect("a JSON value")
        .unwrap();
    assert_eq!(own["owner"], "user:alice", "{own}");
    assert!(!own["access_token"].as_str().unwrap_or_default().is_empty());

    // The bot's own code, in Python and in Node.js, reads the shared token the CLI stored.
    let bot = bearer(folder.path(), "bot-1", "bots").await;
    let shared = shared_token(&keyport, &bot).await;
    let expected = format!("valid until {}", shared["expires_at"].as_str().unwrap());
    std::fs::write(folder.path().join("bot.py"), &example.python).unwrap();
    std::fs::write(folder.path().join("bot.mjs"), &example.node).unwrap();
    for (program, file) in [("python3", "bot.py"), ("node", "bot.mjs")] {
        let mut command = clean_command(program, folder.path());
        command
            .arg(file)
            .env("KEYPORT_SERVER", &keyport.base)
            .env("KEYPORT_TOKEN", &bot);
        let ran = run(command, file).await;
        assert!(ran.success, "{file}: {}", ran.stderr);
        assert_eq!(ran.stdout.trim(), expected, "{file}");
    }

    // Nothing secret reached Keyport's log.
    let access_token = shared["access_token"].as_str().unwrap();
    let own_token = own["access_token"].as_str().unwrap();
    for line in keyport.log_lines() {
        for secret in [CLIENT_SECRET, access_token, own_token, bot.as_str()] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_stops_at_the_first_failing_step_and_says_why() {
    let example = worked_example();
    let folder = clone_like_folder();
    // The reader forgot --local-development: the provider's plain-http issuer is refused.
    let without_flag = example.keyport.replace(" --local-development", "");
    assert_ne!(without_flag, example.keyport);
    let keyport = start_keyport(&without_flag, folder.path()).await;
    let peer = peer_for(&keyport);

    let ran = run(
        shell(&at_peer(&example.shell, &peer), folder.path(), &keyport),
        "the worked example's shell blocks",
    )
    .await;
    assert!(!ran.success, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("issuer") && ran.stderr.contains("--local-development"),
        "the refusal names the field and the flag that allows it: {}",
        ran.stderr
    );
    // Nothing after the failing step ran.
    assert!(!ran.stderr.contains("Open this address"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("authorized"), "{}", ran.stdout);
}

/// Where each README block outside the worked example is exercised, found by a line the
/// block holds. A new block must be run somewhere and named here.
const EXERCISED_ELSEWHERE: [(&str, &str, &str); 4] = [
    // The two commands: `scripts/test` is what CI runs; `cargo run` is the server started above.
    (
        "scripts/test       # runs the whole test suite",
        ".ci/run",
        "scripts/test",
    ),
    // Running one fuzz target longer: the command scripts/fuzz runs for each target.
    (
        "RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir shared/fuzz --sanitizer none connection_body",
        "scripts/fuzz",
        "--sanitizer none",
    ),
    // Deploying: scripts/check-readme-deploy holds that section to the template.
    (
        "sam build --beta-features",
        "scripts/check-readme-deploy",
        "Deploy to AWS",
    ),
    // The benchmarks: scripts/bench and the sections it takes.
    (
        "scripts/bench read http calls refresher startup",
        "scripts/bench",
        "read http calls refresher startup",
    ),
];

#[test]
fn every_readme_block_is_exercised() {
    let all = blocks(&readme());
    let mut claimed = vec![false; EXERCISED_ELSEWHERE.len()];
    for block in all.iter().filter(|b| b.section != WORKED_EXAMPLE) {
        let claim = EXERCISED_ELSEWHERE
            .iter()
            .position(|(line, _, _)| block.text.contains(line))
            .unwrap_or_else(|| {
                panic!(
                    "README block in {:?} is exercised by no test; run it in a test and name it here:\n{}",
                    block.section, block.text
                )
            });
        claimed[claim] = true;
    }
    for ((line, script, holds), claimed) in EXERCISED_ELSEWHERE.iter().zip(claimed) {
        assert!(claimed, "no README block holds {line:?} any more");
        let text = std::fs::read_to_string(workspace_root().join(script))
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(text.contains(holds), "{script} holds {holds:?}");
    }
    // The worked example's blocks are all run by the two tests above (or refused there).
    let example = worked_example();
    assert!(example.keyport.contains("cargo run -- --local-development"));
}
