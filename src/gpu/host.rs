//! Host CPU and memory through sysinfo. Process CPU and RSS are read at scrape time by
//! `metrics::process`; this is the whole machine.

use sysinfo::System;

/// One host sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HostSample {
    /// CPU busy share since the previous sample, all cores, 0–100.
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

/// Keeps the previous CPU counters: CPU usage is the difference between two reads, which need
/// [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] between them.
#[derive(Debug)]
pub(crate) struct HostSampler {
    system: System,
}

impl HostSampler {
    /// Takes the first CPU read, so the first [`HostSampler::sample`] one interval later is a
    /// real figure.
    pub(crate) fn new() -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Self { system }
    }

    pub(crate) fn sample(&mut self) -> HostSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        HostSample {
            cpu_percent: f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "sysinfo needs a measurement window between two CPU samples"
    )]
    fn this_host_has_memory_and_a_cpu_share() {
        let mut sampler = HostSampler::new();
        // A measurement window CPU usage needs, not synchronisation.
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let sample = sampler.sample();
        assert!(sample.memory_total_bytes > 0);
        assert!(sample.memory_used_bytes > 0);
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
        assert!((0.0..=100.0).contains(&sample.cpu_percent));
    }
}
