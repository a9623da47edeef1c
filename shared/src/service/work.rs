//! The messages of the refresh work queue. Each says only where to look, never what to do to
//! which token: the worker reads the current state when the message arrives, so a message
//! delivered twice or late costs a query, never a second refresh or a second delete.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ConnectionId;
use crate::ports::DueWindow;

/// One message: `{"span": {"due_after": …, "due_by": …}}` (the scheduled run's),
/// `{"window": {"shard": N, "due_after": …, "due_by": …}}` and `{"shard": N}` (what earlier
/// scheduled runs queued, still honoured) or `{"deleted_connection": "con_…"}`. Externally tagged, so each body has exactly one key and
/// anything else is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshWork {
    /// Refresh what came due in one span of time, in every due shard, taking the shards in
    /// turn (so the refreshes' index writes spread over every shard's partition).
    Span(DueSpan),
    /// Refresh what is due in this shard of the due index, up to the worker's own time.
    Shard(u32),
    /// Refresh what came due in one time window of one shard.
    Window(ShardWindow),
    /// End what is left of this deleted connection: its tokens, then its record and secrets.
    DeletedConnection(ConnectionId),
}

/// A time window of one due shard: the tokens due after `due_after` (or at any time before,
/// without it) and at or before `due_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardWindow {
    pub shard: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_after: Option<DateTime<Utc>>,
    pub due_by: DateTime<Utc>,
}

/// A span of due times: after `due_after` (or at any time before, without it) and at or before
/// `due_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueSpan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_after: Option<DateTime<Utc>>,
    pub due_by: DateTime<Utc>,
}

impl DueSpan {
    pub fn window(&self) -> DueWindow {
        DueWindow {
            after: self.due_after,
            by: self.due_by,
        }
    }
}

impl ShardWindow {
    pub fn window(&self) -> DueWindow {
        DueWindow {
            after: self.due_after,
            by: self.due_by,
        }
    }
}

/// How long a span of due times a scheduled run splits into windows: the template's schedule
/// period. What came due before it (left over by an earlier run, or missed by a longer schedule)
/// goes to one backlog window per shard.
pub const WINDOWED_SPAN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The work a scheduled run at `now` hands out: the backlog (everything due up to
/// [`WINDOWED_SPAN`] ago) and `windows` equal spans of the last [`WINDOWED_SPAN`], one message
/// each, so up to `windows + 1` workers share a run's work, each over every shard. The spans
/// tile time without a gap, and a token listed twice (a late message, a redelivery) is
/// refreshed once: the lease sees to that.
pub fn scheduled_work(windows: u32, now: DateTime<Utc>) -> Vec<RefreshWork> {
    let windows = windows.max(1);
    let span_start = now - WINDOWED_SPAN;
    let step = WINDOWED_SPAN / i32::try_from(windows).unwrap_or(i32::MAX);
    let mut work = vec![RefreshWork::Span(DueSpan {
        due_after: None,
        due_by: span_start,
    })];
    for i in 0..windows {
        let after = span_start + step * i32::try_from(i).unwrap_or(i32::MAX);
        let by = if i + 1 == windows { now } else { after + step };
        work.push(RefreshWork::Span(DueSpan {
            due_after: Some(after),
            due_by: by,
        }));
    }
    work
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
    fn a_window_message_names_its_shard_and_times() {
        let body = r#"{"window":{"shard":2,"due_after":"2026-12-07T10:00:00Z","due_by":"2026-12-07T10:00:15Z"}}"#;
        let Some(RefreshWork::Window(window)) = RefreshWork::parse(body) else {
            panic!("a window");
        };
        assert_eq!(window.shard, 2);
        assert_eq!(
            window.due_after.unwrap().to_rfc3339(),
            "2026-12-07T10:00:00+00:00"
        );
        assert_eq!(
            RefreshWork::parse(&RefreshWork::Window(window).body()),
            Some(RefreshWork::Window(window))
        );
        let backlog = r#"{"window":{"shard":0,"due_by":"2026-12-07T10:00:15Z"}}"#;
        assert!(matches!(
            RefreshWork::parse(backlog),
            Some(RefreshWork::Window(ShardWindow {
                due_after: None,
                ..
            }))
        ));
    }

    #[test]
    fn a_span_message_names_its_times() {
        let body =
            r#"{"span":{"due_after":"2026-12-07T10:00:00Z","due_by":"2026-12-07T10:00:04Z"}}"#;
        let Some(RefreshWork::Span(span)) = RefreshWork::parse(body) else {
            panic!("a span");
        };
        assert_eq!(
            span.window().after.unwrap().to_rfc3339(),
            "2026-12-07T10:00:00+00:00"
        );
        assert_eq!(RefreshWork::Span(span).body(), body);
        assert!(matches!(
            RefreshWork::parse(r#"{"span":{"due_by":"2026-12-07T10:00:04Z"}}"#),
            Some(RefreshWork::Span(DueSpan {
                due_after: None,
                ..
            }))
        ));
    }

    #[test]
    fn the_sample_events_carry_work() {
        for (sample, span) in [
            (include_str!("../../../events/refresh-work.json"), true),
            (
                include_str!("../../../events/refresh-work-deletion.json"),
                false,
            ),
        ] {
            let event: serde_json::Value = serde_json::from_str(sample).unwrap();
            let body = event["Records"][0]["body"].as_str().unwrap();
            let work = RefreshWork::parse(body).expect("the sample's body is work");
            assert_eq!(matches!(work, RefreshWork::Span(_)), span, "{body}");
        }
    }

    #[test]
    fn scheduled_spans_tile_time_without_a_gap() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:01:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        for windows in [1, 3, 4, 7, 15] {
            let spans: Vec<DueSpan> = scheduled_work(windows, now)
                .into_iter()
                .map(|work| match work {
                    RefreshWork::Span(span) => span,
                    other => panic!("a scheduled run queues spans, not {other:?}"),
                })
                .collect();
            assert_eq!(spans.len(), windows as usize + 1);
            assert_eq!(spans[0].due_after, None, "the backlog comes first");
            assert_eq!(spans[0].due_by, now - WINDOWED_SPAN);
            for pair in spans.windows(2) {
                assert_eq!(
                    pair[1].due_after,
                    Some(pair[0].due_by),
                    "{windows}: a gap or overlap"
                );
                assert!(pair[1].due_by > pair[0].due_by);
            }
            assert_eq!(spans.last().unwrap().due_by, now);
        }
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
            r#"{"window": {"shard": 1}}"#,
            r#"{"window": {"shard": 1, "due_by": "yesterday"}}"#,
            r#"{"window": {"shard": 1, "due_by": "2026-12-07T10:00:15Z", "extra": 1}}"#,
            r#"{"span": {"shard": 1, "due_by": "2026-12-07T10:00:15Z"}}"#,
            r#"{"span": {}}"#,
        ] {
            assert_eq!(RefreshWork::parse(body), None, "{body:?}");
        }
    }
}
