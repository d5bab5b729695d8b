//! Cold start: each function's time from process start to its first request
//! to the Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next`, sent
//! once its initialisation is done), against a fake Runtime API on
//! 127.0.0.1, next to a bare lambda_runtime hello binary built with the same
//! profile, in the same run. Also prints the binary sizes.
//!
//! Build the release binaries first (without the test crate, so that its
//! features are not unified into the functions), then run:
//!
//! ```sh
//! cargo build --release -p webhook -p sync-api -p admin-api -p scheduled-sync -p discrepancy-check -p retry-worker
//! cargo build --release -p lambda-hello
//! cargo bench -p syncline-tests --bench cold_start
//! ```
//!
//! `COLD_START_BIN_DIR` points at another directory of binaries.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FUNCTIONS: &[&str] = &[
    "webhook",
    "sync-api",
    "admin-api",
    "scheduled-sync",
    "discrepancy-check",
    "retry-worker",
];
const BASELINE: &str = "lambda-hello";
const RUNS: usize = 30;

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("COLD_START_BIN_DIR") {
        return dir.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

/// The fake Runtime API: reports when each connection's first request line
/// arrives, and never answers (the process is killed once it has asked).
fn runtime_api() -> (String, mpsc::Receiver<(Instant, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let mut seen = Vec::new();
                while !seen.windows(2).any(|w| w == b"\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let at = Instant::now();
                let line = String::from_utf8_lossy(&seen)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send((at, line));
                // Hold the connection open without answering; the
                // process is killed.
                std::thread::sleep(Duration::from_secs(5));
                drop(stream);
            });
        }
    });
    (addr, rx)
}

fn configure(command: &mut Command, api: &str, function: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "cold-start")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        // As the template sets it: the CA bundle file alone, so that TLS
        // setup does not also scan a certificate directory.
        .env("SSL_CERT_FILE", ca_bundle())
        // What the template gives the functions, with the sample documents.
        .env("SYNCLINE_TABLE", "syncline")
        .env(
            "SYNCLINE_RETRY_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/syncline-retry",
        )
        .env(
            "SYNCLINE_DEAD_LETTER_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/syncline-dlq",
        )
        .env(
            "SYNCLINE_WEBHOOK_SOURCES_FILE",
            root.join("events/webhook/sources.json"),
        )
        .env("CALENDLY_WEBHOOK_SECRET", "calendly-local-test-secret")
        .env(
            "SYNCLINE_ENTITIES_FILE",
            root.join("events/sync-api/entities.json"),
        )
        .env("SYNCLINE_JWT_HS256_SECRET", "bench-secret")
        .env(
            "SYNCLINE_SOURCES_FILE",
            root.join("events/scheduled-sync/sources.json"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
}

/// The system CA bundle (Debian's path here; Amazon Linux's in Lambda).
fn ca_bundle() -> &'static str {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
    .unwrap_or("/etc/ssl/certs/ca-certificates.crt")
}

/// Milliseconds from spawn to the first `/next` request, one per run.
fn measure(binary: &Path, name: &str) -> Vec<f64> {
    let (api, arrivals) = runtime_api();
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut command = Command::new(binary);
        configure(&mut command, &api, name);
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn");
        let arrival = arrivals.recv_timeout(Duration::from_secs(10));
        let _ = child.kill();
        let output = child.wait_with_output().expect("wait");
        match arrival {
            Ok((at, line)) => {
                assert!(
                    line.contains("/runtime/invocation/next"),
                    "{name}: first request was {line:?}"
                );
                times.push(at.duration_since(started).as_secs_f64() * 1000.0);
            }
            Err(_) => panic!(
                "{name} never asked for an invocation; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() {
    let dir = bin_dir();
    let missing: Vec<String> = FUNCTIONS
        .iter()
        .chain(std::iter::once(&BASELINE))
        .filter(|name| !dir.join(name).exists())
        .map(|name| (*name).to_owned())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "missing release binaries in {}: {missing:?}; build them first (see the top of tests/benches/cold_start.rs)",
            dir.display()
        );
        std::process::exit(1);
    }
    println!(
        "cold start: process start -> first GET /runtime/invocation/next, {RUNS} runs each ({})",
        dir.display()
    );
    // Warm the page cache so the first run of each is not a disk read.
    for name in FUNCTIONS.iter().chain(std::iter::once(&BASELINE)) {
        let _ = std::fs::read(dir.join(name));
    }
    // The baseline is measured before and after the functions; its median
    // over both samples is the reference, so drift of this machine during
    // the run weighs on both sides.
    let before = measure(&dir.join(BASELINE), BASELINE);
    let mut functions = Vec::new();
    for name in FUNCTIONS {
        functions.push((*name, measure(&dir.join(name), name)));
    }
    let after = measure(&dir.join(BASELINE), BASELINE);
    let mut baseline: Vec<f64> = before.iter().chain(&after).copied().collect();
    baseline.sort_by(f64::total_cmp);
    let base_median = percentile(&baseline, 0.5);
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "binary", "median", "p90", "max", "ratio", "size"
    );
    let row = |label: &str, name: &str, times: &[f64]| {
        println!(
            "{:<18} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}x {:>7.1} MB",
            label,
            percentile(times, 0.5),
            percentile(times, 0.9),
            times[times.len() - 1],
            percentile(times, 0.5) / base_median,
            size(name) as f64 / 1_048_576.0
        );
    };
    row("hello (both)", BASELINE, &baseline);
    row("hello (before)", BASELINE, &before);
    let mut worst: f64 = 0.0;
    for (name, times) in &functions {
        worst = worst.max(percentile(times, 0.5) / base_median);
        row(name, name, times);
    }
    row("hello (after)", BASELINE, &after);
    println!("worst median ratio to the hello binary: {worst:.2}x (goal: within 2x)");
}
