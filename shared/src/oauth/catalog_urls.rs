//! Every catalog entry's authorization URL, built the way a real connection builds it: the
//! provider's defaults filled into a request, validated under the production URL policy, and
//! turned into a URL by the same code the authorize route runs.

use std::collections::BTreeMap;

use chrono::Utc;
use url::Url;

use super::client::{OAuthClient, OAuthSettings};
use crate::adapters::outbound::{OutboundHttp, OutboundSettings};
use crate::catalog::Catalog;
use crate::domain::{Connection, ConnectionInput, GrantType, Provider, StateToken, UrlPolicy};

const CALLBACK: &str = "https://keyport.example.com/oauth/callback";

fn client() -> OAuthClient {
    let http = OutboundHttp::new(OutboundSettings::new(UrlPolicy::Production)).unwrap();
    OAuthClient::new(
        http,
        OAuthSettings {
            callback_url: CALLBACK.parse().unwrap(),
            allow_password_grant: false,
        },
    )
}

/// The interactive grants a catalog entry is checked with; `custom` has no endpoints to check.
fn interactive_grants(provider: &Provider) -> Vec<GrantType> {
    if provider.key == "custom" {
        return Vec::new();
    }
    provider
        .grant_types
        .iter()
        .copied()
        .filter(|g| g.is_interactive())
        .collect()
}

/// The host the entry's authorization template names once its placeholders hold their
/// examples: the URL Keyport builds must go there and nowhere else.
fn template_host(provider: &Provider) -> String {
    let template = provider.authorization_url.as_deref().unwrap();
    let mut filled = template.to_owned();
    for placeholder in &provider.placeholders {
        filled = filled.replace(&format!("{{{}}}", placeholder.name), &placeholder.example);
    }
    Url::parse(&filled).unwrap().host_str().unwrap().to_owned()
}

fn connection_for(provider: &Provider, grant: GrantType) -> Connection {
    let params: BTreeMap<String, String> = provider
        .placeholders
        .iter()
        .map(|p| (p.name.clone(), p.example.clone()))
        .collect();
    let mut body = serde_json::json!({
        "name": format!("catalog {}", provider.key),
        "provider": provider.key,
        "provider_params": params,
        "grant_type": grant.as_str(),
        "client_id": "client-123",
        "client_secret": "secret",
        "private_key": "key",
    });
    if grant == GrantType::Password {
        body["username"] = "robot@example.com".into();
        body["password"] = "robot-password".into();
    }
    let mut input: ConnectionInput = serde_json::from_value(body).unwrap();
    let key = format!("{} ({})", provider.key, grant.as_str());
    provider
        .fill_defaults(&mut input)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    Connection::create(input, Utc::now(), UrlPolicy::Production)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .0
}

fn query(url: &Url) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        assert!(
            pairs.insert(name.to_string(), value.to_string()).is_none(),
            "{name} appears twice in {url}"
        );
    }
    pairs
}

#[test]
fn every_interactive_catalog_entry_builds_a_complete_authorization_url() {
    let catalog = Catalog::builtin();
    let mut checked = 0;
    for provider in catalog.providers() {
        for grant in interactive_grants(provider) {
            check_authorization_url(provider, grant);
            checked += 1;
        }
    }
    assert!(
        checked >= 40,
        "only {checked} interactive catalog grants were checked"
    );
}

#[test]
fn every_catalog_grant_makes_a_valid_connection() {
    for provider in Catalog::builtin().providers() {
        if provider.key == "custom" {
            continue;
        }
        for grant in &provider.grant_types {
            let connection = connection_for(provider, *grant);
            if let Some(scopes) = provider.default_scopes_by_grant.get(grant) {
                let held: Vec<&str> = connection.scopes.iter().collect();
                let expected: Vec<&str> = scopes.iter().map(String::as_str).collect();
                assert_eq!(held, expected, "{}: {}", provider.key, grant.as_str());
            }
        }
    }
}

fn check_authorization_url(provider: &Provider, grant: GrantType) {
    {
        let connection = connection_for(provider, grant);
        let start = client()
            .start_authorization(&connection, &StateToken::generate())
            .unwrap();
        let url = &start.url;
        let params = query(url);
        let key = &format!("{} ({})", provider.key, grant.as_str());

        let template = provider.authorization_url.as_deref().unwrap();
        assert_eq!(
            url.host_str(),
            Some(template_host(provider).as_str()),
            "{key}: the authorization URL left the provider's host"
        );
        assert!(
            !url.as_str().contains('{'),
            "{key}: a placeholder is left in {url}"
        );
        assert_eq!(url.scheme(), "https", "{key}");
        let expected_base = connection
            .authorization_url
            .as_ref()
            .unwrap()
            .as_url()
            .clone();
        assert_eq!(
            url.host_str(),
            expected_base.host_str(),
            "{key}: host from {template}"
        );
        assert_eq!(
            url.path(),
            expected_base.path(),
            "{key}: path from {template}"
        );

        assert_eq!(
            params.get("response_type").map(String::as_str),
            Some("code"),
            "{key}"
        );
        assert_eq!(
            params.get("client_id").map(String::as_str),
            Some("client-123"),
            "{key}"
        );
        assert_eq!(
            params.get("redirect_uri").map(String::as_str),
            Some(CALLBACK),
            "{key}"
        );
        assert!(
            params.get("state").is_some_and(|s| s.len() >= 43),
            "{key}: a 256-bit state"
        );
        for (name, value) in &provider.authorization_params {
            assert_eq!(
                params.get(name),
                Some(value),
                "{key}: required parameter {name}"
            );
        }
        let default_scopes = provider
            .default_scopes_by_grant
            .get(&grant)
            .unwrap_or(&provider.default_scopes);
        if !default_scopes.is_empty() {
            let expected = default_scopes.join(&provider.scope_separator);
            assert_eq!(
                params.get("scope"),
                Some(&expected),
                "{key}: scopes joined with {:?}",
                provider.scope_separator
            );
        }
        let pkce = grant == GrantType::AuthorizationCodePkce;
        assert_eq!(
            params.get("code_challenge_method").map(String::as_str),
            pkce.then_some("S256"),
            "{key}"
        );
        assert_eq!(start.pkce_verifier.is_some(), pkce, "{key}");
        assert_eq!(
            params.get("code_challenge").map(String::len),
            pkce.then_some(43),
            "{key}: a base64url SHA-256 challenge exactly with PKCE"
        );
        let openid = default_scopes.iter().any(|s| s == "openid");
        assert_eq!(
            params.contains_key("nonce"),
            openid,
            "{key}: a nonce exactly when openid is asked for"
        );
    }
}
