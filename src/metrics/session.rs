//! Stream session metrics: sessions, clients, starts, time to first byte, upstream health,
//! transcode latency. Labels are the profile's mode, the output and the encoder, never ids.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartLabels {
    pub mode: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    pub mode: &'static str,
    pub output: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncoderLabels {
    pub mode: &'static str,
    pub encoder: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn ttfb_histogram() -> Histogram {
    // 50 ms to ~100 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// Transcode latency buckets, in seconds: 10 ms steps from 10 to 100 ms, where an audio
/// encoder's frame and look-ahead put it and where the 50 ms goal lies (doubling buckets put
/// 32 to 64 ms in one), then coarser to 1 s for video encoders.
const LATENCY_BUCKETS: [f64; 18] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Debug, Clone)]
pub struct SessionMetrics {
    active: Family<ModeLabels, Gauge>,
    clients: Family<ModeLabels, Gauge>,
    starts: Family<StartLabels, Counter>,
    ttfb: Histograms<OutputLabels>,
    reconnects: Counter,
    continuity_errors: Counter,
    transcode_latency: Histograms<EncoderLabels>,
}

impl SessionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            active: Family::default(),
            clients: Family::default(),
            starts: Family::default(),
            ttfb: Family::new_with_constructor(ttfb_histogram),
            reconnects: Counter::default(),
            continuity_errors: Counter::default(),
            transcode_latency: Family::new_with_constructor(latency_histogram),
        };
        registry.register("xg2g_sessions_active", "Running stream sessions", m.active.clone());
        registry.register(
            "xg2g_session_clients",
            "Clients attached to stream sessions",
            m.clients.clone(),
        );
        registry.register("xg2g_session_starts", "Session starts, by result", m.starts.clone());
        registry.register(
            "xg2g_time_to_first_byte_seconds",
            "From a session request to its first media byte",
            m.ttfb.clone(),
        );
        registry.register(
            "xg2g_upstream_reconnects",
            "Reconnects to the receiver after a stall or end",
            m.reconnects.clone(),
        );
        registry.register(
            "xg2g_upstream_continuity_errors",
            "Continuity errors the demuxer saw in the receiver's stream",
            m.continuity_errors.clone(),
        );
        registry.register(
            "xg2g_transcode_latency_seconds",
            "Time a buffer spends in the transcode stage",
            m.transcode_latency.clone(),
        );
        m
    }

    pub fn session_started(&self, mode: &'static str, result: &'static str) {
        self.starts.get_or_create(&StartLabels { mode, result }).inc();
    }

    pub fn session_active(&self, mode: &'static str, delta: i64) {
        self.active.get_or_create(&ModeLabels { mode }).inc_by(delta);
    }

    pub fn client(&self, mode: &'static str, delta: i64) {
        self.clients.get_or_create(&ModeLabels { mode }).inc_by(delta);
    }

    pub fn first_byte(&self, mode: &'static str, output: &'static str, elapsed: Duration) {
        self.ttfb
            .get_or_create(&OutputLabels { mode, output })
            .observe(elapsed.as_secs_f64());
    }

    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    pub fn continuity_error(&self) {
        self.continuity_errors.inc();
    }

    pub fn transcode_latency(&self, mode: &'static str, encoder: &str, seconds: f64) {
        self.transcode_latency
            .get_or_create(&EncoderLabels {
                mode,
                encoder: encoder.to_owned(),
            })
            .observe(seconds);
    }
}
