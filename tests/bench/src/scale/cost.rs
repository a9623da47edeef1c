//! What the counted requests cost at AWS's published on-demand prices, per million refreshes
//! and per million token reads, for the sharded shape and the old one.
//!
//! Prices: US East (N. Virginia), on-demand, as published on the services' pricing pages
//! (aws.amazon.com/dynamodb/pricing/on-demand, /kms/pricing, /secrets-manager/pricing,
//! /sqs/pricing, /lambda/pricing) and checked on 2026-12-02 through the copies the search tool
//! holds (airbyte.com/data-engineering-resources/dynamodb-pricing, wring.co/blog/aws-kms-pricing-guide,
//! tencentcloud's and cloudburn.io's restatements): free tiers left out.

use serde_json::{Value, json};

use super::round;

pub const PRICES_CHECKED: &str = "2026-12-02";
/// DynamoDB on-demand, per write request unit (1 KB) and read request unit (4 KB strongly
/// consistent, or two eventually consistent reads).
pub const DYNAMODB_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
pub const DYNAMODB_PER_READ_UNIT: f64 = 0.125 / 1e6;
/// KMS, per request (symmetric): $0.03 per 10,000.
pub const KMS_PER_REQUEST: f64 = 0.03 / 1e4;
/// Secrets Manager, per API call: $0.05 per 10,000.
pub const SECRETS_PER_CALL: f64 = 0.05 / 1e4;
/// SQS standard queue, per request: $0.40 per million.
pub const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
/// Lambda (x86), per request and per GB-second.
pub const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
pub const LAMBDA_PER_GB_SECOND: f64 = 0.000_016_666_7;

fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

/// Dollars per million refreshes of one run, by service, from its counts.
fn per_million_refreshes(run: &Value, audit_item_per_refresh: bool) -> Value {
    let refreshes = num(&run["refreshes"]).max(1.0);
    let per = |x: f64| x / refreshes * 1e6;
    let write_units = num(&run["write_units_per_refresh"]) * refreshes
        + if audit_item_per_refresh {
            refreshes
        } else {
            0.0
        };
    let read_units = num(&run["traffic"]["read_units_total"]);
    let dynamodb = per(write_units * DYNAMODB_PER_WRITE_UNIT + read_units * DYNAMODB_PER_READ_UNIT);
    let kms = num(&run["kms_calls_per_1000_refreshes"]) * 1000.0 * KMS_PER_REQUEST;
    let secrets = num(&run["secrets_manager_calls_per_1000_refreshes"]) * 1000.0 * SECRETS_PER_CALL;
    let sqs = num(&run["sqs_calls_per_1000_refreshes"]) * 1000.0 * SQS_PER_REQUEST;
    let lambda = per(
        (num(&run["worker_invocations"]) + num(&run["scheduler_invocations"])) * LAMBDA_PER_REQUEST
            + num(&run["worker_seconds"]) * super::fleet::WORKER_MEMORY_GB * LAMBDA_PER_GB_SECOND,
    );
    json!({
        "dynamodb": round(dynamodb, 2), "kms": round(kms, 2), "secrets_manager": round(secrets, 2),
        "sqs": round(sqs, 2), "lambda": round(lambda, 2),
        "total": round(dynamodb + kms + secrets + sqs + lambda, 2),
    })
}

/// Dollars per million warm token reads (DynamoDB and KMS; API Gateway and the token function
/// cost the same in both shapes).
fn per_million_reads(run: &Value) -> Value {
    let reads = &run["reads"];
    let dynamodb = num(&reads["read_units_per_read"]) * DYNAMODB_PER_READ_UNIT * 1e6
        + num(&reads["write_units_per_read"]) * DYNAMODB_PER_WRITE_UNIT * 1e6;
    let kms = num(&reads["kms_calls_per_read"]) * KMS_PER_REQUEST * 1e6;
    json!({"dynamodb": round(dynamodb, 3), "kms": round(kms, 3), "total": round(dynamodb + kms, 3)})
}

pub fn compare(runs: &serde_json::Map<String, Value>) -> Value {
    let sharded = &runs["sharded"];
    let old = &runs["old_shape"];
    json!({
        "prices": {
            "region": "us-east-1", "checked": PRICES_CHECKED,
            "dynamodb_per_million_write_units": 0.625, "dynamodb_per_million_read_units": 0.125,
            "kms_per_10000_requests": 0.03, "secrets_manager_per_10000_calls": 0.05,
            "sqs_per_million_requests": 0.40, "lambda_per_million_requests": 0.20,
            "lambda_per_gb_second": LAMBDA_PER_GB_SECOND,
        },
        "per_million_refreshes": {
            "sharded": per_million_refreshes(sharded, false),
            // The old shape stored an audit item per refresh (1 write unit); today's code no
            // longer writes it, so that one line is added from the refresh count.
            "old_shape": per_million_refreshes(old, true),
        },
        "per_million_reads": {
            "sharded": per_million_reads(sharded),
            "old_shape": per_million_reads(old),
        },
    })
}
