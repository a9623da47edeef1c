//! The DynamoDB due index beneath the port: which items it holds, what a write does to them, and
//! the tokens written before it, in `gsi1`'s partition `DUE`, found there until rewritten.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use keyport_shared::adapters::records::due_index_key;
use keyport_shared::domain::{Lease, Owner};
use keyport_shared::ports::{DueWindow, Expect, PageRequest, TokenKey};
use keyport_shared::service::{RefreshWork, WINDOWED_SPAN, scheduled_work};
use keyport_tests::backends::{self, Backend, Raw};

use crate::fixtures::{key, token, user};

type Item = HashMap<String, AttributeValue>;

fn dynamo(backend: &Backend) -> (&aws_sdk_dynamodb::Client, &str) {
    match &backend.raw {
        Raw::Dynamo { client, table } => (client, table),
        Raw::Embedded(_) => panic!("the AWS back-end"),
    }
}

async fn raw_item(backend: &Backend, key: &TokenKey) -> Item {
    let (client, table) = dynamo(backend);
    keyport_tests::backends::dynamo_token_item(client, table, key).await
}

/// Every token of one shard due by `due_by`, across its pages.
async fn shard_listing(backend: &Backend, shard: u32, due_by: DateTime<Utc>) -> Vec<TokenKey> {
    window_listing(backend, shard, DueWindow::until(due_by)).await
}

/// Every token of one shard due in `window`, across its pages.
async fn window_listing(backend: &Backend, shard: u32, window: DueWindow) -> Vec<TokenKey> {
    let mut listed = Vec::new();
    let mut request = PageRequest::first(2);
    loop {
        let page = backend
            .store
            .due_tokens_in_shard(shard, window, request.clone())
            .await
            .unwrap();
        listed.extend(page.items);
        match page.next {
            Some(cursor) => request.cursor = Some(cursor),
            None => return listed,
        }
    }
}

/// The shards (the legacy one last) that list `key` as due by `due_by`.
async fn shards_listing(backend: &Backend, key: &TokenKey, due_by: DateTime<Utc>) -> Vec<u32> {
    let mut found = Vec::new();
    for shard in 0..backend.store.due_shards() {
        if shard_listing(backend, shard, due_by).await.contains(key) {
            found.push(shard);
        }
    }
    found
}

