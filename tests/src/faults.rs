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
use syncline_local::in_process::Answerer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use crate::capacity::{Units, capacity};

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
    /// Faults injected at most (then every request passes); `None`: no
    /// limit.
    pub limit: Option<usize>,
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
            limit: None,
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
    /// The capacity a forwarded request consumed by DynamoDB's rules
    /// ([`capacity`]); zero for faults.
    pub units: Units,
    /// Its write units per partition key written.
    pub writes: Vec<(String, f64)>,
}

/// Where the proxy sends what it forwards.
#[derive(Clone)]
enum Upstream {
    /// An engine's HTTP endpoint.
    Http(String),
    /// An engine in this process, called without HTTP.
    InProcess(Answerer),
}

struct State {
    faults: Faults,
    /// Whether forwarded requests are costed ([`FaultProxy::count_units`]).
    count_units: bool,
    /// Whether statement batches are answered, not applied
    /// ([`FaultProxy::sink_statements`]).
    sink_statements: bool,
    /// Requests that `faults.skip` let through so far.
    skipped: usize,
    /// Faults injected since the faults were set.
    injected: usize,
    rng: StdRng,
    seen: Vec<Seen>,
    /// Bumped by every [`FaultProxy::take`]: a request drawn before it is
    /// not costed into what came after.
    generation: u64,
    /// Forwarded requests answered 200, costed when taken.
    uncosted: Vec<Uncosted>,
}

