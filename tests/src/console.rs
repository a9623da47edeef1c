//! The console as its Lambda function assembles it (`ConsoleFunctionSettings::console`, the
//! production assembly): signing in through the oidc-provider peer, its client secret a
//! setting's value or a secret in Secrets Manager on moto.

use std::sync::Arc;

use clap::Parser;
use keyport_shared::adapters::aws::CallRecorder;
use keyport_shared::config::CommonSettings;
use keyport_shared::http::console::Console;
use keyport_shared::lambda::ConsoleFunctionSettings;
use keyport_shared::service::Keyport;

use crate::moto::Moto;
use crate::oidc::{CLIENT_SECRET, CONSOLE_CLIENT_ID, ROLES_CLAIM};

/// The console function's settings as it reads them (here from flags instead of variables).
#[derive(Parser)]
struct FunctionSettings {
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    console: ConsoleFunctionSettings,
}

/// Where the console function's client secret at the identity provider comes from.
pub enum ClientSecretFrom {
    /// `KEYPORT_CONSOLE_OIDC_CLIENT_SECRET`.
    Setting,
    /// The secret with this ARN (`KEYPORT_CONSOLE_OIDC_CLIENT_SECRET_ARN`), as the template
    /// deploys it.
    SecretsManager(String),
}

/// A secret named as CloudFormation names the template's `ConsoleSignInSecret` (its logical
/// id, a dash, a random suffix), holding the peer's client secret: its ARN.
pub async fn console_secret_on_moto() -> String {
    let client = aws_sdk_secretsmanager::Client::new(&Moto::get().sdk_config());
    client
        .create_secret()
        .name(format!(
            "ConsoleSignInSecret-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
        .secret_string(CLIENT_SECRET)
        .send()
        .await
        .expect("CreateSecret")
        .arn
        .expect("an ARN")
}

/// The console function over `keyport` at the origin of `callback_url`, signing people in at
/// `issuer` as the peer's console client, its Secrets Manager calls recorded by `recorder`.
pub fn console_function(
    keyport: Arc<Keyport>,
    callback_url: &str,
    issuer: &str,
    secret: &ClientSecretFrom,
    recorder: Option<&CallRecorder>,
) -> Arc<Console> {
    let mut args = vec![
        "keyport",
        "--local-development",
        "--callback-url",
        callback_url,
        "--roles-claim",
        ROLES_CLAIM,
        "--console-oidc-issuer",
        issuer,
        "--console-oidc-client-id",
        CONSOLE_CLIENT_ID,
    ];
    let sdk = match secret {
        ClientSecretFrom::Setting => {
            args.extend(["--console-oidc-client-secret", CLIENT_SECRET]);
            // Not used: no client of it is made without an ARN.
            aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build()
        }
        ClientSecretFrom::SecretsManager(arn) => {
            args.extend(["--console-oidc-client-secret-arn", arn]);
            Moto::get().sdk_config()
        }
    };
    let settings = FunctionSettings::try_parse_from(args).expect("valid console settings");
    settings
        .console
        .console(
            keyport,
            &settings.common,
            &callback_url.parse().expect("a URL"),
            &sdk,
            recorder,
        )
        .expect("the console assembles")
}
