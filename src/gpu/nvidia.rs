//! NVIDIA GPUs through NVML (nvml-wrapper, which loads `libnvidia-ml.so.1` at run time). The
//! mapping from a device's answers to figures sits behind [`NvDevice`], so it is tested with a
//! fake device; only [`Nvidia`] touches the library.

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::{DeviceSample, Vendor};
use crate::metrics::GpuReading;

/// What the sampler asks of one NVIDIA device.
pub(crate) trait NvDevice {
    /// GPU busy share over the driver's last sample period, percent.
    fn utilization(&self) -> Result<u32, NvmlError>;
    /// Frame-buffer memory `(used, total)` in bytes.
    fn memory(&self) -> Result<(u64, u64), NvmlError>;
    /// Encoder busy share, percent.
    fn encoder_utilization(&self) -> Result<u32, NvmlError>;
    /// Encoder sessions open on the device, every process included.
    fn encoder_sessions(&self) -> Result<u32, NvmlError>;
}

impl NvDevice for nvml_wrapper::Device<'_> {
    fn utilization(&self) -> Result<u32, NvmlError> {
        self.utilization_rates().map(|u| u.gpu)
    }

    fn memory(&self) -> Result<(u64, u64), NvmlError> {
        self.memory_info().map(|m| (m.used, m.total))
    }

    fn encoder_utilization(&self) -> Result<u32, NvmlError> {
        nvml_wrapper::Device::encoder_utilization(self).map(|u| u.utilization)
    }

    fn encoder_sessions(&self) -> Result<u32, NvmlError> {
        // The stats call is one round trip; the session list is the fallback where it is absent.
        self.encoder_stats().map(|s| s.session_count).or_else(|stats_error| {
            nvml_wrapper::Device::encoder_sessions(self)
                .map(|sessions| u32::try_from(sessions.len()).unwrap_or(u32::MAX))
                .map_err(|_| stats_error)
        })
    }
}

/// The device label for NVML index `index`: `nvidia0`. Never the UUID or serial.
pub(crate) fn device_name(index: u32) -> String {
    format!("nvidia{index}")
}

/// One device's figures. A figure the device does not support (or fails to give) is left out.
pub(crate) fn sample_device(index: u32, device: &impl NvDevice) -> DeviceSample {
    let name = device_name(index);
    let figure = |what: &'static str, result: Result<u32, NvmlError>| match result {
        Ok(value) => Some(value),
        Err(NvmlError::NotSupported) => None,
        Err(error) => {
            tracing::debug!(device = %name, figure = what, %error, "NVML gave no figure.");
            None
        }
    };
    let utilization = figure("utilization", device.utilization());
    let encoder_utilization = figure("encoder_utilization", device.encoder_utilization());
    let encoder_sessions = figure("encoder_sessions", device.encoder_sessions());
    let memory = match device.memory() {
        Ok(memory) => Some(memory),
        Err(NvmlError::NotSupported) => None,
        Err(error) => {
            tracing::debug!(device = %name, figure = "memory", %error, "NVML gave no figure.");
            None
        }
    };
    DeviceSample {
        vendor: Vendor::Nvidia,
        reading: GpuReading {
            utilization_percent: utilization.map(f64::from),
            vram_used_bytes: memory.map(|(used, _)| used),
            vram_total_bytes: memory.map(|(_, total)| total),
            encoder_utilization_percent: encoder_utilization.map(f64::from),
            encoder_sessions: encoder_sessions.map(u64::from),
        },
        device: name,
    }
}

/// An initialised NVML. Dropping it shuts NVML down.
pub(crate) struct Nvidia {
    nvml: Nvml,
}

impl Nvidia {
    /// Loads and initialises NVML. No library or no driver is the normal case on hosts without
    /// an NVIDIA GPU: one info line, and `None`.
    pub(crate) fn init() -> Option<Self> {
        match Nvml::init() {
            Ok(nvml) => {
                let count = nvml.device_count().unwrap_or(0);
                let driver = nvml.sys_driver_version().unwrap_or_default();
                tracing::info!(devices = count, %driver, "NVML loaded; sampling NVIDIA GPUs.");
                Some(Self { nvml })
            }
            Err(error) => {
                tracing::info!(%error, "No NVIDIA driver; no NVIDIA metrics.");
                None
            }
        }
    }

