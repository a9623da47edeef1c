//! Keyport on one machine: every function's routes on one loopback port, the refresher on a
//! timer, the embedded back-end by default (or the AWS ones), bearer JWTs verified here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::{Args, Parser, Subcommand, ValueEnum};
use keyport_shared::config::{self, AwsSettings, CommonSettings, ConsoleSignInSettings};
use keyport_shared::domain::EndpointUrl;
use keyport_shared::http::console::{self, Console, SignInMethods};
use keyport_shared::http::{self, Authenticator, DevSigningKey, Function, LocalJwtVerifier};
use keyport_shared::service::Keyport;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod cli;
mod server;

pub use cli::ClientArgs;

#[derive(Parser, Debug)]
#[command(
    name = "keyport",
    version,
    about = "Keyport, the OAuth connection broker, on one machine."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the all-in-one server (the default).
    Serve(Box<ServeArgs>),
    /// Print a bearer token the local server accepts, signed with the development key.
    DevToken(DevTokenArgs),
    DevLogin(DevLoginArgs),
    /// Create the DynamoDB table with Keyport's schema (for emulators and tests; on AWS the SAM
    /// template creates it).
    CreateTable(CreateTableArgs),
    /// Print the OpenAPI 3.1 description of the API (what `GET /openapi.json` serves).
    Openapi(OpenapiArgs),
    /// List, show, create and delete connections.
    Connections(cli::ConnectionsArgs),
    /// Authorize a connection's shared token, or your own with --user: prints the address to
    /// open in a browser and waits until the grant is stored.
    Authorize(cli::AuthorizeArgs),
    /// Print an access token of a connection that is valid now (and nothing else, for scripts).
    Token(cli::TokenArgs),
    /// Print every connection's definition as JSON; with --with-secrets, their secrets and
    /// tokens too, encrypted to an age recipient.
    Export(cli::ExportArgs),
    /// Create and change connections from an export (a dry run first, then the real run;
    /// nothing if anything conflicts). --identity opens an export made --with-secrets.
    Import(cli::ImportArgs),
    /// Make the connections what a YAML or JSON file says (secrets as {env: NAME} or
    /// {aws_secretsmanager: ARN}); a second apply changes nothing.
    Apply(cli::ApplyArgs),
}

