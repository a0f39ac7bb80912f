//! Metric names, labels and the registry: the one vocabulary every module records through.
//!
//! Labels never carry session ids, URLs or service references. Names follow REFERENCE.md §3.

mod process;

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

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric of the process, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    catalog_loads: Family<ResultLabels, Counter>,
    catalog_channels: Gauge,
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
        registry.register(
            "xg2g_build",
            "Build information",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Self {
            registry,
            http_requests,
            http_duration,
            catalog_loads,
            catalog_channels,
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
