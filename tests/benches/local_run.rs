//! The README's local run next to dlt, on the same data in one run: 50,000
//! records of 10 fields from the demo source, cursor pages of 500. It
//! prints, each with its time and peak memory:
//! (a) the floor: Python's urllib fetching every page and writing the
//!     records to a JSON-lines file;
//! (b) dlt's REST API source loading them into duckdb (jsonl loader);
//! (c) `syncline-local up` as the README starts it: process start to its
//!     first scheduled full sync done, on a fresh data directory;
//! and (c)'s ratios to (a) and (b).
//!
//! (c) runs the binary `cargo run -p syncline-local` builds (the dev
//! profile: dependencies optimised, the workspace's crates not), so build
//! it first; (a) and (b) need python3 with dlt and duckdb
//! (`pip install dlt duckdb`). The local run takes its ports from the
//! sample configuration (8000, 8080, 8090): nothing else may hold them.
//!
//! cargo build -p syncline-local && cargo bench -p syncline-tests --bench local_run

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RECORDS: usize = 50_000;
const PAGE: usize = 500;

/// Fetches every page and writes the records to a file, as the floor.
const FLOOR: &str = r#"
import json, resource, sys, time, urllib.request
base, out = sys.argv[1], sys.argv[2]
started = time.time()
count, cursor = 0, None
with open(out, "w") as f:
    while True:
        url = f"{base}/properties?limit=500" + (f"&cursor={cursor}" if cursor is not None else "")
        page = json.load(urllib.request.urlopen(url))
        for record in page["data"]:
            f.write(json.dumps(record) + "\n")
            count += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
print(count, time.time() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

/// dlt's REST API source into duckdb, written out as its docs show.
const DLT: &str = r#"
import resource, sys, time
started = time.time()
import dlt
from dlt.sources.rest_api import rest_api_source
base, work = sys.argv[1], sys.argv[2]
source = rest_api_source({
    "client": {
        "base_url": base,
        "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
    },
    "resources": [{
        "name": "properties",
        "endpoint": {"path": "properties", "params": {"limit": 500}, "data_selector": "data"},
    }],
})
pipeline = dlt.pipeline(
    pipeline_name="local_run", pipelines_dir=work, dataset_name="demo",
    destination=dlt.destinations.duckdb(f"{work}/load.duckdb"),
)
imported = time.time()
pipeline.run(source, loader_file_format="jsonl")
ran = time.time() - imported
with pipeline.sql_client() as client:
    count = client.execute_sql("select count(*) from properties")[0][0]
print(count, ran, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

struct Measured {
    /// Wall time of the whole process.
    process: Duration,
    /// What the process reports of its own work, where it does.
    run: Option<Duration>,
    peak_mb: u64,
}

fn python(script: &str, args: &[&str]) -> Measured {
    let started = Instant::now();
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (with dlt and duckdb: pip install dlt duckdb)");
    let process = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let fields: Vec<&str> = stdout
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let count: usize = fields.first().and_then(|c| c.parse().ok()).expect("count");
    assert_eq!(count, RECORDS, "{stdout}");
    let run: f64 = fields.get(1).and_then(|s| s.parse().ok()).expect("time");
    let peak_kb: u64 = fields.get(2).and_then(|s| s.parse().ok()).expect("rss");
    Measured {
        process,
        run: Some(Duration::from_secs_f64(run)),
        peak_mb: peak_kb / 1024,
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dev_binary() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let binary = target.join("debug").join("syncline-local");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p syncline-local` first",
        binary.display()
    );
    binary
}

/// `syncline-local up` on a fresh data directory until its first scheduled
/// sync of the demo properties reports.
fn readme_run(binary: &Path) -> Measured {
    let data = tempfile::tempdir().expect("data dir");
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("up")
        .current_dir(workspace())
        .env("SYNCLINE_DATA_DIR", data.path())
        .env("SYNCLINE_DEMO_RECORDS", RECORDS.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("syncline-local up");
    let stdout = child.stdout.take().expect("stdout");
    let mut synced = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.starts_with("scheduled-sync: demo-properties") {
            synced = Some(line);
            break;
        }
    }
    let process = started.elapsed();
    let peak_mb = syncline_tests::memory_kb(&child.id().to_string(), "VmHWM:") / 1024;
    let _ = child.kill();
    let _ = child.wait();
    let synced = synced.expect("the local run ended before its first sync");
    assert!(
        synced.contains(&format!(
            "full succeeded: seen {RECORDS}, created {RECORDS},"
        )),
        "{synced}"
    );
    Measured {
        process,
        run: None,
        peak_mb,
    }
}

fn rate(elapsed: Duration) -> f64 {
    RECORDS as f64 / elapsed.as_secs_f64()
}

fn main() {
    let binary = dev_binary();
    let upstream = tokio::runtime::Runtime::new().expect("runtime");
    let addr = upstream
        .block_on(syncline_local::demo::serve(
            "127.0.0.1:0".parse().expect("addr"),
            RECORDS,
        ))
        .expect("demo source");
    let base = format!("http://{addr}");
    let work = tempfile::tempdir().expect("work dir");
    let out = work.path().join("floor.jsonl");
    let out = out.to_str().expect("utf-8 path");
    let dlt_dir = work.path().join("dlt");
    let dlt_dir = dlt_dir.to_str().expect("utf-8 path");

    let floor = python(FLOOR, &[&base, out]);
    let dlt = python(DLT, &[&base, dlt_dir]);
    let syncline = readme_run(&binary);

    println!(
        "local run benchmark: {RECORDS} records of 10 fields, pages of {PAGE}, the same demo source"
    );
    let show = |name: &str, m: &Measured| {
        let run = m.run.map_or_else(String::new, |run| {
            format!(
                ", its run {:.2} s ({:.0} records/s)",
                run.as_secs_f64(),
                rate(run)
            )
        });
        println!(
            "  {name:<44} process {:6.2} s ({:6.0} records/s){run}; peak RSS {} MB",
            m.process.as_secs_f64(),
            rate(m.process),
            m.peak_mb
        );
    };
    show("(a) urllib + json to a file (the floor)", &floor);
    show("(b) dlt rest_api into duckdb (jsonl)", &dlt);
    show("(c) syncline-local up, start to first sync", &syncline);
    println!(
        "  (c) against (b): {:.2} of dlt's process rate, {:.2} of its run's; against (a): {:.2}",
        rate(syncline.process) / rate(dlt.process),
        rate(syncline.process) / dlt.run.map_or(0.0, rate),
        rate(syncline.process) / rate(floor.process),
    );
}
