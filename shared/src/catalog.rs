//! The built-in provider catalog: `providers.toml`, compiled into the binary and parsed once.
//! The file is data for review; [`Catalog::validate`] holds every entry to the rules a
//! connection will meet, and the tests run it.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::domain::{EndpointUrl, PlaceholderKind, Provider, ProviderKey, Scopes, UrlPolicy};

const CATALOG_TOML: &str = include_str!("../providers.toml");

/// Parameters Keyport sets on authorization requests itself.
const RESERVED_AUTHORIZATION_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "state",
    "response_type",
    "scope",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

#[derive(Debug, Deserialize)]
pub struct Catalog {
    #[serde(rename = "provider")]
    providers: Vec<Provider>,
}

impl Catalog {
    /// The catalog shipped with this build. The file is validated by the test suite, so a
    /// parse failure here is a build that should never have been released.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(CATALOG_TOML).expect("the built-in providers.toml is valid")
        })
    }

    pub fn parse(text: &str) -> Result<Catalog, String> {
        toml::from_str(text).map_err(|e| format!("providers.toml: {e}"))
    }

    pub fn get(&self, key: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.key == key)
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Every problem with every entry, each naming the provider and the field.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut keys = BTreeSet::new();
        for provider in &self.providers {
            let key = &provider.key;
            if !keys.insert(key.clone()) {
                problems.push(format!("{key}: the key appears twice"));
            }
            if ProviderKey::parse(key).is_err() {
                problems.push(format!("{key}: not a valid key"));
            }
            problems.extend(
                check_provider(provider)
                    .into_iter()
                    .map(|p| format!("{key}: {p}")),
            );
        }
        if self.get(ProviderKey::CUSTOM).is_none() {
            problems.push("the catalog has no custom entry".into());
        }
        problems
    }
}

