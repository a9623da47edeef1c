//! The built-in provider catalog: `providers.toml`, compiled into the binary and parsed once.
//! The file is data for review; [`Catalog::validate`] holds every entry to the rules a
//! connection will meet, and the tests run it.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::domain::{
    EndpointUrl, GrantLifetime, GrantType, Placeholder, PlaceholderKind, Provider, ProviderKey,
    ProviderProtocol, Scopes, UrlPolicy,
};

const CATALOG_TOML: &str = include_str!("../providers.toml");

/// Parameters Keyport sets on authorization and token requests itself; a catalog entry may not
/// set them (the same rule a connection's own parameters meet).
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "redirect_uri",
    "state",
    "response_type",
    "scope",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "nonce",
    "grant_type",
    "refresh_token",
    "username",
    "password",
];

/// Callback query parameters of the protocol itself (RFC 6749 §4.1.2, RFC 9207): Keyport reads
/// them, so a catalog entry cannot ask for them to be kept as provider values, and the callback
/// never keeps them (an authorization code in `extra` would outlive its exchange).
pub(crate) const RESERVED_CALLBACK_PARAMS: &[&str] = &[
    "code",
    "state",
    "iss",
    "error",
    "error_description",
    "error_uri",
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
        let catalog: Catalog = toml::from_str(text).map_err(|e| format!("providers.toml: {e}"))?;
        let unknown = unknown_fields(text, &catalog)?;
        if unknown.is_empty() {
            Ok(catalog)
        } else {
            Err(format!("providers.toml: {}", unknown.join("; ")))
        }
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
    match &provider.docs_url {
        None => problems.push("docs_url is missing".into()),
        Some(url) => {
            if let Err(e) = EndpointUrl::parse("docs_url", url, UrlPolicy::Production) {
                problems.push(e.to_string());
            }
        }
    }
    let mut declared = BTreeSet::new();
    for placeholder in &provider.placeholders {
        if !declared.insert(placeholder.name.as_str()) {
            problems.push(format!(
                "placeholder {} is declared twice",
                placeholder.name
            ));
        }
        problems.extend(check_allowed_values(provider, placeholder, &templates));
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
        if RESERVED_PARAMS.contains(&name.as_str()) {
            problems.push(format!(
                "parameter {name} is set by Keyport and cannot come from the catalog"
            ));
        }
    }
    if provider.pkce
        != provider
            .grant_types
            .contains(&GrantType::AuthorizationCodePkce)
    {
        problems.push("pkce must be true exactly when authorization_code_pkce is offered".into());
    }
    for scope in &provider.default_scopes {
        if scope.contains(provider.scope_separator.as_str()) {
            problems.push(format!(
                "default scope {scope} contains the scope separator {:?}",
                provider.scope_separator
            ));
        }
    }
    problems.extend(check_scopes_by_grant(provider));
    problems.extend(check_protocol(&provider.protocol));
    problems.extend(check_lifetime(&provider.lifetime));
    problems.extend(check_documentation(provider));
    for (field, template) in templates {
        if let Some(template) = template {
            problems.extend(check_placeholder_positions(provider, field, template));
        }
    }
    problems
}

fn check_scopes_by_grant(provider: &Provider) -> Vec<String> {
    let mut problems = Vec::new();
    for (grant, scopes) in &provider.default_scopes_by_grant {
        if !provider.grant_types.contains(grant) {
            problems.push(format!(
                "default_scopes_by_grant names {}, which grant_types does not offer",
                grant.as_str()
            ));
        }
        if let Err(e) = Scopes::from_list(scopes.iter().map(String::as_str)) {
            problems.push(format!(
                "default_scopes_by_grant.{}: {}",
                grant.as_str(),
                e.message
            ));
        }
    }
    problems
}

fn check_protocol(protocol: &ProviderProtocol) -> Vec<String> {
    let mut problems = Vec::new();
    let field_name = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    for (field, value) in [
        ("success_field", &protocol.success_field),
        ("user_token_field", &protocol.user_token_field),
    ] {
        if let Some(value) = value
            && !field_name(value)
        {
            problems.push(format!("protocol.{field} {value:?} is not a field name"));
        }
    }
    let mut seen = BTreeSet::new();
    for name in &protocol.callback_params {
        if !field_name(name) {
            problems.push(format!(
                "protocol.callback_params: {name:?} is not a parameter name"
            ));
        }
        if RESERVED_CALLBACK_PARAMS.contains(&name.as_str()) {
            problems.push(format!(
                "protocol.callback_params: {name} belongs to the protocol and cannot be kept as a provider value"
            ));
        }
        if !seen.insert(name) {
            problems.push(format!("protocol.callback_params: {name} appears twice"));
        }
    }
    for (own, rfc) in &protocol.error_codes {
        if !RFC_TOKEN_ERRORS.contains(&rfc.as_str()) {
            problems.push(format!(
                "protocol.error_codes: {own} maps to {rfc}, not an RFC 6749 §5.2 error code"
            ));
        }
    }
    problems
}

