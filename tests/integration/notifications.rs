//! Notifications: webhooks signed per the Standard Webhooks specification, verified by the
//! specification's reference library in a loopback receiver (not Keyport's code), delivered
//! from the durable outbox with retries, so a receiver that is down loses nothing; and, on
//! AWS, the EventBridge bus, read back through a rule to an SQS queue on moto. Events carry ids,
//! names and statuses, never a secret or token.

use std::time::Duration;

use keyport_tests::backends::Backend;
use keyport_tests::http_client::Http;
use keyport_tests::logs::CapturedLogs;
use keyport_tests::server::TestServer;
use keyport_tests::webhook_receiver::WebhookReceiver;
use serde_json::{Value, json};

crate::on_both_backends_with_logs!(a_receiver_down_for_a_while_gets_every_event_once_verified);

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(120)
}

fn connection(name: &str) -> Value {
    json!({
        "name": name, "provider": "custom", "grant_type": "client_credentials",
        "client_id": "c", "client_secret": "never-sent-anywhere",
        "token_url": "https://login.example.com/token", "invited_roles": ["bots"],
    })
}

fn verified(receiver: &WebhookReceiver) -> Vec<Value> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r["verified"] == true)
        .collect()
}

async fn a_receiver_down_for_a_while_gets_every_event_once_verified(
    backend: Backend,
    logs: CapturedLogs,
) {
    // Retries due at once, so each delivery pass below is one more attempt (no waiting).
    let server = TestServer::start(&backend, &["--webhook-retry-seconds", "0,0,0"]).await;
    let keyport = server.server.keyport.clone();
    let http = Http::new(&server.base);
    let admin = server.token("admin", &["keyport-admins"]);
    let receiver = WebhookReceiver::start();

    let created = http
        .post(
            "/webhooks",
            Some(&admin),
            json!({
                "url": receiver.url,
                "event_types": ["connection.role_invited", "connection.deleted"],
                "description": "the on-call channel",
            }),
        )
        .await
        .expect_json(201, "subscribing");
    let secret = created["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let listed = http
        .get("/webhooks", Some(&admin))
        .await
        .expect_json(200, "the subscriptions");
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once: {listed}"
    );
    receiver.trust(&secret);

    // A role invited: delivered, verified by the reference library.
    let crm = http
        .post("/connections", Some(&admin), connection("crm"))
        .await
        .expect_json(201, "a connection inviting bots");
    // This pass, or the local server's own refresher run if it came first (one pass at a time
    // in a process, so not both).
    keyport.deliver_notifications(deadline()).await.unwrap();
    let got = verified(&receiver);
    assert_eq!(got.len(), 1, "{:?}", receiver.received());
    let payload = &got[0]["payload"];
    assert_eq!(payload["type"], "connection.role_invited");
    assert_eq!(payload["data"]["role"], "bots");
    assert_eq!(payload["data"]["connection_name"], "crm");
    assert_eq!(payload["data"]["connection_id"], crm["id"]);
    assert_eq!(got[0]["signatures"], 1);

    // The receiver goes down; the connection is deleted: the event waits in the outbox.
    receiver.set_down(true);
    http.delete(
        &format!("/connections/{}", crm["id"].as_str().unwrap()),
        Some(&admin),
    )
    .await;
    for attempt in 1..=2 {
        let report = keyport.deliver_notifications(deadline()).await.unwrap();
        assert_eq!(
            (report.delivered, report.failed),
            (0, 1),
            "attempt {attempt}: {report:?}"
        );
    }
    let failing = http
        .get(&format!("/webhooks/{id}"), Some(&admin))
        .await
        .expect_json(200, "the subscription while its receiver is down");
    assert_eq!(failing["last_delivery"]["outcome"], "failed", "{failing}");
    assert_eq!(failing["last_delivery"]["status"], 503, "{failing}");
    // Back up: the next pass delivers it, with the id every attempt carried.
    receiver.set_down(false);
    let report = keyport.deliver_notifications(deadline()).await.unwrap();
    assert_eq!((report.delivered, report.failed), (1, 0), "{report:?}");
    let all = receiver.received();
    let refused: Vec<&Value> = all.iter().filter(|r| r["answer"] == 503).collect();
    assert_eq!(refused.len(), 2, "{all:?}");
    let got = verified(&receiver);
    assert_eq!(got.len(), 2, "{all:?}");
    assert_eq!(got[1]["payload"]["type"], "connection.deleted");
    assert!(
        refused
            .iter()
            .all(|r| r["webhook_id"] == got[1]["webhook_id"]),
        "{all:?}"
    );
    let delivered = http
        .get(&format!("/webhooks/{id}"), Some(&admin))
        .await
        .expect_json(200, "the subscription after the delivery");
    assert_eq!(delivered["last_delivery"]["outcome"], "delivered");
    // Delivered once: nothing left to send.
    let report = keyport.deliver_notifications(deadline()).await.unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(verified(&receiver).len(), 2);

    // A rotation: for a while both secrets sign, so the receiver still holding the old one
    // verifies; then it takes the new one.
    let rotated = http
        .post(
            &format!("/webhooks/{id}/rotate-secret"),
            Some(&admin),
            json!({}),
        )
        .await
        .expect_json(200, "rotating the secret");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    http.post("/connections", Some(&admin), connection("calendar"))
        .await
        .expect_json(201, "another connection");
    keyport.deliver_notifications(deadline()).await.unwrap();
    let got = verified(&receiver);
    assert_eq!(got.len(), 3, "{:?}", receiver.received());
    assert_eq!(got[2]["signatures"], 2, "the new and the old secret sign");
    receiver.trust(&new_secret);
    http.post("/connections", Some(&admin), connection("mail"))
        .await
        .expect_json(201, "a third connection");
    keyport.deliver_notifications(deadline()).await.unwrap();
    assert_eq!(verified(&receiver).len(), 4, "{:?}", receiver.received());

    // Types nobody subscribed to are not sent; a disabled subscription gets nothing.
    let current = http
        .get(&format!("/webhooks/{id}"), Some(&admin))
        .await
        .expect_json(200, "the subscription");
    http.patch(
        &format!("/webhooks/{id}"),
        Some(&admin),
        json!({"enabled": false, "version": current["version"]}),
    )
    .await
    .expect_json(200, "disabling it");
    http.post("/connections", Some(&admin), connection("wiki"))
        .await
        .expect_json(201, "a fourth connection");
    keyport.deliver_notifications(deadline()).await.unwrap();
    assert_eq!(verified(&receiver).len(), 4);

    // Nothing secret in any payload or log line.
    for entry in receiver.received() {
        let text = entry.to_string();
        assert!(
            !text.contains("never-sent-anywhere") && !text.contains("whsec_"),
            "{text}"
        );
    }
    logs.assert_free_of([secret.as_str(), new_secret.as_str(), "never-sent-anywhere"]);
}

