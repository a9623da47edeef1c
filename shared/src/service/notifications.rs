//! Notifications: events go into the durable outbox as one small write where they happen (any
//! function may emit), and the deliverer (the local server's task; on AWS the scheduled
//! refresher run) fans each out to the EventBridge bus and to the webhook subscriptions that
//! want it, then delivers with retries and backoff: a receiver that is down for an hour loses
//! nothing. Delivery is at least once; `webhook-id` is the receiver's idempotency key.

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::time::Instant;

use super::{Keyport, ServiceError};
use crate::adapters::outbound::OutboundError;
use crate::domain::{
    Connection, DeliveryStatus, EventData, EventType, Notification, Principal, WebhookInput,
    WebhookSecret, WebhookSubscription,
};
use crate::ports::{Destination, Expect, KeyContext, OutboxEntry, StoredWebhook};

/// How many outbox entries one pass takes.
const PASS: usize = 100;
/// How long a rotated-out secret still signs beside the new one.
const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// Events split into one entry per destination.
    pub fanned_out: u32,
    pub delivered: u32,
    /// Attempts that failed and wait for their next try.
    pub failed: u32,
    /// Entries whose last retry failed, or whose subscription is gone or disabled.
    pub dropped: u32,
}

/// The Standard Webhooks retry schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h, 14 h, 20 h and 24 h (about three days in all).
pub fn default_retry_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// How a webhook attempt ended.
enum Attempt {
    Delivered(u16),
    /// 410 Gone: the receiver asks never to be called again.
    Gone,
    Failed {
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
}

impl Keyport {
    /// Records that something happened. Best effort: the event is logged either way, and an
    /// outbox that cannot be written never fails the action that caused it.
    pub(crate) async fn notify(&self, event_type: EventType, data: EventData) {
        let notification = Notification::new(event_type, data, Utc::now());
        tracing::info!(
            target: "audit",
            event = "notification",
            notification_id = %notification.id,
            notification_type = event_type.as_str(),
            connection_id = %notification.data.connection_id,
            "notification"
        );
        let entry = OutboxEntry::new(notification, Destination::Fanout, Utc::now());
        match self.store.enqueue(&[entry]).await {
            Ok(()) => self.notifications_waiting.notify_one(),
            Err(error) => {
                tracing::warn!(%error, notification_type = event_type.as_str(), "the notification could not be queued")
            }
        }
    }

    /// Resolves when a notification was queued by this process since the last call: what the
    /// local server's delivery task waits on between its timed passes.
    pub async fn notification_queued(&self) {
        self.notifications_waiting.notified().await;
    }

    /// One delivery pass: every outbox entry due now gets one attempt (entries a fan-out makes
    /// get theirs at once), until `deadline`. Rescheduled entries wait for a later pass.
    pub async fn deliver_notifications(
        &self,
        deadline: Instant,
    ) -> Result<DeliveryReport, ServiceError> {
        let _turn = self.delivery_turn.lock().await;
        let mut report = DeliveryReport::default();
        let due = self.store.due_outbox(Utc::now(), PASS).await?;
        let mut subscriptions: Option<Vec<WebhookSubscription>> = None;
        for entry in due {
            if Instant::now() + self.oauth.http().timeout() > deadline {
                break;
            }
            if entry.destination == Destination::Fanout {
                if subscriptions.is_none() {
                    subscriptions = Some(self.store.list_webhooks().await?);
                }
                let subscriptions = subscriptions.as_deref().unwrap_or_default();
                let split = self.fan_out(&entry, subscriptions);
                self.store.enqueue(&split).await?;
                self.store.remove_outbox(&entry).await?;
                report.fanned_out += 1;
                for entry in split {
                    if Instant::now() + self.oauth.http().timeout() > deadline {
                        break;
                    }
                    self.attempt(entry, &mut report).await?;
                }
            } else {
                self.attempt(entry, &mut report).await?;
            }
        }
        Ok(report)
    }

