//! The human-readable table of a report: one row per figure, each with what it is measured
//! against and the ratio to its target.

use serde_json::Value;

use crate::common::thousands;

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn verdict(met: &Value) -> &'static str {
    if met.as_bool().unwrap_or(false) {
        "met"
    } else {
        "missed"
    }
}

fn ns(value: &Value) -> String {
    format!("{} ns", thousands(f(value).round() as u64))
}

fn ms(micros: &Value) -> String {
    format!("{:.2} ms", f(micros) / 1000.0)
}

/// Rows of items 1–4 (what, measured, floor / baseline, ratio and target).
pub fn rows(report: &Value) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    let read = &report["token_read"];
    if read.is_object() {
        rows.push([
            "1. warm token read, token function handler in process (embedded)".into(),
            ns(&read["handler_ns_per_read"]),
            format!(
                "{} (row read + AES-GCM open)",
                ns(&read["floor_ns_per_read"])
            ),
            format!(
                "{:.2} (target ≤ {}: {})",
                f(&read["ratio"]),
                read["target_ratio_max"],
                verdict(&read["met"])
            ),
        ]);
    }
    let load = &report["http_load"];
    if load.is_object() {
        rows.push([
            "2. token read over loopback HTTP, requests/s".into(),
            format!(
                "{}/s",
                thousands(f(&load["token"]["requests_per_second"]) as u64)
            ),
            format!(
                "{}/s (trivial endpoint, same size)",
                thousands(f(&load["trivial"]["requests_per_second"]) as u64)
            ),
            format!(
                "{:.2} (target ≥ {}: {})",
                f(&load["ratio"]),
                load["target_ratio_min"],
                verdict(&load["met"])
            ),
        ]);
        rows.push([
            "2. token read over loopback HTTP, p50 / p99 latency".into(),
            format!(
                "{} / {}",
                ms(&load["token"]["p50_us"]),
                ms(&load["token"]["p99_us"])
            ),
            format!(
                "{} / {}",
                ms(&load["trivial"]["p50_us"]),
                ms(&load["trivial"]["p99_us"])
            ),
            format!(
                "{:.2} / {:.2}",
                f(&load["token"]["p50_us"]) / f(&load["trivial"]["p50_us"]),
                f(&load["token"]["p99_us"]) / f(&load["trivial"]["p99_us"])
            ),
        ]);
    }
    let calls = &report["remote_calls"];
    if calls.is_object() {
        for (name, label) in [("cold", "cold"), ("warm", "warm")] {
            let c = &calls[name];
            rows.push([
                format!("3. {label} token read, DynamoDB / KMS requests (AWS, moto)"),
                format!("{} / {}", c["dynamodb_requests"], c["kms_requests"]),
                format!(
                    "{} / {}",
                    c["floor_dynamodb_requests"], c["floor_kms_requests"]
                ),
                if c["at_floor"].as_bool().unwrap_or(false) {
                    "at floor (target: at floor: met)".into()
                } else {
                    "above floor (target: at floor: missed)".into()
                },
            ]);
        }
    }
    if let Some(sizes) = report["refresher"]["sizes"].as_array() {
        for size in sizes {
            rows.push([
                format!(
                    "4. refresher, {} due tokens, concurrency {}",
                    thousands(f(&size["n"]) as u64),
                    report["refresher"]["concurrency"]
                ),
                format!(
                    "{:.3} s ({}/s)",
                    f(&size["refresher_seconds"]),
                    thousands(f(&size["refresher_tokens_per_second"]) as u64)
                ),
                format!(
                    "{:.3} s (server: {} refreshes/s)",
                    f(&size["floor_seconds"]),
                    thousands(f(&size["server_refreshes_per_second"]) as u64)
                ),
                format!(
                    "{:.2} (target ≤ {}: {})",
                    f(&size["ratio"]),
                    size["target_ratio_max"],
                    verdict(&size["met"])
                ),
            ]);
        }
    }
    rows
}

/// A Markdown table of `rows`.
pub fn markdown(rows: &[[String; 4]]) -> String {
    let header = ["what", "measured", "floor / baseline", "ratio (target)"];
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str("|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}
