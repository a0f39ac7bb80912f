//! Metric names, labels and the registry: the one vocabulary every module records through.
//!
//! Labels never carry session ids, URLs or service references. Names follow REFERENCE.md §3.

mod gpu;
mod process;
mod queue;
mod session;

pub use gpu::{GpuMetrics, GpuReading};
pub use queue::QueueMetrics;
pub use session::SessionMetrics;

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/stream/{ref}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// The breaker's name, e.g. `stream_8001`.
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabels {
    pub port: u16,
    /// One of `timeout`, `refused`, `reset`, `http_status`, `circuit_open`.
    pub error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// Which limit refused: `global`, `ip` or `mode`.
    pub scope: &'static str,
    /// The mode of the session asked for: `standard`, `audio_proxy`, `gpu`.
    pub mode: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric of the process, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub session: SessionMetrics,
    pub gpu: GpuMetrics,
    /// The encoder slot queue.
    pub queue: QueueMetrics,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    catalog_loads: Family<ResultLabels, Counter>,
    catalog_channels: Gauge,
    epg_loads: Family<ResultLabels, Counter>,
    epg_events: Gauge,
    breaker_state: Family<BreakerLabels, Gauge>,
    breaker_trips: Family<BreakerLabels, Counter>,
    detection_errors: Family<DetectionLabels, Counter>,
    rate_limit_exceeded: Family<RateLimitLabels, Counter>,
    encode_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let session = SessionMetrics::register(&mut registry);
        let gpu = GpuMetrics::register(&mut registry);
        let queue = QueueMetrics::register(&mut registry);
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "xg2g_http_requests",
            "HTTP requests answered, by route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "xg2g_http_request_duration_seconds",
            "Time from request to response head, by route template",
            http_duration.clone(),
        );
        let catalog_loads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "xg2g_catalog_loads",
            "Channel list loads from the receiver, by result",
            catalog_loads.clone(),
        );
        let catalog_channels = Gauge::default();
        registry.register(
            "xg2g_catalog_channels",
            "Channels in the current catalog",
            catalog_channels.clone(),
        );
        let epg_loads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "xg2g_epg_loads",
            "Guide loads from the receiver, by result: ok, partial (some channels failed), error",
            epg_loads.clone(),
        );
        let epg_events = Gauge::default();
        registry.register("xg2g_epg_events", "Programmes in the current guide", epg_events.clone());
        registry.register(
            "xg2g_build",
            "Build information",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "xg2g_circuit_breaker_state",
            "State of each circuit breaker: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        let breaker_trips = Family::<BreakerLabels, Counter>::default();
        registry.register(
            "xg2g_circuit_breaker_trips",
            "Times each circuit breaker opened",
            breaker_trips.clone(),
        );
        let detection_errors = Family::<DetectionLabels, Counter>::default();
        registry.register(
            "xg2g_stream_detection_errors",
            "Failed or skipped stream port probes, by port and error type",
            detection_errors.clone(),
        );
        let rate_limit_exceeded = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "xg2g_rate_limit_exceeded",
            "New sessions refused by a rate limit, by the refusing scope and the session's mode",
            rate_limit_exceeded.clone(),
        );
        Self {
            registry,
            session,
            gpu,
            queue,
            http_requests,
            http_duration,
            catalog_loads,
            catalog_channels,
            epg_loads,
            epg_events,
            breaker_state,
            breaker_trips,
            detection_errors,
            rate_limit_exceeded,
            encode_lock: Mutex::new(()),
        }
    }

    pub fn http_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn catalog_loaded(&self, channels: usize) {
        self.catalog_loads.get_or_create(&ResultLabels { result: "ok" }).inc();
        self.catalog_channels.set(channels as i64);
    }

    pub fn catalog_failed(&self) {
        self.catalog_loads
            .get_or_create(&ResultLabels { result: "error" })
            .inc();
    }

    /// A guide load that read every channel's guide (`complete`) or only some.
    pub fn epg_loaded(&self, events: usize, complete: bool) {
        let result = if complete { "ok" } else { "partial" };
        self.epg_loads.get_or_create(&ResultLabels { result }).inc();
        self.epg_events.set(events as i64);
    }

    /// A guide load that read no channel's guide.
    pub fn epg_failed(&self) {
        self.epg_loads.get_or_create(&ResultLabels { result: "error" }).inc();
    }

    /// A circuit breaker's state: 0 closed, 1 open, 2 half-open.
    pub fn circuit_breaker_state(&self, name: &str, state: i64) {
        self.breaker_state
            .get_or_create(&BreakerLabels { name: name.to_owned() })
            .set(state);
    }

    /// A circuit breaker opened.
    pub fn circuit_breaker_tripped(&self, name: &str) {
        self.breaker_trips
            .get_or_create(&BreakerLabels { name: name.to_owned() })
            .inc();
    }

    /// A stream port probe failed, or was skipped because the port's breaker is open.
    pub fn stream_detection_error(&self, port: u16, error_type: &'static str) {
        self.detection_errors
            .get_or_create(&DetectionLabels { port, error_type })
            .inc();
    }

    /// A new session was refused by the `scope` rate limit.
    pub fn rate_limit_exceeded(&self, scope: &'static str, mode: &'static str) {
        self.rate_limit_exceeded
            .get_or_create(&RateLimitLabels { scope, mode })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        // The process collector refreshes shared state; one scrape at a time.
        let _guard = self.encode_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "Metrics encoding failed.");
        }
        out
    }
}
