//! Connections as documents: what `GET /connections/export` writes and `POST
//! /connections/import` (and `keyport apply`) reads. A connection is keyed by its name; ids,
//! versions and timestamps belong to one installation and are left out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::connection::{Connection, ConnectionInput, ConnectionStatus};
use super::scopes::ScopesInput;
use super::secret::ClientSecret;

/// The format's version, `keyport_export` in every document.
pub const EXPORT_FORMAT: u32 = 1;

/// A set of connections: an export, an import, or a file `keyport apply` sends.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({
        "keyport_export": 1,
        "connections": [{
            "name": "Acme CRM",
            "provider": "custom",
            "grant_type": "client_credentials",
            "client_id": "keyport",
            "client_auth": "client_secret_basic",
            "token_url": "https://login.acme.example/token",
            "scopes": ["api"],
            "invited_roles": ["bots"],
            "status": "active"
        }]
    }))
)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsDocument {
    /// The format's version: 1.
    pub keyport_export: u32,
    pub connections: Vec<ConnectionDefinition>,
    /// In an export with secrets only: the connections' secrets and tokens, an age file (ASCII
    /// armor) for the recipient the export named. An import refuses it: decrypt it first
    /// (`keyport import --identity`), so no server ever holds the age identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// One connection's definition. On import every field but `name` may be left out: a new
/// connection takes the defaults (the provider's, for a catalog provider); an existing one
/// keeps what it has, except the optional URLs and texts, the maps and the lists, which a
/// definition states in full (left out is none). Secrets are write-only, as in `POST
/// /connections`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_iss_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_separator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_applications: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_response_extras: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConnectionStatus>,
    /// Import only; never exported in the clear.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub client_secret: Option<ClientSecret>,
    /// Import only; never exported in the clear.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub private_key: Option<ClientSecret>,
    /// Import only; never exported in the clear.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub password: Option<ClientSecret>,
}

impl From<&Connection> for ConnectionDefinition {
    fn from(c: &Connection) -> Self {
        let url = |u: &Option<super::EndpointUrl>| u.as_ref().map(|u| u.as_str().to_owned());
        let text = |t: &str| (!t.is_empty()).then(|| t.to_owned());
        ConnectionDefinition {
            name: c.name.as_str().to_owned(),
            description: text(&c.description),
            provider: Some(c.provider.as_str().to_owned()),
            provider_params: Some(c.provider_params.clone()),
            grant_type: Some(c.grant_type.as_str().to_owned()),
            client_id: Some(c.client_id.clone()),
            client_auth: Some(c.client_auth.as_str().to_owned()),
            authorization_url: url(&c.authorization_url),
            token_url: Some(c.token_url.as_str().to_owned()),
            revocation_url: url(&c.revocation_url),
            issuer: url(&c.issuer),
            callback_iss_required: Some(c.callback_iss_required),
            scopes: Some(c.scopes.iter().map(str::to_owned).collect()),
            scope_separator: Some(c.scope_separator.clone()),
            username: c.username.clone(),
            audience: c.audience.clone(),
            resource: c.resource.clone(),
            authorization_params: Some(c.authorization_params.clone()),
            token_params: Some(c.token_params.clone()),
            invited_roles: Some(
                c.invited_roles
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
            ),
            invited_applications: Some(
                c.invited_applications
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
            ),
            token_response_extras: Some(c.token_response_extras.clone()),
            status: Some(c.status),
            client_secret: None,
            private_key: None,
            password: None,
        }
    }
}

impl ConnectionDefinition {
    /// The create or update request this definition is (without a version: the caller adds
    /// the one it read).
    pub fn to_input(&self) -> ConnectionInput {
        let d = self.clone();
        ConnectionInput {
            name: Some(d.name),
            description: d.description,
            provider: d.provider,
            provider_params: d.provider_params,
            grant_type: d.grant_type,
            client_id: d.client_id,
            client_secret: d.client_secret,
            private_key: d.private_key,
            password: d.password,
            username: d.username,
            client_auth: d.client_auth,
            authorization_url: d.authorization_url,
            token_url: d.token_url,
            revocation_url: d.revocation_url,
            issuer: d.issuer,
            callback_iss_required: d.callback_iss_required,
            scopes: d.scopes.map(ScopesInput::List),
            scope_separator: d.scope_separator,
            audience: d.audience,
            resource: d.resource,
            authorization_params: d.authorization_params,
            token_params: d.token_params,
            invited_roles: d.invited_roles,
            invited_applications: d.invited_applications,
            token_response_extras: d.token_response_extras,
            status: d.status,
            version: None,
        }
    }
}

/// After the provider's defaults are filled: what a definition leaves out of the fields it
/// states in full is none, so that an import makes the connection what the document says
/// rather than keeping what the installation had.
pub fn state_in_full(input: &mut ConnectionInput) {
    for text in [
        &mut input.description,
        &mut input.authorization_url,
        &mut input.revocation_url,
        &mut input.issuer,
        &mut input.username,
        &mut input.audience,
        &mut input.resource,
    ] {
        text.get_or_insert_with(String::new);
    }
    input.provider_params.get_or_insert_default();
    input.authorization_params.get_or_insert_default();
    input.token_params.get_or_insert_default();
    input.invited_roles.get_or_insert_default();
    input.invited_applications.get_or_insert_default();
    input.token_response_extras.get_or_insert_default();
    input.callback_iss_required.get_or_insert(false);
    input.status.get_or_insert(ConnectionStatus::Active);
}

/// What an import does with one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImportAction {
    Create,
    Change,
    Unchanged,
    /// Refused, with its reason: the whole import then applies nothing.
    Conflict,
}

/// One line of an import's plan.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportStep {
    pub name: String,
    pub action: ImportAction,
    /// For `change`: the fields that change (a secret by its field name, never its value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// For `conflict`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How many connections each action covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportSummary {
    pub create: usize,
    pub change: usize,
    pub unchanged: usize,
    pub conflict: usize,
}

/// An import's plan and whether it was applied.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({
        "dry_run": true,
        "applied": false,
        "summary": {"create": 1, "change": 1, "unchanged": 0, "conflict": 0},
        "connections": [
            {"name": "Acme CRM", "action": "create"},
            {"name": "Billing", "action": "change", "fields": ["scopes", "invited_roles"]}
        ]
    }))
)]
pub struct ImportOutcome {
    pub dry_run: bool,
    /// True once every create and change is written; false on a dry run and on any conflict.
    pub applied: bool,
    pub summary: ImportSummary,
    pub connections: Vec<ImportStep>,
    /// On a refused import (409) only: `import_conflict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub error: Option<&'static str>,
    /// On a refused import (409) only: why nothing was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub message: Option<String>,
}

impl ImportOutcome {
    pub fn new(dry_run: bool, connections: Vec<ImportStep>) -> Self {
        let mut summary = ImportSummary::default();
        for step in &connections {
            *match step.action {
                ImportAction::Create => &mut summary.create,
                ImportAction::Change => &mut summary.change,
                ImportAction::Unchanged => &mut summary.unchanged,
                ImportAction::Conflict => &mut summary.conflict,
            } += 1;
        }
        ImportOutcome {
            dry_run,
            applied: false,
            summary,
            connections,
            error: None,
            message: None,
        }
    }

    /// This plan as the refusal of an import that conflicts.
    pub fn refused(mut self) -> Self {
        self.error = Some("import_conflict");
        self.message = Some(format!(
            "{} of the connections conflict; nothing was applied",
            self.summary.conflict
        ));
        self
    }

    pub fn has_conflicts(&self) -> bool {
        self.summary.conflict > 0
    }
}
