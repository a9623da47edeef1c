//! Keyport's integration tests: one binary, one module per concern. Every back-end-neutral
//! test runs against both back-ends: the embedded database and the AWS services on moto.

mod access_control;
mod authorization_binding;
mod bad_input;
mod conformance;
mod console;
mod console_browser;
mod console_oidc;
mod deletion_queue;
mod due_index;
mod encryption_at_rest;
mod end_to_end;
mod fixtures;
mod grant_lifetimes;
mod http_jwks;
mod hybrid_flow;
mod iam_conformance;
mod insider_rules;
mod invitations;
mod kms_calls;
mod lambda_events;
mod local_server;
mod missing_tokens;
mod multi_process;
mod notifications;
mod oauth_flows;
mod openapi;
mod outbound_proxy;
mod provider_faults;
mod quirks;
mod readme;
mod refresh_fanout;
mod secrets_manager_calls;
mod template_routes;
mod token_health;
mod token_reset;
mod token_usage;
mod transfer;
mod user_tokens;

/// Declares each listed `async fn(Backend)` as one test per back-end.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(keyport_tests::backends::embedded().await).await
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(keyport_tests::backends::aws().await).await
                }
            )*
        }
    };
}

/// Like `on_both_backends!`, but on a current-thread runtime with the logs captured, so every
/// line Keyport logs (an in-process server's included) reaches a test's leak check.
#[macro_export]
macro_rules! on_both_backends_with_logs {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "current_thread")]
                async fn $test() {
                    let (_guard, logs) = keyport_tests::logs::CapturedLogs::start();
                    super::$test(keyport_tests::backends::embedded().await, logs).await
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "current_thread")]
                async fn $test() {
                    let (_guard, logs) = keyport_tests::logs::CapturedLogs::start();
                    super::$test(keyport_tests::backends::aws().await, logs).await
                }
            )*
        }
    };
}
