//! Limits that protect the receiver and the host: circuit breakers (pure state machines in
//! `breaker`) and their named, observed form that logs and records every transition; rate
//! limits on new sessions (`rate`) and the one check that charges them (`admit`); the encoder
//! slot priority queue (`queue`).

mod admit;
pub mod breaker;
pub mod queue;
pub mod rate;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use admit::{Refusal, Start, admit};
pub use breaker::{Breaker, BreakerState, Refused, Transition};
pub use rate::{Admission, AdmissionHandle, RateLimited, Scope};

use crate::config::BreakerConfig;
use crate::metrics::Metrics;

/// A [`Breaker`] with a name (`stream_8001`): each transition is logged and recorded in
/// `xg2g_circuit_breaker_state` / `xg2g_circuit_breaker_trips_total` as one event. Owned by one
/// holder; it has no lock of its own.
#[derive(Debug)]
pub(crate) struct NamedBreaker {
    name: String,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

impl NamedBreaker {
    /// A closed breaker; its state series exists (at 0) from here on.
    pub(crate) fn new(name: String, config: &BreakerConfig, metrics: Arc<Metrics>) -> Self {
        metrics.circuit_breaker_state(&name, BreakerState::Closed.gauge_value());
        Self {
            name,
            breaker: Breaker::new(config),
            metrics,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// How long until a call would pass at `now`; `None` when one would pass now.
    pub(crate) fn retry_after(&self, now: Instant) -> Option<Duration> {
        self.breaker.retry_after(now)
    }

    /// Asks to make a call at `now`; see [`Breaker::allow`].
    pub(crate) fn allow(&mut self, now: Instant) -> Result<(), Refused> {
        let transition = self.breaker.allow(now)?;
        self.emit(transition);
        Ok(())
    }

    /// Reports the outcome of a call.
    pub(crate) fn record(&mut self, now: Instant, ok: bool) {
        let transition = if ok {
            self.breaker.record_success(now)
        } else {
            self.breaker.record_failure(now)
        };
        self.emit(transition);
    }

    fn emit(&self, transition: Option<Transition>) {
        let Some(Transition { from, to, failures }) = transition else {
            return;
        };
        self.metrics.circuit_breaker_state(&self.name, to.gauge_value());
        let name = self.name.as_str();
        let (from, to_str) = (from.as_str(), to.as_str());
        match (from, to) {
            (_, BreakerState::Open) => {
                self.metrics.circuit_breaker_tripped(&self.name);
                tracing::warn!(
                    name,
                    from,
                    to = to_str,
                    failures,
                    "Circuit breaker opened: calls through it are refused until its timeout."
                );
            }
            (_, BreakerState::HalfOpen) => {
                tracing::info!(
                    name,
                    from,
                    to = to_str,
                    failures,
                    "Circuit breaker half-open: letting trial calls through."
                );
            }
            (_, BreakerState::Closed) => {
                tracing::info!(
                    name,
                    from,
                    to = to_str,
                    failures,
                    "Circuit breaker closed: trial calls succeeded."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            threshold: 2,
            window: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            success_threshold: 1,
        }
    }

    fn line(text: &str, prefix: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_recorded_in_the_metrics() {
        let metrics = Arc::new(Metrics::new());
        let mut b = NamedBreaker::new("stream_8001".to_owned(), &config(), Arc::clone(&metrics));
        let state = "xg2g_circuit_breaker_state{name=\"stream_8001\"}";
        let trips = "xg2g_circuit_breaker_trips_total{name=\"stream_8001\"}";
        assert_eq!(line(&metrics.encode(), state), format!("{state} 0"));

        b.record(Instant::now(), false);
        b.record(Instant::now(), false);
        assert_eq!(line(&metrics.encode(), state), format!("{state} 1"));
        assert_eq!(line(&metrics.encode(), trips), format!("{trips} 1"));
        assert!(b.allow(Instant::now()).is_err());

        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.allow(Instant::now()).is_ok());
        assert_eq!(line(&metrics.encode(), state), format!("{state} 2"));
        b.record(Instant::now(), true);
        let text = metrics.encode();
        assert_eq!(line(&text, state), format!("{state} 0"));
        assert_eq!(line(&text, trips), format!("{trips} 1"));
        assert_eq!(b.name(), "stream_8001");
    }
}
