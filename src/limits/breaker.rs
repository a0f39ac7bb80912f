//! The circuit breaker as a pure state machine: no clock, no IO, time passed in by the caller.
//!
//! Closed → Open after `threshold` failures within `window`; Open → Half-Open once `timeout` has
//! passed (checked lazily, at the next [`Breaker::allow`]); Half-Open → Closed after
//! `success_threshold` successes; any Half-Open failure → Open again with a fresh timeout. While
//! Open, [`Breaker::allow`] refuses and says how long to wait, so the caller never touches the
//! guarded resource (REFERENCE.md §3).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// The value of `xg2g_circuit_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state, for the owner to log and record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// Failures that led here: those within the window for Closed → Open, 1 for a Half-Open
    /// failure, 0 otherwise.
    pub failures: u32,
}

/// The breaker is open: do not call; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Times of the recent failures, oldest first, none older than the window.
    Closed {
        failures: VecDeque<Instant>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        successes: u32,
    },
}

/// One circuit breaker. Outcomes reported while Open are ignored: they belong to calls that
/// started before it opened and say nothing the trip has not already said.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    window: Duration,
    timeout: Duration,
    success_threshold: u32,
    phase: Phase,
}

impl Breaker {
    /// A closed breaker. Thresholds of 0 (refused by config validation) act as 1.
    pub fn new(config: &BreakerConfig) -> Self {
        Self {
            threshold: config.threshold.max(1),
            window: config.window,
            timeout: config.timeout,
            success_threshold: config.success_threshold.max(1),
            phase: Phase::Closed {
                failures: VecDeque::new(),
            },
        }
    }

    /// The state as last changed; an Open breaker whose timeout has passed still reads Open
    /// until the next [`Breaker::allow`].
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How long until a call would be let through at `now`; `None` when one would be now.
    /// Changes nothing.
    pub fn retry_after(&self, now: Instant) -> Option<Duration> {
        match self.phase {
            Phase::Open { until } if until > now => Some(until - now),
            _ => None,
        }
    }

    /// Asks to make a call at `now`. `Ok` lets it through (with the Open → Half-Open transition
    /// when this call is the first after the timeout); `Err` refuses it.
    pub fn allow(&mut self, now: Instant) -> Result<Option<Transition>, Refused> {
        match self.phase {
            Phase::Open { until } if until > now => Err(Refused {
                retry_after: until - now,
            }),
            Phase::Open { .. } => Ok(Some(self.enter(Phase::HalfOpen { successes: 0 }, 0))),
            Phase::Closed { .. } | Phase::HalfOpen { .. } => Ok(None),
        }
    }

    /// A call succeeded.
    pub fn record_success(&mut self, now: Instant) -> Option<Transition> {
        match &mut self.phase {
            Phase::Closed { failures } => {
                forget_old(failures, now, self.window);
                None
            }
            Phase::HalfOpen { successes } => {
                *successes += 1;
                (*successes >= self.success_threshold).then(|| {
                    self.enter(
                        Phase::Closed {
                            failures: VecDeque::new(),
                        },
                        0,
                    )
                })
            }
            Phase::Open { .. } => None,
        }
    }

    /// A call failed.
    pub fn record_failure(&mut self, now: Instant) -> Option<Transition> {
        match &mut self.phase {
            Phase::Closed { failures } => {
                forget_old(failures, now, self.window);
                failures.push_back(now);
                let count = failures.len() as u32;
                (count >= self.threshold).then(|| {
                    self.enter(
                        Phase::Open {
                            until: now + self.timeout,
                        },
                        count,
                    )
                })
            }
            Phase::HalfOpen { .. } => Some(self.enter(
                Phase::Open {
                    until: now + self.timeout,
                },
                1,
            )),
            Phase::Open { .. } => None,
        }
    }

    fn enter(&mut self, phase: Phase, failures: u32) -> Transition {
        let from = self.state();
        self.phase = phase;
        Transition {
            from,
            to: self.state(),
            failures,
        }
    }
}

