//! Notifications: what happened to a connection or a token, for people to learn about it before
//! a bot fails. Each event goes out on the installation's EventBridge bus (AWS) and to the
//! webhook subscriptions that want its type, signed per the Standard Webhooks specification.
//! Events carry ids, names and statuses, never a secret or a token.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::endpoint::{EndpointUrl, UrlPolicy};
use super::ids::{ConnectionId, Owner};
use super::validation::{ValidationError, plain_text};

/// The kinds of event Keyport notifies about (the `type` of a webhook payload, the
/// `detail-type` of an EventBridge event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// A role was invited to a connection: its members can now connect.
    #[serde(rename = "connection.role_invited")]
    RoleInvited,
    /// An application was invited to a connection by client id.
    #[serde(rename = "connection.application_invited")]
    ApplicationInvited,
    /// An administrator disabled a connection: it hands out and refreshes nothing.
    #[serde(rename = "connection.disabled")]
    ConnectionDisabled,
    #[serde(rename = "connection.deleted")]
    ConnectionDeleted,
    /// A refresh failed (the provider down, rate limiting, refusing the client): the first
    /// failure after success, not every retry.
    #[serde(rename = "token.refresh_failed")]
    RefreshFailed,
    /// The provider refused the grant: a person must authorize again.
    #[serde(rename = "token.needs_reauthorization")]
    NeedsReauthorization,
    /// A token whose refreshes were failing refreshed again.
    #[serde(rename = "token.recovered")]
    Recovered,
    /// A grant nears the absolute end its provider documents: authorize again before then.
    #[serde(rename = "grant.ending")]
    GrantEnding,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::RoleInvited,
        EventType::ApplicationInvited,
        EventType::ConnectionDisabled,
        EventType::ConnectionDeleted,
        EventType::RefreshFailed,
        EventType::NeedsReauthorization,
        EventType::Recovered,
        EventType::GrantEnding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RoleInvited => "connection.role_invited",
            EventType::ApplicationInvited => "connection.application_invited",
            EventType::ConnectionDisabled => "connection.disabled",
            EventType::ConnectionDeleted => "connection.deleted",
            EventType::RefreshFailed => "token.refresh_failed",
            EventType::NeedsReauthorization => "token.needs_reauthorization",
            EventType::Recovered => "token.recovered",
            EventType::GrantEnding => "grant.ending",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about: ids, names and statuses only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventData {
    pub connection_id: String,
    pub connection_name: String,
    /// Whose token: `shared` or `user:<subject>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The token's or connection's status after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// An error code (`invalid_grant`, `provider_unavailable`, ...), never a provider's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_ends_at: Option<DateTime<Utc>>,
}

impl EventData {
    pub fn about(connection_id: &ConnectionId, connection_name: &str) -> Self {
        Self {
            connection_id: connection_id.to_string(),
            connection_name: connection_name.to_owned(),
            ..Self::default()
        }
    }

    pub fn owner(mut self, owner: &Owner) -> Self {
        self.owner = Some(owner.to_string());
        self
    }
}

/// One event: the Standard Webhooks payload `{"type", "timestamp", "data"}`, and its id (the
/// `webhook-id` every delivery of it carries, the receiver's idempotency key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    pub data: EventData,
}

impl Notification {
    pub fn new(event_type: EventType, data: EventData, now: DateTime<Utc>) -> Self {
        let random: [u8; 16] = crate::crypto::random_bytes();
        Self {
            id: format!("msg_{}", hex(&random)),
            event_type,
            timestamp: now,
            data,
        }
    }

