//! The pure core of stream port detection: the one owner of the detection cache, the whitelist
//! and the per-port breakers. Synchronous, with the time passed in; the resolver does the IO.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{ConnectFailure, DetectError};
use crate::config::BreakerConfig;
use crate::limits::NamedBreaker;
use crate::metrics::Metrics;
use crate::model::ServiceRef;

/// How soon a failed whitelist fetch is tried again (or the refresh interval, if shorter).
const WHITELIST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ports {
    pub stream: u16,
    pub relay: u16,
}

#[derive(Debug)]
pub(super) struct Settings {
    pub ports: Ports,
    pub smart: bool,
    pub ttl: Duration,
    /// Least time between whitelist fetches: the catalog refresh interval.
    pub whitelist_every: Duration,
    pub overrides: HashMap<ServiceRef, u16>,
}

/// What `resolve` does next.
#[derive(Debug)]
pub(super) enum Decision {
    Use(u16),
    FetchWhitelist,
    Probe,
    Fail(DetectError),
}

#[derive(Debug, Default)]
struct Whitelist {
    /// `None` until a fetch succeeded.
    channels: Option<HashSet<ServiceRef>>,
    /// When to fetch again; `None` = never fetched.
    next_fetch: Option<Instant>,
}

/// The one owner of the detection cache, the whitelist and the breakers. Synchronous: the time
/// comes in as an argument, and every result is a value for the caller to act on.
#[derive(Debug)]
pub(super) struct Detector {
    settings: Settings,
    breakers: BTreeMap<u16, NamedBreaker>,
    /// Detected ports and until when they hold.
    cache: HashMap<ServiceRef, (u16, Instant)>,
    whitelist: Whitelist,
    metrics: Arc<Metrics>,
}

impl Detector {
    pub(super) fn new(settings: Settings, breaker: &BreakerConfig, metrics: Arc<Metrics>) -> Self {
        let Ports { stream, relay } = settings.ports;
        let mut breakers = BTreeMap::new();
        let mut add = |port: u16, name: String| {
            breakers
                .entry(port)
                .or_insert_with(|| NamedBreaker::new(name, breaker, Arc::clone(&metrics)));
        };
        add(stream, format!("stream_{stream}"));
        add(relay, format!("relay_{relay}"));
        for &port in settings.overrides.values() {
            add(port, format!("port_{port}"));
        }
        Self {
            settings,
            breakers,
            cache: HashMap::new(),
            whitelist: Whitelist::default(),
            metrics,
        }
    }

    /// The next step for `service_ref` at `now`. `may_fetch` is false once the whitelist was
    /// fetched (or tried) for this request.
    pub(super) fn decide(&mut self, service_ref: &ServiceRef, now: Instant, may_fetch: bool) -> Decision {
        let Ports { stream, relay } = self.settings.ports;
        if let Some(&port) = self.settings.overrides.get(service_ref) {
            return self.use_first(&[port], now);
        }
        if !self.settings.smart {
            return self.use_first(&[stream], now);
        }
        if may_fetch && self.whitelist_due(now) {
            return Decision::FetchWhitelist;
        }
        if self
            .whitelist
            .channels
            .as_ref()
            .is_some_and(|w| w.contains(service_ref))
        {
            return self.use_first(&[relay], now);
        }
        match self.cache.get(service_ref) {
            Some(&(port, until)) if until > now => {
                let other = if port == relay { stream } else { relay };
                self.use_first(&[port, other], now)
            }
            _ => {
                // Probing: fail fast when no port could be probed.
                let waits: Vec<Option<Duration>> = [stream, relay].iter().map(|p| self.retry_after(*p, now)).collect();
                match waits.iter().copied().collect::<Option<Vec<Duration>>>() {
                    Some(waits) => {
                        self.count_circuit_open(&[stream, relay]);
                        Decision::Fail(DetectError::AllPortsOpen {
                            retry_after: waits.into_iter().min().unwrap_or_default(),
                        })
                    }
                    None => Decision::Probe,
                }
            }
        }
    }

    /// The first of `ports` whose breaker lets a call through.
    fn use_first(&mut self, ports: &[u16], now: Instant) -> Decision {
        let mut retry_after: Option<Duration> = None;
        for &port in ports {
            match self.gate(port, now) {
                Ok(()) => return Decision::Use(port),
                Err(wait) => retry_after = Some(retry_after.map_or(wait, |r| r.min(wait))),
            }
        }
        Decision::Fail(DetectError::AllPortsOpen {
            retry_after: retry_after.unwrap_or_default(),
        })
    }

