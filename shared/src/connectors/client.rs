//! The one path by which syncline calls an HTTP API: a shared client built
//! on first use, a token-bucket rate limit per endpoint that a 429's
//! Retry-After pauses, and `send_with_retry` (transport errors, 429 and 5xx
//! retried with the crate's backoff; everything else handed to the caller).

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::Mutex;

use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Attempts of one source call, the first included.
pub const SOURCE_ATTEMPTS: u32 = 6;
/// The longest pause a Retry-After may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Between attempts: 200 ms doubling to 5 s, at least half of each ceiling.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 0.5);

/// The HTTP client every source and destination shares (rustls, connection
/// pooling).
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("syncline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// The shared HTTP client, built when it first makes a request: its TLS
/// setup (the system's CA bundle) is then paid by the invocations that call
/// an API, not by every cold start of a function that may never call one
/// (admin-api, retry-worker).
#[derive(Debug, Clone, Default)]
pub struct SourceClient(std::sync::Arc<std::sync::OnceLock<reqwest::Client>>);

impl SourceClient {
    /// A client built on first use.
    pub fn lazy() -> Self {
        Self::default()
    }

    pub fn get(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.0.get() {
            return Ok(client);
        }
        let client = http_client()?;
        Ok(self.0.get_or_init(|| client))
    }
}

impl From<reqwest::Client> for SourceClient {
    fn from(client: reqwest::Client) -> Self {
        Self(std::sync::Arc::new(std::sync::OnceLock::from(client)))
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Set by a 429's Retry-After: nothing goes out before then.
    paused_until: Option<Instant>,
}

/// A token bucket of `rate` requests per second (bursts of up to `rate`,
/// at least one), paused by a 429's Retry-After.
pub struct RateLimiter {
    rate: f64,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate.max(1.0),
                refilled: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Waits until a request may go out, and takes its token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().await;
                let now = Instant::now();
                if let Some(until) = bucket.paused_until.filter(|u| *u > now) {
                    until - now
                } else {
                    let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                    bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate.max(1.0));
                    bucket.refilled = now;
                    if bucket.tokens >= 1.0 {
                        bucket.tokens -= 1.0;
                        return;
                    }
                    Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request back for `for_how_long`.
    pub async fn pause(&self, for_how_long: Duration) {
        self.bucket.lock().await.paused_until = Some(Instant::now() + for_how_long);
    }
}

/// What the caller made of a response `send_with_retry` handed it.
#[derive(Debug)]
pub enum Reading<T> {
    Done(T),
    /// Worth another attempt (a malformed body, say), with why.
    Retry(Error),
}

/// An upstream's error, named after the `service` (source, destination).
pub fn upstream(service: &str, reason: impl Into<String>, retryable: bool) -> Error {
    Error::Upstream {
        service: service.into(),
        reason: reason.into(),
        retryable,
    }
}

/// Sends the request `build` makes until an answer is final: after each
/// transport error, 429 (pausing `limiter` for its Retry-After) or 5xx it
/// waits with backoff and tries again, up to `attempts` in all; any other
/// response goes to `read`. The last error is returned when attempts run
/// out. `service` names the upstream in errors.
pub async fn send_with_retry<T, R, F>(
    service: &str,
    attempts: u32,
    limiter: &RateLimiter,
    build: impl Fn() -> Result<reqwest::RequestBuilder>,
    read: R,
) -> Result<T>
where
    R: Fn(reqwest::Response) -> F,
    F: Future<Output = Result<Reading<T>>>,
{
    let mut last_error = upstream(service, "no attempt made", true);
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            BACKOFF.wait(attempt).await;
        }
        limiter.acquire().await;
        let response = match build()?.send().await {
            Ok(response) => response,
            Err(e) => {
                last_error = upstream(service, format!("request failed: {e}"), true);
                continue;
            }
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            limiter.pause(retry_after(&response)).await;
            last_error = upstream(service, "rate limited (HTTP 429)", true);
            continue;
        }
        if status.is_server_error() {
            last_error = upstream(service, format!("HTTP {status}"), true);
            continue;
        }
        match read(response).await? {
            Reading::Done(value) => return Ok(value),
            Reading::Retry(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// A 429's Retry-After in seconds (1 s when absent), at most two minutes.
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_source_client_is_built_once_on_first_use_and_shared_by_clones() {
        let lazy = SourceClient::lazy();
        let clone = lazy.clone();
        assert!(lazy.0.get().is_none(), "nothing built before first use");
        let first: *const reqwest::Client = lazy.get().expect("client");
        let second: *const reqwest::Client = clone.get().expect("client");
        assert_eq!(first, second, "clones share the one client");
    }
}
