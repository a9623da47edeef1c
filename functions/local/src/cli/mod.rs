//! `keyport connections|authorize|token`: Keyport's API from a shell, for people and bots,
//! over the `keyport-client` crate. Human tables by default, `--json` for scripts; errors go
//! to standard error with the exit status 1.

use clap::{Args, Subcommand};
use keyport_client::{Client, ClientError, Owner};
use secrecy::SecretString;

/// Writes a line to standard output (see [`write_out`]).
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::write_out(&format!("{}\n", format_args!($($arg)*))) };
}

/// Writes to standard output as it is (see [`write_out`]).
macro_rules! say_raw {
    ($($arg:tt)*) => { $crate::cli::write_out(&format!($($arg)*)) };
}

mod authorize;
mod connections;
mod fields;
mod table;
mod token;
mod transfer;

pub use authorize::AuthorizeArgs;
pub use token::TokenArgs;
pub use transfer::{ApplyArgs, ExportArgs, ImportArgs, apply, export, import};

/// The local server at its default address.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Where Keyport is and who is calling: for every command that talks to a server.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The Keyport to talk to: https, or http to this machine.
    #[arg(long, env = "KEYPORT_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The bearer token to call it with. Prefer the environment variable: a flag's value is
    /// visible to anyone who can list this machine's processes.
    #[arg(long, env = "KEYPORT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    fn client(&self) -> Result<Client, String> {
        let bearer = self.token.clone().ok_or_else(|| {
            "no bearer token: set KEYPORT_TOKEN (or pass --token) to a token your identity provider issued; \
             on the local server: export KEYPORT_TOKEN=$(keyport dev-token --sub admin --roles keyport-admins)"
                .to_owned()
        })?;
        Client::new(&self.server, SecretString::from(bearer)).map_err(|e| e.to_string())
    }
}

#[derive(Args, Debug)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    pub action: ConnectionsAction,
}

#[derive(Subcommand, Debug)]
pub enum ConnectionsAction {
    /// Every connection with its tokens' health (administrators); anyone else sees the ones
    /// their roles are invited to.
    List(ClientArgs),
    /// One connection, its settings and its tokens' health (administrators).
    Show(connections::NamedArgs),
    /// Create a connection from a JSON file (`-` reads standard input).
    Create(connections::CreateArgs),
    /// Delete a connection: it leaves service at once, its tokens are revoked.
    Delete(connections::DeleteArgs),
}

pub async fn connections(args: ConnectionsArgs) -> Result<(), String> {
    match args.action {
        ConnectionsAction::List(client) => connections::list(&client).await,
        ConnectionsAction::Show(args) => connections::show(&args).await,
        ConnectionsAction::Create(args) => connections::create(&args).await,
        ConnectionsAction::Delete(args) => connections::delete(&args).await,
    }
}

pub use authorize::run as authorize;
pub use token::run as token;

fn owner(user: bool) -> Owner {
    if user { Owner::User } else { Owner::Shared }
}

/// A refusal in words a person can act on: Keyport's sentence, its code, and what to run next
/// where there is an obvious next step.
fn describe(error: ClientError, name: &str, owner: Owner) -> String {
    let next = match error.code() {
        Some("not_authorized" | "needs_reauthorization") => Some(match owner {
            Owner::Shared => format!("keyport authorize {name}"),
            Owner::User => format!("keyport authorize {name} --user"),
        }),
        Some("unauthenticated") => {
            Some("a fresh bearer token in KEYPORT_TOKEN (is it for this server?)".to_owned())
        }
        _ => None,
    };
    let code = error
        .code()
        .map(|code| format!(" [{code}]"))
        .unwrap_or_default();
    match next {
        Some(next) => format!("{error}{code}\nnext: {next}"),
        None => format!("{error}{code}"),
    }
}

/// Prints `value` as JSON on standard output.
fn print_json(value: &serde_json::Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

/// Standard output for the commands' answers. A reader that went away (`keyport token x |
/// head -c 8`) ends the command quietly, as other command-line tools do, instead of a panic;
/// any other failure to write is an error, never an answer silently lost.
pub(crate) fn write_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("keyport: cannot write the answer: {error}");
            std::process::exit(1);
        }
    }
}
