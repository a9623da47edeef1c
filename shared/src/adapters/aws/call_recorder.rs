//! Records every AWS API operation an SDK client starts, with what IAM needs to know to allow
//! it: the IAM actions it is authorized as, the KMS encryption context, the DynamoDB index and
//! the Secrets Manager secret. Attached as an SDK interceptor, it lets the tests hold what a
//! function really calls against that function's IAM policy, which moto does not enforce.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// One operation as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AwsCall {
    /// The SDK operation, e.g. `DynamoDB:TransactWriteItems`.
    pub operation: String,
    /// The IAM actions that authorize it, e.g. `dynamodb:PutItem` and
    /// `dynamodb:ConditionCheckItem` for a transaction of a put and a condition check.
    pub actions: Vec<String>,
    /// KMS: the encryption context the request carries (what `kms:EncryptionContext:*`
    /// conditions test).
    pub encryption_context: BTreeMap<String, String>,
    /// DynamoDB: the index a query reads (IAM names it as `<table ARN>/index/<name>`).
    pub index: Option<String>,
    /// Secrets Manager: the secret's name or id.
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CallRecorder {
    calls: Arc<Mutex<Vec<AwsCall>>>,
}

impl CallRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every operation started so far, in order.
    pub fn calls(&self) -> Vec<AwsCall> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// How many operations named `operation` (`Service:Operation`) were started.
    pub fn count(&self, operation: &str) -> usize {
        self.calls()
            .iter()
            .filter(|call| call.operation == operation)
            .count()
    }
}

/// The IAM service prefix of an SDK service name ("Secrets Manager" -> "secretsmanager"; the
/// one whose prefix is not its name: EventBridge's is `events`).
fn iam_prefix(service: &str) -> String {
    if service == "EventBridge" {
        return "events".to_owned();
    }
    service
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn describe(
    metadata: &Metadata,
    input: &aws_smithy_runtime_api::client::interceptors::context::Input,
) -> AwsCall {
    use aws_sdk_dynamodb::operation as dynamodb;
    use aws_sdk_kms::operation as kms;
    use aws_sdk_secretsmanager::operation as secretsmanager;

    let prefix = iam_prefix(metadata.service());
    let mut call = AwsCall {
        operation: format!("{}:{}", metadata.service(), metadata.name()),
        actions: vec![format!("{prefix}:{}", metadata.name())],
        encryption_context: BTreeMap::new(),
        index: None,
        secret: None,
    };
    // A transaction is authorized as the operations it is made of (DynamoDB developer guide,
    // "Using IAM with DynamoDB transactions"); there is no IAM action of its own.
    if let Some(input) =
        input.downcast_ref::<dynamodb::transact_write_items::TransactWriteItemsInput>()
    {
        let mut actions: Vec<String> = input
            .transact_items()
            .iter()
            .filter_map(|item| {
                if item.put.is_some() {
                    Some("dynamodb:PutItem")
                } else if item.delete.is_some() {
                    Some("dynamodb:DeleteItem")
                } else if item.update.is_some() {
                    Some("dynamodb:UpdateItem")
                } else if item.condition_check.is_some() {
                    Some("dynamodb:ConditionCheckItem")
                } else {
                    None
                }
            })
            .map(str::to_owned)
            .collect();
        actions.sort();
        actions.dedup();
        call.actions = actions;
    } else if input
        .downcast_ref::<dynamodb::transact_get_items::TransactGetItemsInput>()
        .is_some()
    {
        call.actions = vec!["dynamodb:GetItem".into()];
    } else if let Some(input) = input.downcast_ref::<dynamodb::query::QueryInput>() {
        call.index = input.index_name().map(str::to_owned);
    } else if let Some(input) = input.downcast_ref::<dynamodb::scan::ScanInput>() {
        call.index = input.index_name().map(str::to_owned);
    } else if input
        .downcast_ref::<aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput>()
        .is_some()
    {
        // "The permissions for SendMessageBatch are the same as for SendMessage" (SQS API
        // reference): there is no action of its own.
        call.actions = vec!["sqs:SendMessage".into()];
    } else if let Some(input) = input.downcast_ref::<kms::decrypt::DecryptInput>() {
        call.encryption_context = sorted(input.encryption_context());
    } else if let Some(input) = input.downcast_ref::<kms::generate_data_key::GenerateDataKeyInput>()
    {
        call.encryption_context = sorted(input.encryption_context());
    } else if let Some(input) = input.downcast_ref::<kms::encrypt::EncryptInput>() {
        call.encryption_context = sorted(input.encryption_context());
    } else if let Some(input) =
        input.downcast_ref::<secretsmanager::get_secret_value::GetSecretValueInput>()
    {
        call.secret = input.secret_id().map(str::to_owned);
    } else if let Some(input) =
        input.downcast_ref::<secretsmanager::put_secret_value::PutSecretValueInput>()
    {
        call.secret = input.secret_id().map(str::to_owned);
    } else if let Some(input) =
        input.downcast_ref::<secretsmanager::create_secret::CreateSecretInput>()
    {
        call.secret = input.name().map(str::to_owned);
    } else if let Some(input) =
        input.downcast_ref::<secretsmanager::delete_secret::DeleteSecretInput>()
    {
        call.secret = input.secret_id().map(str::to_owned);
    }
    call
}

fn sorted(context: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    context
        .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    // Once per operation, before any attempt (retries are the same call to IAM), and after the
    // operation's own configuration, which names it, is in the bag.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let metadata = cfg
            .load::<Metadata>()
            .ok_or("the SDK put no operation metadata in the config bag")?;
        let call = describe(metadata, context.input());
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(call);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::iam_prefix;

    #[test]
    fn sdk_service_names_become_iam_prefixes() {
        assert_eq!(iam_prefix("DynamoDB"), "dynamodb");
        assert_eq!(iam_prefix("KMS"), "kms");
        assert_eq!(iam_prefix("Secrets Manager"), "secretsmanager");
        assert_eq!(iam_prefix("EventBridge"), "events");
    }
}
