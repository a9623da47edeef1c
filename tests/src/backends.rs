//! Each back-end assembled for one test, with its own resources, and a raw view of what it
//! stored for the tests that must look beneath the ports.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use keyport_shared::adapters::aws::{KmsDataKeys, RequestCounter, SecretsManagerStore};
use keyport_shared::adapters::dynamodb::{DynamoStore, create_table};
use keyport_shared::adapters::embedded::{
    EmbeddedDb, EmbeddedSecretStore, EmbeddedStore, LocalMasterKey,
};
use keyport_shared::crypto::{EnvelopeCipher, KeyCacheLimits};
use keyport_shared::ports::{DataKeyProvider, SecretStore, Store, TokenKey};

use crate::moto::Moto;

pub enum Raw {
    Embedded(EmbeddedDb),
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub keys: Arc<dyn DataKeyProvider>,
    pub raw: Raw,
    /// KMS requests sent by `keys` (AWS only).
    pub kms_requests: Option<RequestCounter>,
    /// DynamoDB requests sent by `store` (AWS only).
    pub dynamodb_requests: Option<RequestCounter>,
    /// Secrets Manager requests sent by `secrets` (AWS only).
    pub secrets_requests: Option<RequestCounter>,
    /// How a separate `keyport serve` process reaches these same back-ends: its flags and
    /// environment variables.
    pub process_args: Vec<String>,
    pub process_env: Vec<(String, String)>,
    /// The data directory such a process uses (the development signing key lives there).
    pub data_dir: tempfile::TempDir,
}

impl Backend {
    /// A fresh cipher over this back-end's keys, with a cold cache.
    pub fn cipher(&self) -> EnvelopeCipher {
        EnvelopeCipher::new(self.keys.clone(), KeyCacheLimits::default())
    }

    /// Every byte the store holds for one token item, attribute values and column values alike.
    pub async fn raw_token_bytes(&self, key: &TokenKey) -> Vec<u8> {
        match &self.raw {
            Raw::Embedded(db) => {
                let conn = rusqlite::Connection::open(db.path()).expect("open the database file");
                conn.query_row(
                    "SELECT * FROM tokens WHERE connection_id = ?1 AND owner = ?2",
                    [key.connection_id.as_str(), &key.owner.storage_key()],
                    |row| {
                        let mut bytes = Vec::new();
                        for index in 0..row.as_ref().column_count() {
                            match row.get_ref(index)? {
                                rusqlite::types::ValueRef::Text(t)
                                | rusqlite::types::ValueRef::Blob(t) => bytes.extend_from_slice(t),
                                other => bytes.extend_from_slice(format!("{other:?}").as_bytes()),
                            }
                            bytes.push(b'\n');
                        }
                        Ok(bytes)
                    },
                )
                .expect("the token row exists")
            }
            Raw::Dynamo { client, table } => {
                let item = dynamo_token_item(client, table, key).await;
                let mut bytes = Vec::new();
                for (name, value) in item {
                    bytes.extend_from_slice(name.as_bytes());
                    bytes.push(b'=');
                    match value {
                        AttributeValue::S(s) | AttributeValue::N(s) => {
                            bytes.extend_from_slice(s.as_bytes())
                        }
                        AttributeValue::B(b) => bytes.extend_from_slice(b.as_ref()),
                        other => bytes.extend_from_slice(format!("{other:?}").as_bytes()),
                    }
                    bytes.push(b'\n');
                }
                bytes
            }
        }
    }
}

/// One record as the store holds it, beneath the ports: where it is (a table and row, an
/// item's key, a file) and every byte of it.
pub struct RawRecord {
    pub place: String,
    pub bytes: Vec<u8>,
}

impl Backend {
    /// Everything the store holds, read with the test's own client: every column of every row
    /// of every table of the embedded file, and the file itself (pages freed by deletes
    /// included); or every attribute of every item of the DynamoDB table.
    pub async fn raw_everything(&self) -> Vec<RawRecord> {
        match &self.raw {
            Raw::Embedded(db) => embedded_records(db.path()),
            Raw::Dynamo { client, table } => dynamo_records(client, table).await,
        }
    }
}

fn embedded_records(path: &std::path::Path) -> Vec<RawRecord> {
    let conn = rusqlite::Connection::open(path).expect("open the database file");
    let mut records = Vec::new();
    for table in sqlite_tables(&conn) {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select a table");
        let columns = statement.column_count();
        let mut rows = statement.query([]).expect("read a table");
        let mut index = 0;
        while let Some(row) = rows.next().expect("read a row") {
            let mut bytes = Vec::new();
            for column in 0..columns {
                append_sqlite_value(&mut bytes, row.get_ref(column).expect("a column"));
                bytes.push(b'\n');
            }
            records.push(RawRecord {
                place: format!("table {table} row {index}"),
                bytes,
            });
            index += 1;
        }
    }
    // The file and its write-ahead log hold what the rows no longer show.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    for file in [path.to_owned(), std::path::PathBuf::from(wal)] {
        if let Ok(bytes) = std::fs::read(&file) {
            records.push(RawRecord {
                place: format!("file {}", file.display()),
                bytes,
            });
        }
    }
    records
}

fn sqlite_tables(conn: &rusqlite::Connection) -> Vec<String> {
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("list the tables");
    statement
        .query_map([], |row| row.get(0))
        .expect("list the tables")
        .collect::<Result<_, _>>()
        .expect("table names")
}