async fn all_due(backend: &Backend, due_by: DateTime<Utc>) -> Vec<TokenKey> {
    let mut listed = Vec::new();
    let mut request = PageRequest::first(5);
    loop {
        let page = backend
            .store
            .due_tokens(due_by, request.clone())
            .await
            .unwrap();
        listed.extend(page.items);
        match page.next {
            Some(cursor) => request.cursor = Some(cursor),
            None => return listed,
        }
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_written_before_the_due_index_is_found_and_moves_over_when_rewritten() {
    let backend = backends::aws().await;
    let (client, table) = dynamo(&backend);
    let now = Utc::now();
    let due_at = now - Duration::minutes(3);
    let old = key(user("legacy@example.com"));
    let written = backend
        .store
        .put_token(&token(&old, Some(due_at)), Expect::Absent)
        .await
        .unwrap();
    // The item as Keyport wrote it before the due index: the same attributes, with the token in
    // gsi1's partition DUE instead of a due shard.
    let mut item = raw_item(&backend, &old).await;
    item.remove("due_shard").expect("a due token has a shard");
    item.remove("due_at").expect("a due token has a due key");
    item.insert("gsi1pk".into(), AttributeValue::S("DUE".into()));
    item.insert(
        "gsi1sk".into(),
        AttributeValue::S(due_index_key(due_at, &old)),
    );
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("PutItem");
    let fresh = key(Owner::Shared);
    backend
        .store
        .put_token(
            &token(&fresh, Some(now - Duration::minutes(1))),
            Expect::Absent,
        )
        .await
        .unwrap();

    let legacy_shard = backend.store.due_shards() - 1;
    assert_eq!(shards_listing(&backend, &old, now).await, [legacy_shard]);
    let fresh_shards = shards_listing(&backend, &fresh, now).await;
    assert_eq!(fresh_shards.len(), 1);
    assert_ne!(fresh_shards, [legacy_shard]);
    let due = all_due(&backend, now).await;
    assert_eq!(due.len(), 2, "{due:?}");
    assert!(due.contains(&old) && due.contains(&fresh));
    assert!(
        shard_listing(&backend, legacy_shard, now - Duration::minutes(4))
            .await
            .is_empty(),
        "the legacy partition holds to the due bound too"
    );

    // One rewrite, with the due time unchanged (a lease taken): out of gsi1, into a shard.
    let mut leased = written.clone();
    leased.lease = Some(Lease {
        holder: "refresher".into(),
        expires_at: now + Duration::seconds(30),
    });
    backend
        .store
        .put_token(&leased, Expect::Version(written.version))
        .await
        .unwrap();
    let item = raw_item(&backend, &old).await;
    assert_eq!(text(&item, "gsi1pk"), None);
    assert_eq!(text(&item, "gsi1sk"), None);
    assert_eq!(
        text(&item, "due_at"),
        Some(due_index_key(due_at, &old).as_str())
    );
    let moved = shards_listing(&backend, &old, now).await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_ne!(moved, [legacy_shard]);
    assert!(
        shard_listing(&backend, legacy_shard, now).await.is_empty(),
        "the legacy partition has emptied"
    );
    let due = all_due(&backend, now).await;
    assert_eq!(due.len(), 2, "{due:?}");
    assert!(due.contains(&old) && due.contains(&fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_change_of_due_time_changes_a_tokens_due_keys() {
    let backend = backends::aws().await;
    let now = Utc::now();
    let key = key(user("steady@example.com"));
    let first = backend
        .store
        .put_token(
            &token(&key, Some(now + Duration::minutes(10))),
            Expect::Absent,
        )
        .await
        .unwrap();
    let due_keys = |item: &Item| {
        (
            text(item, "due_shard").map(str::to_owned),
            text(item, "due_at").map(str::to_owned),
        )
    };
    let before = raw_item(&backend, &key).await;
    assert!(before.contains_key("due_shard") && before.contains_key("due_at"));
    assert!(!before.contains_key("gsi1pk") && !before.contains_key("gsi1sk"));

    // A lease taken, then released with a document update: the index keys stay as they were.
    let mut leased = first.clone();
    leased.lease = Some(Lease {
        holder: "refresher".into(),
        expires_at: now + Duration::seconds(30),
    });
    let leased = backend
        .store
        .put_token(&leased, Expect::Version(first.version))
        .await
        .unwrap();
    let mut released = leased.clone();
    released.lease = None;
    released.scope = Some("openid api:read api:write".into());
    released.updated_at = now + Duration::seconds(1);
    let released = backend
        .store
        .put_token(&released, Expect::Version(leased.version))
        .await
        .unwrap();
    let after = raw_item(&backend, &key).await;
    assert_ne!(before.get("doc"), after.get("doc"));
    assert_eq!(due_keys(&before), due_keys(&after));
    assert!(!after.contains_key("gsi1pk") && !after.contains_key("gsi1sk"));

    // A new due time: the same shard, a new sort key; no due time: out of the index.
    let mut moved = released.clone();
    moved.refresh_due_at = Some(now + Duration::minutes(50));
    let moved = backend
        .store
        .put_token(&moved, Expect::Version(released.version))
        .await
        .unwrap();
    let rescheduled = raw_item(&backend, &key).await;
    assert_eq!(due_keys(&before).0, due_keys(&rescheduled).0);
    assert_ne!(due_keys(&before).1, due_keys(&rescheduled).1);
    let mut settled = moved.clone();
    settled.refresh_due_at = None;
    backend
        .store
        .put_token(&settled, Expect::Version(moved.version))
        .await
        .unwrap();
    assert_eq!(due_keys(&raw_item(&backend, &key).await), (None, None));
    assert!(all_due(&backend, now + Duration::days(1)).await.is_empty());
}

/// A scheduled run's spans, listed over every shard, list each due token once, in the span of
/// its due time, across pages: several workers share a run without a token falling between them.
async fn a_scheduled_runs_windows_list_each_due_token_once(backend: Backend) {
    let now = Utc::now();
    let mut due = Vec::new();
    for (i, seconds_ago) in [600, 61, 59, 45, 44, 31, 16, 15, 2, 1]
        .into_iter()
        .enumerate()
    {
        let key = key(user(&format!("window-{i}@example.com")));
        let at = now - Duration::seconds(seconds_ago);
        backend
            .store
            .put_token(&token(&key, Some(at)), Expect::Absent)
            .await
            .unwrap();
        due.push((key, at));
    }
    // Not yet due: no window lists it.
    let later = key(user("later@example.com"));
    backend
        .store
        .put_token(
            &token(&later, Some(now + Duration::seconds(5))),
            Expect::Absent,
        )
        .await
        .unwrap();
    let spans: Vec<_> = scheduled_work(4, now)
        .into_iter()
        .map(|work| match work {
            RefreshWork::Span(span) => span,
            other => panic!("a scheduled run queues spans, not {other:?}"),
        })
        .collect();
    assert_eq!(spans.len(), 5);
    let mut listed: Vec<(TokenKey, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for span in &spans {
        for shard in 0..backend.store.due_shards() {
            for key in window_listing(&backend, shard, span.window()).await {
                listed.push((
                    key,
                    span.due_after.unwrap_or(now - Duration::days(365)),
                    span.due_by,
                ));
            }
        }
    }
    assert_eq!(listed.len(), due.len(), "each due token once: {listed:?}");
    for (key, at) in &due {
        let (_, after, by) = listed
            .iter()
            .find(|(listed, _, _)| listed == key)
            .unwrap_or_else(|| panic!("{key:?} was in no window"));
        assert!(*after < *at && *at <= *by, "{at} listed in ({after}, {by}]");
    }
    assert!(listed.iter().all(|(key, _, _)| *key != later));
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.due_after.is_none())
            .map(|s| s.due_by)
            .max(),
        Some(now - WINDOWED_SPAN)
    );
}

crate::on_both_backends!(a_scheduled_runs_windows_list_each_due_token_once);
