//! Settings shared by every entry point, read from flags or environment variables (the Lambda
//! functions only have the latter), and the assembly of a [`Keyport`] from them.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use clap::Args;
use url::Url;

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

use crate::adapters::aws::{CallRecorder, KmsDataKeys, SecretsManagerStore};
use crate::adapters::dynamodb::{DEFAULT_DUE_SHARDS, DynamoStore};
use crate::adapters::embedded::{EmbeddedDb, EmbeddedSecretStore, EmbeddedStore, LocalMasterKey};
use crate::adapters::outbound::{OutboundHttp, OutboundSettings};
use crate::crypto::{EnvelopeCipher, KeyCacheLimits};
use crate::domain::{ApplicationId, Role, UrlPolicy};
use crate::oauth::{OAuthClient, OAuthSettings};
use crate::ports::{DataKeyProvider, InstallationSecret, SecretStore, Store};
use crate::service::{Keyport, KeyportSettings};

#[derive(Args, Debug, Clone)]
pub struct CommonSettings {
    /// Public URL of the callback route, registered at every provider as the redirect URI.
    #[arg(long, env = "KEYPORT_CALLBACK_URL")]
    pub callback_url: Option<Url>,
    /// Roles that hold the manage_connections permission (comma-separated).
    #[arg(
        long,
        env = "KEYPORT_ADMIN_ROLES",
        value_delimiter = ',',
        default_value = "keyport-admins"
    )]
    pub admin_roles: Vec<String>,
    /// Applications (client ids) that are administrators, as the administrator roles' members
    /// are (comma-separated); their tokens' scopes still limit what they do.
    #[arg(long, env = "KEYPORT_ADMIN_APPLICATIONS", value_delimiter = ',')]
    pub admin_applications: Vec<String>,
    /// The token claim that lists the caller's roles.
    #[arg(long, env = "KEYPORT_ROLES_CLAIM", default_value = "cognito:groups")]
    pub roles_claim: String,
    /// Hosts the callback may send the browser on to afterwards (comma-separated).
    #[arg(long, env = "KEYPORT_REDIRECT_ALLOW_LIST", value_delimiter = ',')]
    pub redirect_allow_list: Vec<String>,
    /// Enable the legacy resource-owner password grant (forbidden by RFC 9700 §2.4).
    #[arg(long, env = "KEYPORT_ALLOW_PASSWORD_GRANT", default_value_t = false)]
    pub allow_password_grant: bool,
    /// Local development: allow http and loopback provider endpoints. Never in production.
    #[arg(long, env = "KEYPORT_LOCAL_DEVELOPMENT", default_value_t = false)]
    pub local_development: bool,
    /// How long one refresh may hold a token before another instance takes over (seconds):
    /// longer than a provider's slowest answer, short enough that a crash is soon forgotten.
    #[arg(long, env = "KEYPORT_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub lease_seconds: u64,
    /// How long Keyport waits for a provider's answer (seconds).
    #[arg(long, env = "KEYPORT_PROVIDER_TIMEOUT_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub provider_timeout_seconds: u64,
    /// How long the write of a new grant is retried while storage is unavailable (seconds).
    /// A refresh starts only while its provider timeout and this still fit in its lease.
    #[arg(long, env = "KEYPORT_GRANT_WRITE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub grant_write_seconds: u64,
    /// Callers make Keyport ask a provider for a still-valid token at most once per this many
    /// seconds (reads wanting more validity than the provider grants, forced refreshes).
    #[arg(long, env = "KEYPORT_ON_DEMAND_REFRESH_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub on_demand_refresh_seconds: u64,
    /// How many tokens a connection delete revokes before it answers (the refresher revokes
    /// the rest of a connection with more).
    #[arg(long, env = "KEYPORT_DELETE_IN_LINE_TOKENS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub delete_in_line_tokens: u32,
    /// A caller's record of when it last fetched a connection's token is written at most once
    /// per this many seconds (per process, and conditionally in the store).
    #[arg(long, env = "KEYPORT_FETCH_RECORD_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub fetch_record_seconds: u64,
    /// Seconds a failed webhook delivery waits before each retry (comma-separated); after the
    /// last, the notification is given up. The Standard Webhooks schedule, about three days.
    #[arg(
        long,
        env = "KEYPORT_WEBHOOK_RETRY_SECONDS",
        value_delimiter = ',',
        default_value = "5,300,1800,7200,18000,36000,50400,72000,86400"
    )]
    pub webhook_retry_seconds: Vec<u64>,
    /// Into how many spans a scheduled run with refresh workers splits the last minute of due
    /// times (one message each, plus one for what came due before it), so several workers
    /// share a run's work; each worker lists every due shard in its span.
    #[arg(long, env = "KEYPORT_REFRESH_WINDOWS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub refresh_windows: u32,
    /// The refresher refreshes a grant this many days before its provider's documented
    /// inactivity window closes (at most half the window).
    #[arg(long, env = "KEYPORT_IDLE_REFRESH_MARGIN_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(0..=365))]
    pub idle_refresh_margin_days: u64,
    /// A grant is reported as ending this many days before its provider's documented absolute
    /// end (at most half the grant's lifetime).
    #[arg(long, env = "KEYPORT_GRANT_END_WARNING_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u64).range(0..=365))]
    pub grant_end_warning_days: u64,
}