/// The token endpoint's error codes (RFC 6749 §5.2), the only ones a provider's own codes may
/// be read as.
const RFC_TOKEN_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

fn check_lifetime(lifetime: &GrantLifetime) -> Vec<String> {
    let mut problems = Vec::new();
    if lifetime.access_token_seconds == Some(0) {
        problems.push("lifetime.access_token_seconds must be greater than 0".into());
    }
    if lifetime.refresh_token_idle_days == Some(0) {
        problems.push("lifetime.refresh_token_idle_days must be greater than 0".into());
    }
    if lifetime.refresh_token_absolute_days == Some(0) {
        problems.push("lifetime.refresh_token_absolute_days must be greater than 0".into());
    }
    if let (Some(idle), Some(absolute)) = (
        lifetime.refresh_token_idle_days,
        lifetime.refresh_token_absolute_days,
    ) && idle > absolute
    {
        problems.push(format!(
            "lifetime: an idle window of {idle} days cannot exceed the absolute lifetime of {absolute} days"
        ));
    }
    problems
}

/// docs_checked holds addresses (or, for a source without one, a description); an address must
/// be https like docs_url. docs_unverified holds sentences.
fn check_documentation(provider: &Provider) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in &provider.docs_checked {
        let looks_like_url = entry.contains("://") || entry.starts_with("www.");
        if !looks_like_url {
            continue;
        }
        match url::Url::parse(entry) {
            Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
            _ => problems.push(format!("docs_checked: {entry} is not an https address")),
        }
    }
    for (field, entries) in [
        ("docs_checked", &provider.docs_checked),
        ("docs_unverified", &provider.docs_unverified),
    ] {
        if entries.iter().any(|e| e.trim().is_empty()) {
            problems.push(format!("{field} has a blank entry"));
        }
    }
    problems
}

/// Where a placeholder stands decides whether its value could move the request to another
/// registrable domain: in the host only a host_label followed by at least two fixed labels
/// (`{shop}.myshopify.com`) or a reviewed one_of may stand; a path_segment only in the path, as
/// a whole segment.
fn check_placeholder_positions(provider: &Provider, field: &str, template: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(rest) = template.strip_prefix("https://") else {
        return problems;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    for placeholder in &provider.placeholders {
        let token = format!("{{{}}}", placeholder.name);
        let name = &placeholder.name;
        if let Some(at) = authority.find(&token) {
            let before = &authority[..at];
            let after = &authority[at + token.len()..];
            match placeholder.kind {
                PlaceholderKind::OneOf => {}
                PlaceholderKind::HostLabel => {
                    let whole_label = before.is_empty() || before.ends_with('.');
                    let fixed_domain = after.strip_prefix('.').is_some_and(|domain| {
                        domain.split('.').count() >= 2
                            && !domain.contains('{')
                            && domain.split('.').all(|label| !label.is_empty())
                    });
                    if !whole_label || !fixed_domain {
                        problems.push(format!(
                            "{field}: host_label {{{name}}} must be a whole label followed by a fixed domain of at least two labels"
                        ));
                    }
                }
                PlaceholderKind::PathSegment => problems.push(format!(
                    "{field}: path_segment {{{name}}} cannot stand in the host"
                )),
            }
        }
        let mut search = path;
        while let Some(at) = search.find(&token) {
            let before = &search[..at];
            let after = &search[at + token.len()..];
            let whole_segment = before.ends_with('/')
                && (after.is_empty() || after.starts_with('/') || after.starts_with('?'));
            if !whole_segment {
                problems.push(format!("{field}: {{{name}}} must be a whole path segment"));
            }
            search = after;
        }
    }
    problems
}

/// Every key of every `[[provider]]` and `[[provider.placeholders]]` table must be a field the
/// catalog knows: a misspelt field would otherwise vanish silently (`docs_unverifed`).
fn unknown_fields(text: &str, catalog: &Catalog) -> Result<Vec<String>, String> {
    let raw: toml::Table = toml::from_str(text).map_err(|e| format!("providers.toml: {e}"))?;
    let Some(entries) = raw.get("provider").and_then(toml::Value::as_array) else {
        return Ok(Vec::new());
    };
    let known = |value: serde_json::Value| -> BTreeSet<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut problems = Vec::new();
    for (entry, provider) in entries.iter().zip(catalog.providers()) {
        let Some(table) = entry.as_table() else {
            continue;
        };
        let provider_fields = known(serde_json::to_value(provider).map_err(|e| e.to_string())?);
        for name in table.keys().filter(|k| !provider_fields.contains(*k)) {
            problems.push(format!("{}: unknown field {name}", provider.key));
        }
        let placeholder_fields = known(
            serde_json::to_value(Placeholder {
                name: String::new(),
                kind: PlaceholderKind::HostLabel,
                description: String::new(),
                example: String::new(),
                allowed_values: Vec::new(),
            })
            .map_err(|e| e.to_string())?,
        );
        let placeholders = table
            .get("placeholders")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_table);
        for placeholder in placeholders {
            for name in placeholder
                .keys()
                .filter(|k| !placeholder_fields.contains(*k))
            {
                problems.push(format!(
                    "{}: unknown placeholder field {name}",
                    provider.key
                ));
            }
        }
    }
    Ok(problems)
}