/// Drops failures that are `window` or more before `now`.
fn forget_old(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while failures.front().is_some_and(|t| now.duration_since(*t) >= window) {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const S: Duration = Duration::from_secs(1);

    /// REFERENCE.md §3: 5 failures in 10 s open; 30 s until half-open; 3 successes close.
    fn breaker() -> Breaker {
        Breaker::new(&BreakerConfig {
            threshold: 5,
            window: 10 * S,
            timeout: 30 * S,
            success_threshold: 3,
        })
    }

    fn transition(from: BreakerState, to: BreakerState, failures: u32) -> Option<Transition> {
        Some(Transition { from, to, failures })
    }

    /// Fails `n` times, one second apart, and returns the last transition.
    async fn fail(b: &mut Breaker, n: u32) -> Option<Transition> {
        let mut last = None;
        for _ in 0..n {
            last = b.record_failure(Instant::now());
            advance(S).await;
        }
        last
    }

    /// Opens the breaker and waits out its timeout, then lets the first trial call through.
    async fn half_open(b: &mut Breaker) {
        fail(b, 5).await;
        advance(30 * S).await;
        assert_eq!(
            b.allow(Instant::now()),
            Ok(transition(BreakerState::Open, BreakerState::HalfOpen, 0))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closed_opens_after_threshold_failures_within_the_window() {
        let mut b = breaker();
        assert_eq!(fail(&mut b, 4).await, None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allow(Instant::now()), Ok(None));
        assert_eq!(
            b.record_failure(Instant::now()),
            transition(BreakerState::Closed, BreakerState::Open, 5)
        );
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_the_window_do_not_count() {
        let mut b = breaker();
        // Failures at t = 0, 1, 2 and 3 s; now t = 4 s.
        assert_eq!(fail(&mut b, 4).await, None);
        // Successes neither open nor reset the count.
        assert_eq!(b.record_success(Instant::now()), None);
        // At t = 10 s the failure at 0 has left the window: four remain with this one.
        advance(6 * S).await;
        assert_eq!(b.record_failure(Instant::now()), None);
        assert_eq!(b.state(), BreakerState::Closed);
        // 1, 2, 3, 10 and 10 s: five within 10 s.
        assert_eq!(
            b.record_failure(Instant::now()),
            transition(BreakerState::Closed, BreakerState::Open, 5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_refuses_until_the_timeout_then_turns_half_open() {
        let mut b = breaker();
        fail(&mut b, 5).await;
        // The last failure was 1 s ago: 29 s left.
        assert_eq!(b.retry_after(Instant::now()), Some(29 * S));
        assert_eq!(b.allow(Instant::now()), Err(Refused { retry_after: 29 * S }));
        advance(28 * S).await;
        assert_eq!(b.allow(Instant::now()), Err(Refused { retry_after: S }));
        assert_eq!(b.state(), BreakerState::Open);
        advance(S).await;
        assert_eq!(b.retry_after(Instant::now()), None);
        assert_eq!(
            b.allow(Instant::now()),
            Ok(transition(BreakerState::Open, BreakerState::HalfOpen, 0))
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Further calls pass without another transition.
        assert_eq!(b.allow(Instant::now()), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_while_open_are_ignored() {
        let mut b = breaker();
        fail(&mut b, 5).await;
        assert_eq!(b.record_success(Instant::now()), None);
        assert_eq!(b.record_failure(Instant::now()), None);
        // A late failure does not extend the timeout.
        assert_eq!(b.retry_after(Instant::now()), Some(29 * S));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_closes_after_enough_successes() {
        let mut b = breaker();
        half_open(&mut b).await;
        assert_eq!(b.record_success(Instant::now()), None);
        assert_eq!(b.record_success(Instant::now()), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.record_success(Instant::now()),
            transition(BreakerState::HalfOpen, BreakerState::Closed, 0)
        );
        assert_eq!(b.state(), BreakerState::Closed);
        // Closed again with a clean slate: four failures do not reopen it.
        assert_eq!(fail(&mut b, 4).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_open_failure_reopens_with_a_fresh_timeout() {
        let mut b = breaker();
        half_open(&mut b).await;
        assert_eq!(b.record_success(Instant::now()), None);
        assert_eq!(b.record_success(Instant::now()), None);
        advance(S).await;
        assert_eq!(
            b.record_failure(Instant::now()),
            transition(BreakerState::HalfOpen, BreakerState::Open, 1)
        );
        assert_eq!(b.retry_after(Instant::now()), Some(30 * S));
        assert!(b.allow(Instant::now()).is_err());
        // The successes before the failure are forgotten.
        advance(30 * S).await;
        assert!(b.allow(Instant::now()).is_ok());
        assert_eq!(b.record_success(Instant::now()), None);
        assert_eq!(b.record_success(Instant::now()), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_of_one() {
        let mut b = Breaker::new(&BreakerConfig {
            threshold: 1,
            window: S,
            timeout: S,
            success_threshold: 1,
        });
        assert_eq!(
            b.record_failure(Instant::now()),
            transition(BreakerState::Closed, BreakerState::Open, 1)
        );
        advance(S).await;
        assert!(b.allow(Instant::now()).is_ok());
        assert_eq!(
            b.record_success(Instant::now()),
            transition(BreakerState::HalfOpen, BreakerState::Closed, 0)
        );
    }

    #[test]
    fn state_names_and_gauge_values() {
        let all = [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen];
        let names: Vec<_> = all.iter().map(|s| s.as_str()).collect();
        let values: Vec<_> = all.iter().map(|s| s.gauge_value()).collect();
        assert_eq!(names, ["closed", "open", "half-open"]);
        assert_eq!(values, [0, 1, 2]);
    }
}
