//! The scale section's rows in the benchmark table, each figure computed from the counted
//! requests of one run.

use serde_json::Value;

use crate::common::thousands;

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn n(value: &Value) -> String {
    thousands(value.as_u64().unwrap_or(0))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// What happened to the grants of a run: expiries, losses, refresh tokens presented twice.
fn outcome(run: &Value) -> String {
    format!(
        "{} refreshed of {}; {} after expiry, {} never; {} grants lost; {} refresh tokens presented twice",
        n(&run["refreshes"]),
        n(&run["plan"]["tokens"]),
        n(&run["refreshed_after_expiry"]),
        n(&run["never_refreshed"]),
        n(&run["grants_lost"]),
        n(&run["refresh_tokens_presented_twice"]),
    )
}

fn throttled(run: &Value) -> u64 {
    run["traffic"]["throttled"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn safe(run: &Value) -> bool {
    [
        "refreshed_after_expiry",
        "never_refreshed",
        "grants_lost",
        "refresh_tokens_presented_twice",
    ]
    .iter()
    .all(|field| run[*field].as_u64() == Some(0))
}

pub fn rows(scale: &Value) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    let runs = &scale["runs"];
    let main = &runs["sharded"];
    if !main.is_object() {
        return rows;
    }
    let shards = f(&scale["due_shards"]);
    let share = f(&main["hottest_index_share"]);
    rows.push([
        format!(
            "6a. hottest due-index partition's share of index writes ({} tokens, {} refreshes)",
            n(&main["plan"]["tokens"]),
            n(&main["refreshes"])
        ),
        format!("{share:.4}"),
        format!("1 / {shards} = {:.4}", 1.0 / shards),
        format!(
            "{:.2} (target ≤ 1.2: {})",
            share * shards,
            verdict(share * shards <= 1.2)
        ),
    ]);
    for (name, run) in [
        ("sharded", main),
        (
            "old shape (modelled index, per-value keys, no secret cache)",
            &runs["old_shape"],
        ),
    ] {
        if !run.is_object() {
            continue;
        }
        rows.push([
            format!("6b. per refresh, {name}: DynamoDB write units (index writes)"),
            format!(
                "{:.2} ({:.2} index)",
                f(&run["write_units_per_refresh"]),
                if name == "sharded" {
                    f(&run["index_writes_per_refresh"])
                } else {
                    f(&run["old_shape_index_writes_per_refresh"])
                }
            ),
            "".into(),
            "".into(),
        ]);
        rows.push([
            format!("6c. per 1,000 refreshes, {name}: KMS calls; Secrets Manager calls"),
            format!(
                "{:.1}; {:.1}",
                f(&run["kms_calls_per_1000_refreshes"]),
                f(&run["secrets_manager_calls_per_1000_refreshes"])
            ),
            format!(
                "{} processes over {:.2} key/cache lifetimes; most data keys one process made: {}, most Decrypts of one key by one process: {} ({} repeated inside the {} s key cache age), most reads of one secret by one process: {}",
                run["processes"],
                f(&run["cache_lifetimes_in_run"]),
                run["data_keys_generated_per_process_max"],
                run["decrypts_of_one_data_key_per_process_max"],
                run["decrypts_repeated_within_cache_age"],
                run["key_cache_age_seconds"],
                run["secret_reads_of_one_connection_per_process_max"],
            ),
            if name == "sharded" {
                let lifetimes = f(&run["cache_lifetimes_in_run"]).ceil().max(1.0);
                let keys_ok = f(&run["data_keys_generated_per_process_max"]) <= lifetimes
                    && f(&run["decrypts_repeated_within_cache_age"]) == 0.0;
                let secrets_ok = f(&run["secret_reads_of_one_connection_per_process_max"]) <= lifetimes;
                format!(
                    "KMS ≤ 1 per process per key lifetime, no Decrypt paid twice inside the key cache age: {}; secrets ≤ 1 per connection per cache lifetime: {}",
                    verdict(keys_ok),
                    verdict(secrets_ok)
                )
            } else {
                String::new()
            },
        ]);
    }
    if let Some(workers) = scale["worker_throughput"].as_array() {
        for worker in workers {
            rows.push([
                format!(
                    "6d. one worker invocation, concurrency {}, {} due tokens, refreshes/s",
                    worker["concurrency"],
                    n(&worker["due_tokens"])
                ),
                format!("{:.1}/s", f(&worker["refreshes_per_second"])),
                format!(
                    "concurrency / 200 ms = {}/s; moto's own rate for the same {} requests: {:.1}/s; concurrency / (200 ms + a refresh's own requests at {:.1} ms each) = {:.1}/s",
                    worker["concurrency_over_latency"],
                    n(&worker["dynamodb_requests"]),
                    f(&worker["moto_bound_refreshes_per_second"]),
                    f(&worker["moto_request_alone_ms"]),
                    f(&worker["latency_plus_own_requests_bound_refreshes_per_second"])
                ),
                format!(
                    "{:.2} of concurrency / latency (target ≥ 0.9: {}); {:.2} of the lowest of the three bounds",
                    f(&worker["ratio"]),
                    verdict(f(&worker["ratio"]) >= 0.9),
                    f(&worker["ratio_to_the_lower_bound"])
                ),
            ]);
        }
    }
    for (label, key) in [
        ("6e. sharded, no limits", "sharded"),
        (
            "6f. sharded, AWS's limits enforced",
            "sharded_at_aws_limits",
        ),
        ("6g. old shape, no limits", "old_shape"),
        (
            "6h. old shape, AWS's limits enforced",
            "old_shape_at_aws_limits",
        ),
    ] {
        let run = &runs[key];
        if !run.is_object() {
            continue;
        }
        rows.push([
            format!("{label}: {} throttled requests", thousands(throttled(run))),
            outcome(run),
            "no expiry, no loss, no refresh token twice".into(),
            verdict(safe(run)).into(),
        ]);
    }
    let cost = &scale["cost"];
    for (label, key) in [("sharded", "sharded"), ("old shape", "old_shape")] {
        let refreshes = &cost["per_million_refreshes"][key];
        let reads = &cost["per_million_reads"][key];
        if !refreshes.is_object() {
            continue;
        }
        rows.push([
            format!("6i. cost, {label}: per million refreshes; per million warm reads"),
            format!("${:.2}; ${:.3}", f(&refreshes["total"]), f(&reads["total"])),
            format!(
                "refreshes: DynamoDB ${:.2}, KMS ${:.2}, Secrets Manager ${:.2}, SQS ${:.2}, Lambda ${:.2}; reads: DynamoDB ${:.3}, KMS ${:.3}",
                f(&refreshes["dynamodb"]),
                f(&refreshes["kms"]),
                f(&refreshes["secrets_manager"]),
                f(&refreshes["sqs"]),
                f(&refreshes["lambda"]),
                f(&reads["dynamodb"]),
                f(&reads["kms"]),
            ),
            format!(
                "us-east-1 on-demand prices checked {}",
                cost["prices"]["checked"].as_str().unwrap_or("?")
            ),
        ]);
    }
    rows
}