/// On AWS every event goes on the installation's bus: an ordinary rule (source `keyport`)
/// routes it to an SQS queue, read back through the real SDK clients on moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_goes_on_the_event_bus_for_rules_to_route() {
    let backend = keyport_tests::backends::aws().await;
    let sdk = keyport_tests::moto::Moto::get().sdk_config();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let bus = format!("keyport-{unique}");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("a bus");
    let queue = sqs
        .create_queue()
        .queue_name(format!("keyport-events-{unique}"))
        .send()
        .await
        .expect("a queue");
    let queue_url = queue.queue_url().expect("its URL").to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("its attributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("its ARN");
    events
        .put_rule()
        .name("keyport-to-queue")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source": ["keyport"], "detail-type": ["token.refresh_failed", "connection.role_invited"]}"#)
        .send()
        .await
        .expect("a rule");
    events
        .put_targets()
        .rule("keyport-to-queue")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("the queue as its target");

    let recorder = keyport_shared::adapters::aws::CallRecorder::new();
    let keyport = keyport_tests::keyport::keyport(&backend, |_| {}).with_event_bus(
        keyport_shared::config::event_bridge_bus(&bus, &sdk, Some(&recorder)),
    );
    let input = serde_json::from_value(connection("ledger")).unwrap();
    let created = keyport
        .create_connection(&keyport_tests::keyport::admin(), input)
        .await
        .unwrap();
    let report = keyport.deliver_notifications(deadline()).await.unwrap();
    assert_eq!((report.fanned_out, report.delivered), (1, 1), "{report:?}");
    assert_eq!(
        recorder.count("EventBridge:PutEvents"),
        1,
        "{:?}",
        recorder.calls()
    );

    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("the queue's messages");
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let event: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(event["source"], "keyport");
    assert_eq!(event["detail-type"], "connection.role_invited");
    assert_eq!(event["detail"]["data"]["connection_name"], "ledger");
    assert_eq!(
        event["detail"]["data"]["connection_id"],
        created.id.as_str()
    );
    assert_eq!(event["detail"]["data"]["role"], "bots");
    assert!(
        event["detail"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_")),
        "{event}"
    );
    assert!(
        !event.to_string().contains("never-sent-anywhere"),
        "{event}"
    );
}