#[derive(Args, Debug, Clone)]
pub struct OpenapiArgs {
    /// Write it to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Writes the description, generated from the routes and wire types.
pub fn write_openapi(args: &OpenapiArgs) -> Result<(), String> {
    let json = format!("{}\n", http::openapi::json());
    match &args.output {
        Some(path) => {
            std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            print!("{json}");
            Ok(())
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CreateTableArgs {
    /// The table to create.
    #[arg(long = "table", env = "KEYPORT_TABLE")]
    pub table: String,
}

/// Creates the table through the standard AWS configuration chain (`AWS_ENDPOINT_URL` etc.).
pub async fn create_table(args: &CreateTableArgs) -> Result<(), String> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    keyport_shared::adapters::dynamodb::create_table(&client, &args.table)
        .await
        .map_err(|e| e.to_string())?;
    println!("created table {}", args.table);
    Ok(())
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// One database file and a master key file in the data directory.
    Embedded,
    /// DynamoDB, KMS and Secrets Manager (AWS_ENDPOINT_URL points them at an emulator).
    Aws,
}

#[derive(Args, Debug, Clone)]
pub struct JwtArgs {
    /// Verify bearer tokens against this JWKS URL instead of the development signing key.
    #[arg(long, env = "KEYPORT_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// The issuer bearer tokens must name.
    #[arg(long, env = "KEYPORT_JWT_ISSUER", default_value = "keyport-local")]
    pub jwt_issuer: String,
    /// The audience bearer tokens must name.
    #[arg(long, env = "KEYPORT_JWT_AUDIENCE", default_value = "keyport")]
    pub jwt_audience: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Loopback address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "KEYPORT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where the embedded database, the master key and the development signing key live.
    #[arg(long, env = "KEYPORT_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Which storage, key and secret back-ends to use.
    #[arg(long, env = "KEYPORT_BACKEND", value_enum, default_value = "embedded")]
    pub backend: BackendKind,
    /// Seconds between runs of the refresher.
    #[arg(long, env = "KEYPORT_REFRESH_INTERVAL_SECONDS", default_value_t = 60)]
    pub refresh_interval_seconds: u64,
    /// How many tokens the refresher refreshes at once.
    #[arg(long, env = "KEYPORT_REFRESH_CONCURRENCY", default_value_t = 16)]
    pub refresh_concurrency: usize,
    /// How long a client has to send a request's headers (seconds).
    #[arg(long, env = "KEYPORT_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_read_timeout_seconds: u64,
    /// How many connections the local server serves at once; more wait to be accepted.
    #[arg(long, env = "KEYPORT_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub common: CommonSettings,
    #[command(flatten)]
    pub console: ConsoleSignInSettings,
    #[command(flatten)]
    pub aws: AwsSettings,
}

/// Print a one-time link that signs whoever opens it in to the local server's console as
/// `--sub` with `--roles` (a development sign-in: on AWS people sign in through the identity
/// provider).
#[derive(Args, Debug, Clone)]
pub struct DevLoginArgs {
    /// The subject (who signs in).
    #[arg(long)]
    pub sub: String,
    /// The roles (comma-separated), e.g. keyport-admins or sales.
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// The server whose console the link opens.
    #[arg(long, env = "KEYPORT_SERVER", default_value = cli::DEFAULT_SERVER)]
    pub server: String,
    /// The data directory of that server (its signing key signs the link).
    #[arg(long, env = "KEYPORT_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// The claim the server reads roles from.
    #[arg(long, env = "KEYPORT_ROLES_CLAIM", default_value = "cognito:groups")]
    pub roles_claim: String,
}

/// The link that signs `subject` in to the console at `base` once.
fn sign_in_link(
    key: &DevSigningKey,
    base: &str,
    subject: &str,
    roles: &[String],
    issuer: &str,
    roles_claim: &str,
) -> Result<String, String> {
    let ticket = key.mint_sign_in_ticket(subject, roles, issuer, roles_claim)?;
    Ok(format!(
        "{}/console/signin/ticket?ticket={ticket}",
        base.trim_end_matches('/')
    ))
}

pub fn print_dev_login(args: &DevLoginArgs) -> Result<(), String> {
    let key = DevSigningKey::load(&dev_key_path(&args.data_dir))?;
    let link = sign_in_link(
        &key,
        &args.server,
        &args.sub,
        &args.roles,
        &args.jwt.jwt_issuer,
        &args.roles_claim,
    )?;
    println!("{link}");
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct DevTokenArgs {
    /// The subject (who the token is for); an application's is its client id.
    #[arg(long, required_unless_present = "client_id")]
    pub sub: Option<String>,
    /// Mint an application's token (client credentials): `client_id` and `sub` both name it.
    /// With `--sub` too, a person's token issued through that client.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The token's OAuth scopes (comma-separated), e.g. keyport/tokens.read. Keyport's scopes
    /// limit the caller to what they name; without any, a person's token is not limited.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// The roles (comma-separated), e.g. keyport-admins or bots.
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// How long the token stays valid, in seconds.
    #[arg(long, default_value_t = 12 * 60 * 60)]
    pub ttl_seconds: u64,
    /// The data directory of the server that must accept the token.
    #[arg(long, env = "KEYPORT_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// The claim the server reads roles from.
    #[arg(long, env = "KEYPORT_ROLES_CLAIM", default_value = "cognito:groups")]
    pub roles_claim: String,
}

/// Where the local server listens unless told otherwise (and where its clients look).
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Whom the link printed at start-up signs in (as an administrator).
const OPERATOR: &str = "operator";

/// Where the local server keeps its data unless told otherwise.
const DEFAULT_DATA_DIR: &str = ".keyport";

/// The commands that make the caller this server's administrator and then list its
/// connections: the data directory and the address named when they are not the defaults.
fn start_up_hint(data_dir: &std::path::Path, addr: SocketAddr) -> [String; 2] {
    let mut dev_token = "cargo run -q -- dev-token --sub admin --roles keyport-admins".to_owned();
    if data_dir != std::path::Path::new(DEFAULT_DATA_DIR) {
        dev_token.push_str(&format!(" --data-dir {}", data_dir.display()));
    }
    let mut list = String::new();
    if addr.to_string() != DEFAULT_LISTEN {
        list.push_str(&format!("KEYPORT_SERVER=http://{addr} "));
    }
    list.push_str("cargo run -q -- connections list");
    [format!("export KEYPORT_TOKEN=$({dev_token})"), list]
}

fn dev_key_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("dev-signing.key")
}

pub fn print_dev_token(args: &DevTokenArgs) -> Result<(), String> {
    let key = DevSigningKey::load(&dev_key_path(&args.data_dir))?;
    let subject = args
        .sub
        .as_deref()
        .or(args.client_id.as_deref())
        .ok_or("--sub or --client-id names whom the token is for")?;
    let mut extra = serde_json::Map::new();
    if let Some(client_id) = &args.client_id {
        extra.insert("client_id".into(), client_id.as_str().into());
    }
    let scopes: Vec<&str> = args
        .scopes
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if !scopes.is_empty() {
        extra.insert("scope".into(), scopes.join(" ").into());
    }
    let token = key.mint_with_claims(
        subject,
        &args.roles,
        &extra,
        Duration::from_secs(args.ttl_seconds),
        &args.jwt.jwt_issuer,
        &args.jwt.jwt_audience,
        &args.roles_claim,
    )?;
    println!("{token}");
    Ok(())
}

/// A running local server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub keyport: Arc<Keyport>,
    /// A one-time link that signs the operator in to the console as an administrator (with
    /// the development signing key only: an installation verifying tokens against a JWKS signs
    /// people in through its identity provider).
    pub sign_in_link: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    refresher: JoinHandle<()>,
}

impl RunningServer {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.refresher.abort();
        let _ = (&mut self.server).await;
    }

    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

/// What the local server serves: `keyport_routes` and its own (the description of the API,
/// liveness and readiness).
pub fn app(keyport: Arc<Keyport>, keyport_routes: Router) -> Router {
    http::openapi::routes(keyport).merge(keyport_routes)
}

/// Binds, assembles and starts the server and its refresher.
pub async fn start(args: ServeArgs) -> Result<RunningServer, String> {
    let backends = match args.backend {
        BackendKind::Embedded => config::embedded_backends(&args.data_dir)?,
        BackendKind::Aws => config::aws_backends(&args.aws).await?,
    };
    start_with_backends(args, backends).await
}

/// [`start`] over back-ends the caller built (tests pass their own).
pub async fn start_with_backends(
    args: ServeArgs,
    backends: config::Backends,
) -> Result<RunningServer, String> {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {}: the local server listens on loopback only",
            args.listen
        ));
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let callback_url = match &args.common.callback_url {
        Some(url) => url.clone(),
        None => format!("http://{addr}/oauth/callback")
            .parse()
            .map_err(|e| format!("callback URL: {e}"))?,
    };
    let keyport = Arc::new(config::keyport(
        backends,
        &args.common,
        callback_url.clone(),
    )?);
    let mut sign_in = SignInMethods {
        oidc: args.console.oidc(&keyport, &args.common, &callback_url)?,
        ..SignInMethods::default()
    };
    let mut sign_in_link_for_operator = None;
    let authenticator: Arc<dyn Authenticator> = match &args.jwt.jwks_url {
        Some(url) => {
            let url = EndpointUrl::parse("jwks_url", url, args.common.url_policy())
                .map_err(|e| e.to_string())?;
            Arc::new(
                LocalJwtVerifier::jwks(
                    url,
                    keyport.oauth.http().clone(),
                    &args.jwt.jwt_issuer,
                    &args.jwt.jwt_audience,
                    &args.common.roles_claim,
                )
                .await?,
            )
        }
        None => {
            let key = DevSigningKey::load_or_create(&dev_key_path(&args.data_dir))?;
            sign_in.tickets = Some(LocalJwtVerifier::development(
                &key,
                &args.jwt.jwt_issuer,
                console::TICKET_AUDIENCE,
                &args.common.roles_claim,
            ));
            sign_in_link_for_operator = Some(sign_in_link(
                &key,
                &format!("http://{addr}"),
                OPERATOR,
                &args.common.admin_roles,
                &args.jwt.jwt_issuer,
                &args.common.roles_claim,
            )?);
            Arc::new(LocalJwtVerifier::development(
                &key,
                &args.jwt.jwt_issuer,
                &args.jwt.jwt_audience,
                &args.common.roles_claim,
            ))
        }
    };
    let console = Arc::new(Console::new(keyport.clone(), &callback_url, sign_in));
    let app = app(
        keyport.clone(),
        http::router(keyport.clone(), authenticator, &Function::ALL),
    )
    .merge(console::router(console));
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = server::Limits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_seconds),
        max_connections: args.max_connections as usize,
    };
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        server::serve(listener, app, limits, shutdown).await;
    });
    let refresher = tokio::spawn(refresh_periodically(
        keyport.clone(),
        Duration::from_secs(args.refresh_interval_seconds.max(1)),
        args.refresh_concurrency,
    ));
    Ok(RunningServer {
        addr,
        keyport,
        sign_in_link: sign_in_link_for_operator,
        stop: Some(stop),
        server,
        refresher,
    })
}

