//! `docs/providers.md`, generated from the catalog: every provider with its grants,
//! placeholders, default scopes, documented lifetimes, protocol departures and quirks, and the
//! documentation it was checked against. The file is never edited by hand; the test below
//! rewrites it when the catalog changes and fails so the change is committed.

use std::fmt::Write;

use crate::catalog::Catalog;
use crate::domain::{
    GrantLifetime, PlaceholderKind, Provider, ProviderProtocol, RefreshTokenRotation,
    RequestEncoding,
};

/// The whole page.
pub fn providers_markdown(catalog: &Catalog) -> String {
    let mut page = String::from(
        "# Providers\n\n\
         Generated from `shared/providers.toml` by `cargo test -p keyport-shared catalog_doc`; \
         do not edit. `GET /providers` serves the same data.\n\n\
         | provider | key | grants | PKCE | refresh token | documented lifetimes |\n\
         |---|---|---|---|---|---|\n",
    );
    for provider in catalog.providers() {
        let _ = writeln!(
            page,
            "| [{}](#{}) | `{}` | {} | {} | {} | {} |",
            provider.display_name,
            provider.key,
            provider.key,
            grants(provider),
            if provider.pkce { "yes" } else { "no" },
            rotation(provider.protocol.refresh_token_rotation),
            lifetimes(&provider.lifetime).unwrap_or_else(|| "not documented".into()),
        );
    }
    for provider in catalog.providers() {
        page.push('\n');
        page.push_str(&section(provider));
    }
    page
}

fn grants(provider: &Provider) -> String {
    provider
        .grant_types
        .iter()
        .map(|g| format!("`{g}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rotation(rotation: RefreshTokenRotation) -> &'static str {
    match rotation {
        RefreshTokenRotation::Unknown => "not documented",
        RefreshTokenRotation::Reused => "reused",
        RefreshTokenRotation::Rotates => "rotates",
        RefreshTokenRotation::RotatesReuseRevokes => "rotates; reuse revokes the grant",
    }
}

fn lifetimes(lifetime: &GrantLifetime) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(seconds) = lifetime.access_token_seconds {
        parts.push(format!("access token {}", duration(seconds)));
    }
    if let Some(days) = lifetime.refresh_token_idle_days {
        parts.push(format!("refresh token dies after {days} days unused"));
    }
    if let Some(days) = lifetime.refresh_token_absolute_days {
        parts.push(format!("grant ends {days} days after authorization"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn protocol_lines(protocol: &ProviderProtocol) -> Vec<String> {
    let mut lines = Vec::new();
    if protocol.token_request_body == RequestEncoding::Json {
        lines.push("token requests are sent as JSON".to_owned());
    }
    if protocol.form_encoded_responses {
        lines.push(
            "answers form-encoded unless asked for JSON; Keyport asks, and reads either".to_owned(),
        );
    }
    if let Some(field) = &protocol.success_field {
        lines.push(format!("a 200 answer with `{field}: false` is an error"));
    }
    if let Some(field) = &protocol.user_token_field {
        lines.push(format!("a person's token is nested under `{field}`"));
    }
    if !protocol.callback_params.is_empty() {
        let names: Vec<String> = protocol
            .callback_params
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        lines.push(format!(
            "kept from the callback under `extra`: {}",
            names.join(", ")
        ));
    }
    if protocol.refresh_sends_scope {
        lines.push("a refresh names the grant's scope again".to_owned());
    }
    if !protocol.error_codes.is_empty() {
        let codes: Vec<String> = protocol
            .error_codes
            .iter()
            .map(|(own, rfc)| format!("`{own}` as `{rfc}`"))
            .collect();
        lines.push(format!("its own error codes read as: {}", codes.join(", ")));
    }
    lines
}

fn section(provider: &Provider) -> String {
    let mut out = format!("## {}\n\n", provider.display_name);
    let _ = writeln!(
        out,
        "<a id=\"{}\"></a>Key `{}`.\n",
        provider.key, provider.key
    );
    let endpoints = [
        ("authorization", &provider.authorization_url),
        ("token", &provider.token_url),
        ("revocation", &provider.revocation_url),
        ("issuer", &provider.issuer),
    ];
    for (name, url) in endpoints {
        if let Some(url) = url {
            let _ = writeln!(out, "- {name}: `{url}`");
        }
    }
    if provider.revocation_url.is_none() && provider.token_url.is_some() {
        out.push_str("- revocation: none documented\n");
    }
    let _ = writeln!(out, "- grants: {}", grants(provider));
    let _ = writeln!(
        out,
        "- client authentication: `{}`",
        provider.client_auth.as_str()
    );
    if !provider.default_scopes.is_empty() {
        let _ = writeln!(
            out,
            "- default scopes: `{}`",
            provider.default_scopes.join(&provider.scope_separator)
        );
    }
    for (grant, scopes) in &provider.default_scopes_by_grant {
        let _ = writeln!(
            out,
            "- default scopes for `{grant}`: `{}`",
            scopes.join(" ")
        );
    }
    for placeholder in &provider.placeholders {
        let kind = match placeholder.kind {
            PlaceholderKind::HostLabel => "one host label".to_owned(),
            PlaceholderKind::PathSegment => "one path segment".to_owned(),
            PlaceholderKind::OneOf => format!("one of {}", placeholder.allowed_values.join(", ")),
        };
        let _ = writeln!(
            out,
            "- placeholder `{{{}}}`: {} ({kind}; e.g. `{}`)",
            placeholder.name, placeholder.description, placeholder.example
        );
    }
    let _ = writeln!(
        out,
        "- refresh token: {}",
        rotation(provider.protocol.refresh_token_rotation)
    );
    if let Some(lifetimes) = lifetimes(&provider.lifetime) {
        let _ = writeln!(out, "- lifetimes: {lifetimes}");
    }
    for line in protocol_lines(&provider.protocol) {
        let _ = writeln!(out, "- protocol: {line}");
    }
    for quirk in &provider.quirks {
        let _ = writeln!(out, "- {quirk}");
    }
    match &provider.docs_url {
        Some(url) => {
            let _ = writeln!(out, "- checked against: <{url}>");
        }
        None => out.push_str("- documentation: none\n"),
    }
    for page in &provider.docs_checked {
        let _ = writeln!(out, "  - also read: {page}");
    }
    for doubt in &provider.docs_unverified {
        let _ = writeln!(out, "- not confirmed by its documentation: {doubt}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed page is what the catalog generates (rust-analyzer's sourcegen pattern:
    /// the test rewrites the file, then fails so the change is reviewed and committed).
    #[test]
    fn docs_providers_md_is_generated_from_the_catalog() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/providers.md");
        let generated = providers_markdown(Catalog::builtin());
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            std::fs::write(&path, &generated).expect("docs/providers.md written");
            panic!("docs/providers.md was out of date and has been regenerated: commit it");
        }
    }

    #[test]
    fn every_provider_has_a_section_and_a_row() {
        let page = providers_markdown(Catalog::builtin());
        for provider in Catalog::builtin().providers() {
            assert!(
                page.contains(&format!("| `{}` |", provider.key)),
                "{}",
                provider.key
            );
            assert!(
                page.contains(&format!("<a id=\"{}\"></a>", provider.key)),
                "{}",
                provider.key
            );
        }
    }
}
