//! Runs the benchmarks (issue 7), writes `target/bench/report.json` and `target/bench/report.md`
//! and prints the table. `scripts/bench` builds it in release mode and runs it.
//!
//! `keyport-bench [read] [http] [calls] [refresher] [startup] [scale]` runs only the named sections
//! (all of them without arguments); every figure is a median over repeated runs, except the
//! scale section's, each from one long run. `keyport-bench render` writes the table of the last
//! report again.

use keyport_bench::{common, http_load, read, refresher, remote_calls, report, scale, startup};
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    // Logs as production writes them (JSON lines on stderr at info): scripts/bench keeps them
    // in target/bench/bench.log.
    keyport_shared::config::init_logging();
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let dir = common::workspace_root().join("target/bench");
    // `keyport-bench render`: the table of the last run's report, written again (the figures
    // stay those of that one run).
    if wanted == ["render"] {
        let text = std::fs::read_to_string(dir.join("report.json")).expect("a report to render");
        let report: Value = serde_json::from_str(&text).expect("a JSON report");
        let table = table_of(&report);
        std::fs::write(dir.join("report.md"), &table).expect("write report.md");
        print!("{table}");
        return;
    }
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);

    let mut out = serde_json::Map::new();
    out.insert("machine".into(), common::machine());
    if runs("read") {
        println!("1. warm token read in process ...");
        out.insert("token_read".into(), read::measure().await);
    }
    if runs("http") {
        println!("2. token read over loopback HTTP under load (wrk) ...");
        out.insert("http_load".into(), http_load::measure().await);
    }
    if runs("calls") {
        println!("3. remote calls per token read (moto) ...");
        out.insert("remote_calls".into(), remote_calls::measure().await);
    }
    if runs("refresher") {
        println!("4. the refresher ...");
        out.insert("refresher".into(), refresher::measure().await);
    }
    if runs("scale") {
        println!("6. scale: the fanned-out refresher on moto ...");
        out.insert("scale".into(), scale::measure().await);
    }
    // Item 5 (start-up and bootstrap sizes) is measured by `startup.rs`.
    let startup = if runs("startup") {
        println!("5. start-up ...");
        startup::measure().await
    } else {
        Value::Null
    };
    out.insert("startup".into(), startup.clone());
    if let Some(machine) = out.get_mut("machine").and_then(Value::as_object_mut) {
        machine.insert("load_average_at_end".into(), json!(common::load_average()));
    }
    let report = Value::Object(out);
    std::fs::create_dir_all(&dir).expect("create target/bench");
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json!(report)).expect("a JSON report") + "\n",
    )
    .expect("write report.json");
    let table = table_of(&report);
    std::fs::write(dir.join("report.md"), &table).expect("write report.md");
    println!();
    print!("{table}");
    println!("\nReport: {}", dir.join("report.json").display());
}

/// The table of a report, with the lines that say how and where it was measured.
fn table_of(report: &Value) -> String {
    let mut rows = report::rows(report);
    rows.extend(startup::table_rows(&report["startup"]));
    rows.extend(scale::table::rows(&report["scale"]));
    let machine = &report["machine"];
    let mut table = report::markdown(&rows);
    table.push_str(&format!(
        "\nMedians over repeated runs: item 1 {} runs of {} reads; item 2 {} runs of {} s per endpoint; item 3 {} runs; item 4 {} runs at 1,000 and {} at 10,000 tokens.\n",
        read::BATCHES,
        common::thousands(read::READS_PER_BATCH as u64),
        http_load::ROUNDS,
        http_load::SECONDS_PER_ROUND,
        remote_calls::RUNS,
        refresher::SIZES[0].1,
        refresher::SIZES[1].1,
    ));
    table.push_str(&format!(
        "Machine: {} (nproc {}), Linux {}, load average {} at start and {} at end; commit {}{}; {}.\n",
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["nproc"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["load_average_at_start"].as_str().unwrap_or("?"),
        machine["load_average_at_end"].as_str().unwrap_or("?"),
        machine["git_commit"].as_str().unwrap_or("?"),
        if machine["git_tree_modified"].as_bool().unwrap_or(false) {
            " (with uncommitted changes)"
        } else {
            ""
        },
        machine["date"].as_str().unwrap_or("?"),
    ));

    table
}
