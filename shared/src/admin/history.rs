//! Samples over time for the console's charts: dead letters waiting and
//! each destination's lag, failures and state. scheduled-sync's tick takes
//! one a minute (the deployed schedule); they are kept two weeks.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AdminService;
use crate::delivery::DeliveryEngine;
use crate::error::Result;
use crate::model::Timestamp;
use crate::queue::RetryQueue;
use crate::store::{LogStream, Store};

/// How long samples are kept.
pub const SAMPLE_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
/// Samples one history request returns at most (a day of minutes, and some).
pub const MAX_SAMPLES: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(with = "crate::model::iso")]
    pub at: Timestamp,
    pub dead_letters: u64,
    #[serde(default)]
    pub destinations: Vec<DestinationSample>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationSample {
    pub destination: String,
    /// Changes of its feed not yet delivered.
    pub lag: u64,
    /// Consecutive failed deliveries.
    pub failures: u64,
    pub enabled: bool,
}

/// Takes samples (scheduled-sync's tick).
#[derive(Clone)]
pub struct Sampler {
    store: Store,
    queue: Arc<dyn RetryQueue>,
    delivery: Arc<DeliveryEngine>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Sampler {
    pub fn new(store: Store, queue: Arc<dyn RetryQueue>, delivery: Arc<DeliveryEngine>) -> Self {
        Self {
            store,
            queue,
            delivery,
        }
    }

    /// Reads the figures now and stores them as one sample.
    pub async fn take(&self) -> Result<Sample> {
        let dead_letters = self.queue.dead_letter_count().await?;
        let destinations = self
            .delivery
            .status()
            .await?
            .into_iter()
            .map(|s| DestinationSample {
                destination: s["destination"].as_str().unwrap_or_default().to_owned(),
                lag: s["lag"].as_u64().unwrap_or(0),
                failures: s["consecutive_failures"].as_u64().unwrap_or(0),
                enabled: s["enabled"].as_bool().unwrap_or(true),
            })
            .collect();
        let sample = Sample {
            at: Timestamp::now(),
            dead_letters,
            destinations,
        };
        self.store
            .append_log(&LogStream::samples(), &sample, SAMPLE_RETENTION)
            .await?;
        Ok(sample)
    }
}

impl AdminService {
    /// Samples taken since `since`, oldest first, at most [`MAX_SAMPLES`]
    /// (the newest ones).
    pub async fn history(&self, since: Timestamp) -> Result<Vec<Sample>> {
        let mut samples = Vec::new();
        let mut after = None;
        'pages: loop {
            let page = self
                .store
                .read_log::<Sample>(&LogStream::samples(), 200, after.as_ref())
                .await?;
            for entry in page.items {
                if entry.entry.at < since || samples.len() >= MAX_SAMPLES {
                    break 'pages;
                }
                samples.push(entry.entry);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        samples.reverse();
        Ok(samples)
    }
}
