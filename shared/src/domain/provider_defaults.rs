//! A catalog provider fills what a connection request leaves out: endpoints from its URL
//! templates and the connection's `provider_params`, default scopes, the scope separator, its
//! required extra parameters and its client authentication method. What the request states
//! wins, except that a scope the provider needs to issue refresh tokens is always kept.

use super::connection::ConnectionInput;
use super::grant::GrantType;
use super::provider::Provider;
use super::scopes::{Scopes, ScopesInput};
use super::validation::ValidationError;

/// Scopes without which a provider issues no refresh token; dropping one would make the
/// connection die at its first expiry.
const REFRESH_SCOPES: &[&str] = &["offline_access"];
/// Scopes that only mean something when a person signs in; a client-credentials request that
/// carries them is refused by providers (e.g. Microsoft's `invalid_scope`).
const PERSON_SCOPES: &[&str] = &["offline_access", "openid", "profile", "email"];

impl Provider {
    pub fn fill_defaults(&self, input: &mut ConnectionInput) -> Result<(), ValidationError> {
        let params = input.provider_params.clone().unwrap_or_default();
        let fill =
            |field: &str, template: &Option<String>| -> Result<Option<String>, ValidationError> {
                template
                    .as_deref()
                    .map(|t| self.fill_template(field, t, &params))
                    .transpose()
            };
        if input.authorization_url.is_none() {
            input.authorization_url = fill("authorization_url", &self.authorization_url)?;
        }
        if input.token_url.is_none() {
            input.token_url = fill("token_url", &self.token_url)?;
        }
        if input.revocation_url.is_none() {
            input.revocation_url = fill("revocation_url", &self.revocation_url)?;
        }
        if input.issuer.is_none() {
            input.issuer = fill("issuer", &self.issuer)?;
        }
        let grant = input
            .grant_type
            .as_deref()
            .and_then(|g| g.parse::<GrantType>().ok());
        let interactive = grant.is_none_or(GrantType::is_interactive);
        let defaults = match grant.and_then(|g| self.default_scopes_by_grant.get(&g)) {
            Some(for_this_grant) => Scopes::from_list(for_this_grant.iter().map(String::as_str))?,
            None => Scopes::from_list(
                self.default_scopes
                    .iter()
                    .map(String::as_str)
                    .filter(|s| interactive || !PERSON_SCOPES.contains(s)),
            )?,
        };
        input.scopes = Some(match input.scopes.take() {
            None => ScopesInput::List(defaults.iter().map(str::to_owned).collect()),
            Some(requested) => {
                let requested = Scopes::try_from(requested)?;
                let needed =
                    Scopes::from_list(defaults.iter().filter(|s| REFRESH_SCOPES.contains(s)))?;
                ScopesInput::List(requested.union(&needed).iter().map(str::to_owned).collect())
            }
        });
        if input.scope_separator.is_none() {
            input.scope_separator = Some(self.scope_separator.clone());
        }
        if input.client_auth.is_none() {
            input.client_auth = Some(self.client_auth.as_str().to_owned());
        }
        let mut authorization_params = self.authorization_params.clone();
        authorization_params.extend(input.authorization_params.take().unwrap_or_default());
        input.authorization_params = Some(authorization_params);
        let mut token_params = self.token_params.clone();
        token_params.extend(input.token_params.take().unwrap_or_default());
        input.token_params = Some(token_params);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{ClientAuthMethod, Placeholder, PlaceholderKind};

    fn microsoft_like() -> Provider {
        let mut provider: Provider = serde_json::from_value(serde_json::json!({
            "key": "ms",
            "display_name": "Microsoft-like",
            "authorization_url": "https://login.example.com/{tenant}/authorize",
            "token_url": "https://login.example.com/{tenant}/token",
            "revocation_url": null,
            "default_scopes": ["offline_access", "User.Read"],
            "authorization_params": {"prompt": "select_account"},
            "client_auth": "client_secret_post",
            "docs_url": null
        }))
        .unwrap();
        provider.placeholders = vec![Placeholder {
            name: "tenant".into(),
            kind: PlaceholderKind::PathSegment,
            description: "tenant".into(),
            example: "contoso.onmicrosoft.com".into(),
            allowed_values: vec![],
        }];
        provider.grant_types = vec![GrantType::AuthorizationCode];
        provider
    }

    fn input(json: serde_json::Value) -> ConnectionInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn templates_and_defaults_fill_what_is_missing() {
        let mut request = input(serde_json::json!({"provider_params": {"tenant": "contoso"}}));
        microsoft_like().fill_defaults(&mut request).unwrap();
        assert_eq!(
            request.token_url.as_deref(),
            Some("https://login.example.com/contoso/token")
        );
        assert_eq!(
            request.authorization_url.as_deref(),
            Some("https://login.example.com/contoso/authorize")
        );
        assert_eq!(
            request.client_auth.as_deref(),
            Some(ClientAuthMethod::ClientSecretPost.as_str())
        );
        let scopes = Scopes::try_from(request.scopes.unwrap()).unwrap();
        assert_eq!(scopes.join(" "), "offline_access User.Read");
        assert_eq!(
            request.authorization_params.unwrap()["prompt"],
            "select_account"
        );
    }

    #[test]
    fn the_request_wins_but_refresh_scopes_stay() {
        let mut request = input(serde_json::json!({
            "provider_params": {"tenant": "contoso"},
            "token_url": "https://elsewhere.example.com/token",
            "scopes": "Mail.Read",
            "authorization_params": {"prompt": "consent"}
        }));
        microsoft_like().fill_defaults(&mut request).unwrap();
        assert_eq!(
            request.token_url.as_deref(),
            Some("https://elsewhere.example.com/token")
        );
        let scopes = Scopes::try_from(request.scopes.unwrap()).unwrap();
        assert_eq!(scopes.join(" "), "Mail.Read offline_access");
        assert_eq!(
            request.authorization_params.unwrap(),
            BTreeMap::from([("prompt".to_owned(), "consent".to_owned())])
        );
    }

    #[test]
    fn client_credentials_do_not_inherit_person_scopes() {
        let mut request = input(
            serde_json::json!({"provider_params": {"tenant": "contoso"}, "grant_type": "client_credentials"}),
        );
        microsoft_like().fill_defaults(&mut request).unwrap();
        let scopes = Scopes::try_from(request.scopes.unwrap()).unwrap();
        assert_eq!(scopes.join(" "), "User.Read");
    }

    #[test]
    fn a_grant_with_its_own_default_scopes_takes_them_alone() {
        let mut provider = microsoft_like();
        provider.default_scopes_by_grant = BTreeMap::from([(
            GrantType::ClientCredentials,
            vec!["https://graph.example.com/.default".to_owned()],
        )]);
        let mut app = input(
            serde_json::json!({"provider_params": {"tenant": "contoso"}, "grant_type": "client_credentials"}),
        );
        provider.fill_defaults(&mut app).unwrap();
        let scopes = Scopes::try_from(app.scopes.unwrap()).unwrap();
        assert_eq!(scopes.join(" "), "https://graph.example.com/.default");
        let mut person = input(
            serde_json::json!({"provider_params": {"tenant": "contoso"}, "grant_type": "authorization_code"}),
        );
        provider.fill_defaults(&mut person).unwrap();
        let scopes = Scopes::try_from(person.scopes.unwrap()).unwrap();
        assert_eq!(scopes.join(" "), "offline_access User.Read");
    }

    #[test]
    fn a_missing_placeholder_is_named() {
        let mut request = input(serde_json::json!({}));
        let err = microsoft_like().fill_defaults(&mut request).unwrap_err();
        assert_eq!(err.field, "provider_params.tenant");
    }
}