fn check_provider(provider: &Provider) -> Vec<String> {
    let mut problems = Vec::new();
    let templates = [
        ("authorization_url", &provider.authorization_url),
        ("token_url", &provider.token_url),
        ("revocation_url", &provider.revocation_url),
        ("issuer", &provider.issuer),
    ];
    if provider.key == ProviderKey::CUSTOM {
        if templates.iter().any(|(_, t)| t.is_some()) {
            problems.push("custom takes every endpoint from the connection".into());
        }
        return problems;
    }
    if provider.token_url.is_none() {
        problems.push("token_url is missing".into());
    }
    if provider.grant_types.is_empty() {
        problems.push("grant_types is empty".into());
    }
    if provider.grant_types.iter().any(|g| g.is_interactive())
        && provider.authorization_url.is_none()
    {
        problems.push("an interactive grant needs an authorization_url".into());
    }
    let example_params = provider
        .placeholders
        .iter()
        .map(|p| (p.name.clone(), p.example.clone()))
        .collect();
    let mut used = BTreeSet::new();
    for (field, template) in templates {
        let Some(template) = template else { continue };
        for placeholder in placeholders_in(template) {
            if !provider.placeholders.iter().any(|p| p.name == placeholder) {
                problems.push(format!(
                    "{field} uses undeclared placeholder {{{placeholder}}}"
                ));
            }
            used.insert(placeholder);
        }
        match provider.fill_template(field, template, &example_params) {
            Ok(url) => {
                if let Err(e) = EndpointUrl::parse(field, &url, UrlPolicy::Production) {
                    problems.push(format!("{e} (filled with the examples: {url})"));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    for placeholder in &provider.placeholders {
        if !used.contains(&placeholder.name) {
            problems.push(format!(
                "placeholder {} is declared but not used",
                placeholder.name
            ));
        }
        if placeholder.kind == PlaceholderKind::OneOf
            && !placeholder.allowed_values.contains(&placeholder.example)
        {
            problems.push(format!(
                "placeholder {}'s example is not among its allowed values",
                placeholder.name
            ));
        }
    }
    if provider.scope_separator.is_empty() {
        problems.push("scope_separator is empty".into());
    }
    if let Err(e) = Scopes::from_list(provider.default_scopes.iter().map(String::as_str)) {
        problems.push(format!("default_scopes: {}", e.message));
    }
    for name in provider
        .authorization_params
        .keys()
        .chain(provider.token_params.keys())
    {
        if RESERVED_AUTHORIZATION_PARAMS.contains(&name.as_str()) {
            problems.push(format!(
                "parameter {name} is set by Keyport and cannot come from the catalog"
            ));
        }
    }
    problems
}

/// The `{name}`s in a template.
fn placeholders_in(template: &str) -> Vec<String> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GrantType;

    #[test]
    fn the_builtin_catalog_parses_and_validates() {
        let catalog = Catalog::parse(CATALOG_TOML).unwrap();
        assert_eq!(catalog.validate(), Vec::<String>::new());
    }

    #[test]
    fn the_certified_providers_are_all_there() {
        let catalog = Catalog::builtin();
        for key in [
            "apigee",
            "genesys-cloud",
            "google-calendar",
            "google-drive",
            "gmail",
            "google-sheets",
            "jira",
            "microsoft-entra",
            "microsoft-365",
            "outlook",
            "microsoft-teams",
            "sharepoint",
            "okta",
            "salesforce",
            "servicenow",
            "custom",
        ] {
            assert!(catalog.get(key).is_some(), "{key} is missing");
        }
    }

    #[test]
    fn google_entries_ask_for_offline_access_with_consent() {
        for key in [
            "google-calendar",
            "google-drive",
            "gmail",
            "google-sheets",
            "apigee",
        ] {
            let provider = Catalog::builtin().get(key).unwrap();
            assert_eq!(
                provider
                    .authorization_params
                    .get("access_type")
                    .map(String::as_str),
                Some("offline"),
                "{key}"
            );
            assert_eq!(
                provider
                    .authorization_params
                    .get("prompt")
                    .map(String::as_str),
                Some("consent"),
                "{key}"
            );
        }
    }

    #[test]
    fn microsoft_entries_need_a_tenant_and_offline_access() {
        for key in [
            "microsoft-entra",
            "microsoft-365",
            "outlook",
            "microsoft-teams",
            "sharepoint",
        ] {
            let provider = Catalog::builtin().get(key).unwrap();
            assert!(
                provider
                    .default_scopes
                    .iter()
                    .any(|s| s == "offline_access"),
                "{key}"
            );
            assert!(
                provider.placeholders.iter().any(|p| p.name == "tenant"),
                "{key}"
            );
            assert!(
                provider.token_url.as_deref().unwrap().contains("{tenant}"),
                "{key}"
            );
        }
    }

    #[test]
    fn salesforce_keeps_its_instance_url() {
        for key in ["salesforce", "salesforce-my-domain"] {
            let provider = Catalog::builtin().get(key).unwrap();
            assert!(
                provider
                    .token_response_extras
                    .iter()
                    .any(|e| e == "instance_url"),
                "{key}"
            );
        }
    }

    #[test]
    fn a_region_outside_the_allowed_values_is_refused() {
        let genesys = Catalog::builtin().get("genesys-cloud").unwrap();
        let params = |region: &str| {
            [("region".to_owned(), region.to_owned())]
                .into_iter()
                .collect()
        };
        assert!(
            genesys
                .fill_template(
                    "token_url",
                    genesys.token_url.as_deref().unwrap(),
                    &params("mypurecloud.de")
                )
                .is_ok()
        );
        assert!(
            genesys
                .fill_template(
                    "token_url",
                    genesys.token_url.as_deref().unwrap(),
                    &params("evil.example")
                )
                .is_err()
        );
    }

    #[test]
    fn validation_catches_broken_entries() {
        let broken = Catalog::parse(
            r#"
            [[provider]]
            key = "broken"
            display_name = "Broken"
            authorization_url = "https://{org}.example.com/authorize"
            token_url = "http://login.example.com/token"
            grant_types = ["authorization_code"]
            default_scopes = ["a b"]
            authorization_params = { redirect_uri = "https://evil.example" }

            [[provider.placeholders]]
            name = "unused"
            kind = "host_label"
            description = "nothing"
            example = "x"
            "#,
        )
        .unwrap();
        let problems = broken.validate().join("\n");
        for expected in [
            "undeclared placeholder {org}",
            "must use https",
            "scope",
            "redirect_uri",
            "unused",
            "no custom entry",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not reported in:\n{problems}"
            );
        }
    }

    #[test]
    fn every_entry_offers_a_grant_keyport_supports() {
        for provider in Catalog::builtin().providers() {
            assert!(!provider.grant_types.is_empty(), "{}", provider.key);
            assert!(
                provider
                    .grant_types
                    .iter()
                    .all(|g| GrantType::ALL.contains(g))
            );
        }
    }
}