/// A `one_of` placeholder is only as safe as its list: every value must be a plain lowercase
/// domain fragment, and every template filled with it (the other placeholders at their examples)
/// must still be a production URL. Other kinds take no list, so none can be mistaken for a limit.
fn check_allowed_values(
    provider: &Provider,
    placeholder: &Placeholder,
    templates: &[(&str, &Option<String>)],
) -> Vec<String> {
    let name = &placeholder.name;
    if placeholder.kind != PlaceholderKind::OneOf {
        return if placeholder.allowed_values.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "placeholder {name} has allowed_values but is not of kind one_of"
            )]
        };
    }
    let mut problems = Vec::new();
    if placeholder.allowed_values.is_empty() {
        problems.push(format!(
            "placeholder {name} is one_of with no allowed_values"
        ));
    }
    if !placeholder.allowed_values.contains(&placeholder.example) {
        problems.push(format!(
            "placeholder {name}'s example is not among its allowed values"
        ));
    }
    for value in &placeholder.allowed_values {
        let well_formed = value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if !well_formed {
            problems.push(format!(
                "placeholder {name}: allowed value {value:?} is not a lowercase domain fragment"
            ));
            continue;
        }
        let params = provider
            .placeholders
            .iter()
            .map(|p| {
                let v = if p.name == *name { value } else { &p.example };
                (p.name.clone(), v.clone())
            })
            .collect();
        for (field, template) in templates {
            let Some(template) = template else { continue };
            if !template.contains(&format!("{{{name}}}")) {
                continue;
            }
            match provider.fill_template(field, template, &params) {
                Ok(url) => {
                    if let Err(e) = EndpointUrl::parse(field, &url, UrlPolicy::Production) {
                        problems.push(format!("{e} (with {name} = {value}: {url})"));
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
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
    fn the_applications_automation_teams_connect_most_are_there() {
        let catalog = Catalog::builtin();
        let keys = [
            "github",
            "gitlab",
            "slack",
            "zoom",
            "dropbox",
            "box",
            "docusign",
            "hubspot",
            "zendesk",
            "asana",
            "confluence",
            "xero",
            "quickbooks-online",
            "shopify",
            "notion",
            "airtable",
            "smartsheet",
            "monday",
            "linear",
            "miro",
            "webex",
            "calendly",
            "pipedrive",
            "mailchimp",
            "intercom",
            "stripe-connect",
            "linkedin",
            "dynamics-365",
            "azure-devops",
        ];
        for key in keys {
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
            // Entra's issuer names the tenant GUID, which {tenant} need not be.
            assert!(provider.issuer.is_none(), "{key}");
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
    fn salesforce_client_credentials_only_on_my_domain() {
        let has_client_credentials = |key: &str| {
            Catalog::builtin()
                .get(key)
                .unwrap()
                .grant_types
                .contains(&GrantType::ClientCredentials)
        };
        assert!(!has_client_credentials("salesforce"));
        assert!(has_client_credentials("salesforce-my-domain"));
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
            token_params = { grant_type = "password" }

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
            "grant_type",
            "unused",
            "docs_url is missing",
            "no custom entry",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not reported in:\n{problems}"
            );
        }
    }

    #[test]
    fn validation_checks_every_allowed_value() {
        let broken = Catalog::parse(
            r#"
            [[provider]]
            key = "custom"
            display_name = "Custom"

            [[provider]]
            key = "regional"
            display_name = "Regional"
            authorization_url = "https://login.{region}/authorize"
            token_url = "https://login.{region}/token"
            grant_types = ["authorization_code"]
            docs_url = "https://docs.example.com/oauth"

            [[provider.placeholders]]
            name = "region"
            kind = "one_of"
            description = "the region domain"
            example = "eu.example.com"
            allowed_values = ["us.example.com", "evil.com/x", "Upper.example.com", "localhost"]

            [[provider.placeholders]]
            name = "region"
            kind = "host_label"
            description = "again"
            example = "x"
            allowed_values = ["x"]
            "#,
        )
        .unwrap();
        let problems = broken.validate().join("\n");
        for expected in [
            "example is not among its allowed values",
            "\"evil.com/x\" is not a lowercase domain fragment",
            "\"Upper.example.com\" is not a lowercase domain fragment",
            "with region = localhost",
            "declared twice",
            "not of kind one_of",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not reported in:\n{problems}"
            );
        }
        assert!(
            !problems.contains("with region = us.example.com"),
            "{problems}"
        );
    }

    #[test]
    fn the_quirks_of_the_reference_providers_are_data() {
        use crate::domain::{RefreshTokenRotation, RequestEncoding};
        let get = |key: &str| Catalog::builtin().get(key).unwrap();
        assert!(get("github").protocol.form_encoded_responses);
        let slack = &get("slack").protocol;
        assert_eq!(slack.success_field.as_deref(), Some("ok"));
        assert_eq!(slack.user_token_field.as_deref(), Some("authed_user"));
        assert_eq!(
            get("quickbooks-online").protocol.callback_params,
            ["realmId"]
        );
        assert_eq!(get("shopify").protocol.callback_params, ["shop"]);
        assert_eq!(
            get("notion").protocol.token_request_body,
            RequestEncoding::Json
        );
        let jira = get("jira");
        assert_eq!(jira.protocol.token_request_body, RequestEncoding::Json);
        assert_eq!(
            jira.protocol.refresh_token_rotation,
            RefreshTokenRotation::RotatesReuseRevokes
        );
        assert_eq!(jira.lifetime.refresh_token_idle_days, Some(90));
        assert_eq!(jira.lifetime.refresh_token_absolute_days, Some(365));
    }

    #[test]
    fn okta_defaults_to_the_org_authorization_server() {
        let okta = Catalog::builtin().get("okta").unwrap();
        assert_eq!(
            okta.token_url.as_deref(),
            Some("https://{okta_domain}.okta.com/oauth2/v1/token")
        );
        assert_eq!(
            okta.issuer.as_deref(),
            Some("https://{okta_domain}.okta.com")
        );
        assert!(!okta.grant_types.contains(&GrantType::ClientCredentials));
        let custom = Catalog::builtin().get("okta-custom").unwrap();
        let params = [
            ("okta_domain".to_owned(), "acme".to_owned()),
            ("auth_server_id".to_owned(), "default".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            custom
                .fill_template("issuer", custom.issuer.as_deref().unwrap(), &params)
                .unwrap(),
            "https://acme.okta.com/oauth2/default"
        );
        assert!(custom.grant_types.contains(&GrantType::ClientCredentials));
    }

    #[test]
    fn microsoft_client_credentials_ask_for_the_resource_default_and_refresh_names_its_scope() {
        for provider in Catalog::builtin().providers().iter().filter(|p| {
            p.token_url
                .as_deref()
                .is_some_and(|t| t.starts_with("https://login.microsoftonline.com/"))
        }) {
            let key = &provider.key;
            assert!(provider.protocol.refresh_sends_scope, "{key}");
            assert_eq!(provider.lifetime.refresh_token_idle_days, Some(90), "{key}");
            if let Some(scopes) = provider
                .default_scopes_by_grant
                .get(&GrantType::ClientCredentials)
            {
                assert!(
                    scopes.iter().all(|s| s.ends_with("/.default")),
                    "{key}: {scopes:?}"
                );
            }
        }
        for key in [
            "microsoft-entra",
            "microsoft-365",
            "outlook",
            "microsoft-teams",
            "sharepoint",
        ] {
            let provider = Catalog::builtin().get(key).unwrap();
            assert_eq!(
                provider
                    .default_scopes_by_grant
                    .get(&GrantType::ClientCredentials),
                Some(&vec!["https://graph.microsoft.com/.default".to_owned()]),
                "{key}"
            );
        }
    }

    #[test]
    fn genesys_lists_the_sdk_regions() {
        let genesys = Catalog::builtin().get("genesys-cloud").unwrap();
        let regions = &genesys.placeholders[0].allowed_values;
        assert_eq!(regions.len(), 17);
        for region in ["mxc1.pure.cloud", "apse1.pure.cloud", "mypurecloud.com"] {
            assert!(regions.iter().any(|r| r == region), "{region}");
        }
    }

    #[test]
    fn servicenow_offers_pkce_and_names_its_lifetimes() {
        let servicenow = Catalog::builtin().get("servicenow").unwrap();
        assert!(servicenow.pkce);
        assert!(
            servicenow
                .grant_types
                .contains(&GrantType::AuthorizationCodePkce)
        );
        assert_eq!(servicenow.lifetime.access_token_seconds, Some(1800));
        assert_eq!(servicenow.lifetime.refresh_token_absolute_days, Some(100));
    }

    #[test]
    fn google_refresh_tokens_die_after_six_months_unused() {
        for key in [
            "google-calendar",
            "google-drive",
            "gmail",
            "google-sheets",
            "apigee",
        ] {
            let provider = Catalog::builtin().get(key).unwrap();
            assert_eq!(
                provider.lifetime.refresh_token_idle_days,
                Some(183),
                "{key}"
            );
            assert!(
                provider.docs_unverified.iter().any(|u| u.contains("7-day")),
                "{key}"
            );
        }
    }

    #[test]
    fn every_entry_names_the_documentation_it_was_checked_against() {
        for provider in Catalog::builtin().providers() {
            if provider.key == ProviderKey::CUSTOM {
                continue;
            }
            assert!(provider.docs_url.is_some(), "{}", provider.key);
            assert!(
                !provider.docs_checked.is_empty() || !provider.docs_unverified.is_empty(),
                "{}: neither docs_checked nor docs_unverified",
                provider.key
            );
        }
    }

    #[test]
    fn validation_checks_quirks_lifetimes_documentation_and_placeholder_positions() {
        let broken = Catalog::parse(
            r#"
            [[provider]]
            key = "custom"
            display_name = "Custom"

            [[provider]]
            key = "quirky"
            display_name = "Quirky"
            authorization_url = "https://{tenant}.example.com/{org}/authorize"
            token_url = "https://{org}.com/{tenant}x/token"
            grant_types = ["authorization_code"]
            pkce = true
            scope_separator = ","
            default_scopes = ["a,b"]
            default_scopes_by_grant = { client_credentials = ["x/.default"] }
            docs_url = "https://docs.example.com/oauth"
            docs_checked = ["http://docs.example.com/old", "a source without an address", " "]

            [provider.protocol]
            callback_params = ["realmId", "state", "realmId"]
            success_field = "ok field"

            [provider.lifetime]
            access_token_seconds = 0
            refresh_token_idle_days = 90
            refresh_token_absolute_days = 30

            [[provider.placeholders]]
            name = "org"
            kind = "host_label"
            description = "org"
            example = "acme"

            [[provider.placeholders]]
            name = "tenant"
            kind = "path_segment"
            description = "tenant"
            example = "contoso"
            "#,
        )
        .unwrap();
        let problems = broken.validate().join("\n");
        for expected in [
            "pkce must be true exactly when",
            "contains the scope separator",
            "default_scopes_by_grant names client_credentials",
            "http://docs.example.com/old is not an https address",
            "docs_checked has a blank entry",
            "callback_params: state belongs to the protocol",
            "callback_params: realmId appears twice",
            "success_field \"ok field\" is not a field name",
            "access_token_seconds must be greater than 0",
            "idle window of 90 days cannot exceed the absolute lifetime of 30 days",
            "token_url: host_label {org} must be a whole label followed by a fixed domain",
            "authorization_url: path_segment {tenant} cannot stand in the host",
            "token_url: {tenant} must be a whole path segment",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not reported in:\n{problems}"
            );
        }
        assert!(
            !problems.contains("a source without an address"),
            "{problems}"
        );
        assert!(
            !problems.contains("authorization_url: host_label {org}"),
            "{problems}"
        );
    }

    #[test]
    fn a_misspelt_field_is_refused() {
        let err = Catalog::parse(
            r#"
            [[provider]]
            key = "typo"
            display_name = "Typo"
            docs_unverifed = ["x"]

            [[provider.placeholders]]
            name = "a"
            kind = "host_label"
            description = "a"
            example = "a"
            exampel = "b"
            "#,
        )
        .unwrap_err();
        assert!(err.contains("typo: unknown field docs_unverifed"), "{err}");
        assert!(
            err.contains("typo: unknown placeholder field exampel"),
            "{err}"
        );
        let err = Catalog::parse(
            r#"
            [[provider]]
            key = "typo"
            display_name = "Typo"

            [provider.protocol]
            refresh_sends_scopes = true
            "#,
        )
        .unwrap_err();
        assert!(err.contains("refresh_sends_scopes"), "{err}");
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
