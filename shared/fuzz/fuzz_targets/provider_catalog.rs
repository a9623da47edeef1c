//! The text of a provider catalog (`providers.toml`): `Catalog::parse`, then
//! `Catalog::validate`, as the tests run them on the built-in catalog.
//!
//! Beyond "no panic": every entry round-trips through its JSON form (`GET /providers`), and
//! every entry of a catalog that validates makes a valid connection from its examples, for each
//! of its grant types, as `validate` promises.
#![no_main]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyport_shared::catalog::Catalog;
use keyport_shared::domain::{
    ClientSecret, Connection, ConnectionInput, GrantType, Provider, ProviderKey, UrlPolicy,
};
use libfuzzer_sys::fuzz_target;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

/// A create request for `provider` that states only what a person must: the examples, the
/// client and its credentials.
fn connect(provider: &Provider, grant_type: GrantType) -> Result<Connection, String> {
    let mut input = ConnectionInput {
        name: Some(format!("fuzz {}", provider.key)),
        provider: Some(provider.key.clone()),
        provider_params: Some(
            provider
                .placeholders
                .iter()
                .map(|p| (p.name.clone(), p.example.clone()))
                .collect::<BTreeMap<_, _>>(),
        ),
        grant_type: Some(grant_type.as_str().to_owned()),
        client_id: Some("client".into()),
        client_secret: Some(ClientSecret::new("secret")),
        private_key: Some(ClientSecret::new("key")),
        password: Some(ClientSecret::new("password")),
        username: Some("user".into()),
        ..ConnectionInput::default()
    };
    provider
        .fill_defaults(&mut input)
        .map_err(|e| e.to_string())?;
    Connection::create(input, now(), UrlPolicy::Production)
        .map(|(connection, _)| connection)
        .map_err(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(catalog) = Catalog::parse(text) else {
        return;
    };
    let problems = catalog.validate();
    for provider in catalog.providers() {
        let json = serde_json::to_string(provider).expect("a provider serialises");
        let back: Provider = serde_json::from_str(&json).expect("a provider reads back");
        assert_eq!(&back, provider, "the JSON form changed the provider");
    }
    if !problems.is_empty() {
        return;
    }
    for provider in catalog.providers() {
        if provider.key == ProviderKey::CUSTOM {
            continue;
        }
        for grant_type in &provider.grant_types {
            if let Err(error) = connect(provider, *grant_type) {
                panic!(
                    "{} validates but its {grant_type} connection does not: {error}",
                    provider.key
                );
            }
        }
    }
});