    /// Lets a call to `port` through its breaker, or counts a `circuit_open` detection error
    /// and says how long to wait.
    pub(super) fn gate(&mut self, port: u16, now: Instant) -> Result<(), Duration> {
        let Some(breaker) = self.breakers.get_mut(&port) else {
            return Ok(());
        };
        breaker.allow(now).map_err(|refused| {
            tracing::debug!(
                name = breaker.name(),
                port,
                "Port skipped: its circuit breaker is open."
            );
            self.metrics.stream_detection_error(port, "circuit_open");
            refused.retry_after
        })
    }

    pub(super) fn retry_after(&self, port: u16, now: Instant) -> Option<Duration> {
        self.breakers.get(&port).and_then(|b| b.retry_after(now))
    }

    fn count_circuit_open(&self, ports: &[u16]) {
        for &port in ports {
            self.metrics.stream_detection_error(port, "circuit_open");
        }
    }

    pub(super) fn record(&mut self, port: u16, now: Instant, ok: bool) {
        match self.breakers.get_mut(&port) {
            Some(breaker) => breaker.record(now, ok),
            None => tracing::debug!(port, "Connect outcome for a port without a breaker ignored."),
        }
    }

    pub(super) fn probe_failed(&mut self, port: u16, now: Instant, failure: ConnectFailure) {
        self.metrics.stream_detection_error(port, failure.error_type());
        self.record(port, now, !failure.is_port_failure());
    }

    /// A probe of `port` succeeded. Caches it when `keep` and the whitelist is known (a channel
    /// missing from an unknown whitelist may belong on the relay); returns whether it did.
    pub(super) fn detected(&mut self, service_ref: &ServiceRef, port: u16, now: Instant, keep: bool) -> bool {
        self.record(port, now, true);
        if !keep || self.whitelist.channels.is_none() {
            return false;
        }
        self.cache.retain(|_, (_, until)| *until > now);
        self.cache.insert(service_ref.clone(), (port, now + self.settings.ttl));
        true
    }

    pub(super) fn whitelist_due(&self, now: Instant) -> bool {
        self.whitelist.next_fetch.is_none_or(|next| next <= now)
    }

