//! Outbound endpoint URLs, checked before Keyport ever sends a secret to them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::validation::ValidationError;

/// Which outbound URLs are acceptable. Production accepts only https to public hosts; the
/// explicit local development mode also accepts http and loopback, so Keyport can talk to a
/// provider running on the same machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UrlPolicy {
    #[default]
    Production,
    LocalDevelopment,
}

/// An absolute URL Keyport may send credentials to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, format = "uri", example = "https://login.example.com/oauth2/token")
)]
#[serde(into = "String")]
pub struct EndpointUrl(Url);

/// What lets a provider on this machine or over plain http through: said where one is refused.
const LOCAL_DEVELOPMENT_HINT: &str = "plain http and local addresses are allowed only in local-development mode: `keyport --local-development` or KEYPORT_LOCAL_DEVELOPMENT=true, never in production";

impl EndpointUrl {
    pub fn parse(field: &str, value: &str, policy: UrlPolicy) -> Result<Self, ValidationError> {
        let url = Url::parse(value.trim())
            .map_err(|e| ValidationError::new(field, format!("is not an absolute URL ({e})")))?;
        if url.fragment().is_some() {
            return Err(ValidationError::new(field, "must not contain a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ValidationError::new(field, "must not contain credentials"));
        }
        let host = url
            .host()
            .ok_or_else(|| ValidationError::new(field, "must name a host"))?;
        match (url.scheme(), policy) {
            ("https", _) => {}
            ("http", UrlPolicy::LocalDevelopment) => {}
            ("http", UrlPolicy::Production) => {
                return Err(ValidationError::new(
                    field,
                    format!("must use https ({LOCAL_DEVELOPMENT_HINT})"),
                ));
            }
            _ => return Err(ValidationError::new(field, "must use https")),
        }
        if policy == UrlPolicy::Production {
            check_public_host(field, &host)?;
        }
        Ok(Self(url))
    }

    /// Reads a URL that was validated before it was stored: stored data is trusted to have
    /// passed [`EndpointUrl::parse`] under the policy in force when it was written.
    pub fn from_stored(value: &str) -> Result<Self, ValidationError> {
        Url::parse(value)
            .map(Self)
            .map_err(|e| ValidationError::new("url", format!("stored URL is invalid ({e})")))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for EndpointUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_stored(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl From<EndpointUrl> for String {
    fn from(url: EndpointUrl) -> Self {
        url.0.into()
    }
}

/// Loopback, private, link-local (which holds the cloud metadata address 169.254.169.254),
/// unspecified and similar addresses are never a SaaS provider; names that resolve only
/// inside the machine are refused too.
fn check_public_host(field: &str, host: &Host<&str>) -> Result<(), ValidationError> {
    let refuse = |why: &str| {
        Err(ValidationError::new(
            field,
            format!("must not point at {why} ({LOCAL_DEVELOPMENT_HINT})"),
        ))
    };
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal") {
                return refuse("a local host name");
            }
            if name == "metadata.google.internal" || name == "instance-data" {
                return refuse("a cloud metadata service");
            }
            Ok(())
        }
        Host::Ipv4(ip) => {
            if is_non_public(IpAddr::V4(*ip)) {
                refuse("a loopback, private, link-local or metadata address")
            } else {
                Ok(())
            }
        }
        Host::Ipv6(ip) => {
            if is_non_public(IpAddr::V6(*ip)) {
                refuse("a loopback, private, link-local or metadata address")
            } else {
                Ok(())
            }
        }
    }
}

/// Whether an address is outside the public internet. Used for URLs and, by the outbound HTTP
/// client, for the addresses a host name resolves to.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => is_non_public_v6(v6),
    }
}

fn is_non_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, RFC 6598
        || (a == 192 && b == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, RFC 2544: lab networks
        || a >= 224
}

fn is_non_public_v6(v6: Ipv6Addr) -> bool {
    // A mapped address is the IPv4 host itself (dual-stack sockets connect to it over IPv4).
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_non_public_v4(v4);
    }
    let segments = v6.segments();
    let first = segments[0];
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || embeds_ipv4(&segments)
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local, deprecated (RFC 3879) but still routed inside some networks
        || segments[..6] == [0xfd00, 0xec2, 0, 0, 0, 0] // AWS IMDS over IPv6
}

