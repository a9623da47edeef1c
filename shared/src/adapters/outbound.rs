//! Outbound HTTP to providers: one shared client (rustls, timeouts, no redirects, a forward
//! proxy from the outbound-proxy setting or else the standard `HTTPS_PROXY`/`NO_PROXY`
//! variables), bounded response sizes, and in production a resolver that refuses host names
//! resolving to loopback, private, link-local or metadata addresses, so a name that passed URL
//! validation cannot be pointed inside the network afterwards. Behind a forward proxy the same
//! check is made on the target before the request is sent.
//!
//! The setting is read through a [`ProxySource`] at most once a minute (each Lambda process),
//! and applied at once by the process that changes it; the client is rebuilt when it changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use crate::domain::{EndpointUrl, UrlPolicy, is_non_public};

const USER_AGENT: &str = concat!("keyport/", env!("CARGO_PKG_VERSION"));

/// How long a process uses the outbound-proxy setting it read before reading it again.
pub const PROXY_SETTING_MAX_AGE: Duration = Duration::from_secs(60);

/// What errors name the setting by (never its value: it may carry credentials).
pub const PROXY_SETTING_NAME: &str = "the outbound-proxy setting";

/// A forward proxy as the outbound-proxy setting gives it.
#[derive(Clone)]
pub struct ProxySetting {
    /// `http://host:port` (or https), without credentials.
    pub url: String,
    /// Hosts reached directly, `NO_PROXY` style.
    pub no_proxy: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySetting")
            .field("url", &self.url)
            .field("no_proxy", &self.no_proxy)
            .field("username", &self.username)
            .field("password_set", &self.password.is_some())
            .finish()
    }
}

/// Where the outbound-proxy setting is read from: the setting and when it was written (which
/// tells a changed setting from the one in use), or `None` without one.
#[async_trait]
pub trait ProxySource: Send + Sync {
    async fn current(&self) -> Result<Option<(DateTime<Utc>, ProxySetting)>, String>;
}

#[derive(Debug, Clone, Copy)]
pub struct OutboundSettings {
    pub policy: UrlPolicy,
    /// The whole exchange, connect to last byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
}

impl OutboundSettings {
    pub fn new(policy: UrlPolicy) -> Self {
        Self {
            policy,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("refused to send a request there: {0}")]
    Refused(String),
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("could not reach the provider: {0}")]
    Connect(String),
    #[error("the provider answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the provider's answer was larger than {0} bytes")]
    TooLarge(usize),
    /// The forward proxy refused Keyport's credentials (HTTP 407). `0` names where the proxy
    /// came from, never its value.
    #[error(
        "the forward proxy refused Keyport's credentials (HTTP 407): check the username and password of {0}"
    )]
    ProxyAuthentication(&'static str),
    #[error("the request failed: {0}")]
    Other(String),
}

impl OutboundError {
    /// Worth trying again later: the provider or the network failed, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            OutboundError::Timeout | OutboundError::Connect(_) => true,
            OutboundError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The shared client. Cheap to clone (clones share the client and its proxy setting); build it
/// once per process.
#[derive(Clone)]
pub struct OutboundHttp {
    settings: OutboundSettings,
    lookup: Arc<dyn HostLookup>,
    /// The proxies of the environment: the fallback without a setting.
    env_proxies: ProxySettings,
    active: Arc<RwLock<Arc<ActiveClient>>>,
    source: Arc<OnceLock<Arc<dyn ProxySource>>>,
    /// When the setting was last read (or applied) by this process.
    setting_read_at: Arc<Mutex<Option<Instant>>>,
    /// One read of the setting at a time: the requests that find it stale together wait for
    /// that one read rather than each reading it.
    setting_reading: Arc<tokio::sync::Mutex<()>>,
}

/// The client in use, built for one proxy configuration.
struct ActiveClient {
    client: reqwest::Client,
    /// Set in production behind a proxy: see [`OutboundHttp::check_destination`].
    destination_check: Option<Arc<dyn HostLookup>>,
    /// The setting it was built from (when it was written); `None`: the environment's proxies.
    setting: Option<DateTime<Utc>>,
    /// What a proxy error names.
    proxy_name: &'static str,
}

impl OutboundHttp {
    pub fn new(settings: OutboundSettings) -> Result<Self, OutboundError> {
        Self::with_lookup(settings, Arc::new(SystemLookup))
    }