    /// One sample of every device NVML lists.
    pub(crate) fn sample(&self) -> Vec<DeviceSample> {
        let count = match self.nvml.device_count() {
            Ok(count) => count,
            Err(error) => {
                tracing::debug!(%error, "NVML device count failed.");
                return Vec::new();
            }
        };
        (0..count)
            .filter_map(|index| match self.nvml.device_by_index(index) {
                Ok(device) => Some(sample_device(index, &device)),
                Err(error) => {
                    tracing::debug!(device = %device_name(index), %error, "NVML device unavailable.");
                    None
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for Nvidia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvidia { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that answers what it is told to.
    struct FakeDevice {
        utilization: Result<u32, fn() -> NvmlError>,
        memory: Result<(u64, u64), fn() -> NvmlError>,
        encoder_utilization: Result<u32, fn() -> NvmlError>,
        encoder_sessions: Result<u32, fn() -> NvmlError>,
    }

    impl NvDevice for FakeDevice {
        fn utilization(&self) -> Result<u32, NvmlError> {
            self.utilization.map_err(|e| e())
        }
        fn memory(&self) -> Result<(u64, u64), NvmlError> {
            self.memory.map_err(|e| e())
        }
        fn encoder_utilization(&self) -> Result<u32, NvmlError> {
            self.encoder_utilization.map_err(|e| e())
        }
        fn encoder_sessions(&self) -> Result<u32, NvmlError> {
            self.encoder_sessions.map_err(|e| e())
        }
    }

    #[test]
    fn every_figure_maps_to_its_reading() {
        let device = FakeDevice {
            utilization: Ok(63),
            memory: Ok((3 << 30, 16 << 30)),
            encoder_utilization: Ok(41),
            encoder_sessions: Ok(3),
        };
        let sample = sample_device(1, &device);
        assert_eq!(sample.device, "nvidia1");
        assert_eq!(sample.vendor, Vendor::Nvidia);
        assert_eq!(
            sample.reading,
            GpuReading {
                utilization_percent: Some(63.0),
                vram_used_bytes: Some(3 << 30),
                vram_total_bytes: Some(16 << 30),
                encoder_utilization_percent: Some(41.0),
                encoder_sessions: Some(3),
            }
        );
    }

    #[test]
    fn unsupported_or_failing_figures_are_left_out() {
        let device = FakeDevice {
            utilization: Ok(5),
            memory: Err(|| NvmlError::GpuLost),
            encoder_utilization: Err(|| NvmlError::NotSupported),
            encoder_sessions: Err(|| NvmlError::NotSupported),
        };
        let sample = sample_device(0, &device);
        assert_eq!(sample.device, "nvidia0");
        assert_eq!(
            sample.reading,
            GpuReading {
                utilization_percent: Some(5.0),
                ..GpuReading::default()
            }
        );
    }

    #[test]
    fn fake_device_figures_reach_the_metrics() {
        let metrics = crate::metrics::Metrics::new();
        let device = FakeDevice {
            utilization: Ok(88),
            memory: Ok((1_500_000_000, 8_000_000_000)),
            encoder_utilization: Ok(12),
            encoder_sessions: Ok(2),
        };
        let sample = sample_device(0, &device);
        metrics
            .gpu
            .gpu_device(&sample.device, sample.vendor.as_str(), &sample.reading);
        let text = metrics.encode();
        for line in [
            "xg2g_gpu_utilization_percent{device=\"nvidia0\",vendor=\"nvidia\"} 88.0",
            "xg2g_vram_usage_bytes{device=\"nvidia0\"} 1500000000",
            "xg2g_vram_total_bytes{device=\"nvidia0\"} 8000000000",
            "xg2g_gpu_encoder_utilization_percent{device=\"nvidia0\"} 12.0",
            "xg2g_gpu_encoder_sessions{device=\"nvidia0\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}
