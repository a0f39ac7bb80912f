//! Encoder queue metrics (REFERENCE.md §3): waiters and waits by priority, refusals by reason,
//! slots in use. Labels are the priority (`active`, `normal`, `preview`) and the reason (`full`,
//! `timeout`, `cancelled`), never clients or channels.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

fn wait_histogram() -> Histogram {
    // 1 ms to ~65 s: an immediate grant to a long wait at the default 30 s bound.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Debug, Clone)]
pub struct QueueMetrics {
    size: Family<PriorityLabels, Gauge>,
    wait: Family<PriorityLabels, Histogram, fn() -> Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    active_workers: Gauge,
}

impl QueueMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            size: Family::default(),
            wait: Family::new_with_constructor(wait_histogram),
            rejections: Family::default(),
            active_workers: Gauge::default(),
        };
        registry.register(
            "xg2g_gpu_queue_size",
            "Requests waiting for an encoder slot, by priority",
            m.size.clone(),
        );
        registry.register(
            "xg2g_gpu_queue_wait_seconds",
            "Time from asking for an encoder slot to getting it, by priority",
            m.wait.clone(),
        );
        registry.register(
            "xg2g_gpu_queue_rejections",
            "Requests that got no encoder slot: full (refused at once), timeout, cancelled (client left)",
            m.rejections.clone(),
        );
        registry.register(
            "xg2g_gpu_queue_active_workers",
            "Encoder slots in use",
            m.active_workers.clone(),
        );
        for reason in ["full", "timeout", "cancelled"] {
            // Every reason shows from the start, at 0.
            let _ = m.rejections.get_or_create(&ReasonLabels { reason });
        }
        m
    }

    /// Waiters of `priority` now.
    pub fn size(&self, priority: &'static str, waiting: i64) {
        self.size.get_or_create(&PriorityLabels { priority }).set(waiting);
    }

    /// A slot was granted after `waited`.
    pub fn waited(&self, priority: &'static str, waited: Duration) {
        self.wait
            .get_or_create(&PriorityLabels { priority })
            .observe(waited.as_secs_f64());
    }

    /// A request got no slot.
    pub fn rejected(&self, reason: &'static str) {
        self.rejections.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A slot was taken (+1) or given back (-1).
    pub fn active_workers(&self, delta: i64) {
        self.active_workers.inc_by(delta);
    }
}
