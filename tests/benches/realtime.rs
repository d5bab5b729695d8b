//! The real-time channel on the local run, beside a baseline measured in
//! the same run:
//! - commit -> poke received: 50 sockets of one tenant, 1,000 pushes one
//!   after another; for every (commit, socket) pair the time from the
//!   store's commit to the first poke at or past it; next to the bare
//!   socket floor (the same 50 sockets sent a message straight through the
//!   local channel, no store, no fan-out);
//! - connections held: the resident memory one more open connection costs
//!   the process (server and client sides both live in this process), and
//!   the table items it leaves (two, removed when it closes).
//!
//! cargo bench -p syncline-tests --bench realtime

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use syncline::model::Cursor;
use syncline::realtime::Channel;
use syncline_local::run::local_token;
use syncline_tests::service::{JWT_SECRET, Service, ServiceConfig};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 50;
const COMMITS: u64 = 1_000;
const HELD: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What each socket received: (seq of the poke's cursor or the bare
/// message's number, when).
type Arrivals = Arc<Mutex<Vec<Vec<(u64, Instant)>>>>;

async fn open_clients(service: &Service, token: &str, arrivals: &Arrivals) {
    let url = format!(
        "{}/v1/sync/live?token={token}",
        service.url.replacen("http://", "ws://", 1)
    );
    for index in 0..CLIENTS {
        let (stream, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connected");
        arrivals.lock().expect("lock").push(Vec::new());
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let (_, mut read) = stream.split();
            while let Some(Ok(message)) = read.next().await {
                let now = Instant::now();
                if let Message::Text(text) = message {
                    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
                    let seq = match value["cursor"].as_str() {
                        Some(cursor) => Cursor::parse(cursor).expect("cursor").seq().get(),
                        None => value["bare"].as_u64().expect("bare"),
                    };
                    arrivals.lock().expect("lock")[index].push((seq, now));
                }
            }
        });
    }
    while service.live.channel.open() < CLIENTS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// For every (sent, socket): the first arrival at or past it, minus when it
/// was sent.
fn latencies(sent: &HashMap<u64, Instant>, arrivals: &Arrivals) -> Vec<Duration> {
    let arrivals = arrivals.lock().expect("lock");
    let mut out = Vec::new();
    for received in arrivals.iter() {
        for (seq, at) in sent {
            let first = received
                .iter()
                .filter(|(s, _)| s >= seq)
                .map(|(_, t)| *t)
                .min()
                .expect("every commit is covered by a poke at every socket");
            out.push(first.saturating_duration_since(*at));
        }
    }
    out.sort();
    out
}

#[tokio::main]
async fn main() {
    syncline::metrics::silence();
    let service = Service::start(ServiceConfig::default()).await;
    let token = local_token(JWT_SECRET, "bench", None, Duration::from_secs(3600)).expect("token");

    // The bare floor: the same sockets, messages sent straight through the
    // local channel.
    let bare_arrivals: Arrivals = Arc::default();
    open_clients(&service, &token, &bare_arrivals).await;
    let ids = service.live.channel.ids();
    let mut bare_sent = HashMap::new();
    for n in 1..=COMMITS {
        let message = json!({"bare": n}).to_string();
        bare_sent.insert(n, Instant::now());
        for id in &ids {
            service.live.channel.send(id, &message).await.expect("sent");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bare = latencies(&bare_sent, &bare_arrivals);
    for id in &ids {
        service.live.channel.close(id).await.expect("closed");
    }
    while service.live.channel.open() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Commit -> poke: pushes one after another, each commit's instant taken
    // from the store's own commit signal.
    let arrivals: Arrivals = Arc::default();
    open_clients(&service, &token, &arrivals).await;
    let commits: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut signal = service.store.commits().subscribe();
    let recorder = {
        let commits = commits.clone();
        tokio::spawn(async move {
            while let Ok(commit) = signal.recv().await {
                commits
                    .lock()
                    .expect("lock")
                    .insert(commit.seq.get(), Instant::now());
            }
        })
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    for id in 1..=COMMITS {
        let reply = client
            .post(format!("{}/v1/sync/push", service.url))
            .bearer_auth(&token)
            .json(&json!({"client_id": "bench", "mutations": [
                {"id": id, "op": "upsert", "entity": "task", "record_id": format!("t{}", id % 100),
                 "data": {"title": format!("task {id}")}, "timestamp": id}]}))
            .send()
            .await
            .expect("pushed");
        assert!(reply.status().is_success());
    }
    let pushing = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    recorder.abort();
    let committed = commits.lock().expect("lock").clone();
    assert_eq!(committed.len() as u64, COMMITS, "one commit per push");
    let pokes: usize = arrivals.lock().expect("lock").iter().map(Vec::len).sum();
    let poked = latencies(&committed, &arrivals);

    // Connections held: memory per open connection, and its items.
    let rss_before = syncline_tests::memory_kb("self", "VmRSS:");
    let url = format!(
        "{}/v1/sync/live?token={token}",
        service.url.replacen("http://", "ws://", 1)
    );
    let mut held = Vec::new();
    for _ in 0..HELD / 100 {
        // Clients with small buffers too: both sides live in this process.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0);
        let batch = futures_util::future::join_all((0..100).map(|_| {
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false)
        }))
        .await;
        held.extend(batch.into_iter().map(|c| c.expect("connected").0));
    }
    while service.live.channel.open() < HELD + CLIENTS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rss_held = syncline_tests::memory_kb("self", "VmRSS:");
    let stored = service
        .store
        .connections(&syncline::model::TenantId::parse("bench").expect("tenant"))
        .await
        .expect("connections")
        .len();

    let line = |name: &str, sorted: &[Duration]| {
        println!(
            "  {name}: p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
            percentile(sorted, 0.50),
            percentile(sorted, 0.95),
            percentile(sorted, 0.99),
            sorted.last().copied().unwrap_or_default()
        );
    };
    println!("realtime ({CLIENTS} sockets of one tenant, {COMMITS} commits, local run):");
    line("bare socket floor (channel send -> received)", &bare);
    line("commit -> poke received", &poked);
    println!(
        "  ratio p95 poke / p95 floor: {:.1}  ({} (commit, socket) pairs; {} pokes for {} commits x {} sockets: coalesced {:.2}x; pushes took {:?}, {:.0}/s)",
        percentile(&poked, 0.95).as_secs_f64() / percentile(&bare, 0.95).as_secs_f64().max(1e-9),
        poked.len(),
        pokes,
        COMMITS,
        CLIENTS,
        (COMMITS as f64 * CLIENTS as f64) / pokes.max(1) as f64,
        pushing,
        COMMITS as f64 / pushing.as_secs_f64()
    );
    println!(
        "  connections held: {} open in one process; {} KB resident for {HELD} more ({:.1} KB each, client and server side), {stored} stored under the tenant",
        HELD + CLIENTS,
        rss_held.saturating_sub(rss_before),
        rss_held.saturating_sub(rss_before) as f64 / HELD as f64
    );
    drop(held);
}
