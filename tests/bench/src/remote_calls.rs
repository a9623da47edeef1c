//! Item 3: remote calls per token read, counted (not timed), on the AWS back-ends against moto:
//! DynamoDB and KMS requests for a cold read (new Keyport and cipher, empty data-key cache) and
//! the warm read after it, through the token function's handler.

use std::sync::Arc;

use aws_config::SdkConfig;
use keyport_shared::adapters::aws::{KmsDataKeys, RequestCounter, SecretsManagerStore};
use keyport_shared::adapters::dynamodb::{DynamoStore, create_table};
use keyport_shared::config::Backends;
use keyport_shared::crypto::{EnvelopeCipher, KeyCacheLimits};
use keyport_shared::service::Keyport;
use serde_json::{Value, json};

use crate::authserver::AuthServer;
use keyport_tests::moto::Moto;

use crate::common::{self, median};
use crate::read::{TokenHandler, seed_shared_token};

pub const RUNS: usize = 3;

/// A Keyport over the AWS back-ends as a new process would build it: its own clients, a new
/// cipher with an empty data-key cache, and counters on the DynamoDB and KMS clients.
struct CountedKeyport {
    keyport: Arc<Keyport>,
    dynamodb: RequestCounter,
    kms: RequestCounter,
}

fn counted_keyport(sdk: &SdkConfig, table: &str, key_id: &str, prefix: &str) -> CountedKeyport {
    let dynamodb_requests = RequestCounter::new();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(dynamodb_requests.clone())
            .build(),
    );
    let kms_requests = RequestCounter::new();
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(sdk)
            .interceptor(kms_requests.clone())
            .build(),
    );
    let keys = Arc::new(KmsDataKeys::new(kms, key_id));
    let backends = Backends {
        store: Arc::new(DynamoStore::new(dynamodb, table)),
        secrets: Arc::new(
            SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk), prefix)
                .with_immediate_deletion(),
        ),
        cipher: Arc::new(EnvelopeCipher::new(keys, KeyCacheLimits::default())),
    };
    CountedKeyport {
        keyport: Arc::new(common::keyport_over(backends)),
        dynamodb: dynamodb_requests,
        kms: kms_requests,
    }
}

/// DynamoDB and KMS requests one handler invocation sent.
async fn count_one(handler: &mut TokenHandler, counted: &CountedKeyport) -> (u64, u64) {
    let (dynamodb, kms) = (counted.dynamodb.count(), counted.kms.count());
    handler.invoke_checked().await;
    (
        counted.dynamodb.count() - dynamodb,
        counted.kms.count() - kms,
    )
}

pub async fn measure() -> Value {
    // The same moto server the integration tests run, started once per process.
    let moto = tokio::task::spawn_blocking(Moto::get)
        .await
        .expect("moto starts");
    let sdk = moto.sdk_config();
    let auth = AuthServer::start().await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("keyport-bench-{unique}");
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("create the table");
    let key_id = aws_sdk_kms::Client::new(&sdk)
        .create_key()
        .description("keyport bench key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("key metadata")
        .key_id;
    let prefix = format!("keyport-bench/{unique}/");

    // The token, written by the service's own write path (KMS GenerateDataKey, PutItem).
    let writer = counted_keyport(&sdk, &table, &key_id, &prefix);
    let id = seed_shared_token(&writer.keyport, &auth, "bench-remote-calls").await;

    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        let reader = counted_keyport(&sdk, &table, &key_id, &prefix);
        let mut handler = TokenHandler::new(reader.keyport.clone(), &id);
        cold.push(count_one(&mut handler, &reader).await);
        warm.push(count_one(&mut handler, &reader).await);
    }
    let med = |runs: &[(u64, u64)], pick: fn(&(u64, u64)) -> u64| {
        median(&runs.iter().map(|r| pick(r) as f64).collect::<Vec<_>>())
    };
    let section = |runs: &[(u64, u64)], floor: (u64, u64)| {
        let dynamodb = med(runs, |r| r.0);
        let kms = med(runs, |r| r.1);
        json!({
            "dynamodb_requests": dynamodb as u64,
            "kms_requests": kms as u64,
            "floor_dynamodb_requests": floor.0,
            "floor_kms_requests": floor.1,
            "at_floor": dynamodb <= floor.0 as f64 && kms <= floor.1 as f64,
            "runs": runs.iter().map(|r| json!([r.0, r.1])).collect::<Vec<_>>(),
        })
    };
    json!({
        "what": "remote requests per token read on the AWS back-ends (moto), through the token function's handler; counted by RequestCounter interceptors on the DynamoDB and KMS clients",
        "runs": RUNS,
        "statistic": "median over runs; each run is a new Keyport with new clients and an empty data-key cache",
        "cold": section(&cold, (1, 1)),
        "warm": section(&warm, (1, 0)),
    })
}
