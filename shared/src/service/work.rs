//! The messages of the refresh work queue. Each says only where to look, never what to do to
//! which token: the worker reads the current state when the message arrives, so a message
//! delivered twice or late costs a query, never a second refresh or a second delete.

use serde::{Deserialize, Serialize};

use crate::domain::ConnectionId;

/// One message: `{"shard": N}` (the scheduled run's, unchanged since the fan-out began) or
/// `{"deleted_connection": "con_…"}`. Externally tagged, so each body has exactly one key and
/// anything else is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshWork {
    /// Refresh what is due in this shard of the due index.
    Shard(u32),
    /// End what is left of this deleted connection: its tokens, then its record and secrets.
    DeletedConnection(ConnectionId),
}

impl RefreshWork {
    /// The queue message's body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("work serializes")
    }

    /// The work a message's body names; `None` for a body that is not work.
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ConnectionId {
        ConnectionId::parse("con_0f3c2a9d8b7e4f6a9c1d2e3f4a5b6c7d").unwrap()
    }

    #[test]
    fn a_shard_message_keeps_its_wire_shape() {
        assert_eq!(RefreshWork::Shard(3).body(), r#"{"shard":3}"#);
        assert_eq!(
            RefreshWork::parse(r#"{ "shard": 7 }"#),
            Some(RefreshWork::Shard(7))
        );
    }

    #[test]
    fn a_deletion_message_names_the_connection() {
        let work = RefreshWork::DeletedConnection(id());
        assert_eq!(
            work.body(),
            r#"{"deleted_connection":"con_0f3c2a9d8b7e4f6a9c1d2e3f4a5b6c7d"}"#
        );
        assert_eq!(RefreshWork::parse(&work.body()), Some(work));
    }

    #[test]
    fn anything_else_is_not_work() {
        for body in [
            "",
            "null",
            "{}",
            "[]",
            r#"{"shard": "all"}"#,
            r#"{"shard": -1}"#,
            r#"{"shard": 1, "deleted_connection": "con_0f3c2a9d8b7e4f6a9c1d2e3f4a5b6c7d"}"#,
            r#"{"shard": 1, "extra": true}"#,
            r#"{"deleted_connection": "not-an-id"}"#,
            r#"{"deleted_connection": 5}"#,
            r#"{"Shard": 1}"#,
            r#""shard""#,
        ] {
            assert_eq!(RefreshWork::parse(body), None, "{body:?}");
        }
    }
}
