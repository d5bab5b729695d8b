//! A fault-injecting proxy in front of the store: the DynamoDB JSON
//! protocol over HTTP/1.1 with keep-alive, forwarded to the real engine,
//! except when a seeded draw picks a fault. Faults, at set rates:
//!
//! - **throttle**: 400 `ThrottlingException` or
//!   `ProvisionedThroughputExceededException` (not forwarded);
//! - **server error**: 500 `InternalServerError` (not forwarded);
//! - **lost response**: forwarded and applied, then the connection is
//!   closed without an answer;
//! - **cancelled transaction**: a `TransactWriteItems` answered 400
//!   `TransactionCanceledException` (reason `TransactionConflict`, not
//!   forwarded);
//! - **delay**: every request waits this long first (latency).
//!
//! Every request is counted by operation and outcome, with its time, so a
//! test can check how the client retried (attempts, waits between them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fault rates (each 0.0 to 1.0, drawn per request in this order) and a
/// fixed delay.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub throttle: f64,
    pub server_error: f64,
    pub lost_response: f64,
    /// Of `TransactWriteItems` requests only.
    pub cancel_transaction: f64,
    pub delay: Duration,
    /// Faults for this operation only (`TransactWriteItems`, say); others
    /// pass.
    pub only: Option<&'static str>,
    /// Requests (of `only`, when set) let through before faults start.
    pub skip: usize,
}

impl Faults {
    /// `rate` split evenly over throttling, server errors, lost responses
    /// and (for transactions) cancellations.
    pub fn mixed(rate: f64) -> Self {
        Self {
            throttle: rate / 4.0,
            server_error: rate / 4.0,
            lost_response: rate / 4.0,
            cancel_transaction: rate / 4.0,
            delay: Duration::ZERO,
            only: None,
            skip: 0,
        }
    }

    pub fn latency(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Forwarded,
    Throttled,
    ServerError,
    LostResponse,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub operation: String,
    /// A digest of the request body: the attempts of one request share it.
    pub body: u64,
    pub at: Instant,
    pub outcome: Outcome,
}

struct State {
    faults: Faults,
    /// Requests that `faults.skip` let through so far.
    skipped: usize,
    rng: StdRng,
    seen: Vec<Seen>,
}

/// The proxy; it serves until dropped (the test process).
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<Option<String>>>,
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 with no faults yet and no upstream (set it with
    /// [`FaultProxy::forward_to`]).
    pub async fn start(seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Self {
            addr: listener.local_addr().expect("addr"),
            upstream: Arc::new(Mutex::new(None)),
            state: Arc::new(Mutex::new(State {
                faults: Faults::default(),
                skipped: 0,
                rng: StdRng::seed_from_u64(seed),
                seen: Vec::new(),
            })),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
        };
        let serving = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let proxy = serving.clone();
                tokio::spawn(async move { proxy.connection(socket).await });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where requests go (the engine's endpoint).
    pub fn forward_to(&self, upstream: &str) {
        *self.upstream.lock().expect("lock") = Some(upstream.trim_end_matches('/').to_owned());
    }

    pub fn set(&self, faults: Faults) {
        let mut state = self.state.lock().expect("lock");
        state.faults = faults;
        state.skipped = 0;
    }

    /// Every request so far, and forgets them.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().expect("lock").seen)
    }

    /// Requests by outcome.
    pub fn tally(seen: &[Seen]) -> BTreeMap<Outcome, usize> {
        let mut tally = BTreeMap::new();
        for s in seen {
            *tally.entry(s.outcome).or_default() += 1;
        }
        tally
    }

    fn draw(&self, operation: &str, body: &[u8]) -> (Outcome, Duration) {
        let mut state = self.state.lock().expect("lock");
        let faults = state.faults;
        let roll: f64 = state.rng.random();
        let transaction = operation == "TransactWriteItems";
        let mut edge = faults.throttle;
        let exempt = faults.only.is_some_and(|only| only != operation);
        let skipping = !exempt && state.skipped < faults.skip;
        if skipping {
            state.skipped += 1;
        }
        let outcome = if exempt || skipping {
            Outcome::Forwarded
        } else if roll < edge {
            Outcome::Throttled
        } else if roll < {
            edge += faults.server_error;
            edge
        } {
            Outcome::ServerError
        } else if roll < {
            edge += faults.lost_response;
            edge
        } {
            Outcome::LostResponse
        } else if transaction && roll < edge + faults.cancel_transaction {
            Outcome::Cancelled
        } else {
            Outcome::Forwarded
        };
        state.seen.push(Seen {
            operation: operation.to_owned(),
            body: digest(body),
            at: Instant::now(),
            outcome,
        });
        (outcome, faults.delay)
    }

    async fn connection(&self, mut socket: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let Some((head, body)) = read_request(&mut socket, &mut buffer).await else {
                return;
            };
            let operation = header(&head, "x-amz-target")
                .and_then(|target| target.rsplit('.').next())
                .unwrap_or_default()
                .to_owned();
            let (outcome, delay) = self.draw(&operation, &body);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let (status, reply) = match outcome {
                Outcome::Throttled => {
                    let kind = if body.len() % 2 == 0 {
                        "com.amazon.coral.availability#ThrottlingException"
                    } else {
                        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
                    };
                    (400, format!(r#"{{"__type":"{kind}","message":"Rate exceeded (injected)"}}"#).into_bytes())
                }
                Outcome::ServerError => (
                    500,
                    br#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}"#
                        .to_vec(),
                ),
                Outcome::Cancelled => (
                    400,
                    br#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict] (injected)","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}"#
                        .to_vec(),
                ),
                Outcome::Forwarded | Outcome::LostResponse => {
                    let Some(answer) = self.forward(&head, body).await else {
                        return;
                    };
                    if outcome == Outcome::LostResponse {
                        // Applied; the answer never arrives.
                        return;
                    }
                    answer
                }
            };
            let response = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                if status == 200 { "OK" } else { "Error" },
                reply.len()
            );
            if socket.write_all(response.as_bytes()).await.is_err()
                || socket.write_all(&reply).await.is_err()
            {
                return;
            }
        }
    }

    async fn forward(&self, head: &str, body: Vec<u8>) -> Option<(u16, Vec<u8>)> {
        let upstream = self.upstream.lock().expect("lock").clone()?;
        let mut lines = head.lines();
        let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
        let mut request = self.client.post(format!("{upstream}{path}"));
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if ["host", "content-length", "connection"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                continue;
            }
            request = request.header(name, value.trim());
        }
        let response = request.body(body).send().await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.ok()?;
        Some((status, bytes.to_vec()))
    }
}

/// The value of header `name` in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// One request (head, body) from `socket`; `None` when the peer is done.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length = header(&head, "content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let start = end + 4;
    while buffer.len() < start + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[start..start + length].to_vec();
    buffer.drain(..start + length);
    Some((head, body))
}