fn append_sqlite_value(bytes: &mut Vec<u8>, value: rusqlite::types::ValueRef<'_>) {
    match value {
        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
            bytes.extend_from_slice(t)
        }
        other => bytes.extend_from_slice(format!("{other:?}").as_bytes()),
    }
}

async fn dynamo_records(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<RawRecord> {
    let mut records = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        for item in page.items.unwrap_or_default() {
            let place = format!(
                "item {:?}/{:?}",
                item.get("pk").and_then(|v| v.as_s().ok()),
                item.get("sk").and_then(|v| v.as_s().ok())
            );
            let mut bytes = Vec::new();
            for (name, value) in &item {
                bytes.extend_from_slice(name.as_bytes());
                bytes.push(b'=');
                append_attribute(&mut bytes, value);
                bytes.push(b'\n');
            }
            records.push(RawRecord { place, bytes });
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return records,
        }
    }
}

/// An attribute's bytes, nested values and sets included.
fn append_attribute(bytes: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => bytes.extend_from_slice(s.as_bytes()),
        AttributeValue::B(b) => bytes.extend_from_slice(b.as_ref()),
        AttributeValue::Ss(list) | AttributeValue::Ns(list) => {
            for s in list {
                bytes.extend_from_slice(s.as_bytes());
                bytes.push(b'\n');
            }
        }
        AttributeValue::Bs(list) => {
            for b in list {
                bytes.extend_from_slice(b.as_ref());
                bytes.push(b'\n');
            }
        }
        AttributeValue::L(list) => {
            for v in list {
                append_attribute(bytes, v);
                bytes.push(b'\n');
            }
        }
        AttributeValue::M(map) => {
            for (name, v) in map {
                bytes.extend_from_slice(name.as_bytes());
                bytes.push(b'=');
                append_attribute(bytes, v);
                bytes.push(b'\n');
            }
        }
        other => bytes.extend_from_slice(format!("{other:?}").as_bytes()),
    }
}

pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = EmbeddedDb::open(&dir.path().join("keyport.db")).expect("open the embedded database");
    let keys: Arc<dyn DataKeyProvider> = Arc::new(
        LocalMasterKey::load_or_create(&dir.path().join("master.key")).expect("master key"),
    );
    let cipher = Arc::new(EnvelopeCipher::new(keys.clone(), KeyCacheLimits::default()));
    let data_dir = dir.path().to_str().expect("a UTF-8 path").to_owned();
    Backend {
        name: "embedded",
        store: Arc::new(EmbeddedStore::new(db.clone())),
        secrets: Arc::new(EmbeddedSecretStore::new(db.clone(), cipher)),
        keys,
        raw: Raw::Embedded(db),
        kms_requests: None,
        dynamodb_requests: None,
        secrets_requests: None,
        process_args: vec!["--data-dir".into(), data_dir],
        process_env: Vec::new(),
        data_dir: dir,
    }
}

pub async fn aws() -> Backend {
    let moto = Moto::get();
    let sdk = moto.sdk_config();
    let unique = uuid::Uuid::new_v4().simple().to_string();

    let dynamodb_requests = RequestCounter::new();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(dynamodb_requests.clone())
            .build(),
    );
    let table = format!("keyport-test-{unique}");
    create_table(&dynamodb, &table)
        .await
        .expect("create the DynamoDB table");

    let kms_requests = RequestCounter::new();
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .interceptor(kms_requests.clone())
            .build(),
    );
    let key_id = kms
        .create_key()
        .description("keyport test key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("key metadata")
        .key_id;
    let keys: Arc<dyn DataKeyProvider> = Arc::new(KmsDataKeys::new(kms, key_id.clone()));

    let secret_prefix = format!("keyport-test/{unique}/");
    let secrets_requests = RequestCounter::new();
    let secrets_manager = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .interceptor(secrets_requests.clone())
            .build(),
    );
    let secrets =
        SecretsManagerStore::new(secrets_manager, &secret_prefix).with_immediate_deletion();
    let data_dir = tempfile::tempdir().expect("temporary folder");
    let process_args = [
        "--data-dir",
        data_dir.path().to_str().expect("a UTF-8 path"),
        "--backend",
        "aws",
        "--table",
        &table,
        "--kms-key-id",
        &key_id,
        "--secret-prefix",
        &secret_prefix,
    ]
    .map(str::to_owned)
    .to_vec();
    let process_env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    Backend {
        name: "aws",
        store: Arc::new(DynamoStore::new(dynamodb.clone(), table.clone())),
        secrets: Arc::new(secrets),
        keys,
        raw: Raw::Dynamo {
            client: dynamodb,
            table,
        },
        kms_requests: Some(kms_requests),
        dynamodb_requests: Some(dynamodb_requests),
        secrets_requests: Some(secrets_requests),
        process_args,
        process_env,
        data_dir,
    }
}

/// One token's DynamoDB item as stored, every attribute of it (a strongly consistent read).
pub async fn dynamo_token_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &TokenKey,
) -> std::collections::HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(table)
        .key(
            "pk",
            AttributeValue::S(format!("CONN#{}", key.connection_id)),
        )
        .key("sk", AttributeValue::S(format!("TOKEN#{}", key.owner)))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the token item exists")
}