    /// Stores a fetched whitelist, or after a failed fetch (`None`) keeps the previous one and
    /// tries again sooner.
    pub(super) fn set_whitelist(&mut self, now: Instant, channels: Option<HashSet<ServiceRef>>) {
        let every = self.settings.whitelist_every;
        let next = match channels {
            Some(channels) => {
                self.whitelist.channels = Some(channels);
                every
            }
            None => WHITELIST_RETRY.min(every),
        };
        self.whitelist.next_fetch = Some(now + next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
    const ENCRYPTED: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
    const S: Duration = Duration::from_secs(1);

    fn r(text: &str) -> ServiceRef {
        text.parse().unwrap()
    }

    fn detector(smart: bool, overrides: &[(&str, u16)]) -> Detector {
        Detector::new(
            Settings {
                ports: Ports {
                    stream: 8001,
                    relay: 17999,
                },
                smart,
                ttl: 60 * S,
                whitelist_every: 900 * S,
                overrides: overrides.iter().map(|(s, p)| (r(s), *p)).collect(),
            },
            &BreakerConfig {
                threshold: 2,
                window: 10 * S,
                timeout: 30 * S,
                success_threshold: 1,
            },
            Arc::new(Metrics::new()),
        )
    }

    fn used(decision: Decision) -> u16 {
        match decision {
            Decision::Use(port) => port,
            other => panic!("expected a port, got {other:?}"),
        }
    }

    fn open(d: &mut Detector, port: u16, now: Instant) {
        d.record(port, now, false);
        d.record(port, now, false);
    }

    #[test]
    fn overrides_and_fixed_ports_need_no_whitelist() {
        let now = Instant::now();
        let mut d = detector(true, &[(HD, 17999)]);
        assert_eq!(used(d.decide(&r(HD), now, true)), 17999);
        let mut d = detector(false, &[]);
        assert_eq!(used(d.decide(&r(ENCRYPTED), now, true)), 8001);
        // A fixed port does not fall back to the other one.
        open(&mut d, 8001, now);
        assert!(matches!(
            d.decide(&r(HD), now, true),
            Decision::Fail(DetectError::AllPortsOpen { retry_after }) if retry_after == 30 * S
        ));
    }

    #[test]
    fn the_whitelist_is_fetched_first_and_refreshed_per_interval() {
        let now = Instant::now();
        let mut d = detector(true, &[]);
        assert!(matches!(d.decide(&r(HD), now, true), Decision::FetchWhitelist));
        d.set_whitelist(now, Some([r(ENCRYPTED)].into()));
        assert_eq!(used(d.decide(&r(ENCRYPTED), now, true)), 17999);
        assert!(matches!(d.decide(&r(HD), now, true), Decision::Probe));
        assert!(matches!(
            d.decide(&r(HD), now + 900 * S, true),
            Decision::FetchWhitelist
        ));
        // A failed refresh keeps the list and tries again after 30 s.
        d.set_whitelist(now + 900 * S, None);
        assert_eq!(used(d.decide(&r(ENCRYPTED), now + 901 * S, true)), 17999);
        assert!(matches!(
            d.decide(&r(HD), now + 930 * S, true),
            Decision::FetchWhitelist
        ));
    }

    #[test]
    fn a_whitelisted_channel_never_falls_back_to_the_stream_port() {
        let now = Instant::now();
        let mut d = detector(true, &[]);
        d.set_whitelist(now, Some([r(ENCRYPTED)].into()));
        open(&mut d, 17999, now);
        assert!(matches!(
            d.decide(&r(ENCRYPTED), now, true),
            Decision::Fail(DetectError::AllPortsOpen { .. })
        ));
    }

    #[test]
    fn detections_are_cached_for_the_ttl_and_fall_back_while_open() {
        let now = Instant::now();
        let mut d = detector(true, &[]);
        d.set_whitelist(now, Some(HashSet::new()));
        assert!(d.detected(&r(HD), 8001, now, true));
        assert_eq!(used(d.decide(&r(HD), now, true)), 8001);
        open(&mut d, 8001, now);
        assert_eq!(used(d.decide(&r(HD), now + S, true)), 17999);
        // Half-open after the timeout: the detected port gets the trial.
        assert_eq!(used(d.decide(&r(HD), now + 30 * S, true)), 8001);
        assert!(matches!(d.decide(&r(HD), now + 60 * S, false), Decision::Probe));
    }

    #[test]
    fn nothing_is_cached_without_a_known_whitelist_or_when_asked_not_to() {
        let now = Instant::now();
        let mut d = detector(true, &[]);
        d.set_whitelist(now, None);
        assert!(!d.detected(&r(HD), 8001, now, true));
        d.set_whitelist(now, Some(HashSet::new()));
        assert!(!d.detected(&r(HD), 17999, now, false));
        assert!(matches!(d.decide(&r(HD), now, false), Decision::Probe));
    }

    #[test]
    fn probing_fails_fast_when_both_breakers_are_open() {
        let now = Instant::now();
        let mut d = detector(true, &[]);
        d.set_whitelist(now, Some(HashSet::new()));
        open(&mut d, 8001, now);
        open(&mut d, 17999, now + 10 * S);
        match d.decide(&r(HD), now + 11 * S, true) {
            Decision::Fail(DetectError::AllPortsOpen { retry_after }) => assert_eq!(retry_after, 19 * S),
            other => panic!("{other:?}"),
        }
        let text = d.metrics.encode();
        for port in [8001, 17999] {
            let line = format!("xg2g_stream_detection_errors_total{{port=\"{port}\",error_type=\"circuit_open\"}} 1");
            assert!(text.contains(&line), "{text}");
        }
    }

    #[test]
    fn http_answers_below_500_do_not_count_against_the_port() {
        let now = Instant::now();
        let mut d = detector(true, &[]);
        d.probe_failed(8001, now, ConnectFailure::Status(404));
        d.probe_failed(8001, now, ConnectFailure::Status(404));
        assert_eq!(d.retry_after(8001, now), None);
        d.probe_failed(8001, now, ConnectFailure::Status(503));
        d.probe_failed(8001, now, ConnectFailure::Reset);
        assert_eq!(d.retry_after(8001, now), Some(30 * S));
    }
}