/// A request and its answer, to be costed into `seen[index]`.
struct Uncosted {
    generation: u64,
    index: usize,
    operation: String,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// The proxy; it serves until dropped (the test process).
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<Option<Upstream>>>,
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
                count_units: false,
                sink_statements: false,
                skipped: 0,
                injected: 0,
                rng: StdRng::seed_from_u64(seed),
                seen: Vec::new(),
                generation: 0,
                uncosted: Vec::new(),
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
        *self.upstream.lock().expect("lock") =
            Some(Upstream::Http(upstream.trim_end_matches('/').to_owned()));
    }

    /// Requests go to an engine in this process, each answered on a
    /// blocking thread by the engine's own operations: what stands in for
    /// DynamoDB then spends no CPU on a second HTTP hop (a benchmark's
    /// client and its store share the machine's cores).
    pub fn answer_with(&self, engine: Answerer) {
        *self.upstream.lock().expect("lock") = Some(Upstream::InProcess(engine));
    }

    /// While on, every BatchExecuteStatement is answered as DynamoDB
    /// answers one whose statements all succeed, and not applied: a
    /// benchmark's store side then spends no CPU on the writes of a bulk
    /// sync's records (DynamoDB does that work on its own machines), while
    /// every other request still reaches the engine. What is written so is
    /// not stored: only for a workload nothing reads back.
    pub fn sink_statements(&self, on: bool) {
        self.state.lock().expect("lock").sink_statements = on;
    }

    pub fn set(&self, faults: Faults) {
        let mut state = self.state.lock().expect("lock");
        state.faults = faults;
        state.skipped = 0;
        state.injected = 0;
    }

    /// Costs every forwarded request from now on. Each is costed (both
    /// bodies parsed) when taken, not while it is answered: the proxy and
    /// what it measures share the machine's cores.
    pub fn count_units(&self) {
        self.state.lock().expect("lock").count_units = true;
    }

    /// The capacity `seen` consumed.
    pub fn units(seen: &[Seen]) -> Units {
        let mut total = Units::default();
        for s in seen {
            total += s.units;
        }
        total
    }

    /// The `n` partition keys that took the most write units in any one
    /// second of `seen` (by when each request arrived), each with its most,
    /// busiest first.
    pub fn busiest_partitions(seen: &[Seen], n: usize) -> Vec<(String, f64)> {
        let Some(start) = seen.iter().map(|s| s.at).min() else {
            return Vec::new();
        };
        let mut per: BTreeMap<(&str, u64), f64> = BTreeMap::new();
        for s in seen {
            let second = s.at.duration_since(start).as_secs();
            for (pk, units) in &s.writes {
                *per.entry((pk.as_str(), second)).or_default() += units;
            }
        }
        let mut peak: BTreeMap<&str, f64> = BTreeMap::new();
        for ((pk, _), units) in per {
            let most = peak.entry(pk).or_default();
            *most = most.max(units);
        }
        let mut peak: Vec<(String, f64)> = peak
            .into_iter()
            .map(|(pk, units)| (pk.to_owned(), units))
            .collect();
        peak.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        peak.truncate(n);
        peak
    }

    /// Every request so far, costed if [`FaultProxy::count_units`] was
    /// called, and forgets them.
    pub fn take(&self) -> Vec<Seen> {
        let (mut seen, uncosted, generation) = {
            let mut state = self.state.lock().expect("lock");
            let taken = (
                std::mem::take(&mut state.seen),
                std::mem::take(&mut state.uncosted),
                state.generation,
            );
            state.generation += 1;
            taken
        };
        for done in uncosted.iter().filter(|u| u.generation == generation) {
            if let Some(seen) = seen.get_mut(done.index) {
                (seen.units, seen.writes) =
                    capacity(&done.operation, &done.request, &done.response);
            }
        }
        seen
    }

    /// Requests by outcome.
    pub fn tally(seen: &[Seen]) -> BTreeMap<Outcome, usize> {
        let mut tally = BTreeMap::new();
        for s in seen {
            *tally.entry(s.outcome).or_default() += 1;
        }
        tally
    }

    /// The request's outcome, its delay, and where it is noted (generation
    /// and index in `seen`).
    fn draw(&self, operation: &str, body: &[u8]) -> (Outcome, Duration, (u64, usize)) {
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
        let outcome = match outcome {
            Outcome::Forwarded => outcome,
            _ if faults.limit.is_some_and(|limit| state.injected >= limit) => Outcome::Forwarded,
            _ => {
                state.injected += 1;
                outcome
            }
        };
        state.seen.push(Seen {
            operation: operation.to_owned(),
            body: digest(body),
            at: Instant::now(),
            outcome,
            units: Units::default(),
            writes: Vec::new(),
        });
        let noted = (state.generation, state.seen.len() - 1);
        (
            outcome,
            if exempt { Duration::ZERO } else { faults.delay },
            noted,
        )
    }

    async fn connection(&self, mut socket: TcpStream) {
        // One write per answer, sent at once (Nagle's delay would add tens
        // of milliseconds to every request).
        let _ = socket.set_nodelay(true);
        let mut buffer = Vec::new();
        loop {
            let Some((head, body)) = read_request(&mut socket, &mut buffer).await else {
                return;
            };
            let operation = header(&head, "x-amz-target")
                .and_then(|target| target.rsplit('.').next())
                .unwrap_or_default()
                .to_owned();
            let (outcome, delay, (generation, index)) = self.draw(&operation, &body);
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
                    let costed = self.state.lock().expect("lock").count_units;
                    let request = if costed { body.clone() } else { Vec::new() };
                    let Some(answer) = self.forward(&head, &operation, body).await else {
                        return;
                    };
                    if costed && answer.0 == 200 {
                        self.state.lock().expect("lock").uncosted.push(Uncosted {
                            generation,
                            index,
                            operation: operation.clone(),
                            request,
                            response: answer.1.clone(),
                        });
                    }
                    if outcome == Outcome::LostResponse {
                        // Applied; the answer never arrives.
                        return;
                    }
                    answer
                }
            };
            let mut response = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                if status == 200 { "OK" } else { "Error" },
                reply.len()
            )
            .into_bytes();
            response.extend_from_slice(&reply);
            if socket.write_all(&response).await.is_err() {
                return;
            }
        }
    }

    async fn forward(&self, head: &str, operation: &str, body: Vec<u8>) -> Option<(u16, Vec<u8>)> {
        if operation == "BatchExecuteStatement" && self.state.lock().expect("lock").sink_statements
        {
            let statements = body
                .windows(STATEMENT.len())
                .filter(|w| *w == STATEMENT)
                .count();
            let answers = vec!["{}"; statements].join(",");
            return Some((200, format!(r#"{{"Responses":[{answers}]}}"#).into_bytes()));
        }
        let upstream = self.upstream.lock().expect("lock").clone()?;
        let upstream = match upstream {
            Upstream::Http(url) => url,
            Upstream::InProcess(engine) => {
                let operation = operation.to_owned();
                return tokio::task::spawn_blocking(move || engine.answer(&operation, &body))
                    .await
                    .ok();
            }
        };
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

/// How each statement of a BatchExecuteStatement body begins (a
/// statement's text or parameters holding these bytes would be escaped).
const STATEMENT: &[u8] = b"\"Statement\":";

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