/// However short the interval, a run gets this long: the refresher keeps a safety margin before
/// its deadline, and a run that overruns its tick only delays the next one.
const MIN_REFRESH_RUN: Duration = Duration::from_secs(60);

async fn refresh_periodically(keyport: Arc<Keyport>, interval: Duration, concurrency: usize) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let deadline = tokio::time::Instant::now() + interval.max(MIN_REFRESH_RUN);
        if let Err(error) = keyport.refresh_due(deadline, concurrency).await {
            tracing::warn!(code = error.code(), "the refresher run failed");
        }
    }
}

/// The `keyport` command line: whichever command `cli` names.
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::DevToken(args)) => print_dev_token(&args),
        Some(Command::DevLogin(args)) => print_dev_login(&args),
        Some(Command::CreateTable(args)) => create_table(&args).await,
        Some(Command::Openapi(args)) => write_openapi(&args),
        Some(Command::Connections(args)) => cli::connections(args).await,
        Some(Command::Authorize(args)) => cli::authorize(args).await,
        Some(Command::Token(args)) => cli::token(args).await,
        Some(Command::Export(args)) => cli::export(&args).await,
        Some(Command::Import(args)) => cli::import(&args).await,
        Some(Command::Apply(args)) => cli::apply(&args).await,
        Some(Command::Serve(args)) => serve_until_stopped(*args).await,
        None => serve_until_stopped(cli.serve).await,
    }
}

