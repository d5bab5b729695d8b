use std::time::Duration;

use crate::backoff::Backoff;

/// When to try again: exponential backoff with jitter, a cap, and a bound on
/// attempts.
///
/// The delay before attempt n+1 (after n failed attempts) is drawn from
/// `[0.75 d, d]` with `d = min(max_delay, base * 2^(n-1))`, rounded up to
/// whole seconds (SQS visibility timeouts are whole seconds). The ranges of
/// consecutive attempts do not overlap, so delays grow while the jitter still
/// spreads a burst of failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Attempts in all, the first included, before work is dead-lettered.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 1, 2, 4, 8, 16, 32 and 64 minutes between eight attempts: a little over
    /// two hours before a message is dead-lettered.
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(2 * 3600),
            max_attempts: 8,
        }
    }
}

/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

impl RetryPolicy {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.base_delay, self.max_delay.min(MAX_VISIBILITY), 0.75)
    }

    /// The ceiling of the delay after `failed` attempts.
    pub fn ceiling(&self, failed: u32) -> Duration {
        self.backoff().ceiling(failed.saturating_sub(1))
    }

    /// The delay after `failed` attempts, jittered, in whole seconds.
    pub fn delay(&self, failed: u32) -> Duration {
        let delay = self.backoff().delay(failed.saturating_sub(1));
        Duration::from_secs((delay.as_millis() as u64).div_ceil(1000).max(1))
    }

    /// Whether another attempt is allowed after `failed` attempts.
    pub fn allows_another(&self, failed: u32) -> bool {
        failed < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_doubles_up_to_its_cap() {
        let policy = RetryPolicy::default();
        let minutes: Vec<u64> = (1..8).map(|n| policy.ceiling(n).as_secs() / 60).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(policy.ceiling(30), Duration::from_secs(2 * 3600));
        assert!(policy.allows_another(7));
        assert!(!policy.allows_another(8));
    }

    #[test]
    fn jittered_delays_stay_in_their_band_and_grow() {
        let policy = RetryPolicy::default();
        for failed in 1..10 {
            let ceiling = policy.ceiling(failed);
            for _ in 0..50 {
                let delay = policy.delay(failed);
                assert!(
                    delay <= ceiling + Duration::from_secs(1),
                    "{delay:?} > {ceiling:?}"
                );
                assert!(
                    delay >= ceiling * 3 / 4,
                    "{delay:?} below band of {ceiling:?}"
                );
                if failed > 1 && policy.ceiling(failed) > policy.ceiling(failed - 1) {
                    assert!(delay >= policy.ceiling(failed - 1));
                }
            }
        }
    }
}
