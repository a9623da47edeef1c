//! The local server started in-process on a free loopback port over a test back-end, with
//! local development mode on (its OAuth peer is plain http on loopback), and tokens for it.

use std::time::Duration;

use clap::Parser;
use keyport_local::{Cli, RunningServer};
use keyport_shared::config::Backends;
use keyport_shared::http::DevSigningKey;
use std::sync::Arc;

use crate::backends::Backend;

pub const ISSUER: &str = "keyport-local";
pub const AUDIENCE: &str = "keyport";
pub const ROLES_CLAIM: &str = "cognito:groups";

pub struct TestServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub server: RunningServer,
    dev_key: DevSigningKey,
    _data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server; `extra_args` are `keyport` flags (e.g. `--allow-password-grant`).
    pub async fn start(backend: &Backend, extra_args: &[&str]) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temporary folder");
        let data = data_dir.path().to_str().expect("a UTF-8 path").to_owned();
        let mut argv = vec![
            "keyport",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--local-development",
            // Flows refresh right after authorizing; the on-demand limit has tests of its own.
            "--on-demand-refresh-seconds",
            "0",
            "--refresh-interval-seconds",
            "3600",
        ];
        argv.extend_from_slice(extra_args);
        let cli = Cli::try_parse_from(argv).expect("valid keyport arguments");
        let backends = Backends {
            store: backend.store.clone(),
            secrets: backend.secrets.clone(),
            cipher: Arc::new(backend.cipher()),
        };
        let server = keyport_local::start_with_backends(cli.serve, backends)
            .await
            .expect("the local server starts");
        let dev_key = DevSigningKey::load_or_create(&data_dir.path().join("dev-signing.key"))
            .expect("the development key");
        TestServer {
            base: format!("http://{}", server.addr),
            server,
            dev_key,
            _data_dir: data_dir,
        }
    }

    /// The server's data directory (its database, keys and development signing key).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The callback URL the server registered (its own `/oauth/callback`).
    pub fn callback_url(&self) -> String {
        self.url("/oauth/callback")
    }

    /// A valid bearer token for `subject` with `roles`.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        self.token_with(subject, roles, ISSUER, AUDIENCE, Duration::from_secs(3600))
    }

    pub fn token_with(
        &self,
        subject: &str,
        roles: &[&str],
        issuer: &str,
        audience: &str,
        lifetime: Duration,
    ) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.dev_key
            .mint(subject, &roles, lifetime, issuer, audience, ROLES_CLAIM)
            .expect("a token")
    }

    /// A person's token carrying OAuth `scopes` (space-separated in the `scope` claim).
    pub fn scoped_token(&self, subject: &str, roles: &[&str], scopes: &[&str]) -> String {
        self.token_with_claims(
            subject,
            roles,
            serde_json::json!({"scope": scopes.join(" ")}),
        )
    }

    /// An application's token, as an identity provider issues it for client credentials:
    /// `sub` and `client_id` both name the application, no roles, the given `scopes`.
    pub fn application_token(&self, client_id: &str, scopes: &[&str]) -> String {
        let mut claims = serde_json::json!({"client_id": client_id});
        if !scopes.is_empty() {
            claims["scope"] = scopes.join(" ").into();
        }
        self.token_with_claims(client_id, &[], claims)
    }

    fn token_with_claims(&self, subject: &str, roles: &[&str], extra: serde_json::Value) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let extra = extra.as_object().expect("claims").clone();
        self.dev_key
            .mint_with_claims(
                subject,
                &roles,
                &extra,
                Duration::from_secs(3600),
                ISSUER,
                AUDIENCE,
                ROLES_CLAIM,
            )
            .expect("a token")
    }

    /// A one-time console sign-in link for `subject` with `roles` (what `keyport dev-login`
    /// prints).
    pub fn sign_in_link(&self, subject: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let ticket = self
            .dev_key
            .mint_sign_in_ticket(subject, &roles, ISSUER, ROLES_CLAIM)
            .expect("a ticket");
        self.url(&format!("/console/signin/ticket?ticket={ticket}"))
    }

    /// A token that expired an hour ago (beyond any leeway).
    pub fn expired_token(&self, subject: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.dev_key
            .mint_expired(subject, &roles, ISSUER, AUDIENCE, ROLES_CLAIM)
            .expect("a token")
    }
}