    /// The body every delivery sends, exactly the bytes signed.
    pub fn payload(&self) -> String {
        serde_json::json!({
            "type": self.event_type,
            "timestamp": self.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A subscription's signing secret: `whsec_` and the base64 of 32 random bytes.
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    const PREFIX: &'static str = "whsec_";

    pub fn generate() -> Self {
        let bytes: [u8; 32] = crate::crypto::random_bytes();
        Self(SecretString::from(format!(
            "{}{}",
            Self::PREFIX,
            STANDARD.encode(bytes)
        )))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let key = text.strip_prefix(Self::PREFIX)?;
        let bytes = STANDARD.decode(key).ok()?;
        (bytes.len() >= 24).then(|| Self(SecretString::from(text.to_owned())))
    }

    pub fn expose(&self) -> &SecretString {
        &self.0
    }

    fn key_bytes(&self) -> Vec<u8> {
        let key = self
            .0
            .expose_secret()
            .strip_prefix(Self::PREFIX)
            .unwrap_or_default();
        STANDARD.decode(key).unwrap_or_default()
    }

    /// The `webhook-signature` entry for one delivery: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.key_bytes());
        let signed = format!("{id}.{timestamp}.{body}");
        let tag = aws_lc_rs::hmac::sign(&key, signed.as_bytes());
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// The last attempt at delivering to a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryStatus {
    pub at: DateTime<Utc>,
    /// `delivered`, `failed` (to be retried) or `gave_up` (the last retry failed).
    pub outcome: String,
    /// The receiver's HTTP status, when it answered.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub status: Option<u16>,
    pub event_id: String,
    pub event_type: EventType,
}

/// A webhook subscription: where to send which events. Its secret is kept sealed beside it and
/// shown once, when made or rotated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookSubscription {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub url: EndpointUrl,
    /// The event types sent; empty means every type.
    pub event_types: BTreeSet<EventType>,
    pub enabled: bool,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_delivery: Option<DeliveryStatus>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl WebhookSubscription {
    pub fn wants(&self, event_type: EventType) -> bool {
        self.enabled && (self.event_types.is_empty() || self.event_types.contains(&event_type))
    }
}

/// A request to make or change a subscription (every field optional on change).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// https (http to loopback only in local development mode); no credentials in it.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: Option<String>,
    /// Event types to send (`token.refresh_failed`, ...); empty or absent: every type.
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub description: Option<String>,
    /// On change: the version you read, so a change never overwrites another unseen.
    pub version: Option<u64>,
}

impl WebhookSubscription {
    /// A new subscription from `input`.
    pub fn create(
        input: WebhookInput,
        now: DateTime<Utc>,
        policy: UrlPolicy,
    ) -> Result<Self, ValidationError> {
        if input.version.is_some() {
            return Err(ValidationError::new(
                "version",
                "is set by Keyport on create",
            ));
        }
        let url = input
            .url
            .as_deref()
            .ok_or_else(|| ValidationError::new("url", "is required"))?;
        let random: [u8; 16] = crate::crypto::random_bytes();
        let mut subscription = Self {
            id: format!("whk_{}", hex(&random)),
            url: webhook_url(url, policy)?,
            event_types: BTreeSet::new(),
            enabled: true,
            description: String::new(),
            last_delivery: None,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        subscription.merge(input, policy)?;
        Ok(subscription)
    }

    /// This subscription with `input`'s fields; refused when `input` names another version.
    pub fn apply(
        &self,
        input: WebhookInput,
        now: DateTime<Utc>,
        policy: UrlPolicy,
    ) -> Result<Self, ValidationError> {
        if let Some(expected) = input.version
            && expected != self.version
        {
            return Err(ValidationError::new(
                "version",
                format!("is {}, not {expected}: read it again", self.version),
            ));
        }
        let mut changed = self.clone();
        if let Some(url) = &input.url {
            changed.url = webhook_url(url, policy)?;
        }
        changed.merge(input, policy)?;
        changed.updated_at = now;
        Ok(changed)
    }

    fn merge(&mut self, input: WebhookInput, _policy: UrlPolicy) -> Result<(), ValidationError> {
        if let Some(types) = input.event_types {
            self.event_types = types
                .iter()
                .map(|t| {
                    EventType::parse(t).ok_or_else(|| {
                        ValidationError::new(
                            "event_types",
                            format!(
                                "{t:?} is not an event type (one of {})",
                                EventType::ALL.map(EventType::as_str).join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(enabled) = input.enabled {
            self.enabled = enabled;
        }
        if let Some(description) = input.description {
            self.description = if description.is_empty() {
                description
            } else {
                plain_text("description", &description, 500)?
            };
        }
        Ok(())
    }
}

fn webhook_url(url: &str, policy: UrlPolicy) -> Result<EndpointUrl, ValidationError> {
    let parsed = EndpointUrl::parse("url", url, policy)?;
    let raw = parsed.as_url();
    if !raw.username().is_empty() || raw.password().is_some() {
        return Err(ValidationError::new(
            "url",
            "must not carry credentials: the signature authenticates Keyport",
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_matches_the_specifications_test_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let signature = secret.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn a_new_secret_is_32_random_bytes_and_never_printed() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert_ne!(a.expose().expose_secret(), b.expose().expose_secret());
        assert_eq!(a.key_bytes().len(), 32);
        assert!(!format!("{a:?}").contains(a.expose().expose_secret()));
        assert!(
            WebhookSecret::parse("whsec_c2hvcnQ=").is_none(),
            "too short"
        );
        assert!(WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_none());
    }

    #[test]
    fn every_event_type_round_trips_and_its_payload_has_the_three_fields() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            let wire = serde_json::to_value(event_type).unwrap();
            assert_eq!(wire, event_type.as_str());
        }
        let id = ConnectionId::parse("con_0123456789abcdef0123456789abcdef").unwrap();
        let event = Notification::new(
            EventType::RefreshFailed,
            EventData::about(&id, "crm").owner(&Owner::Shared),
            Utc::now(),
        );
        assert!(event.id.starts_with("msg_") && !event.id.contains('.'));
        let payload: serde_json::Value = serde_json::from_str(&event.payload()).unwrap();
        assert_eq!(payload["type"], "token.refresh_failed");
        assert_eq!(payload["data"]["connection_name"], "crm");
        assert_eq!(payload["data"]["owner"], "shared");
        assert!(payload["data"].get("error").is_none());
        assert_eq!(payload.as_object().unwrap().len(), 3);
    }

    #[test]
    fn a_subscription_wants_its_types_only_while_enabled() {
        let input = WebhookInput {
            url: Some("https://hooks.example.com/keyport".into()),
            event_types: Some(vec!["token.refresh_failed".into()]),
            ..WebhookInput::default()
        };
        let subscription =
            WebhookSubscription::create(input, Utc::now(), UrlPolicy::Production).unwrap();
        assert!(subscription.wants(EventType::RefreshFailed));
        assert!(!subscription.wants(EventType::GrantEnding));
        let off = subscription
            .apply(
                WebhookInput {
                    enabled: Some(false),
                    ..WebhookInput::default()
                },
                Utc::now(),
                UrlPolicy::Production,
            )
            .unwrap();
        assert!(!off.wants(EventType::RefreshFailed));
        for (field, input) in [
            ("url", WebhookInput::default()),
            (
                "url",
                WebhookInput {
                    url: Some("http://hooks.example.com/".into()),
                    ..WebhookInput::default()
                },
            ),
            (
                "url",
                WebhookInput {
                    url: Some("https://user:pw@hooks.example.com/".into()),
                    ..WebhookInput::default()
                },
            ),
            (
                "event_types",
                WebhookInput {
                    url: Some("https://hooks.example.com/".into()),
                    event_types: Some(vec!["token.stolen".into()]),
                    ..WebhookInput::default()
                },
            ),
        ] {
            let error =
                WebhookSubscription::create(input, Utc::now(), UrlPolicy::Production).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }
}
