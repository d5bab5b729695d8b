//! Exponential backoff with jitter: the one formula behind every retry in
//! syncline (store contention, upstream HTTP calls, the retry queue).

use std::time::Duration;

use rand::Rng;

/// A ceiling that doubles with each attempt, from `base` up to `cap`, and a
/// delay drawn from `[ceiling * floor, ceiling]`. A `floor` of 0 is full
/// jitter (best at spreading a burst of retries); a higher floor keeps
/// consecutive delays growing while the jitter still spreads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// The smallest delay as a fraction of the ceiling, in `[0, 1]`.
    pub floor: f64,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration, floor: f64) -> Self {
        Self { base, cap, floor }
    }

    /// The ceiling at `step`: `base * 2^step`, at most `cap`.
    pub fn ceiling(&self, step: u32) -> Duration {
        self.base.saturating_mul(1u32 << step.min(20)).min(self.cap)
    }

    /// A jittered delay at `step`.
    pub fn delay(&self, step: u32) -> Duration {
        let ceiling = self.ceiling(step).as_millis() as u64;
        let floor = (ceiling as f64 * self.floor.clamp(0.0, 1.0)) as u64;
        Duration::from_millis(rand::rng().random_range(floor..=ceiling))
    }

    /// Sleeps for [`Backoff::delay`] at `step`.
    pub async fn wait(&self, step: u32) {
        tokio::time::sleep(self.delay(step)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.5);
        let ceilings: Vec<u128> = (0..6).map(|s| backoff.ceiling(s).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_between_the_floor_and_the_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 0.5);
        for step in 0..8 {
            let ceiling = backoff.ceiling(step);
            for _ in 0..50 {
                let delay = backoff.delay(step);
                assert!(
                    delay <= ceiling && delay >= ceiling / 2,
                    "{step}: {delay:?}"
                );
            }
        }
        let full = Backoff::new(Duration::from_millis(10), Duration::from_secs(1), 0.0);
        assert!((0..200).any(|_| full.delay(3) < Duration::from_millis(40)));
    }
}
