//! The outbound-proxy setting: the forward proxy every request to a provider goes through,
//! set by an administrator. Its password is write-only and lives in the secret store; the rest
//! is stored as this record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{ClientSecret, ValidationError};

const MAX_URL: usize = 2048;
const MAX_NO_PROXY: usize = 4096;
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

/// `PUT /settings/outbound-proxy`: the whole setting, replacing any stored one (a password left
/// out is removed, not kept).
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({"url": "http://proxy.internal:3128", "no_proxy": "login.partner.example", "username": "keyport", "password": "<password>"}))
)]
#[serde(deny_unknown_fields)]
pub struct OutboundProxyInput {
    /// `http://host:port` or `https://host:port`, without credentials or a path.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: String,
    /// Hosts reached directly, comma-separated as `NO_PROXY` (`*`, `.example.com`, `host:port`,
    /// addresses and CIDR blocks). The production address checks apply to them all the same.
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub no_proxy: Option<String>,
    /// The proxy's Basic user name (no `:`).
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub username: Option<String>,
    /// The proxy's Basic password: stored in the secret store, never returned (see
    /// `password_set`). Needs `username`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<String>, write_only, max_length = 1024)
    )]
    pub password: Option<ClientSecret>,
}

/// The setting as stored and answered: everything but the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({"url": "http://proxy.internal:3128", "no_proxy": "login.partner.example", "username": "keyport", "password_set": true, "updated_at": "2026-12-08T01:00:00Z"}))
)]
pub struct OutboundProxy {
    pub url: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub no_proxy: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub username: Option<String>,
    /// Whether a password is stored (it is never returned).
    pub password_set: bool,
    /// When the setting was last written.
    pub updated_at: DateTime<Utc>,
}

fn printable(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not hold control characters",
        ));
    }
    Ok(())
}

impl OutboundProxyInput {
    /// The record to store (written now) and the password to keep, once every field is valid.
    pub fn validate(
        self,
        now: DateTime<Utc>,
    ) -> Result<(OutboundProxy, Option<ClientSecret>), ValidationError> {
        let url = self.url.trim();
        printable("url", url, MAX_URL)?;
        let parsed =
            Url::parse(url).map_err(|_| ValidationError::new("url", "is not an absolute URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ValidationError::new("url", "must be http or https"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ValidationError::new(
                "url",
                "must not carry credentials: give them as username and password",
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ValidationError::new("url", "must name a host"));
        }
        if !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(ValidationError::new(
                "url",
                "must be scheme, host and port only (no path, query or fragment)",
            ));
        }
        let no_proxy = self
            .no_proxy
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        if let Some(no_proxy) = &no_proxy {
            printable("no_proxy", no_proxy, MAX_NO_PROXY)?;
        }
        let username = self.username.filter(|v| !v.is_empty());
        if let Some(username) = &username {
            printable("username", username, MAX_USERNAME)?;
            if username.contains(':') {
                return Err(ValidationError::new(
                    "username",
                    "must not contain ':' (Basic credentials)",
                ));
            }
        }
        let password = self.password.filter(|p| !p.expose_secret().is_empty());
        if let Some(password) = &password {
            if username.is_none() {
                return Err(ValidationError::new("password", "needs a username"));
            }
            // The value is never echoed: only its length and kind of characters are judged.
            printable("password", password.expose_secret(), MAX_PASSWORD)?;
        }
        let setting = OutboundProxy {
            url: parsed.as_str().trim_end_matches('/').to_owned(),
            no_proxy,
            username,
            password_set: password.is_some(),
            updated_at: now,
        };
        Ok((setting, password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: &str) -> OutboundProxyInput {
        OutboundProxyInput {
            url: url.into(),
            no_proxy: None,
            username: Some("keyport".into()),
            password: Some(ClientSecret::new("pa:ss")),
        }
    }

    #[test]
    fn a_proxy_url_is_scheme_host_and_port() {
        let (setting, password) = input("http://proxy.internal:3128/")
            .validate(Utc::now())
            .unwrap();
        assert_eq!(setting.url, "http://proxy.internal:3128");
        assert!(setting.password_set);
        assert_eq!(password.unwrap().expose_secret(), "pa:ss");
        for (url, why) in [
            ("proxy.internal:3128", "not absolute"),
            ("socks5://proxy.internal:1080", "scheme"),
            ("http://u:p@proxy.internal:3128", "credentials"),
            ("http://proxy.internal:3128/path", "path"),
            ("http://proxy.internal:3128/?q=1", "query"),
        ] {
            let error = input(url).validate(Utc::now()).unwrap_err();
            assert_eq!(error.field, "url", "{why}");
        }
    }

    #[test]
    fn a_password_needs_a_username_and_is_never_in_an_error() {
        let mut alone = input("http://proxy.internal:3128");
        alone.username = None;
        assert_eq!(alone.validate(Utc::now()).unwrap_err().field, "password");
        let mut long = input("http://proxy.internal:3128");
        long.password = Some(ClientSecret::new("S".repeat(MAX_PASSWORD + 1)));
        let error = long.validate(Utc::now()).unwrap_err();
        assert_eq!(error.field, "password");
        assert!(!error.message.contains("SSSS"));
        let mut colon = input("http://proxy.internal:3128");
        colon.username = Some("a:b".into());
        assert_eq!(colon.validate(Utc::now()).unwrap_err().field, "username");
    }
}