/// Forms that carry an IPv4 address for a translator or tunnel to reach: the translator
/// (NAT64 gateway, 6to4 relay) decides where they go, so they could lead to any IPv4 host,
/// internal ones included. No SaaS provider publishes one as its address.
fn embeds_ipv4(segments: &[u16; 8]) -> bool {
    segments[..6] == [0; 6] // IPv4-compatible ::/96, deprecated (RFC 4291); :: and ::1 too
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] // NAT64 well-known prefix, RFC 6052
        || segments[..3] == [0x64, 0xff9b, 1] // NAT64 local use, RFC 8215
        || segments[0] == 0x2002 // 6to4, RFC 3056
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production(url: &str) -> Result<EndpointUrl, ValidationError> {
        EndpointUrl::parse("token_url", url, UrlPolicy::Production)
    }

    #[test]
    fn https_public_urls_are_accepted() {
        assert!(production("https://login.example.com/oauth2/token").is_ok());
    }

    #[test]
    fn http_is_refused_in_production_and_names_the_field() {
        let err = production("http://login.example.com/token").unwrap_err();
        assert_eq!(err.field, "token_url");
        assert!(err.message.contains("https"));
    }

    #[test]
    fn internal_addresses_are_refused_in_production() {
        for url in [
            "https://127.0.0.1/token",
            "https://localhost/token",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/token",
            "https://192.168.1.1/token",
            "https://[::1]/token",
            "https://[fe80::1]/token",
            "https://[::ffff:127.0.0.1]/token",
            "https://[fd00:ec2::254]/token",
            "https://0.0.0.0/token",
            "https://metadata.google.internal/token",
            "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "https://[::a9fe:a9fe]/latest/meta-data",
            "https://[2002:a9fe:a9fe::1]/token",
            "https://198.18.0.1/token",
        ] {
            assert!(production(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn urls_with_credentials_or_fragments_are_refused() {
        assert!(production("https://user:pw@example.com/token").is_err());
        assert!(production("https://example.com/token#x").is_err());
        assert!(production("not a url").is_err());
    }

    #[test]
    fn a_refusal_outside_local_development_names_the_flag() {
        for url in ["http://login.example.com/token", "https://127.0.0.1/token"] {
            let error = EndpointUrl::parse("token_url", url, UrlPolicy::Production).unwrap_err();
            assert!(
                error.message.contains("--local-development"),
                "{url}: {}",
                error.message
            );
        }
    }

    #[test]
    fn local_development_accepts_http_loopback() {
        let url = EndpointUrl::parse(
            "token_url",
            "http://127.0.0.1:9000/token",
            UrlPolicy::LocalDevelopment,
        );
        assert!(url.is_ok());
        assert!(
            EndpointUrl::parse(
                "token_url",
                "ftp://127.0.0.1/x",
                UrlPolicy::LocalDevelopment
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn addresses_are_classified_public_or_not() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",     // benchmarking, RFC 2544
            "198.19.255.254", // benchmarking, the /15's upper half
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1", // IPv4-mapped, judged by the IPv4 address
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1", // IPv4-compatible (deprecated ::/96)
            "::10.0.0.1",
            "::8.8.8.8", // refused even when the embedded address is public
            "::0.0.0.2",
            "64:ff9b::7f00:1",  // NAT64 of 127.0.0.1
            "64:ff9b::808:808", // NAT64 of 8.8.8.8: the translator is inside the network
            "64:ff9b:1::a00:1", // local-use NAT64, RFC 8215
            "2002:7f00:1::1",   // 6to4
            "2002:808:808::1",
            "fec0::1", // site-local, deprecated
            "feff::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "198.17.255.255",
            "198.20.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "64:ff9b:2::1",
            "2003::1",
            "fbff::1",
        ];
        for text in refused {
            let ip: IpAddr = text.parse().unwrap();
            assert!(is_non_public(ip), "{text} should be refused");
        }
        for text in allowed {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!is_non_public(ip), "{text} should be allowed");
        }
    }
}