/// A command's outcome as the process's exit status, with the reason on standard error.
pub fn exit_code(outcome: Result<(), String>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keyport: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `keyport` / `keyport serve`: runs until Ctrl-C or SIGTERM.
pub async fn serve_until_stopped(args: ServeArgs) -> Result<(), String> {
    config::init_logging();
    let data_dir = args.data_dir.clone();
    let local_development = args.common.local_development;
    let server = start(args).await?;
    let base = format!("http://{}", server.addr);
    eprintln!("Keyport is listening on {base} (OpenAPI description: {base}/openapi.json)");
    eprintln!("Data directory: {}", data_dir.display());
    if local_development {
        eprintln!(
            "Local development mode: providers over plain http and on loopback are allowed. Never in production."
        );
    }
    if let Some(link) = &server.sign_in_link {
        eprintln!("Open the console (this link signs you in once, as an administrator):");
        eprintln!("    {link}");
    }
    let [be_admin, then] = start_up_hint(&data_dir, server.addr);
    eprintln!("Be an administrator:  {be_admin}");
    eprintln!("Then:                 {then}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping");
    server.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_up_hint_names_what_is_not_the_default() {
        let default: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        assert_eq!(
            start_up_hint(std::path::Path::new(DEFAULT_DATA_DIR), default),
            [
                "export KEYPORT_TOKEN=$(cargo run -q -- dev-token --sub admin --roles keyport-admins)",
                "cargo run -q -- connections list"
            ]
        );
        let [be_admin, then] = start_up_hint(
            std::path::Path::new("/srv/kp"),
            "127.0.0.1:9090".parse().unwrap(),
        );
        assert!(be_admin.ends_with("--data-dir /srv/kp)"), "{be_admin}");
        assert_eq!(
            then,
            "KEYPORT_SERVER=http://127.0.0.1:9090 cargo run -q -- connections list"
        );
        // The clients' default server is the server's default address.
        assert_eq!(cli::DEFAULT_SERVER, format!("http://{DEFAULT_LISTEN}"));
    }
}