    /// As [`OutboundHttp::new`], resolving names with `lookup` (tests: a fixed table, so they do
    /// not depend on the machine's DNS).
    pub fn with_lookup(
        settings: OutboundSettings,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, OutboundError> {
        Self::build(settings, ProxySettings::from_env(), lookup)
    }

    fn build(
        settings: OutboundSettings,
        proxies: ProxySettings,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, OutboundError> {
        let active = ActiveClient::build(&settings, &proxies, &lookup, None)?;
        Ok(Self {
            settings,
            lookup,
            env_proxies: proxies,
            active: Arc::new(RwLock::new(Arc::new(active))),
            source: Arc::new(OnceLock::new()),
            setting_read_at: Arc::new(Mutex::new(None)),
            setting_reading: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Reads the outbound-proxy setting from `source` from now on (once; later calls are
    /// ignored).
    pub fn read_proxy_setting_from(&self, source: Arc<dyn ProxySource>) {
        let _ = self.source.set(source);
    }

    /// Sends through the proxy `setting` names (`None`: the environment's), from now on. The
    /// client is rebuilt only when the setting differs from the one in use.
    pub fn use_proxy_setting(
        &self,
        setting: Option<(DateTime<Utc>, &ProxySetting)>,
    ) -> Result<(), OutboundError> {
        let wanted = setting.as_ref().map(|(at, _)| *at);
        let current = self.current().setting;
        if current != wanted {
            let proxies = match setting {
                Some((_, setting)) => ProxySettings::from_setting(setting),
                None => self.env_proxies.clone(),
            };
            let active = ActiveClient::build(&self.settings, &proxies, &self.lookup, wanted)?;
            *self.active.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(active);
            tracing::info!(
                from_setting = wanted.is_some(),
                configured = proxies.is_configured(),
                "outbound proxy configuration changed"
            );
        }
        *self
            .setting_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(())
    }

    fn current(&self) -> Arc<ActiveClient> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the setting again when this process's copy is older than a minute. A setting that
    /// cannot be read fails the request (as a network failure, worth retrying) rather than
    /// sending it past the proxy the setting may name.
    async fn refresh_proxy_setting(&self) -> Result<(), OutboundError> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let fresh = || {
            self.setting_read_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() < PROXY_SETTING_MAX_AGE)
        };
        if fresh() {
            return Ok(());
        }
        let _reading = self.setting_reading.lock().await;
        // Read by whoever held the turn before.
        if fresh() {
            return Ok(());
        }
        match source.current().await {
            Ok(setting) => self.use_proxy_setting(setting.as_ref().map(|(at, s)| (*at, s))),
            Err(reason) => {
                tracing::warn!(%reason, "the outbound-proxy setting could not be read");
                Err(OutboundError::Connect(format!(
                    "{PROXY_SETTING_NAME} could not be read"
                )))
            }
        }
    }
}

impl ActiveClient {
    fn build(
        settings: &OutboundSettings,
        proxies: &ProxySettings,
        lookup: &Arc<dyn HostLookup>,
        setting: Option<DateTime<Utc>>,
    ) -> Result<Self, OutboundError> {
        // reqwest is built without a crypto provider of its own (no ring beside aws-lc-rs): it
        // takes the process default, aws-lc-rs. Fails only when one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            // A token endpoint that redirects is either misconfigured or an SSRF attempt.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(settings.policy == UrlPolicy::Production);
        builder = proxies.apply(builder)?;
        let production = settings.policy == UrlPolicy::Production;
        if production {
            // Every name the client resolves is checked except the proxies' own: the operator
            // chose those, and they usually live inside the network. That covers the targets
            // NO_PROXY sends direct.
            let resolver = PublicOnlyResolver::new(lookup.clone(), proxies.hosts());
            builder = builder.dns_resolver(Arc::new(resolver));
        }
        let client = builder
            .build()
            .map_err(|e| OutboundError::Other(e.without_url().to_string()))?;
        let destination_check = (production && proxies.is_configured()).then(|| lookup.clone());
        Ok(Self {
            client,
            destination_check,
            setting,
            proxy_name: if setting.is_some() {
                PROXY_SETTING_NAME
            } else {
                "the proxy environment variables"
            },
        })
    }
}

impl OutboundHttp {
    pub fn policy(&self) -> UrlPolicy {
        self.settings.policy
    }

    /// The longest one exchange may take.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Sends one request as the `oauth2` crate builds it. Rate limiting and server errors come
    /// back as [`OutboundError::Status`] (with `Retry-After`), so callers can tell "try later"
    /// from "the provider said no"; every other status is handed to the caller to parse.
    pub async fn execute(
        &self,
        request: oauth2::HttpRequest,
    ) -> Result<oauth2::HttpResponse, OutboundError> {
        let url = EndpointUrl::parse("url", &request.uri().to_string(), self.settings.policy)
            .map_err(|e| OutboundError::Refused(e.message))?;
        self.refresh_proxy_setting().await?;
        let active = self.current();
        active.check_destination(url.as_url()).await?;
        let request = reqwest::Request::try_from(request)
            .map_err(|e| OutboundError::Other(e.without_url().to_string()))?;
        let mut response = active
            .client
            .execute(request)
            .await
            .map_err(|e| classify(e, active.proxy_name))?;
        let status = response.status();
        // Only a proxy answers 407; not worth retrying until someone fixes its credentials.
        if status == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Err(OutboundError::ProxyAuthentication(active.proxy_name));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(OutboundError::Status {
                status: status.as_u16(),
                retry_after: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(e, active.proxy_name))?
        {
            if body.len() + chunk.len() > self.settings.max_response_bytes {
                return Err(OutboundError::TooLarge(self.settings.max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let mut builder = http::Response::builder().status(status);
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        builder
            .body(body)
            .map_err(|e| OutboundError::Other(e.to_string()))
    }

    /// GETs a JSON document (discovery metadata).
    pub async fn get_json(&self, url: &EndpointUrl) -> Result<serde_json::Value, OutboundError> {
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| OutboundError::Other(e.to_string()))?;
        let response = self.execute(request).await?;
        if !response.status().is_success() {
            return Err(OutboundError::Status {
                status: response.status().as_u16(),
                retry_after: None,
            });
        }
        serde_json::from_slice(response.body())
            .map_err(|_| OutboundError::Other("the answer is not JSON".into()))
    }
}

impl ActiveClient {
    /// Behind a forward proxy the proxy resolves the target's name, so the resolver only ever
    /// sees the proxy's: Keyport resolves the target itself first and refuses it unless every
    /// address is public. The proxy looks the name up again, so a name whose records change
    /// in between (DNS rebinding) can still slip through; the proxy's own egress rules are the
    /// backstop there. Requiring every address public means a mixed record set is not enough.
    async fn check_destination(&self, url: &Url) -> Result<(), OutboundError> {
        let Some(lookup) = &self.destination_check else {
            return Ok(());
        };
        // Address literals were judged by the URL check already.
        let Some(Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        let addresses = lookup
            .lookup(host)
            .await
            .map_err(|_| OutboundError::Connect(format!("cannot resolve {host}")))?;
        if addresses.is_empty() || addresses.iter().any(|ip| is_non_public(*ip)) {
            return Err(OutboundError::Refused(format!(
                "{host} resolves to a non-public address"
            )));
        }
        Ok(())
    }
}

/// reqwest errors print the URL; ours carry no secrets, but strip it anyway: a message should
/// name what failed, not repeat the request.
fn classify(error: reqwest::Error, proxy_name: &'static str) -> OutboundError {
    // A CONNECT tunnel the proxy refused for want of credentials (hyper-util's message).
    if error.is_connect() && root_cause(&error).contains("proxy authorization required") {
        OutboundError::ProxyAuthentication(proxy_name)
    } else if error.is_timeout() {
        OutboundError::Timeout
    } else if error.is_connect() {
        OutboundError::Connect(root_cause(&error))
    } else {
        OutboundError::Other(error.without_url().to_string())
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The forward proxies, read from the environment as reqwest (and curl) read it. Keyport reads
/// them itself, and hands them to reqwest explicitly, so it knows which names are the proxies'.
#[derive(Clone, Debug, Default)]
struct ProxySettings {
    https: Option<(&'static str, String)>,
    http: Option<(&'static str, String)>,
    no_proxy: Option<String>,
    /// Basic credentials for the proxy (the setting's; the environment's ride in its URLs).
    auth: Option<(String, SecretString)>,
}

impl ProxySettings {
    /// The setting's proxy, for https and http targets alike.
    fn from_setting(setting: &ProxySetting) -> Self {
        Self {
            https: Some((PROXY_SETTING_NAME, setting.url.clone())),
            http: Some((PROXY_SETTING_NAME, setting.url.clone())),
            no_proxy: setting.no_proxy.clone(),
            auth: setting.username.as_ref().map(|user| {
                (
                    user.clone(),
                    setting
                        .password
                        .clone()
                        .unwrap_or_else(|| SecretString::from("")),
                )
            }),
        }
    }

    fn from_env() -> Self {
        let all = first_env(&["ALL_PROXY", "all_proxy"]);
        // Under CGI, HTTP_PROXY can be set by the client's `Proxy:` header (httpoxy).
        let cgi = std::env::var_os("REQUEST_METHOD").is_some();
        let http = if cgi {
            None
        } else {
            first_env(&["HTTP_PROXY", "http_proxy"])
        };
        Self {
            https: first_env(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone()),
            http: http.or(all),
            no_proxy: first_env(&["NO_PROXY", "no_proxy"]).map(|(_, value)| value),
            auth: None,
        }
    }

    fn is_configured(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }

    fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, OutboundError> {
        // Turns off reqwest's own reading of the environment: these settings replace it.
        let mut builder = builder.no_proxy();
        let no_proxy = || {
            self.no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string)
        };
        let with_auth = |proxy: reqwest::Proxy| match &self.auth {
            Some((user, password)) => proxy.basic_auth(user, password.expose_secret()),
            None => proxy,
        };
        if let Some((name, url)) = &self.https {
            let proxy = reqwest::Proxy::https(url.as_str()).map_err(|_| bad_proxy(name))?;
            builder = builder.proxy(with_auth(proxy).no_proxy(no_proxy()));
        }
        if let Some((name, url)) = &self.http {
            let proxy = reqwest::Proxy::http(url.as_str()).map_err(|_| bad_proxy(name))?;
            builder = builder.proxy(with_auth(proxy).no_proxy(no_proxy()));
        }
        Ok(builder)
    }

    /// The proxies' host names (reqwest, like curl, takes `host:port` as `http://host:port`).
    fn hosts(&self) -> Vec<String> {
        [&self.https, &self.http]
            .into_iter()
            .flatten()
            .filter_map(|(_, value)| {
                let url = if value.contains("://") {
                    Url::parse(value)
                } else {
                    Url::parse(&format!("http://{value}"))
                };
                url.ok()?.host_str().map(str::to_ascii_lowercase)
            })
            .collect()
    }
}

/// Names the variable, never its value: a proxy URL may carry credentials.
fn bad_proxy(variable: &str) -> OutboundError {
    OutboundError::Other(format!("{variable} is not a usable proxy URL"))
}

/// The first of `names` set to something, with the name it was read from.
fn first_env(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(|value| (*name, value))
    })
}

/// `Retry-After` is delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Host names to addresses: the system's resolver, or a fixed table in tests (which must not
/// depend on what the machine's DNS says).
#[async_trait]
pub trait HostLookup: Send + Sync {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

struct SystemLookup;

#[async_trait]
impl HostLookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let addresses = tokio::net::lookup_host((host, 0)).await?;
        Ok(addresses.map(|a| a.ip()).collect())
    }
}

/// Connects only to public addresses, except for the names in `unchecked` (the proxies).
struct PublicOnlyResolver {
    lookup: Arc<dyn HostLookup>,
    unchecked: Arc<[String]>,
}

impl PublicOnlyResolver {
    fn new(lookup: Arc<dyn HostLookup>, unchecked: Vec<String>) -> Self {
        Self {
            lookup,
            unchecked: unchecked.into(),
        }
    }
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let lookup = self.lookup.clone();
        let checked = !self.unchecked.contains(&host);
        Box::pin(async move {
            let addresses = lookup.lookup(&host).await?;
            let usable: Vec<SocketAddr> = addresses
                .into_iter()
                .filter(|ip| !checked || !is_non_public(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if usable.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert!(parse_retry_after("soon").is_none());
    }

    #[tokio::test]
    async fn production_refuses_loopback_before_sending() {
        let http = OutboundHttp::new(OutboundSettings::new(UrlPolicy::Production)).unwrap();
        let request = http::Request::builder()
            .uri("https://127.0.0.1:9/token")
            .body(Vec::new())
            .unwrap();
        assert!(matches!(
            http.execute(request).await,
            Err(OutboundError::Refused(_))
        ));
        let request = http::Request::builder()
            .uri("http://example.com/token")
            .body(Vec::new())
            .unwrap();
        assert!(matches!(
            http.execute(request).await,
            Err(OutboundError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_internal_addresses() {
        let resolved = PublicOnlyResolver::new(Arc::new(SystemLookup), Vec::new())
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(resolved.is_err());
    }

    /// Names to addresses without asking DNS.
    struct Table(Vec<(&'static str, &'static str)>);

    #[async_trait]
    impl HostLookup for Table {
        async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
            let found: Vec<IpAddr> = self
                .0
                .iter()
                .filter(|(name, _)| *name == host)
                .map(|(_, ip)| ip.parse().unwrap())
                .collect();
            if found.is_empty() {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            Ok(found)
        }
    }

    fn table() -> Arc<dyn HostLookup> {
        Arc::new(Table(vec![
            ("proxy.test", "127.0.0.1"),
            ("api.example.com", "93.184.216.34"),
            ("internal.example.com", "10.0.0.7"),
            ("mixed.example.com", "93.184.216.34"),
            ("mixed.example.com", "169.254.169.254"),
            ("direct.example.com", "10.0.0.8"),
        ]))
    }

    /// A forward proxy on loopback that records the first line of every request and refuses it.
    async fn recording_proxy() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_owned());
                let _ = stream
                    .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, seen)
    }

    fn get(url: &str) -> oauth2::HttpRequest {
        http::Request::builder().uri(url).body(Vec::new()).unwrap()
    }

    /// A setting source that counts its reads and answers what it holds now.
    struct Counted {
        reads: std::sync::atomic::AtomicUsize,
        setting: std::sync::Mutex<Option<(DateTime<Utc>, ProxySetting)>>,
    }

    #[async_trait]
    impl ProxySource for Counted {
        async fn current(&self) -> Result<Option<(DateTime<Utc>, ProxySetting)>, String> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.setting.lock().unwrap().clone())
        }
    }

    #[tokio::test]
    async fn the_setting_is_read_at_most_once_a_minute_and_applied_at_once_on_change() {
        let (port, seen) = recording_proxy().await;
        let setting = ProxySetting {
            url: format!("http://127.0.0.1:{port}"),
            no_proxy: None,
            username: Some("keyport".into()),
            password: Some("pw".to_owned().into()),
        };
        let source = Arc::new(Counted {
            reads: Default::default(),
            setting: std::sync::Mutex::new(Some((Utc::now(), setting))),
        });
        let http = OutboundHttp::build(
            OutboundSettings::new(UrlPolicy::LocalDevelopment),
            ProxySettings::default(),
            table(),
        )
        .unwrap();
        http.read_proxy_setting_from(source.clone());
        // A loopback target nobody listens on: only the proxy can answer (403).
        let target = "http://127.0.0.1:9/token";
        // Three at once, on a stale (never read) setting: one read between them.
        let (a, b, c) = tokio::join!(
            http.execute(get(target)),
            http.execute(get(target)),
            http.execute(get(target))
        );
        for answer in [a, b, c] {
            assert_eq!(answer.unwrap().status(), 403);
        }
        assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![format!("GET {target} HTTP/1.1"); 3]
        );
        // The process that removes the setting applies it at once, without reading again.
        *source.setting.lock().unwrap() = None;
        http.use_proxy_setting(None).unwrap();
        assert!(http.execute(get(target)).await.is_err(), "direct: refused");
        assert_eq!(seen.lock().unwrap().len(), 3, "the proxy saw it");
        assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_proxy_answering_407_is_an_error_naming_the_setting_not_worth_retrying() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"p\"\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let http = OutboundHttp::build(
            OutboundSettings::new(UrlPolicy::LocalDevelopment),
            ProxySettings::default(),
            table(),
        )
        .unwrap();
        let setting = ProxySetting {
            url: format!("http://127.0.0.1:{port}"),
            no_proxy: None,
            username: Some("keyport".into()),
            password: Some("the-password".to_owned().into()),
        };
        http.use_proxy_setting(Some((Utc::now(), &setting)))
            .unwrap();
        let error = http
            .execute(get("http://127.0.0.1:9/token"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                OutboundError::ProxyAuthentication(PROXY_SETTING_NAME)
            ),
            "{error:?}"
        );
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(message.contains("the outbound-proxy setting"), "{message}");
        assert!(!message.contains("the-password") && !message.contains(&port.to_string()));
    }

    #[tokio::test]
    async fn behind_a_proxy_production_checks_the_target_before_sending() {
        let (port, seen) = recording_proxy().await;
        let proxies = ProxySettings {
            https: Some(("HTTPS_PROXY", format!("http://proxy.test:{port}"))),
            http: None,
            no_proxy: Some("direct.example.com".into()),
            auth: None,
        };
        let settings = OutboundSettings::new(UrlPolicy::Production);
        let http = OutboundHttp::build(settings, proxies, table()).unwrap();

        for refused in [
            "https://internal.example.com/token",
            "https://mixed.example.com/token",
            // NO_PROXY: goes direct, and is checked all the same.
            "https://direct.example.com/token",
        ] {
            let outcome = http.execute(get(refused)).await;
            assert!(
                matches!(outcome, Err(OutboundError::Refused(_))),
                "{refused}: {outcome:?}"
            );
        }
        assert!(seen.lock().unwrap().is_empty(), "the proxy was contacted");

        // A public target goes through the proxy, whose own (internal) name is not refused.
        let outcome = http.execute(get("https://api.example.com/token")).await;
        assert!(
            !matches!(outcome, Err(OutboundError::Refused(_))),
            "{outcome:?}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["CONNECT api.example.com:443 HTTP/1.1"]
        );
    }

    #[tokio::test]
    async fn the_resolver_lets_only_the_proxies_resolve_inside_the_network() {
        let resolver = PublicOnlyResolver::new(table(), vec!["proxy.test".into()]);
        let proxy: Vec<SocketAddr> = resolver
            .resolve("proxy.test".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(proxy, ["127.0.0.1:0".parse().unwrap()]);
        assert!(
            resolver
                .resolve("internal.example.com".parse().unwrap())
                .await
                .is_err()
        );
        let mixed: Vec<SocketAddr> = resolver
            .resolve("mixed.example.com".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(mixed, ["93.184.216.34:0".parse().unwrap()]);
    }

    #[test]
    fn the_target_check_applies_in_production_behind_a_proxy_only() {
        let behind_proxy = || ProxySettings {
            https: Some(("HTTPS_PROXY", "proxy.test:3128".into())),
            http: Some(("ALL_PROXY", "http://user:secret@Proxy2.Test:8080".into())),
            no_proxy: None,
            auth: None,
        };
        assert_eq!(behind_proxy().hosts(), ["proxy.test", "proxy2.test"]);
        let production = OutboundSettings::new(UrlPolicy::Production);
        let local = OutboundSettings::new(UrlPolicy::LocalDevelopment);
        let checks = |settings, proxies| {
            OutboundHttp::build(settings, proxies, table())
                .unwrap()
                .current()
                .destination_check
                .is_some()
        };
        assert!(checks(production, behind_proxy()));
        // Without a proxy the resolver checks every address the client connects to.
        assert!(!checks(production, ProxySettings::default()));
        assert!(!checks(local, behind_proxy()));
    }

    #[test]
    fn a_bad_proxy_setting_is_named_without_its_value() {
        let proxies = ProxySettings {
            https: Some(("HTTPS_PROXY", "http://user:secret@[::1".into())),
            http: None,
            no_proxy: None,
            auth: None,
        };
        let settings = OutboundSettings::new(UrlPolicy::Production);
        let error = OutboundHttp::build(settings, proxies, table())
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(message.contains("HTTPS_PROXY"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn transient_failures_are_told_apart() {
        assert!(
            OutboundError::Status {
                status: 503,
                retry_after: None
            }
            .is_transient()
        );
        assert!(
            OutboundError::Status {
                status: 429,
                retry_after: None
            }
            .is_transient()
        );
        assert!(
            !OutboundError::Status {
                status: 400,
                retry_after: None
            }
            .is_transient()
        );
        assert!(OutboundError::Timeout.is_transient());
        assert!(!OutboundError::Refused("x".into()).is_transient());
    }
}
