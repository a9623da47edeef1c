//! The store, data-key and secret ports' contract, written once and run on both back-ends.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{Duration, Utc};
use keyport_shared::domain::{
    AuditAction, AuditEvent, ClientSecret, ConnectionId, ConnectionName, Owner,
    PendingAuthorization, PkceVerifier, StateToken, Subject, TokenStatus,
};
use keyport_shared::ports::{
    DueWindow, Expect, KeyContext, KeyError, PageRequest, SecretRef, StoreError, TokenKey,
};
use keyport_tests::backends::Backend;

use crate::fixtures::{connection, key, token, user};

crate::on_both_backends!(
    connections_round_trip,
    names_are_unique_in_any_case,
    stale_or_missing_connections_are_refused,
    connections_list_in_name_order_across_pages,
    a_retired_connection_is_out_of_sight_until_purged,
    token_writes_are_guarded_by_version,
    tokens_list_per_connection,
    user_tokens_page_by_owner_without_the_shared_one,
    due_tokens_come_from_every_shard_soonest_first_within_each,
    pending_authorizations_work_once,
    expired_pending_authorizations_are_absent,
    secrets_round_trip,
    data_keys_are_bound_to_their_context,
    audit_events_list_newest_first_per_connection_across_pages,
    a_connection_and_its_token_come_in_one_read,
);

