//! Retry timing: exponential backoff with equal jitter, and the receiver's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// No wait between attempts is longer than this, whatever the configuration or `Retry-After`.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(10);

/// Waits before retries: `first`, doubling per retry, capped at `cap`, with equal jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration) -> Self {
        Self { first, cap: MAX_DELAY }
    }

    /// The longest wait before retry number `retry` (0 for the first retry).
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `retry`: half the ceiling plus a random share of the other
    /// half ("equal jitter"), so clients that failed together spread out, yet never hammer the
    /// box with an immediate retry.
    pub(crate) fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.random_range(0..=spread))
    }
}

/// The `Retry-After` of an answer, when given in seconds; capped at `cap`. HTTP dates are
/// ignored: receivers do not send them.
pub(crate) fn retry_after(value: Option<&str>, cap: Duration) -> Option<Duration> {
    let seconds: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceiling_doubles_and_caps() {
        let b = Backoff::new(Duration::from_millis(500));
        let ceilings: Vec<u128> = (0..7).map(|r| b.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(b.ceiling(u32::MAX), MAX_DELAY, "no overflow on absurd retry counts");
        assert_eq!(Backoff::new(Duration::from_secs(60)).ceiling(0), MAX_DELAY);
        assert_eq!(Backoff::new(Duration::ZERO).ceiling(3), Duration::ZERO);
    }

    #[test]
    fn delay_stays_between_half_and_full_ceiling() {
        let b = Backoff::new(Duration::from_millis(100));
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 0..10 {
            let ceiling = b.ceiling(retry);
            let delays: Vec<Duration> = (0..200).map(|_| b.delay(retry, &mut rng)).collect();
            assert!(
                delays.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling),
                "retry {retry}"
            );
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 100, "retry {retry}: delays are jittered");
        }
        assert_eq!(Backoff::new(Duration::ZERO).delay(2, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_takes_seconds_only_and_is_capped() {
        let cap = Duration::from_secs(10);
        assert_eq!(retry_after(Some("3"), cap), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 0 "), cap), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("3600"), cap), Some(cap));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), cap), None);
        assert_eq!(retry_after(Some("-1"), cap), None);
        assert_eq!(retry_after(None, cap), None);
    }
}