#[derive(Args, Debug, Clone)]
pub struct AwsSettings {
    /// The DynamoDB table.
    #[arg(long = "table", env = "KEYPORT_TABLE")]
    pub table: Option<String>,
    /// The KMS key (id, ARN or alias) that wraps data keys.
    #[arg(long = "kms-key-id", env = "KEYPORT_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// The Secrets Manager name prefix client secrets live under.
    #[arg(
        long = "secret-prefix",
        env = "KEYPORT_SECRET_PREFIX",
        default_value = "keyport/"
    )]
    pub secret_prefix: String,
    /// How many partitions the DynamoDB due index spreads its entries over: more than a
    /// refresh rate's index writes need at ~1,000 writes/s each. It may grow, never shrink.
    #[arg(long = "due-shards", env = "KEYPORT_DUE_SHARDS", default_value_t = DEFAULT_DUE_SHARDS, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub due_shards: u32,
}

impl AwsSettings {
    /// The table and the KMS key: the AWS back-ends need both.
    pub fn table_and_key(&self) -> Result<(&str, &str), String> {
        let table = self
            .table
            .as_deref()
            .ok_or("KEYPORT_TABLE is required for the AWS back-ends")?;
        let key_id = self
            .kms_key_id
            .as_deref()
            .ok_or("KEYPORT_KMS_KEY_ID is required for the AWS back-ends")?;
        Ok((table, key_id))
    }
}

impl CommonSettings {
    pub fn url_policy(&self) -> UrlPolicy {
        if self.local_development {
            UrlPolicy::LocalDevelopment
        } else {
            UrlPolicy::Production
        }
    }

    pub fn keyport_settings(&self) -> Result<KeyportSettings, String> {
        let mut settings = KeyportSettings::new(self.url_policy());
        settings.admin_roles = self
            .admin_roles
            .iter()
            // An operator's list ("a, b"): spaces around the commas are separators, not names.
            .map(|r| r.trim())
            .map(|r| Role::parse(r).map_err(|e| format!("admin role {r:?}: {}", e.message)))
            .collect::<Result<BTreeSet<_>, _>>()?;
        settings.admin_applications = self
            .admin_applications
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(|a| {
                ApplicationId::parse(a)
                    .map_err(|e| format!("administrator application {a:?}: {}", e.message))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        settings.redirect_allow_list = self
            .redirect_allow_list
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        settings.allow_password_grant = self.allow_password_grant;
        settings.lease_duration = std::time::Duration::from_secs(self.lease_seconds);
        settings.grant_write_budget = std::time::Duration::from_secs(self.grant_write_seconds);
        settings.fetch_record_interval = std::time::Duration::from_secs(self.fetch_record_seconds);
        settings.webhook_retry_schedule = self
            .webhook_retry_seconds
            .iter()
            .map(|s| std::time::Duration::from_secs(*s))
            .collect();
        settings.on_demand_refresh_interval =
            std::time::Duration::from_secs(self.on_demand_refresh_seconds);
        settings.delete_in_line_tokens = self.delete_in_line_tokens;
        settings.refresh_windows = self.refresh_windows;
        settings.idle_refresh_margin =
            std::time::Duration::from_secs(self.idle_refresh_margin_days * 24 * 60 * 60);
        settings.grant_end_warning =
            std::time::Duration::from_secs(self.grant_end_warning_days * 24 * 60 * 60);
        if self.provider_timeout_seconds + self.grant_write_seconds >= self.lease_seconds {
            return Err(format!(
                "KEYPORT_LEASE_SECONDS ({}) must exceed KEYPORT_PROVIDER_TIMEOUT_SECONDS ({}) plus KEYPORT_GRANT_WRITE_SECONDS ({}): a refresh needs both inside its lease",
                self.lease_seconds, self.provider_timeout_seconds, self.grant_write_seconds
            ));
        }
        Ok(settings)
    }
}

/// The three back-ends a Keyport runs on.
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub cipher: Arc<EnvelopeCipher>,
}

/// DynamoDB, KMS and Secrets Manager, with clients built once from the standard AWS
/// configuration chain (which honours `AWS_ENDPOINT_URL`, so it also runs against moto).
pub async fn aws_backends(settings: &AwsSettings) -> Result<Backends, String> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_backends_with(settings, &sdk, None)
}