async fn connections_round_trip(backend: Backend) {
    let store = &backend.store;
    let created = store
        .create_connection(&connection("Acme CRM"))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let read = store
        .get_connection(&created.id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(read, created);

    let mut changed = read.clone();
    changed.description = "the CRM".into();
    let updated = store.update_connection(&changed).await.unwrap();
    assert_eq!(updated.version, 2);
    let read = store.get_connection(&created.id).await.unwrap().unwrap();
    assert_eq!(read.description, "the CRM");
    assert_eq!(read.version, 2);

    store.retire_connection(&created.id, 2).await.unwrap();
    assert!(store.get_connection(&created.id).await.unwrap().is_none());
}

async fn names_are_unique_in_any_case(backend: Backend) {
    let store = &backend.store;
    let first = store.create_connection(&connection("Acme")).await.unwrap();
    let err = store
        .create_connection(&connection("ACME"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NameTaken(_)), "{err:?}");

    let other = store.create_connection(&connection("Other")).await.unwrap();
    let mut rename = other.clone();
    rename.name = ConnectionName::parse("acme").unwrap();
    let err = store.update_connection(&rename).await.unwrap_err();
    assert!(matches!(err, StoreError::NameTaken(_)), "{err:?}");

    // Renaming releases the old name and takes the new one atomically.
    let mut renamed = first.clone();
    renamed.name = ConnectionName::parse("Acme Renamed").unwrap();
    store.update_connection(&renamed).await.unwrap();
    store
        .create_connection(&connection("acme"))
        .await
        .expect("the old name is free again");
    let err = store
        .create_connection(&connection("acme renamed"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NameTaken(_)), "{err:?}");

    // Deleting releases the name.
    store.retire_connection(&other.id, 1).await.unwrap();
    store
        .create_connection(&connection("OTHER"))
        .await
        .expect("a deleted connection's name is free");
}

async fn stale_or_missing_connections_are_refused(backend: Backend) {
    let store = &backend.store;
    let created = store
        .create_connection(&connection("Versioned"))
        .await
        .unwrap();
    let err = store.create_connection(&created).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists(_) | StoreError::NameTaken(_)),
        "{err:?}"
    );

    let current = store.update_connection(&created).await.unwrap();
    let mut stale = created.clone();
    stale.description = "lost update".into();
    let err = store.update_connection(&stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store
        .retire_connection(&created.id, created.version)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let read = store.get_connection(&created.id).await.unwrap().unwrap();
    assert_eq!(read, current, "refused writes change nothing");

    let missing = connection("Missing");
    assert!(store.get_connection(&missing.id).await.unwrap().is_none());
    let mut missing_v1 = missing.clone();
    missing_v1.version = 1;
    let err = store.update_connection(&missing_v1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.retire_connection(&missing.id, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn connections_list_in_name_order_across_pages(backend: Backend) {
    let store = &backend.store;
    let names = ["delta", "Alpha", "echo", "charlie", "Bravo"];
    for name in names {
        store.create_connection(&connection(name)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut request = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let page = store.list_connections(request.clone()).await.unwrap();
        assert!(page.items.len() <= 2);
        pages += 1;
        seen.extend(page.items.into_iter().map(|c| c.name.to_string()));
        match page.next {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ["Alpha", "Bravo", "charlie", "delta", "echo"]);
    assert!((3..=4).contains(&pages), "{pages} pages");

    let bad = PageRequest {
        limit: 2,
        cursor: Some("not-a-cursor!".into()),
    };
    assert!(matches!(
        store.list_connections(bad).await,
        Err(StoreError::BadCursor)
    ));
}

async fn a_retired_connection_is_out_of_sight_until_purged(backend: Backend) {
    let store = &backend.store;
    let doomed = store
        .create_connection(&connection("Doomed"))
        .await
        .unwrap();
    let kept = store.create_connection(&connection("Kept")).await.unwrap();
    let keys = [
        (&doomed.id, Owner::Shared),
        (&doomed.id, user("alice")),
        (&doomed.id, user("bob")),
        (&kept.id, Owner::Shared),
    ]
    .map(|(connection_id, owner)| TokenKey {
        connection_id: connection_id.clone(),
        owner,
    });
    for key in &keys {
        store
            .put_token(&token(key, Some(Utc::now())), Expect::Absent)
            .await
            .unwrap();
    }
    let before = Utc::now();
    store.retire_connection(&doomed.id, 1).await.unwrap();

    // Gone for every reader and listing, its name free at once.
    assert!(store.get_connection(&doomed.id).await.unwrap().is_none());
    assert_eq!(
        store.get_connection_and_token(&keys[0]).await.unwrap(),
        (None, None)
    );
    let listed = store
        .list_connections(PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![kept.clone()]);
    store
        .create_connection(&connection("DOOMED"))
        .await
        .expect("a deleted connection's name is free");
    let err = store.update_connection(&doomed).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_) | StoreError::NotFound(_)),
        "{err:?}"
    );
    let err = store.retire_connection(&doomed.id, 1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "retired once: {err:?}"
    );

    // Its tokens wait, in owner order, to be revoked with the connection it was.
    let retired = store.retired_connections(10).await.unwrap();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].connection.id, doomed.id);
    assert_eq!(retired[0].connection.client_id, doomed.client_id);
    assert!(retired[0].retired_at >= before - Duration::seconds(1));
    let first = store.first_tokens(&doomed.id, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|t| t.owner.clone()).collect::<Vec<_>>(),
        [keys[0].owner.clone(), keys[1].owner.clone()]
    );
    assert_eq!(store.first_tokens(&doomed.id, 100).await.unwrap().len(), 3);

    // A live connection is never purged; a retired one is, once its tokens are gone.
    let err = store.purge_connection(&kept.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    for key in &keys[..3] {
        store.delete_token(key, 1).await.unwrap();
    }
    store.purge_connection(&doomed.id).await.unwrap();
    store
        .purge_connection(&doomed.id)
        .await
        .expect("twice is fine");
    assert!(store.retired_connections(10).await.unwrap().is_empty());
    assert!(store.get_connection(&kept.id).await.unwrap().is_some());
    assert_eq!(store.list_tokens(&kept.id).await.unwrap().len(), 1);
    let due = store
        .due_tokens(Utc::now() + Duration::seconds(1), PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(
        due.items,
        vec![keys[3].clone()],
        "ended tokens leave the due index"
    );
}

async fn token_writes_are_guarded_by_version(backend: Backend) {
    let store = &backend.store;
    let key = key(Owner::Shared);
    assert!(store.get_token(&key).await.unwrap().is_none());

    let first = store
        .put_token(&token(&key, None), Expect::Absent)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let err = store
        .put_token(&token(&key, None), Expect::Absent)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");

    let read = store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(read, first);

    let mut refreshed = read.clone();
    refreshed.status = TokenStatus::NeedsReauthorization;
    refreshed.sealed = vec![1, 2, 3];
    let second = store
        .put_token(&refreshed, Expect::Version(1))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let err = store
        .put_token(&refreshed, Expect::Version(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let read = store.get_token(&key).await.unwrap().unwrap();
    assert_eq!(read.status, TokenStatus::NeedsReauthorization);
    assert_eq!(read.sealed, vec![1, 2, 3]);
    assert_eq!(read.version, 2);

    let missing = crate::fixtures::key(user("nobody"));
    let err = store
        .put_token(&token(&missing, None), Expect::Version(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let err = store.delete_token(&key, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    store.delete_token(&key, 2).await.unwrap();
    assert!(store.get_token(&key).await.unwrap().is_none());
    let err = store.delete_token(&key, 2).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn tokens_list_per_connection(backend: Backend) {
    let store = &backend.store;
    let shared = key(Owner::Shared);
    let owners = [Owner::Shared, user("bob"), user("alice")];
    for owner in owners.clone() {
        let key = TokenKey {
            connection_id: shared.connection_id.clone(),
            owner,
        };
        store
            .put_token(&token(&key, None), Expect::Absent)
            .await
            .unwrap();
    }
    let elsewhere = key(Owner::Shared);
    store
        .put_token(&token(&elsewhere, None), Expect::Absent)
        .await
        .unwrap();

    let listed: BTreeSet<Owner> = store
        .list_tokens(&shared.connection_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.owner)
        .collect();
    assert_eq!(listed, owners.into_iter().collect());
}

async fn user_tokens_page_by_owner_without_the_shared_one(backend: Backend) {
    let store = &backend.store;
    let shared = key(Owner::Shared);
    let id = shared.connection_id.clone();
    for owner in [
        Owner::Shared,
        user("dave"),
        user("alice"),
        user("carol"),
        user("bob"),
    ] {
        let key = TokenKey {
            connection_id: id.clone(),
            owner,
        };
        store
            .put_token(&token(&key, None), Expect::Absent)
            .await
            .unwrap();
    }
    let elsewhere = key(user("aaron"));
    store
        .put_token(&token(&elsewhere, None), Expect::Absent)
        .await
        .unwrap();
    let page = |limit: u32, cursor: Option<String>| {
        let id = id.clone();
        async move {
            let page = store
                .user_tokens(&id, PageRequest { limit, cursor })
                .await
                .unwrap();
            let owners: Vec<String> = page.items.iter().map(|t| t.owner.to_string()).collect();
            (owners, page.next)
        }
    };
    // Pages that end exactly at the last token say there is no more.
    let (first, next) = page(2, None).await;
    assert_eq!(first, ["user:alice", "user:bob"]);
    let (second, next) = page(2, Some(next.expect("a second page"))).await;
    assert_eq!(second, ["user:carol", "user:dave"]);
    assert_eq!(next, None);
    let (all, next) = page(4, None).await;
    assert_eq!(all.len(), 4);
    assert_eq!(next, None);
    let (three, next) = page(3, None).await;
    assert_eq!(three, ["user:alice", "user:bob", "user:carol"]);
    let (last, next) = page(3, next).await;
    assert_eq!(last, ["user:dave"]);
    assert_eq!(next, None);
    let (roomy, next) = page(10, None).await;
    assert_eq!(roomy.len(), 4);
    assert_eq!(next, None);
    // A connection without tokens has an empty page.
    let empty = store
        .user_tokens(&ConnectionId::generate(), PageRequest::first(10))
        .await
        .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
    // Cursors are the store's own, and never lead to the shared token.
    let shared_cursor = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("\"shared\"")
    };
    for cursor in ["not-a-cursor".to_owned(), shared_cursor] {
        let err = store
            .user_tokens(
                &id,
                PageRequest {
                    limit: 10,
                    cursor: Some(cursor.clone()),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::BadCursor), "{cursor}: {err:?}");
    }
}

async fn due_tokens_come_from_every_shard_soonest_first_within_each(backend: Backend) {
    let store = &backend.store;
    let now = Utc::now();
    let mut due_at = HashMap::new();
    // Written out of order, so the order read back comes from the index; more tokens than the
    // AWS back-end has shards, so some shard holds several and pages within it.
    for n in 0..40i64 {
        let minutes = (n * 17) % 40;
        let key = key(user(&format!("user-{minutes}")));
        let at = now - Duration::minutes(minutes);
        store
            .put_token(&token(&key, Some(at)), Expect::Absent)
            .await
            .unwrap();
        due_at.insert(key, at);
    }
    let later = key(Owner::Shared);
    store
        .put_token(
            &token(&later, Some(now + Duration::minutes(5))),
            Expect::Absent,
        )
        .await
        .unwrap();
    let never = key(Owner::Shared);
    store
        .put_token(&token(&never, None), Expect::Absent)
        .await
        .unwrap();
    // Leaving the index: a due token that no longer needs refreshing.
    let leaving = key(Owner::Shared);
    let stored = store
        .put_token(
            &token(&leaving, Some(now - Duration::hours(1))),
            Expect::Absent,
        )
        .await
        .unwrap();
    let mut settled = stored.clone();
    settled.refresh_due_at = None;
    store
        .put_token(&settled, Expect::Version(stored.version))
        .await
        .unwrap();

    // Shard by shard, one token a page: each shard soonest first, together every due token.
    let shards = store.due_shards();
    assert!(shards >= 1);
    let mut shard_of = HashMap::new();
    let mut fullest = 0;
    for shard in 0..shards {
        let mut listed: Vec<TokenKey> = Vec::new();
        let mut request = PageRequest::first(1);
        loop {
            let page = store
                .due_tokens_in_shard(shard, DueWindow::until(now), request.clone())
                .await
                .unwrap();
            assert!(page.items.len() <= 1);
            listed.extend(page.items);
            match page.next {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
            assert!(listed.len() <= due_at.len(), "the pages never end");
        }
        let times: Vec<_> = listed.iter().map(|key| due_at[key]).collect();
        assert!(times.is_sorted(), "shard {shard} lists soonest first");
        fullest = fullest.max(listed.len());
        for key in listed {
            assert!(
                shard_of.insert(key, shard).is_none(),
                "a token in two shards"
            );
        }
    }
    assert!(fullest >= 2, "some shard paged over several tokens");
    assert_eq!(
        shard_of.keys().collect::<HashSet<_>>(),
        due_at.keys().collect::<HashSet<_>>(),
        "every due token, and only those, in some shard"
    );
    let past_the_end = store
        .due_tokens_in_shard(shards, DueWindow::until(now), PageRequest::first(10))
        .await
        .unwrap();
    assert!(past_the_end.items.is_empty() && past_the_end.next.is_none());

    // All shards at once, in pages that span shards: each token once, each shard's tokens
    // together and in that shard's order.
    let mut seen = Vec::new();
    let mut request = PageRequest::first(3);
    for _ in 0..100 {
        let page = store.due_tokens(now, request.clone()).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items);
        match page.next {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), due_at.len());
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        due_at.keys().collect::<HashSet<_>>()
    );
    let mut runs: Vec<u32> = seen.iter().map(|key| shard_of[key]).collect();
    runs.dedup();
    assert_eq!(
        runs.len(),
        runs.iter().collect::<BTreeSet<_>>().len(),
        "a shard's tokens come together"
    );
    for pair in seen.windows(2) {
        if shard_of[&pair[0]] == shard_of[&pair[1]] {
            assert!(due_at[&pair[0]] <= due_at[&pair[1]]);
        }
    }
    let foreign = store
        .due_tokens(
            now,
            PageRequest {
                limit: 3,
                cursor: Some("bm90IGEgY3Vyc29y".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(foreign, StoreError::BadCursor), "{foreign:?}");
}

fn pending(owner: Owner, expires_in: Duration) -> PendingAuthorization {
    let now = Utc::now();
    PendingAuthorization {
        connection_id: keyport_shared::domain::ConnectionId::generate(),
        owner,
        requested_by: Subject::parse("admin@example.com").unwrap(),
        pkce_verifier: Some(PkceVerifier::new("verifier-abc")),
        nonce: Some("nonce-xyz".into()),
        redirect_after: Some("https://app.example.com/done".into()),
        created_at: now,
        expires_at: now + expires_in,
        awaiting_confirmation: None,
    }
}

async fn pending_authorizations_work_once(backend: Backend) {
    let store = &backend.store;
    let state = StateToken::generate();
    let record = pending(user("carol"), Duration::minutes(10));
    store.put_pending(&state, &record).await.unwrap();
    let err = store.put_pending(&state, &record).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");

    let taken = store
        .take_pending(&state, Utc::now())
        .await
        .unwrap()
        .expect("live state");
    assert_eq!(taken.connection_id, record.connection_id);
    assert_eq!(taken.owner, record.owner);
    assert_eq!(taken.requested_by, record.requested_by);
    assert_eq!(taken.pkce_verifier.unwrap().expose_secret(), "verifier-abc");
    assert_eq!(taken.nonce, record.nonce);
    assert_eq!(taken.redirect_after, record.redirect_after);
    assert_eq!(taken.expires_at, record.expires_at);

    assert!(
        store
            .take_pending(&state, Utc::now())
            .await
            .unwrap()
            .is_none(),
        "a state works once"
    );
    assert!(
        store
            .take_pending(&StateToken::generate(), Utc::now())
            .await
            .unwrap()
            .is_none()
    );
}

async fn expired_pending_authorizations_are_absent(backend: Backend) {
    let store = &backend.store;
    let state = StateToken::generate();
    store
        .put_pending(&state, &pending(Owner::Shared, Duration::minutes(5)))
        .await
        .unwrap();
    // Read as if ten minutes had passed: TTL deletion has not happened, the record is still
    // there, and it must not be honoured.
    let later = Utc::now() + Duration::minutes(10);
    assert!(store.take_pending(&state, later).await.unwrap().is_none());
    assert!(
        store
            .take_pending(&state, Utc::now())
            .await
            .unwrap()
            .is_none(),
        "and it is gone"
    );
}

async fn secrets_round_trip(backend: Backend) {
    let secrets = &backend.secrets;
    let connection = connection("Secretive");
    let reference = SecretRef::client_secret(&connection.id);
    let private_key = SecretRef::private_key(&connection.id);
    assert!(secrets.get_secret(&reference).await.unwrap().is_none());

    let reserved = "s3cr:t+/=%&x?#y";
    secrets
        .put_secret(&reference, &ClientSecret::new(reserved))
        .await
        .unwrap();
    secrets
        .put_secret(
            &private_key,
            &ClientSecret::new("-----BEGIN PRIVATE KEY-----"),
        )
        .await
        .unwrap();
    assert_eq!(
        secrets
            .get_secret(&reference)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        reserved
    );

    secrets
        .put_secret(&reference, &ClientSecret::new("rotated"))
        .await
        .unwrap();
    assert_eq!(
        secrets
            .get_secret(&reference)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "rotated"
    );
    assert_eq!(
        secrets
            .get_secret(&private_key)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "-----BEGIN PRIVATE KEY-----"
    );

    secrets.delete_secret(&reference).await.unwrap();
    assert!(secrets.get_secret(&reference).await.unwrap().is_none());
    secrets
        .delete_secret(&reference)
        .await
        .expect("deleting twice is fine");
    assert!(
        secrets.get_secret(&private_key).await.unwrap().is_some(),
        "only the named secret goes"
    );
}

async fn data_keys_are_bound_to_their_context(backend: Backend) {
    let context = KeyContext::token(&key(Owner::Shared));
    let data_key = backend.keys.generate_data_key(&context).await.unwrap();
    assert_ne!(data_key.wrapped.as_slice(), &data_key.plaintext[..]);
    let unwrapped = backend
        .keys
        .decrypt_data_key(&data_key.wrapped, &context)
        .await
        .unwrap();
    assert_eq!(*unwrapped, *data_key.plaintext);

    let other = KeyContext::token(&key(Owner::Shared));
    let err = backend
        .keys
        .decrypt_data_key(&data_key.wrapped, &other)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyError::Integrity),
        "{}: {err:?}",
        backend.name
    );
}

async fn audit_events_list_newest_first_per_connection_across_pages(backend: Backend) {
    let store = &backend.store;
    let (mine, other) = (ConnectionId::generate(), ConnectionId::generate());
    let start = Utc::now();
    let actions = [
        AuditAction::ConnectionCreated,
        AuditAction::TokenAuthorized,
        AuditAction::TokenRefreshed,
        AuditAction::AccessDenied,
        AuditAction::ConnectionDeleted,
    ];
    let mut written = Vec::new();
    for (i, action) in actions.into_iter().enumerate() {
        let event = AuditEvent::new(
            mine.clone(),
            action,
            "alice",
            Some(Owner::Shared),
            Some("why".into()),
            start + Duration::seconds(i as i64),
        );
        store.append_audit(&event).await.unwrap();
        written.push(event);
    }
    let foreign = AuditEvent::new(
        other.clone(),
        AuditAction::TokenRevoked,
        "bob",
        None,
        None,
        start,
    );
    store.append_audit(&foreign).await.unwrap();

    let mut listed = Vec::new();
    let mut page = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let got = store.list_audit(&mine, page.clone()).await.unwrap();
        assert!(got.items.len() <= 2);
        listed.extend(got.items);
        pages += 1;
        match got.next {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    written.reverse();
    assert_eq!(
        listed, written,
        "newest first, every event once, nothing foreign"
    );
    assert_eq!(pages, 3);
    assert_eq!(
        store
            .list_audit(&other, PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![foreign]
    );
    let bad = PageRequest {
        limit: 2,
        cursor: Some("not-a-cursor".into()),
    };
    assert!(matches!(
        store.list_audit(&mine, bad).await,
        Err(StoreError::BadCursor)
    ));
}

async fn a_connection_and_its_token_come_in_one_read(backend: Backend) {
    let store = &backend.store;
    let absent = key(Owner::Shared);
    assert!(matches!(
        store.get_connection_and_token(&absent).await.unwrap(),
        (None, None)
    ));
    let created = store
        .create_connection(&connection("One read"))
        .await
        .unwrap();
    let shared = TokenKey {
        connection_id: created.id.clone(),
        owner: Owner::Shared,
    };
    let (found, none) = store.get_connection_and_token(&shared).await.unwrap();
    assert_eq!(found.as_deref(), Some(&created));
    assert!(none.is_none(), "no token yet");

    let bobs = TokenKey {
        connection_id: created.id.clone(),
        owner: user("bob"),
    };
    let written = store
        .put_token(&token(&bobs, None), Expect::Absent)
        .await
        .unwrap();
    let (found, none) = store.get_connection_and_token(&shared).await.unwrap();
    assert_eq!(found.as_deref(), Some(&created));
    assert!(none.is_none(), "another owner's token is not this one");
    let (found, got) = store.get_connection_and_token(&bobs).await.unwrap();
    assert_eq!(found.as_deref(), Some(&created));
    assert_eq!(got, Some(written));

    // A change is seen on the next read (a back-end may keep parsed connections).
    let mut changed = created.clone();
    changed.description = "changed after a read".into();
    let updated = store.update_connection(&changed).await.unwrap();
    let (found, _) = store.get_connection_and_token(&bobs).await.unwrap();
    assert_eq!(found.as_deref(), Some(&updated));
    assert_ne!(updated.version, created.version);
}
