//! The installation's EventBridge bus: each notification one event, `source` `keyport`,
//! `detail-type` its type, `detail` its id, time and data, ten to a `PutEvents` (its limit),
//! every entry checked, since a call succeeds even when some entries failed.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::Notification;
use crate::ports::EventBus;

/// The `source` of every event Keyport puts on the bus: what operators' rules match.
pub const EVENT_SOURCE: &str = "keyport";
const BATCH: usize = 10;

pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn put(&self, events: &[Notification]) -> Result<(), String> {
        for chunk in events.chunks(BATCH) {
            let entries = chunk
                .iter()
                .map(|event| {
                    let detail = serde_json::json!({
                        "id": event.id,
                        "timestamp": event.timestamp,
                        "data": event.data,
                    });
                    PutEventsRequestEntry::builder()
                        .source(EVENT_SOURCE)
                        .detail_type(event.event_type.as_str())
                        .detail(detail.to_string())
                        .event_bus_name(&self.bus_name)
                        .build()
                })
                .collect::<Vec<_>>();
            let output = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| DisplayErrorContext(&e).to_string())?;
            if output.failed_entry_count() > 0 {
                return Err(format!(
                    "EventBridge refused {} of {} events",
                    output.failed_entry_count(),
                    chunk.len()
                ));
            }
        }
        Ok(())
    }
}
