//! The AWS back-ends: KMS data keys, Secrets Manager client secrets, the SQS work queue and the EventBridge bus (DynamoDB storage lives
//! in `adapters::dynamodb`), plus what every AWS client here shares.

mod call_recorder;
mod eventbridge;
mod kms;
mod request_counter;
mod secrets_manager;
mod sqs;

pub use call_recorder::{AwsCall, CallRecorder};
pub use eventbridge::{EVENT_SOURCE, EventBridgeBus};
pub use kms::KmsDataKeys;
pub use request_counter::RequestCounter;
pub use secrets_manager::{SecretsManagerSecret, SecretsManagerStore};
pub use sqs::SqsWorkQueue;
