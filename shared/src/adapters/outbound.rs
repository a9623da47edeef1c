//! Outbound HTTP to providers: one shared client (rustls, timeouts, no redirects, the standard
//! `HTTPS_PROXY`/`NO_PROXY` settings), bounded response sizes, and in production a resolver
//! that refuses host names resolving to loopback, private, link-local or metadata addresses,
//! so a name that passed URL validation cannot be pointed inside the network afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::{EndpointUrl, UrlPolicy, is_non_public};

const USER_AGENT: &str = concat!("keyport/", env!("CARGO_PKG_VERSION"));

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

/// The shared client. Cheap to clone; build it once per process.
#[derive(Clone)]
pub struct OutboundHttp {
    client: reqwest::Client,
    settings: OutboundSettings,
}

impl OutboundHttp {
    pub fn new(settings: OutboundSettings) -> Result<Self, OutboundError> {
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
        // Behind a forward proxy the proxy resolves the target's name, so checking addresses
        // here would only check the proxy's; the URL checks still apply.
        if settings.policy == UrlPolicy::Production && !proxy_configured() {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let client = builder
            .build()
            .map_err(|e| OutboundError::Other(e.without_url().to_string()))?;
        Ok(Self { client, settings })
    }

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
        EndpointUrl::parse("url", &request.uri().to_string(), self.settings.policy)
            .map_err(|e| OutboundError::Refused(e.message))?;
        let request = reqwest::Request::try_from(request)
            .map_err(|e| OutboundError::Other(e.without_url().to_string()))?;
        let mut response = self.client.execute(request).await.map_err(classify)?;
        let status = response.status();
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
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
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

/// reqwest errors print the URL; ours carry no secrets, but strip it anyway: a message should
/// name what failed, not repeat the request.
fn classify(error: reqwest::Error) -> OutboundError {
    if error.is_timeout() {
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

fn proxy_configured() -> bool {
    ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
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

struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addresses
                .into_iter()
                .filter(|a| !is_non_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
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
        let resolved = PublicOnlyResolver
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(resolved.is_err());
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
