//! A caller's connections come from the invitation index kept with each connection's writes,
//! not from a listing of every connection: invitations added, withdrawn and ended with the
//! connection are followed at once, on both back-ends. On DynamoDB a table whose connections
//! predate the index answers from the listing until the refresher has indexed it (once), then
//! from the index.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use keyport_shared::domain::{ApiScope, ApplicationId, Invitee, Principal, Subject};
use keyport_shared::service::Keyport;
use keyport_tests::backends::{Backend, Raw};
use keyport_tests::keyport::{admin, keyport, principal};
use serde_json::json;

async fn create(keyport: &Keyport, name: &str, roles: &[&str]) -> String {
    let input = serde_json::from_value(json!({
        "name": name,
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": "never-sent",
        "token_url": "https://login.example.com/token",
        "invited_roles": roles,
    }))
    .unwrap();
    keyport
        .create_connection(&admin(), input)
        .await
        .unwrap()
        .id
        .to_string()
}

async fn names_for(keyport: &Keyport, roles: &[&str]) -> Vec<String> {
    keyport
        .my_connections(&principal("someone", roles))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// What an application reading tokens may use.
async fn app_names(keyport: &Keyport, client_id: &str) -> Vec<String> {
    let app = Principal::application(
        ApplicationId::parse(client_id).unwrap(),
        Subject::parse(client_id).unwrap(),
    )
    .with_scopes([ApiScope::TokensRead]);
    keyport
        .my_connections(&app)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

async fn a_callers_connections_follow_its_invitations(backend: Backend) {
    let keyport = Arc::new(keyport(&backend, |_| {}));
    let crm = create(&keyport, "crm", &["bots"]).await;
    create(&keyport, "calendar", &["staff"]).await;
    let both = create(&keyport, "both", &["bots", "staff"]).await;
    create(&keyport, "nobody", &[]).await;
    if !keyport.store.invitations_indexed().await.unwrap() {
        // A new DynamoDB table: the first scheduled run writes the marker.
        keyport.store.index_invitations().await.unwrap();
    }
    assert!(keyport.store.invitations_indexed().await.unwrap());
    assert_eq!(names_for(&keyport, &["bots"]).await, ["both", "crm"]);
    assert_eq!(
        names_for(&keyport, &["bots", "staff"]).await,
        ["both", "calendar", "crm"]
    );
    assert!(names_for(&keyport, &["guests"]).await.is_empty());

    // Applications are invited by client id, beside roles, and never taken for a role (or a
    // role for them) of the same name.
    let id = keyport_shared::domain::ConnectionId::parse(&crm).unwrap();
    let current = keyport.store.get_connection(&id).await.unwrap().unwrap();
    let change = serde_json::from_value(
        json!({"invited_applications": ["reporting", "staff"], "version": current.version}),
    )
    .unwrap();
    keyport
        .update_connection(&admin(), &id, change)
        .await
        .unwrap();
    assert_eq!(app_names(&keyport, "reporting").await, ["crm"]);
    assert_eq!(app_names(&keyport, "bots").await, Vec::<String>::new());
    assert_eq!(names_for(&keyport, &["staff"]).await, ["both", "calendar"]);
    let change =
        serde_json::from_value(json!({"invited_applications": [], "version": current.version + 1}))
            .unwrap();
    keyport
        .update_connection(&admin(), &id, change)
        .await
        .unwrap();
    assert!(app_names(&keyport, "reporting").await.is_empty());
    let reporting = Invitee::Application(ApplicationId::parse("reporting").unwrap());
    assert!(
        keyport
            .store
            .invited_connections(&reporting)
            .await
            .unwrap()
            .is_empty()
    );

    // Withdrawn from bots, given to guests: followed at once.
    let id = keyport_shared::domain::ConnectionId::parse(&crm).unwrap();
    let current = keyport.store.get_connection(&id).await.unwrap().unwrap();
    let change =
        serde_json::from_value(json!({"invited_roles": ["guests"], "version": current.version}))
            .unwrap();
    keyport
        .update_connection(&admin(), &id, change)
        .await
        .unwrap();
    assert_eq!(names_for(&keyport, &["bots"]).await, ["both"]);
    assert_eq!(names_for(&keyport, &["guests"]).await, ["crm"]);

    // Deleted: gone from everyone's list, and from the index itself.
    let both_id = keyport_shared::domain::ConnectionId::parse(&both).unwrap();
    keyport
        .delete_connection(&admin(), &both_id, None)
        .await
        .unwrap();
    assert!(names_for(&keyport, &["bots"]).await.is_empty());
    let bots = Invitee::Role(keyport_shared::domain::Role::parse("bots").unwrap());
    assert!(
        keyport
            .store
            .invited_connections(&bots)
            .await
            .unwrap()
            .is_empty()
    );
}

crate::on_both_backends!(a_callers_connections_follow_its_invitations);

/// A table from before the index: connections without invitation items and no marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_table_answers_from_the_listing_until_the_refresher_indexes_it() {
    let backend = keyport_tests::backends::aws().await;
    let keyport = Arc::new(keyport(&backend, |_| {}));
    create(&keyport, "legacy", &["bots"]).await;
    let Raw::Dynamo { client, table } = &backend.raw else {
        unreachable!("the AWS back-end")
    };
    // Take away what the index wrote, as if the connection predated it.
    let scanned = client.scan().table_name(table).send().await.unwrap();
    let mut removed = 0;
    for item in scanned.items() {
        let pk = match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => continue,
        };
        if pk.starts_with("INVITED#") || pk == "META" {
            client
                .delete_item()
                .table_name(table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "one invitation item, no marker yet");
    // A new process: nothing remembered.
    let store = keyport_shared::adapters::dynamodb::DynamoStore::new(client.clone(), table.clone());
    let fresh = Arc::new(keyport_tests::keyport::keyport_over(
        Arc::new(store),
        &backend,
        |_| {},
    ));
    assert!(!fresh.store.invitations_indexed().await.unwrap());
    assert_eq!(
        names_for(&fresh, &["bots"]).await,
        ["legacy"],
        "from the listing"
    );

    let report = fresh
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            4,
        )
        .await
        .unwrap();
    assert_eq!(report.connections_indexed, 1, "{report:?}");
    assert!(fresh.store.invitations_indexed().await.unwrap());
    let bots = Invitee::Role(keyport_shared::domain::Role::parse("bots").unwrap());
    assert_eq!(
        fresh.store.invited_connections(&bots).await.unwrap().len(),
        1
    );
    assert_eq!(
        names_for(&fresh, &["bots"]).await,
        ["legacy"],
        "from the index"
    );
    // Indexed once: the next run has nothing to do.
    let again = fresh
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            4,
        )
        .await
        .unwrap();
    assert_eq!(again.connections_indexed, 0, "{again:?}");
}
