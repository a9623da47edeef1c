//! Capped exponential backoff with full jitter, for retrying a provider that is down or
//! rate limiting. A `Retry-After` longer than the cap is not waited out in line: the caller
//! gets the error and the time to come back.

use std::time::Duration;

use crate::crypto::random_bytes;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt` (1-based, after a failure), or `None` when the
    /// attempts are spent or the provider asked for longer than the cap.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        if let Some(asked) = retry_after {
            return (asked <= self.cap).then_some(asked);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let fraction = u32::from_be_bytes(random_bytes::<4>()) as f64 / u32::MAX as f64;
        Some(ceiling.mul_f64(fraction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_cap_and_stop_after_the_attempts() {
        let backoff = Backoff::default();
        for attempt in 1..backoff.attempts {
            let delay = backoff.delay(attempt, None).unwrap();
            assert!(delay <= backoff.cap);
        }
        assert!(backoff.delay(backoff.attempts, None).is_none());
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let backoff = Backoff::default();
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(backoff.delay(1, Some(Duration::from_secs(60))), None);
    }
}