    fn fan_out(
        &self,
        entry: &OutboxEntry,
        subscriptions: &[WebhookSubscription],
    ) -> Vec<OutboxEntry> {
        let now = Utc::now();
        let event_type = entry.notification.event_type;
        let mut split: Vec<OutboxEntry> = subscriptions
            .iter()
            .filter(|s| s.wants(event_type))
            .map(|s| {
                OutboxEntry::new(
                    entry.notification.clone(),
                    Destination::Webhook(s.id.clone()),
                    now,
                )
            })
            .collect();
        if self.event_bus.is_some() {
            split.push(OutboxEntry::new(
                entry.notification.clone(),
                Destination::EventBus,
                now,
            ));
        }
        split
    }

    /// One attempt at one entry; the entry leaves the outbox when delivered or dropped, and is
    /// put back for later otherwise.
    async fn attempt(
        &self,
        entry: OutboxEntry,
        report: &mut DeliveryReport,
    ) -> Result<(), ServiceError> {
        let outcome = match &entry.destination {
            Destination::Fanout => return Ok(()),
            Destination::EventBus => match &self.event_bus {
                None => None,
                Some(bus) => Some(
                    match bus.put(std::slice::from_ref(&entry.notification)).await {
                        Ok(()) => Attempt::Delivered(200),
                        Err(error) => {
                            tracing::warn!(%error, notification_id = %entry.notification.id, "the event bus refused a notification");
                            Attempt::Failed {
                                status: None,
                                retry_after: None,
                            }
                        }
                    },
                ),
            },
            Destination::Webhook(id) => match self.store.get_webhook(id).await? {
                Some(webhook) if webhook.subscription.enabled => {
                    let attempt = self.post_webhook(&webhook, &entry.notification).await;
                    self.record_delivery(webhook, &entry, &attempt).await;
                    Some(attempt)
                }
                _ => None,
            },
        };
        match outcome {
            Some(Attempt::Delivered(_)) => {
                report.delivered += 1;
                self.store.remove_outbox(&entry).await?;
            }
            None | Some(Attempt::Gone) => {
                report.dropped += 1;
                self.store.remove_outbox(&entry).await?;
            }
            Some(Attempt::Failed { retry_after, .. }) => {
                let schedule = &self.settings.webhook_retry_schedule;
                match schedule.get(entry.attempts as usize) {
                    Some(step) => {
                        report.failed += 1;
                        let wait = retry_after.map_or(*step, |asked| asked.max(*step));
                        let mut next = entry.clone();
                        next.attempts += 1;
                        next.due_at = Utc::now() + jittered(wait);
                        self.store.enqueue(&[next]).await?;
                        self.store.remove_outbox(&entry).await?;
                    }
                    None => {
                        report.dropped += 1;
                        tracing::warn!(notification_id = %entry.notification.id, attempts = entry.attempts + 1, "a notification was given up after its last retry");
                        self.store.remove_outbox(&entry).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// POSTs the event, signed with the subscription's secret (and, during a rotation's
    /// overlap, its previous one too). Never follows a redirect (the outbound client does not),
    /// and the address checks of provider calls apply.
    async fn post_webhook(&self, webhook: &StoredWebhook, notification: &Notification) -> Attempt {
        let id = &webhook.subscription.id;
        let mut signatures = Vec::new();
        let timestamp = Utc::now().timestamp();
        let body = notification.payload();
        let mut sealed = vec![&webhook.sealed_secret];
        if let Some((previous, until)) = &webhook.previous
            && *until > Utc::now()
        {
            sealed.push(previous);
        }
        for sealed in sealed {
            match self.open_webhook_secret(id, sealed).await {
                Ok(secret) => signatures.push(secret.sign(&notification.id, timestamp, &body)),
                Err(error) => {
                    tracing::warn!(webhook_id = %id, %error, "a webhook secret could not be opened");
                    return Attempt::Failed {
                        status: None,
                        retry_after: None,
                    };
                }
            }
        }
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(webhook.subscription.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &notification.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(body.into_bytes());
        let Ok(request) = request else {
            return Attempt::Failed {
                status: None,
                retry_after: None,
            };
        };
        match self.oauth.http().execute(request).await {
            Ok(response) if response.status().is_success() => {
                Attempt::Delivered(response.status().as_u16())
            }
            Ok(response) if response.status().as_u16() == 410 => Attempt::Gone,
            Ok(response) => Attempt::Failed {
                status: Some(response.status().as_u16()),
                retry_after: None,
            },
            Err(OutboundError::Status {
                status,
                retry_after,
            }) => Attempt::Failed {
                status: Some(status),
                retry_after,
            },
            Err(error) => {
                tracing::info!(webhook_id = %id, %error, "a webhook delivery failed");
                Attempt::Failed {
                    status: None,
                    retry_after: None,
                }
            }
        }
    }

    /// Keeps the outcome on the subscription for administrators to see; a 410 disables it.
    async fn record_delivery(
        &self,
        webhook: StoredWebhook,
        entry: &OutboxEntry,
        attempt: &Attempt,
    ) {
        let (outcome, status) = match attempt {
            Attempt::Delivered(status) => ("delivered", Some(*status)),
            Attempt::Gone => ("gone", Some(410)),
            Attempt::Failed { status, .. } => {
                let last = entry.attempts as usize >= self.settings.webhook_retry_schedule.len();
                (if last { "gave_up" } else { "failed" }, *status)
            }
        };
        let mut changed = webhook.clone();
        changed.subscription.last_delivery = Some(DeliveryStatus {
            at: Utc::now(),
            outcome: outcome.to_owned(),
            status,
            event_id: entry.notification.id.clone(),
            event_type: entry.notification.event_type,
        });
        if matches!(attempt, Attempt::Gone) {
            changed.subscription.enabled = false;
            tracing::warn!(webhook_id = %webhook.subscription.id, "a webhook receiver answered 410 Gone: its subscription is disabled");
        }
        let version = webhook.subscription.version;
        if let Err(error) = self
            .store
            .put_webhook(&changed, Expect::Version(version))
            .await
        {
            // A change by an administrator meanwhile wins; the outcome is in the log.
            tracing::info!(webhook_id = %webhook.subscription.id, %error, outcome, "a delivery outcome was not recorded on its subscription");
        }
    }

    async fn open_webhook_secret(
        &self,
        id: &str,
        sealed: &[u8],
    ) -> Result<WebhookSecret, ServiceError> {
        let plaintext = self
            .cipher
            .open(&KeyContext::webhook_secret(id), sealed)
            .await?;
        std::str::from_utf8(&plaintext)
            .ok()
            .and_then(WebhookSecret::parse)
            .ok_or(ServiceError::Crypto(crate::crypto::CryptoError::Plaintext))
    }

    async fn seal_webhook_secret(
        &self,
        id: &str,
        secret: &WebhookSecret,
    ) -> Result<Vec<u8>, ServiceError> {
        Ok(self
            .cipher
            .seal(
                &KeyContext::webhook_secret(id),
                secret.expose().expose_secret().as_bytes(),
            )
            .await?)
    }

    // ---- subscriptions (administrators) ---------------------------------------------------

    /// A new subscription, and its secret: shown this once.
    pub async fn create_webhook(
        &self,
        principal: &Principal,
        input: WebhookInput,
    ) -> Result<(WebhookSubscription, SecretString), ServiceError> {
        self.access.require_admin(principal)?;
        let subscription = WebhookSubscription::create(input, Utc::now(), self.settings.url_policy)
            .map_err(ServiceError::Invalid)?;
        let secret = WebhookSecret::generate();
        let sealed_secret = self.seal_webhook_secret(&subscription.id, &secret).await?;
        let stored = self
            .store
            .put_webhook(
                &StoredWebhook {
                    subscription,
                    sealed_secret,
                    previous: None,
                },
                Expect::Absent,
            )
            .await?;
        audit_line("webhook_created", principal, &stored.subscription.id);
        Ok((stored.subscription, secret.expose().clone()))
    }

    pub async fn list_webhooks(
        &self,
        principal: &Principal,
    ) -> Result<Vec<WebhookSubscription>, ServiceError> {
        self.access.require_admin(principal)?;
        Ok(self.store.list_webhooks().await?)
    }

    pub async fn get_webhook(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<WebhookSubscription, ServiceError> {
        self.access.require_admin(principal)?;
        Ok(self.load_webhook(id).await?.subscription)
    }

    pub async fn update_webhook(
        &self,
        principal: &Principal,
        id: &str,
        input: WebhookInput,
    ) -> Result<WebhookSubscription, ServiceError> {
        self.access.require_admin(principal)?;
        let current = self.load_webhook(id).await?;
        let changed = current
            .subscription
            .apply(input, Utc::now(), self.settings.url_policy)
            .map_err(|e| {
                if e.field == "version" {
                    ServiceError::Conflict(e.to_string())
                } else {
                    ServiceError::Invalid(e)
                }
            })?;
        let version = current.subscription.version;
        let stored = self
            .store
            .put_webhook(
                &StoredWebhook {
                    subscription: changed,
                    ..current
                },
                Expect::Version(version),
            )
            .await?;
        audit_line("webhook_changed", principal, id);
        Ok(stored.subscription)
    }

    pub async fn delete_webhook(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(), ServiceError> {
        self.access.require_admin(principal)?;
        let current = self.load_webhook(id).await?;
        self.store
            .delete_webhook(id, current.subscription.version)
            .await?;
        audit_line("webhook_deleted", principal, id);
        Ok(())
    }

    /// A new secret (shown this once); the old one keeps signing beside it for 24 hours, so
    /// receivers can switch without missing an event.
    pub async fn rotate_webhook_secret(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(WebhookSubscription, SecretString), ServiceError> {
        self.access.require_admin(principal)?;
        let current = self.load_webhook(id).await?;
        let secret = WebhookSecret::generate();
        let sealed_secret = self.seal_webhook_secret(id, &secret).await?;
        let version = current.subscription.version;
        let mut subscription = current.subscription.clone();
        subscription.updated_at = Utc::now();
        let stored = self
            .store
            .put_webhook(
                &StoredWebhook {
                    subscription,
                    sealed_secret,
                    previous: Some((current.sealed_secret, Utc::now() + ROTATION_OVERLAP)),
                },
                Expect::Version(version),
            )
            .await?;
        audit_line("webhook_secret_rotated", principal, id);
        Ok((stored.subscription, secret.expose().clone()))
    }

    async fn load_webhook(&self, id: &str) -> Result<StoredWebhook, ServiceError> {
        self.store
            .get_webhook(id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))
    }
}

/// Emission helpers: what each kind of change tells whom.
impl Keyport {
    /// What changed in a connection that people should hear about: roles and applications
    /// newly invited, and a connection disabled.
    pub(crate) async fn notify_connection_change(&self, before: &Connection, after: &Connection) {
        for role in after.invited_roles.difference(&before.invited_roles) {
            let mut data = EventData::about(&after.id, after.name.as_str());
            data.role = Some(role.to_string());
            self.notify(EventType::RoleInvited, data).await;
        }
        for app in after
            .invited_applications
            .difference(&before.invited_applications)
        {
            let mut data = EventData::about(&after.id, after.name.as_str());
            data.application = Some(app.to_string());
            self.notify(EventType::ApplicationInvited, data).await;
        }
        if before.is_enabled() && !after.is_enabled() {
            let mut data = EventData::about(&after.id, after.name.as_str());
            data.status = Some("disabled".to_owned());
            self.notify(EventType::ConnectionDisabled, data).await;
        }
    }
}

fn audit_line(event: &str, principal: &Principal, webhook_id: &str) {
    tracing::info!(target: "audit", event, actor = %principal.subject, webhook_id, "audit");
}

/// Up to a tenth more, so that many receivers' retries do not all land at once.
fn jittered(wait: Duration) -> chrono::Duration {
    let spread = wait.as_millis() / 10;
    let extra = if spread == 0 {
        0
    } else {
        let random: [u8; 8] = crate::crypto::random_bytes();
        u128::from(u64::from_le_bytes(random)) % spread
    };
    let total = wait.as_millis() + extra;
    chrono::Duration::milliseconds(i64::try_from(total).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_spans_about_three_days() {
        let total: Duration = default_retry_schedule().iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 300 + 1800 + 7200 + 18000 + 36000 + 50400 + 72000 + 86400
        );
        assert!(total > Duration::from_secs(2 * 86400));
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(300));
            assert!(wait >= chrono::Duration::seconds(300));
            assert!(wait < chrono::Duration::seconds(330));
        }
        assert_eq!(jittered(Duration::ZERO), chrono::Duration::zero());
    }
}
