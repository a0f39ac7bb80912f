//! Process CPU time and resident memory, read through sysinfo at scrape time.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Debug)]
pub(crate) struct ProcessCollector {
    pid: Pid,
    system: Mutex<System>,
}

impl ProcessCollector {
    pub(crate) fn new() -> Self {
        Self {
            pid: Pid::from_u32(std::process::id()),
            system: Mutex::new(System::new()),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (cpu_seconds, rss) = {
            let mut system = self.system.lock().unwrap_or_else(|e| e.into_inner());
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[self.pid]),
                false,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
            match system.process(self.pid) {
                Some(p) => (p.accumulated_cpu_time() as f64 / 1000.0, p.memory() as i64),
                None => return Ok(()),
            }
        };
        let cpu = ConstCounter::new(cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time",
            None,
            cpu.metric_type(),
        )?)?;
        let memory = ConstGauge::new(rss);
        memory.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident set size",
            None,
            memory.metric_type(),
        )?)?;
        Ok(())
    }
}
