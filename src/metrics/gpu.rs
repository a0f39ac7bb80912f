//! GPU and host statistics: utilisation, VRAM and encoder load per device, host CPU and memory.
//! The device label is a short index name (`nvidia0`, `card0`), never a serial or UUID.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub device: String,
    /// `nvidia`, `intel` or `amd`.
    pub vendor: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub device: String,
}

/// One device's figures from one sample; `None` where the source does not give a figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuReading {
    pub utilization_percent: Option<f64>,
    pub vram_used_bytes: Option<u64>,
    pub vram_total_bytes: Option<u64>,
    pub encoder_utilization_percent: Option<f64>,
    pub encoder_sessions: Option<u64>,
}

type Percent = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone)]
pub struct GpuMetrics {
    utilization: Family<GpuLabels, Percent>,
    vram_used: Family<DeviceLabels, Gauge>,
    vram_total: Family<DeviceLabels, Gauge>,
    encoder_utilization: Family<DeviceLabels, Percent>,
    encoder_sessions: Family<DeviceLabels, Gauge>,
    /// The latest host sample; the host series exist only once there is one.
    host: Arc<Mutex<Option<HostFigures>>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct HostFigures {
    cpu_percent: Option<f64>,
    memory: Option<(u64, u64)>,
}

impl GpuMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            utilization: Family::default(),
            vram_used: Family::default(),
            vram_total: Family::default(),
            encoder_utilization: Family::default(),
            encoder_sessions: Family::default(),
            host: Arc::default(),
        };
        registry.register(
            "xg2g_gpu_utilization_percent",
            "GPU busy share over the last sample period, by device and vendor",
            m.utilization.clone(),
        );
        registry.register(
            "xg2g_vram_usage_bytes",
            "GPU memory in use, by device",
            m.vram_used.clone(),
        );
        registry.register(
            "xg2g_vram_total_bytes",
            "GPU memory installed, by device",
            m.vram_total.clone(),
        );
        registry.register(
            "xg2g_gpu_encoder_utilization_percent",
            "Video encoder busy share, by device (Intel: the video engine, decode and encode)",
            m.encoder_utilization.clone(),
        );
        registry.register(
            "xg2g_gpu_encoder_sessions",
            "Encoder sessions open on the device, every process included",
            m.encoder_sessions.clone(),
        );
        registry.register_collector(Box::new(HostCollector(Arc::clone(&m.host))));
        m
    }

    /// Sets one device's series; a figure that is `None` has its series removed.
    pub fn gpu_device(&self, device: &str, vendor: &'static str, reading: &GpuReading) {
        let gpu = GpuLabels {
            device: device.to_owned(),
            vendor,
        };
        let dev = DeviceLabels {
            device: device.to_owned(),
        };
        set_or_remove(&self.utilization, &gpu, reading.utilization_percent);
        set_or_remove(&self.vram_used, &dev, reading.vram_used_bytes.map(saturating_i64));
        set_or_remove(&self.vram_total, &dev, reading.vram_total_bytes.map(saturating_i64));
        set_or_remove(&self.encoder_utilization, &dev, reading.encoder_utilization_percent);
        set_or_remove(
            &self.encoder_sessions,
            &dev,
            reading.encoder_sessions.map(saturating_i64),
        );
    }

    /// Removes every series of a device that is no longer seen.
    pub fn gpu_device_gone(&self, device: &str, vendor: &'static str) {
        self.gpu_device(device, vendor, &GpuReading::default());
    }

    /// Host CPU busy share (0–100, all cores).
    pub fn host_cpu(&self, percent: f64) {
        self.host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_default()
            .cpu_percent = Some(percent);
    }

    pub fn host_memory(&self, used_bytes: u64, total_bytes: u64) {
        self.host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_default()
            .memory = Some((used_bytes, total_bytes));
    }
}

/// Encodes the host figures at scrape time, and nothing before the first sample (or when
/// statistics are off), rather than zeros.
#[derive(Debug)]
struct HostCollector(Arc<Mutex<Option<HostFigures>>>);

impl Collector for HostCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(figures) = *self.0.lock().unwrap_or_else(|e| e.into_inner()) else {
            return Ok(());
        };
        if let Some(percent) = figures.cpu_percent {
            let gauge = ConstGauge::new(percent);
            gauge.encode(encoder.encode_descriptor(
                "xg2g_host_cpu_utilization_percent",
                "Host CPU busy share over the last sample period, all cores.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some((used, total)) = figures.memory {
            let used = ConstGauge::new(saturating_i64(used));
            used.encode(encoder.encode_descriptor(
                "xg2g_host_memory_used_bytes",
                "Host memory in use.",
                None,
                used.metric_type(),
            )?)?;
            let total = ConstGauge::new(saturating_i64(total));
            total.encode(encoder.encode_descriptor(
                "xg2g_host_memory_total_bytes",
                "Host memory installed.",
                None,
                total.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn set_or_remove<L, N, A>(family: &Family<L, Gauge<N, A>>, labels: &L, value: Option<N>)
where
    L: Clone + std::hash::Hash + Eq,
    A: prometheus_client::metrics::gauge::Atomic<N> + Default,
{
    match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
}
