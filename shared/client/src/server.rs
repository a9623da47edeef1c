//! Which Keyport a client may send its bearer token to: over https, or over plain http only
//! to this machine (the local server), so a token never crosses a network in the clear.

use std::net::IpAddr;

use url::{Host, Url};

use crate::ClientError;

/// `server` as the base of every request, or why it cannot be one.
pub fn server_url(server: &str) -> Result<Url, ClientError> {
    let invalid = |why: &str| ClientError::InvalidServer(format!("server {server:?}: {why}"));
    let url = Url::parse(server).map_err(|_| invalid("is not an absolute URL"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            "must be a plain base URL (no query, fragment or user)",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_this_machine(&url) => Ok(url),
        "http" => Err(invalid(
            "must use https: plain http is only for a Keyport on this machine (127.0.0.1, ::1 or localhost)",
        )),
        _ => Err(invalid("must be an http(s) URL")),
    }
}

fn is_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_this_machine() {
        for allowed in [
            "https://keyport.example.com",
            "https://keyport.example.com/prod",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
        ] {
            assert!(server_url(allowed).is_ok(), "{allowed}");
        }
        for (refused, why) in [
            ("http://keyport.example.com", "must use https"),
            ("http://10.0.0.1:8080", "must use https"),
            ("ftp://keyport.example.com", "http(s)"),
            ("keyport.example.com", "absolute"),
            ("https://keyport.example.com/?a=b", "plain base"),
            ("https://user@keyport.example.com", "plain base"),
        ] {
            let error = server_url(refused).expect_err(refused).to_string();
            assert!(error.contains(why), "{refused}: {error}");
        }
    }
}