/// The refresher's work queue at `queue_url` over `sdk` (with `recorder` attached when given).
pub fn sqs_work_queue(
    queue_url: &str,
    sdk: &aws_config::SdkConfig,
    recorder: Option<&CallRecorder>,
) -> Arc<dyn crate::ports::WorkQueue> {
    let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(recorder) = recorder {
        sqs.push_interceptor(SharedInterceptor::new(recorder.clone()));
    }
    Arc::new(crate::adapters::aws::SqsWorkQueue::new(
        aws_sdk_sqs::Client::from_conf(sqs.build()),
        queue_url,
    ))
}

/// The EventBridge bus named `bus_name` over `sdk` (with `recorder` attached when given).
pub fn event_bridge_bus(
    bus_name: &str,
    sdk: &aws_config::SdkConfig,
    recorder: Option<&CallRecorder>,
) -> Arc<dyn crate::ports::EventBus> {
    let mut events = aws_sdk_eventbridge::config::Builder::from(sdk);
    if let Some(recorder) = recorder {
        events.push_interceptor(SharedInterceptor::new(recorder.clone()));
    }
    Arc::new(crate::adapters::aws::EventBridgeBus::new(
        aws_sdk_eventbridge::Client::from_conf(events.build()),
        bus_name,
    ))
}

/// The AWS back-ends over `sdk`, each client with `recorder` attached when one is given: the
/// production assembly, which tests observe instead of assembling their own.
pub fn aws_backends_with(
    settings: &AwsSettings,
    sdk: &aws_config::SdkConfig,
    recorder: Option<&CallRecorder>,
) -> Result<Backends, String> {
    let (table, key_id) = settings.table_and_key()?;
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
    let mut kms = aws_sdk_kms::config::Builder::from(sdk);
    let mut secrets = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(recorder) = recorder {
        dynamodb.push_interceptor(SharedInterceptor::new(recorder.clone()));
        kms.push_interceptor(SharedInterceptor::new(recorder.clone()));
        secrets.push_interceptor(SharedInterceptor::new(recorder.clone()));
    }
    let keys: Arc<dyn DataKeyProvider> = Arc::new(KmsDataKeys::new(
        aws_sdk_kms::Client::from_conf(kms.build()),
        key_id,
    ));
    Ok(Backends {
        store: Arc::new(
            DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb.build()), table)
                .with_due_shards(settings.due_shards),
        ),
        secrets: Arc::new(
            SecretsManagerStore::new(
                aws_sdk_secretsmanager::Client::from_conf(secrets.build()),
                settings.secret_prefix.clone(),
            )
            .with_kms_key(key_id),
        ),
        cipher: Arc::new(EnvelopeCipher::new(keys, KeyCacheLimits::default())),
    })
}

/// The embedded database and master key file in `data_dir`, created on first use.
pub fn embedded_backends(data_dir: &Path) -> Result<Backends, String> {
    let db = EmbeddedDb::open(&data_dir.join("keyport.db")).map_err(|e| e.to_string())?;
    let keys: Arc<dyn DataKeyProvider> = Arc::new(
        LocalMasterKey::load_or_create(&data_dir.join("master.key")).map_err(|e| e.to_string())?,
    );
    let cipher = Arc::new(EnvelopeCipher::new(keys, KeyCacheLimits::default()));
    Ok(Backends {
        store: Arc::new(EmbeddedStore::new(db.clone())),
        secrets: Arc::new(EmbeddedSecretStore::new(db, cipher.clone())),
        cipher,
    })
}

/// How the console signs people in through the installation's identity provider (OpenID
/// Connect). Without an issuer the console has no such sign-in (on one machine, people use the
/// one-time links the server prints).
#[derive(Args, Debug, Clone, Default)]
pub struct ConsoleSignInSettings {
    /// The identity provider's issuer URL (its OpenID configuration is read from there).
    #[arg(long, env = "KEYPORT_CONSOLE_OIDC_ISSUER")]
    pub console_oidc_issuer: Option<String>,
    /// The console's client id at the identity provider.
    #[arg(long, env = "KEYPORT_CONSOLE_OIDC_CLIENT_ID")]
    pub console_oidc_client_id: Option<String>,
    /// The console's client secret at the identity provider.
    #[arg(
        long,
        env = "KEYPORT_CONSOLE_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub console_oidc_client_secret: Option<secrecy::SecretString>,
}

impl ConsoleSignInSettings {
    /// The identity provider's sign-in for the console at `origin`, if an issuer is set.
    pub fn oidc(
        &self,
        keyport: &Keyport,
        common: &CommonSettings,
        origin: &Url,
    ) -> Result<Option<crate::http::console::OidcSignIn>, String> {
        self.oidc_with_secret(keyport, common, origin, None)
    }

    /// [`Self::oidc`] with the client secret read from `stored` (a secret store's) instead of
    /// `KEYPORT_CONSOLE_OIDC_CLIENT_SECRET`, when given.
    pub fn oidc_with_secret(
        &self,
        keyport: &Keyport,
        common: &CommonSettings,
        origin: &Url,
        stored: Option<Arc<dyn InstallationSecret>>,
    ) -> Result<Option<crate::http::console::OidcSignIn>, String> {
        let Some(issuer) = &self.console_oidc_issuer else {
            return Ok(None);
        };
        let client_secret: Arc<dyn InstallationSecret> = match (
            stored,
            &self.console_oidc_client_secret,
        ) {
            (Some(stored), None) => stored,
            (None, Some(value)) => Arc::new(value.clone()),
            (Some(_), Some(_)) => {
                return Err(
                        "the console's client secret is given twice: set KEYPORT_CONSOLE_OIDC_CLIENT_SECRET or KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN, not both"
                            .into(),
                    );
            }
            (None, None) => {
                return Err(
                        "KEYPORT_CONSOLE_OIDC_ISSUER needs KEYPORT_CONSOLE_OIDC_CLIENT_ID and KEYPORT_CONSOLE_OIDC_CLIENT_SECRET"
                            .into(),
                    );
            }
        };
        let Some(client_id) = &self.console_oidc_client_id else {
            return Err("KEYPORT_CONSOLE_OIDC_ISSUER needs KEYPORT_CONSOLE_OIDC_CLIENT_ID".into());
        };
        let redirect_uri = origin
            .join("/console/signin/callback")
            .map_err(|e| format!("the console's sign-in callback: {e}"))?;
        Ok(Some(crate::http::console::OidcSignIn::new(
            crate::http::console::OidcSignInSettings {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret,
                roles_claim: common.roles_claim.clone(),
            },
            keyport.oauth.http().clone(),
            redirect_uri,
        )))
    }
}

/// Assembles the use cases over `backends`.
pub fn keyport(
    backends: Backends,
    common: &CommonSettings,
    callback_url: Url,
) -> Result<Keyport, String> {
    let settings = common.keyport_settings()?;
    let mut outbound = OutboundSettings::new(settings.url_policy);
    outbound.timeout = std::time::Duration::from_secs(common.provider_timeout_seconds);
    let http = OutboundHttp::new(outbound).map_err(|e| e.to_string())?;
    let oauth = OAuthClient::new(
        http,
        OAuthSettings {
            callback_url,
            allow_password_grant: settings.allow_password_grant,
        },
    );
    Ok(Keyport::new(
        backends.store,
        backends.secrets,
        backends.cipher,
        oauth,
        settings,
    ))
}

/// JSON log lines on stderr, levels from `RUST_LOG`: a level, and `target=level` pairs,
/// comma-separated (`warn,keyport_shared=debug`); targets not named log at `info` unless a
/// bare level says otherwise.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        )
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .try_init();
}

/// What `RUST_LOG` asks for. Without a level for the rest (unset, not understood, or only
/// `target=level` pairs), the rest logs at `info`: a typo must not silence the errors.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::filter::Targets {
    let filter: tracing_subscriber::filter::Targets =
        spec.and_then(|spec| spec.parse().ok()).unwrap_or_default();
    match filter.default_level() {
        Some(_) => filter,
        None => filter.with_default(tracing::Level::INFO),
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn rust_log_sets_levels_per_target_with_info_by_default() {
        let levels = |spec| {
            let filter = log_filter(spec);
            (
                filter.default_level(),
                filter.would_enable("keyport_shared::service", &Level::DEBUG),
            )
        };
        assert_eq!(levels(None), (Some(LevelFilter::INFO), false));
        assert_eq!(
            levels(Some("not a [filter")),
            (Some(LevelFilter::INFO), false)
        );
        assert_eq!(levels(Some("warn")), (Some(LevelFilter::WARN), false));
        assert_eq!(
            levels(Some("warn,keyport_shared=debug")),
            (Some(LevelFilter::WARN), true)
        );
        assert_eq!(
            levels(Some("keyport_shared=debug")),
            (Some(LevelFilter::INFO), true)
        );
        assert_eq!(levels(Some("off")), (Some(LevelFilter::OFF), false));
    }
}
